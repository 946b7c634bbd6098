"""Visit-verification findings (design §2.8, §2.11): list them, and civil_affairs decides."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from eldercare.http.deps import AnyUser, Conn, Now
from eldercare.platform import visitchecks

router = APIRouter(prefix="/api")


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    decision: Literal["confirmed", "dismissed"]
    note: str = Field(min_length=1, max_length=2000)


@router.get("/anomalies", tags=["anomalies"])
def anomalies(
    user: AnyUser,
    conn: Conn,
    status: Literal["open", "dismissed", "confirmed"] | None = None,
    rule: str | None = Query(None, max_length=64),
    provider: int | None = None,
    severity: Literal["info", "soft", "hard"] | None = None,
    work_order: str | None = Query(None, max_length=64),
    limit: int = Query(200, ge=1, le=1000),
) -> list[dict[str, Any]]:
    if user.role == "provider_worker":
        user.require("civil_affairs")  # workers see findings on their orders, not the list
    return visitchecks.search(
        conn,
        user,
        status=status,
        rule=rule,
        provider=provider,
        severity=severity,
        work_order=work_order,
        limit=limit,
    )


@router.post("/anomalies/{anomaly_id}/decide", tags=["anomalies"])
def decide(anomaly_id: int, body: Decision, user: AnyUser, conn: Conn, now: Now) -> dict[str, Any]:
    with conn.transaction():
        return visitchecks.decide(conn, user, anomaly_id, body.decision, body.note, now)


@router.get("/reports/anomalies", tags=["reports"])
def anomalies_report(
    request: Request,
    user: AnyUser,
    conn: Conn,
    month: str = Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$"),
    district: str | None = Query(None, max_length=12),
    provider: int | None = None,
) -> dict[str, Any]:
    """Verification findings of one month (Asia/Shanghai months, design §2.1) by rule."""
    user.require("supervisor", "civil_affairs", "admin", "operator")
    tz = request.app.state.settings.tz
    year, mon = (int(x) for x in month.split("-"))
    since = datetime(year, mon, 1, tzinfo=tz)
    until = datetime(year + mon // 12, mon % 12 + 1, 1, tzinfo=tz)
    report = visitchecks.month_report(conn, since, until, district, provider)
    return {"month": month, "district": district, "provider": provider, **report}
