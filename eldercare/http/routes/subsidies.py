"""Programmes, policy versions, entitlements, voucher accounts and quotes (design §2.11)."""

from __future__ import annotations

from datetime import date
from typing import Any

from fastapi import APIRouter, Query, Request, status

from eldercare.http.deps import AnyUser, Conn, Now
from eldercare.platform import entitlements as ent
from eldercare.platform import policies
from eldercare.platform.subsidy_schemas import (
    MONTH,
    PolicyDraft,
    PolicyPatch,
    PreviewRequest,
    ProgrammeCreate,
    QuoteRequest,
    RunRequest,
    month_start,
)

router = APIRouter(prefix="/api")
CREATED = status.HTTP_201_CREATED
BACK_OFFICE = ("admin", "civil_affairs")
OVERSIGHT = ("admin", "civil_affairs", "supervisor")
DESK = ("admin", "civil_affairs", "supervisor", "operator")


def _tz(request: Request) -> Any:
    return request.app.state.settings.tz


@router.get("/programmes", tags=["policies"])
def list_programmes(user: AnyUser, conn: Conn) -> list[dict[str, Any]]:
    return policies.programmes(conn)


@router.post("/programmes", status_code=CREATED, tags=["policies"])
def create_programme(body: ProgrammeCreate, user: AnyUser, conn: Conn) -> dict[str, Any]:
    user.require(*BACK_OFFICE)
    with conn.transaction():
        return policies.create_programme(conn, body)


@router.get("/policy-versions", tags=["policies"])
def list_versions(
    user: AnyUser,
    conn: Conn,
    programme: str | None = None,
    district: str | None = None,
    on: date | None = None,
) -> list[dict[str, Any]]:
    return policies.versions(conn, programme, district, on)


@router.post("/policy-versions", status_code=CREATED, tags=["policies"])
def draft_version(body: PolicyDraft, user: AnyUser, conn: Conn, now: Now) -> dict[str, Any]:
    user.require(*BACK_OFFICE)
    with conn.transaction():
        return policies.create_draft(conn, body, user.username, now)


@router.get("/policy-versions/{version_id}", tags=["policies"])
def get_version(version_id: int, user: AnyUser, conn: Conn) -> dict[str, Any]:
    return policies.version(conn, version_id)


@router.patch("/policy-versions/{version_id}", tags=["policies"])
def patch_version(version_id: int, body: PolicyPatch, user: AnyUser, conn: Conn) -> dict[str, Any]:
    user.require(*BACK_OFFICE)
    with conn.transaction():
        return policies.patch(conn, version_id, body)


@router.post("/policy-versions/{version_id}/publish", tags=["policies"])
def publish_version(version_id: int, user: AnyUser, conn: Conn, now: Now) -> dict[str, Any]:
    user.require("civil_affairs")
    with conn.transaction():
        return policies.publish(conn, version_id, user.username, now)


@router.post("/policy-versions/{version_id}/withdraw", tags=["policies"])
def withdraw_version(version_id: int, user: AnyUser, conn: Conn, now: Now) -> dict[str, Any]:
    user.require("civil_affairs")
    with conn.transaction():
        return policies.withdraw(conn, version_id, user.username, now)


@router.post("/entitlements/preview", tags=["entitlements"])
def preview(body: PreviewRequest, user: AnyUser, conn: Conn) -> dict[str, Any]:
    user.require(*OVERSIGHT)
    return ent.preview(conn, body)


@router.post("/entitlement-runs", status_code=CREATED, tags=["entitlements"])
def start_run(
    body: RunRequest, request: Request, user: AnyUser, conn: Conn, now: Now
) -> dict[str, Any]:
    user.require(*OVERSIGHT)
    with conn.transaction():
        return ent.run(
            conn, month_start(body.month), body.district_code, user.username, now, _tz(request)
        )


@router.get("/entitlement-runs/{run_id}", tags=["entitlements"])
def get_run(run_id: int, user: AnyUser, conn: Conn) -> dict[str, Any]:
    user.require(*OVERSIGHT)
    return ent.run_detail(conn, run_id)


@router.get("/residents/{resident_id}/entitlements", tags=["entitlements"])
def resident_entitlements(
    resident_id: int,
    user: AnyUser,
    conn: Conn,
    month: str | None = Query(default=None, pattern=MONTH),
    include_void: int = 0,
) -> list[dict[str, Any]]:
    user.require(*DESK)
    return ent.of_resident(
        conn, resident_id, month_start(month) if month else None, bool(include_void)
    )


@router.get("/residents/{resident_id}/subsidy-account", tags=["entitlements"])
def subsidy_account(
    resident_id: int,
    request: Request,
    user: AnyUser,
    conn: Conn,
    now: Now,
    programme: str = Query(min_length=1, max_length=63),
    month: str = Query(pattern=MONTH),
) -> dict[str, Any]:
    user.require(*DESK)
    policies.programme(conn, programme)
    acc = ent.account(conn, resident_id, programme, month_start(month), _tz(request))
    return ent.account_public(acc, now, _tz(request))


@router.post("/quote", tags=["entitlements"])
def quote(body: QuoteRequest, request: Request, user: AnyUser, conn: Conn) -> dict[str, Any]:
    user.require(*DESK, "provider_admin", "provider_worker")
    return ent.quote(conn, body, _tz(request))
