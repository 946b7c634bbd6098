"""Device health from eldercare.models.device_health: battery time-to-empty and offline
risk per device, as the last scoring run wrote them (``eldercare models score
device_health``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from eldercare.http.deps import Conn, User
from eldercare.storage import db

router = APIRouter()


@router.get("/api/devices/health", tags=["devices"])
def device_health(
    user: User,
    conn: Conn,
    facility: Annotated[int | None, Query(ge=1)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    """Devices most at risk first: the soonest to reach the low-battery threshold, then the
    highest offline risk. Facility staff see their own facility only."""
    user.require("operator", "supervisor", "admin", "facility_staff")
    fac = user.facility_id if user.scoped else facility
    return db.rows(
        conn,
        "SELECT h.device_id, d.kind, d.facility_id, d.room, h.computed_at, h.battery,"
        " h.drain_pct_per_h, h.hours_to_low, h.hours_to_empty, h.offline_risk_24h,"
        " h.reasons, h.model, h.version"
        " FROM device_health h JOIN devices d ON d.id = h.device_id"
        " WHERE (%s::bigint IS NULL OR d.facility_id = %s)"
        " ORDER BY h.hours_to_low ASC NULLS LAST, h.offline_risk_24h DESC NULLS LAST,"
        " h.device_id LIMIT %s",
        (fac, fac, limit),
    )
