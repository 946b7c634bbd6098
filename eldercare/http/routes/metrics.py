"""Response-time metrics (acknowledge, arrive, close) over a window."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query

from eldercare.alerts import metrics as clocks
from eldercare.http.deps import Conn, Now, User

router = APIRouter(prefix="/api")


@router.get("/metrics/response", tags=["metrics"])
def response_metrics(
    user: User,
    conn: Conn,
    now: Now,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
    facility: int | None = None,
) -> dict[str, Any]:
    user.require("operator", "supervisor", "admin")
    end = to or now
    start = from_ or end - timedelta(hours=24)
    return clocks.response_metrics(conn, start, end, facility, now)
