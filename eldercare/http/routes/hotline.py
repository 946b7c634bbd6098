"""The 12349 hotline: calls, referral calls to work orders, complaints (design §2.10), and the
revisit-satisfaction report."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status

from eldercare.errors import InvalidInput
from eldercare.http.deps import AnyUser, Conn, Now, User, platform_env
from eldercare.http.routes.subsidy_reports import Format, csv_or_json
from eldercare.platform import hotline
from eldercare.platform.schemas import (
    CallWorkOrder,
    ComplaintClose,
    ComplaintCreate,
    HotlineCallCreate,
)
from eldercare.registry.schemas import DISTRICT_CODE

router = APIRouter(prefix="/api")
CREATED = status.HTTP_201_CREATED
DESK = ("operator", "supervisor", "admin")


@router.post("/hotline/calls", status_code=CREATED, tags=["hotline"])
def create_call(body: HotlineCallCreate, user: User, conn: Conn, now: Now) -> dict[str, Any]:
    user.require(*DESK)
    with conn.transaction():
        return hotline.create_call(conn, body, user.username, now)


@router.get("/hotline/calls", tags=["hotline"])
def calls(
    user: User,
    conn: Conn,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
) -> list[dict[str, Any]]:
    user.require(*DESK, "civil_affairs")
    return hotline.calls(conn, from_, to)


@router.post("/hotline/calls/{call_id}/work-order", status_code=CREATED, tags=["hotline"])
def call_work_order(
    request: Request, call_id: int, body: CallWorkOrder, user: User, conn: Conn, now: Now
) -> dict[str, Any]:
    user.require(*DESK)
    with conn.transaction():
        return hotline.call_work_order(conn, user, call_id, body, now, platform_env(request))


@router.post("/complaints", status_code=CREATED, tags=["hotline"])
def create_complaint(body: ComplaintCreate, user: User, conn: Conn, now: Now) -> dict[str, Any]:
    user.require(*DESK, "civil_affairs")
    with conn.transaction():
        return hotline.create_complaint(conn, body, user.username, now)


@router.get("/complaints", tags=["hotline"])
def complaints(
    user: AnyUser, conn: Conn, status: str | None = None, provider: int | None = None
) -> list[dict[str, Any]]:
    user.require(*DESK, "civil_affairs", "provider_admin")
    return hotline.complaints(conn, user, status, provider)


@router.post("/complaints/{complaint_id}/close", tags=["hotline"])
def close_complaint(
    complaint_id: int, body: ComplaintClose, user: User, conn: Conn, now: Now
) -> dict[str, Any]:
    user.require(*DESK, "civil_affairs")
    with conn.transaction():
        return hotline.close_complaint(conn, complaint_id, body, user.username, now)


@router.get("/reports/revisits", tags=["reports"])
def revisits_report(
    request: Request,
    user: User,
    conn: Conn,
    from_: Annotated[datetime, Query(alias="from")],
    to: datetime,
    district: str | None = Query(default=None, pattern=DISTRICT_CODE),
    provider: int | None = None,
    format: Format = "json",
) -> Any:
    user.require("supervisor", "civil_affairs", "admin", "operator")
    # A bare date (from=2026-03-01) is a local-time midnight, as months are (design §2.1).
    tz = request.app.state.settings.tz
    since, until = (t if t.tzinfo else t.replace(tzinfo=tz) for t in (from_, to))
    if until <= since:
        raise InvalidInput("'to' must be after 'from'")
    report = hotline.revisits_report(conn, since, until, district, provider)
    return csv_or_json(report, format, "revisits", f"revisits-{since:%Y%m%d}-{until:%Y%m%d}")
