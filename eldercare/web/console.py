"""What the pages need beyond the documented API: per open alarm, the place to draw on the
map and who holds it now; and the shift handover notes."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from eldercare.alerts import rules
from eldercare.alerts.lifecycle import QUEUE_ORDER
from eldercare.http.deps import Conn, Now, User
from eldercare.storage import db

router = APIRouter()
# Open = not closed or merged (alerts.rules.TERMINAL), written into the SQL text.
TERMINAL = db.sql_list(rules.TERMINAL)


@router.get("/api/console/open", tags=["console"])
def open_extras(request: Request, user: User, conn: Conn, now: Now) -> dict[str, Any]:
    """Per open alarm: where to draw it (home bed, else facility) and who holds it.

    ``now`` is the server's clock so pages can tick alarm ages without trusting the
    workstation's clock.
    """
    fac = user.facility_id if user.scoped else None
    rows = db.rows(
        conn,
        f"""
        SELECT a.id::text AS id,
               COALESCE(hb.lat, f.lat) AS lat, COALESCE(hb.lon, f.lon) AS lon,
               o.name AS holder, o.responder_kind AS holder_kind, o.responder_id AS holder_id
        FROM alarms a
        LEFT JOIN facilities f ON f.id = a.facility_id
        LEFT JOIN home_beds hb ON hb.id = a.home_bed_id
        LEFT JOIN LATERAL (
            SELECT d.name, d.responder_kind, d.responder_id FROM dispatch_offers d
            WHERE d.alarm_id = a.id AND d.status IN ('accepted', 'called')
            ORDER BY d.answered_at DESC NULLS LAST, d.id DESC LIMIT 1) o ON true
        LEFT JOIN alarm_triage t ON t.alarm_id = a.id
        WHERE a.status NOT IN {TERMINAL}
          AND (%s::bigint IS NULL OR a.facility_id = %s)
        ORDER BY {QUEUE_ORDER} LIMIT 1000""",
        (fac, fac),
    )
    return {
        "now": now.isoformat(),
        "low_battery_pct": request.app.state.settings.low_battery_pct,
        "alarms": rows,
    }


# ---------------------------------------------------------------- shift handover


class HandoverCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    text: str = Field(min_length=1, max_length=4000)


_HANDOVER_ROLES = ("operator", "supervisor", "admin")


@router.get("/api/console/handover", tags=["console"])
def handover_notes(
    user: User, conn: Conn, now: Now, hours: Annotated[int, Query(ge=1, le=168)] = 24
) -> list[dict[str, Any]]:
    """Notes left for the next shift, newest first."""
    user.require(*_HANDOVER_ROLES)
    return db.rows(
        conn,
        "SELECT id, at, author, text, open_alarms FROM handover_notes"
        " WHERE at >= %s ORDER BY at DESC, id DESC LIMIT 200",
        (now - timedelta(hours=hours),),
    )


@router.post("/api/console/handover", status_code=status.HTTP_201_CREATED, tags=["console"])
def add_handover_note(body: HandoverCreate, user: User, conn: Conn, now: Now) -> dict[str, Any]:
    """A note for the next shift, stamped with a snapshot of what was open (ids, kinds,
    states and holders only: the note table must not become a second copy of resident
    records)."""
    user.require(*_HANDOVER_ROLES)
    return db.rows(
        conn,
        f"""
        INSERT INTO handover_notes (at, author, text, open_alarms)
        SELECT %s, %s, %s, COALESCE(jsonb_agg(jsonb_build_object(
                 'id', a.id, 'kind', a.kind, 'status', a.status, 'priority', a.priority,
                 'acknowledged_by', a.acknowledged_by) ORDER BY a.priority, a.received_at),
               '[]'::jsonb)
        FROM alarms a WHERE a.status NOT IN {TERMINAL}
        RETURNING id, at, author, text, open_alarms""",
        (now, user.username, body.text.strip() or body.text),
    )[0]
