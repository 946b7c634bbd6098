"""The reveals audit (audit M1): every look at a resident's personal data, and every refused
attempt, is a row of ``reveals``; a user gets a limited number an hour.

Shared by the desk's reveal (``POST /api/residents/{id}/reveal``) and a care worker's
visit address (``POST /api/work-orders/{id}/reveal``), so both count against one budget.
"""

from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta
from typing import Final

import psycopg

from eldercare.errors import EldercareError, RateLimited
from eldercare.storage import db

HOUR: Final = timedelta(hours=1)


def throttle(
    conn: psycopg.Connection,
    username: str,
    now: datetime,
    per_hour: int,
    without_alarm_per_hour: int | None = None,
) -> RateLimited | None:
    """RateLimited if ``username`` has had ``per_hour`` reveals in the past hour (or, when
    ``without_alarm_per_hour`` is given, that many on a stated reason alone), else None."""
    recent = db.rows(
        conn,
        "SELECT at, alarm_id IS NULL AND work_order_id IS NULL AS stated FROM reveals"
        " WHERE username = %s AND refused IS NULL AND at > %s ORDER BY at",
        (username, now - HOUR),
    )
    for limit, counted in (
        (per_hour, recent),
        (without_alarm_per_hour, [r for r in recent if r["stated"]]),
    ):
        if limit is not None and len(counted) >= limit:
            oldest = counted[-limit]["at"]
            wait = (oldest + HOUR - now).total_seconds()
            return RateLimited(
                f"{limit} reveals an hour is the most; ask a supervisor if more are needed",
                math.ceil(wait),
            )
    return None


def record(
    conn: psycopg.Connection,
    *,
    at: datetime,
    username: str,
    resident_id: int,
    reason: str,
    refusal: EldercareError | None,
    alarm_id: uuid.UUID | None = None,
    work_order_id: str | None = None,
) -> None:
    """One row of the audit; a refused attempt says why (``throttled`` for the rate)."""
    conn.execute(
        "INSERT INTO reveals (at, username, resident_id, alarm_id, work_order_id, reason,"
        " refused) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (at, username, resident_id, alarm_id, work_order_id, reason, why(refusal)),
    )


def why(refusal: EldercareError | None) -> str | None:
    if refusal is None:
        return None
    return "throttled" if isinstance(refusal, RateLimited) else str(refusal)[:200]
