"""Settlement batches per provider and month; facility ratings and grade awards (§2.11)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, status

from eldercare.http.deps import AnyUser, Conn, Now
from eldercare.platform import awards, settlement
from eldercare.platform.subsidy_schemas import (
    MONTH,
    AwardRun,
    BatchCreate,
    BatchPaid,
    BatchReject,
    RatingCreate,
    month_start,
)

router = APIRouter(prefix="/api")
CREATED = status.HTTP_201_CREATED
BACK_OFFICE = ("admin", "civil_affairs")


@router.post("/settlement-batches", status_code=CREATED, tags=["settlement"])
def create_batch(
    body: BatchCreate, request: Request, user: AnyUser, conn: Conn, now: Now
) -> dict[str, Any]:
    user.require(*BACK_OFFICE, "provider_admin")
    with conn.transaction():
        return settlement.create(
            conn,
            user,
            body.provider_id,
            month_start(body.month),
            now,
            request.app.state.settings.tz,
        )


@router.get("/settlement-batches", tags=["settlement"])
def list_batches(
    user: AnyUser,
    conn: Conn,
    provider: int | None = None,
    month: str | None = Query(default=None, pattern=MONTH),
) -> list[dict[str, Any]]:
    user.require(*BACK_OFFICE, "supervisor", "provider_admin")
    return settlement.list_batches(conn, user, provider, month_start(month) if month else None)


@router.get("/settlement-batches/{batch_id}", tags=["settlement"])
def get_batch(batch_id: int, user: AnyUser, conn: Conn) -> dict[str, Any]:
    user.require(*BACK_OFFICE, "supervisor", "provider_admin")
    return settlement.detail(conn, user, batch_id)


@router.post("/settlement-batches/{batch_id}/submit", tags=["settlement"])
def submit_batch(batch_id: int, user: AnyUser, conn: Conn, now: Now) -> dict[str, Any]:
    with conn.transaction():
        return settlement.act(conn, user, batch_id, "submit", now)


@router.post("/settlement-batches/{batch_id}/approve", tags=["settlement"])
def approve_batch(batch_id: int, user: AnyUser, conn: Conn, now: Now) -> dict[str, Any]:
    with conn.transaction():
        return settlement.act(conn, user, batch_id, "approve", now)


@router.post("/settlement-batches/{batch_id}/reject", tags=["settlement"])
def reject_batch(
    batch_id: int, body: BatchReject, user: AnyUser, conn: Conn, now: Now
) -> dict[str, Any]:
    with conn.transaction():
        return settlement.act(conn, user, batch_id, "reject", now, reason=body.reason)


@router.post("/settlement-batches/{batch_id}/mark-paid", tags=["settlement"])
def mark_paid(
    batch_id: int, body: BatchPaid, user: AnyUser, conn: Conn, now: Now
) -> dict[str, Any]:
    with conn.transaction():
        return settlement.act(conn, user, batch_id, "mark_paid", now, payment_ref=body.payment_ref)


@router.post("/facilities/{facility_id}/ratings", status_code=CREATED, tags=["awards"])
def add_rating(
    facility_id: int, body: RatingCreate, user: AnyUser, conn: Conn, now: Now
) -> dict[str, Any]:
    user.require(*BACK_OFFICE)
    with conn.transaction():
        return awards.add_rating(conn, facility_id, body, user.username, now)


@router.post("/facility-awards/run", tags=["awards"])
def run_awards(body: AwardRun, user: AnyUser, conn: Conn, now: Now) -> dict[str, Any]:
    user.require(*BACK_OFFICE)
    with conn.transaction():
        return awards.run(conn, body, now)


@router.get("/facility-awards", tags=["awards"])
def list_awards(
    user: AnyUser, conn: Conn, year: int | None = None, district: str | None = None
) -> list[dict[str, Any]]:
    user.require(*BACK_OFFICE, "supervisor")
    return awards.list_awards(conn, year, district)
