"""The duty operator's console (``/console``) and the facility staff page (``/staff``).

Plain HTML, CSS and JavaScript served from package data: the machines that run a
12349 hotline are often offline from the internet, so nothing comes from a CDN and
there is no build step. The pages talk to the documented API (docs/api.md) and its
websocket; this router only adds what the API does not offer: shift handover notes
and, per open alarm, the place to draw on the map and who holds it now.
"""

from __future__ import annotations

import mimetypes
from datetime import timedelta
from importlib import resources
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request, status
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from eldercare.alerts import rules
from eldercare.http.deps import Conn, Now, User
from eldercare.storage import db

router = APIRouter()
# Open = not closed or merged (alerts.rules.TERMINAL), written into the SQL text.
TERMINAL = db.sql_list(rules.TERMINAL)

_STATIC = resources.files(__name__).joinpath("static")
# No build step means no content hashes in file names; revalidating is cheap (ETag-less
# but small files) and an operator never runs a stale console after an upgrade.
_NO_CACHE = {"Cache-Control": "no-cache"}
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
}


def _asset(path: str) -> Response:
    parts = [p for p in path.split("/") if p]
    # Only plain names below static/: no parent references, no hidden files.
    if not parts or any(p.startswith(".") or "\\" in p for p in parts):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    node = _STATIC
    for p in parts:
        node = node.joinpath(p)
    if not node.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "not found")
    suffix = "." + parts[-1].rsplit(".", 1)[-1] if "." in parts[-1] else ""
    media = _TYPES.get(suffix) or mimetypes.guess_type(parts[-1])[0] or "application/octet-stream"
    return Response(node.read_bytes(), media_type=media, headers=_NO_CACHE)


@router.get("/console", include_in_schema=False)
def console_page() -> Response:
    return _asset("console.html")


@router.get("/staff", include_in_schema=False)
def staff_page() -> Response:
    return _asset("staff.html")


@router.get("/registry", include_in_schema=False)
def registry_page() -> Response:
    """Registry management (residents, home care beds, districts) for the platform's admins."""
    return _asset("registry.html")


@router.get("/static/{path:path}", include_in_schema=False)
def static_file(path: str) -> Response:
    return _asset(path)


# ---------------------------------------------------------------- reads for the console


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
        WHERE a.status NOT IN {TERMINAL}
          AND (%s::bigint IS NULL OR a.facility_id = %s)
        ORDER BY a.priority, a.received_at LIMIT 1000""",
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
