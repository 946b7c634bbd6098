"""What the pages need beyond the documented API: per open alarm, the place to draw on the
map and who holds it now; the shift handover notes; and for the work-order tab and the 12349
call form, orders listed with the names a desk reads, the providers contracted for an order,
and a resident lookup that shows no more than the alarm queue already does."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field

from eldercare.alerts import rules
from eldercare.alerts.lifecycle import queue_order
from eldercare.errors import InvalidInput, NotFoundError
from eldercare.http.deps import Conn, Now, User
from eldercare.platform import lifecycle, providers
from eldercare.platform import workorders as wo
from eldercare.platform.schemas import HotlineCallCreate, RevisitCreate
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
               -- A family contact's name stays behind the audited reveal (audit M2).
               CASE WHEN o.responder_kind = 'family' THEN NULL ELSE o.name END AS holder,
               o.responder_kind AS holder_kind, o.responder_id AS holder_id
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
        ORDER BY {queue_order("%s::timestamptz")} LIMIT 1000""",
        (fac, fac, now),
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


# ---------------------------------------------------------------- work orders and 12349 calls


@router.get("/api/console/orders-meta", tags=["console"])
def orders_meta(user: User) -> dict[str, Any]:
    """The vocabularies of the work-order tab and the call form, from the server's own
    definitions (the lifecycle and the request schemas), so the page copies none of them."""
    return {
        "statuses": list(lifecycle.STATUSES),
        "request_types": list(get_args(HotlineCallCreate.model_fields["request_type"].annotation)),
        "channels": list(get_args(RevisitCreate.model_fields["channel"].annotation)),
        "satisfaction": [1, 2, 3, 4],  # 1 非常满意 … 4 不满意 (design §2.10)
        "may_create": user.role in lifecycle.CREATE_ROLES,
        "may_take_calls": user.role in lifecycle.DESK,
    }


# Names a desk reads beside the ids of an order; no address, phone or ID number.
_NAMES = """
SELECT w.id, r.name AS resident_name, p.name AS provider_name, k.name AS worker_name,
       s.name_zh AS item_name, d.name AS district_name
FROM work_orders w
JOIN residents r ON r.id = w.resident_id
LEFT JOIN providers p ON p.id = w.provider_id
LEFT JOIN workers k ON k.id = w.worker_id
LEFT JOIN service_items s ON s.code = w.service_item_code
LEFT JOIN districts d ON d.code = w.district_code
WHERE w.id = ANY(%s::uuid[])
"""


def _with_names(conn: Any, orders: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not orders:
        return orders
    names = {str(n["id"]): n for n in db.rows(conn, _NAMES, ([o["id"] for o in orders],))}
    keep = ("resident_name", "provider_name", "worker_name", "item_name", "district_name")
    return [{**o, **{k: names.get(o["id"], {}).get(k) for k in keep}} for o in orders]


def _visible(conn: Any, user: Any, order_id: str) -> list[dict[str, Any]]:
    try:
        return [wo.get(conn, user, order_id)]
    except NotFoundError:
        return []


@router.get("/api/console/work-orders", tags=["console"])
def console_work_orders(
    user: User,
    conn: Conn,
    now: Now,
    status: str | None = None,
    provider: int | None = None,
    district: str | None = None,
    item: str | None = None,
    alarm_id: str | None = None,
    ids: Annotated[list[str] | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 300,
) -> dict[str, Any]:
    """``GET /api/work-orders`` (same filters, same visibility) with the names of resident,
    provider, worker, service item and district; ``status=unfinished`` for every status not
    yet done with; ``ids`` picks given orders (live updates). ``to_dispatch`` counts the
    caller's orders waiting for a dispatch, for the tab's badge."""
    if status is not None and status != "unfinished" and status not in lifecycle.STATUSES:
        raise InvalidInput(f"status: unfinished or one of {', '.join(lifecycle.STATUSES)}")
    if ids:
        # One search per id, each under the caller's visibility: an order that is not theirs
        # (or no order at all) is simply absent, as in a list.
        orders = [o for i in dict.fromkeys(ids) for o in _visible(conn, user, i)]
    else:
        wanted = lifecycle.UNFINISHED if status == "unfinished" else (status,)
        found = [
            o
            for s in wanted
            for o in wo.search(
                conn,
                user,
                status=s,
                provider=provider,
                district=district,
                item=item,
                alarm_id=alarm_id,
                limit=limit,
            )
        ]
        # The order of GET /api/work-orders: newest first.
        orders = sorted(found, key=lambda o: (o["created_at"], o["number"]), reverse=True)[:limit]
    waiting = wo.search(conn, user, status="created", limit=1000)
    return {
        "now": now.isoformat(),
        "orders": _with_names(conn, orders),
        "to_dispatch": len(waiting),
    }


@router.get("/api/console/work-orders/{order_id}/providers", tags=["console"])
def dispatch_candidates(
    request: Request, order_id: str, user: User, conn: Conn, now: Now
) -> list[dict[str, Any]]:
    """Active providers contracted for the order's item in its district on its service day,
    with the unit price a dispatch would copy: the dispatch form offers these first."""
    order = wo.get(conn, user, order_id)
    day = (order["scheduled_start"] or now).astimezone(request.app.state.settings.tz).date()
    out = []
    for p in db.rows(
        conn, "SELECT id, name, status FROM providers WHERE status = 'active' ORDER BY id"
    ):
        price = providers.unit_price(
            conn, p["id"], order["district_code"], order["service_item_code"], day
        )
        if price is not None:
            out.append({**p, "unit_price_fen": price})
    return out


@router.get("/api/console/residents", tags=["console"])
def find_residents(
    user: User, conn: Conn, q: Annotated[str, Query(min_length=1, max_length=100)]
) -> list[dict[str, Any]]:
    """Residents by name (part of it) or number, for the call form: the fields the alarm queue
    shows (name, age, gender, ability, place), never ID numbers, phones or addresses."""
    text = q.strip()
    if not text:
        raise InvalidInput("q is blank: type part of a name or a resident number")
    fac = user.facility_id if user.scoped else None
    return db.rows(
        conn,
        """
        SELECT r.id, r.name, r.birth_date, r.gender, r.ability_level, r.room,
               pl.setting, pl.facility_id, f.name AS facility_name, r.home_bed_id,
               r.household_id, pl.district_code, d.name AS district_name
        FROM residents r
        JOIN resident_places pl ON pl.resident_id = r.id
        LEFT JOIN facilities f ON f.id = pl.facility_id
        LEFT JOIN districts d ON d.code = pl.district_code
        WHERE (r.name ILIKE '%%' || %(like)s || '%%' ESCAPE '\\' OR r.id::text = %(q)s)
          AND (%(fac)s::bigint IS NULL OR pl.facility_id = %(fac)s)
        ORDER BY (r.id::text = %(q)s) DESC, r.name, r.id LIMIT 20""",
        {
            "q": text,
            "like": text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_"),
            "fac": fac,
        },
    )
