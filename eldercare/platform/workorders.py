"""Work orders (工单): creation with snapshots, the lifecycle of design §2.4, the timeline,
revisits (回访) and who may see which order.

Every function runs in the caller's transaction and locks the order row (``FOR UPDATE``), so of
two concurrent actors one wins and the other gets 409 from the state machine, as with alarms.
Visit checks (anomaly rules) and subsidy allocation plug in through :class:`Hooks`, passed in
by the HTTP layer, so this module needs neither.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any, Final
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from eldercare.alerts import events as alerts_events
from eldercare.alerts.rules import distance_m
from eldercare.errors import ConflictError, InvalidInput, NotFoundError, PermissionDenied
from eldercare.platform import entitlements, lifecycle, people, providers
from eldercare.platform.schemas import (
    AcceptRequest,
    CheckOut,
    DispatchRequest,
    GeoPoint,
    ReasonRequest,
    RejectClaim,
    RevisitCreate,
    VerifyRequest,
    WorkOrderCreate,
)
from eldercare.registry.auth import SYSTEM, Actor
from eldercare.storage import db

Row = dict[str, Any]
REVISIT_DUE: Final = timedelta(hours=72)  # design §2.10

# (conn, order row after the move, phase "check_in" | "check_out" | "verify", now) -> anomalies
Inspector = Callable[[psycopg.Connection, Row, str, datetime], list[Row]]
# (conn, order row after the move, now): subsidy allocation when an order is verified
OnVerified = Callable[[psycopg.Connection, Row, datetime], None]


@dataclass(frozen=True, slots=True)
class Hooks:
    inspect: Inspector | None = None
    on_verified: OnVerified | None = None


@dataclass(frozen=True, slots=True)
class Env:
    """What the lifecycle needs to know of the deployment."""

    tz: ZoneInfo
    revisit_sample_pct: int = 10
    hooks: Hooks = Hooks()


_COLS: Final = (
    "id::text AS id, number, resident_id, home_bed_id, household_id, facility_id, district_code,"
    " ref_lat, ref_lon, area, ability_level, service_item_code, quantity::float8 AS quantity,"
    " source, alarm_id::text AS alarm_id, hotline_call_id, care_agreement_id, status,"
    " provider_id, worker_id, scheduled_start, scheduled_end, due_by, unit_price_fen, price_fen,"
    " ltc_fen, dispatched_at, accepted_at, checked_in_at, checked_out_at, verified_at,"
    " settled_at, cancelled_at, rejected_at, check_in, check_out, record, revisit_required,"
    " verification, created_by, created_at"
)


def _uuid(value: str, what: str = "work order") -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise NotFoundError(f"{what} {value[:40]} not found") from exc


def visible_sql(actor: Actor) -> tuple[str, dict[str, Any]]:
    """The WHERE fragment of the orders ``actor`` may see (design §2.1 scoping, §3.6 step 3).

    A provider admin sees their provider's orders; a worker sees their provider's dispatched,
    unassigned orders and their own. Facility staff see orders of their facility.
    """
    if actor.role == "provider_admin":
        return "w.provider_id = %(scope_p)s", {"scope_p": actor.provider_id}
    if actor.role == "provider_worker":
        return (
            "(w.worker_id = %(scope_w)s OR (w.provider_id = %(scope_p)s"
            " AND w.status = 'dispatched' AND w.worker_id IS NULL))",
            {"scope_w": actor.worker_id, "scope_p": actor.provider_id},
        )
    if actor.scoped:
        return "w.facility_id = %(scope_f)s", {"scope_f": actor.facility_id}
    return "true", {}


def _load(conn: psycopg.Connection, actor: Actor, order_id: str, *, lock: bool = False) -> Row:
    where, params = visible_sql(actor)
    found = db.rows(
        conn,
        f"SELECT {_COLS} FROM work_orders w WHERE w.id = %(id)s AND {where}"
        + (" FOR UPDATE" if lock else ""),
        {"id": _uuid(order_id), **params},
    )
    if not found:
        raise NotFoundError(f"work order {order_id} not found")
    return found[0]


def get(conn: psycopg.Connection, actor: Actor, order_id: str) -> Row:
    return _load(conn, actor, order_id)


def _event(
    conn: psycopg.Connection,
    order_id: str,
    at: datetime,
    actor: str,
    action: str,
    from_status: str | None,
    to_status: str | None,
    detail: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        "INSERT INTO work_order_events (work_order_id, at, actor, action, from_status, to_status,"
        " detail) VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (order_id, at, actor, action, from_status, to_status, Jsonb(detail or {})),
    )


_LIVE_FIELDS: Final = (
    "id",
    "number",
    "status",
    "service_item_code",
    "resident_id",
    "provider_id",
    "worker_id",
    "district_code",
    "facility_id",
    "alarm_id",
    "scheduled_start",
    "due_by",
)


def announce(conn: psycopg.Connection, order: Row, event: str) -> None:
    """Tell the consoles (websocket ``{"type": "work_order", ...}``, design §2.11) once the
    transaction commits. Ids and statuses only: no names, addresses or service notes."""
    alerts_events.relay(
        conn,
        {
            "type": "work_order",
            "event": event,
            "work_order": {k: order.get(k) for k in _LIVE_FIELDS},
        },
        order.get("facility_id"),
    )


def events(conn: psycopg.Connection, actor: Actor, order_id: str) -> list[Row]:
    _load(conn, actor, order_id)
    return db.rows(
        conn,
        "SELECT id, at, actor, action, from_status, to_status, detail FROM work_order_events"
        " WHERE work_order_id = %s ORDER BY id",
        (order_id,),
    )


def detail(conn: psycopg.Connection, actor: Actor, order_id: str) -> Row:
    """The order with its timeline, anomalies, revisits and EVV completeness (design §2.11),
    what the caller may do now (``allowed_actions``) and what still blocks verification."""
    order = _load(conn, actor, order_id)
    blockers = (
        lifecycle.verify_blocker_codes(gate(conn, order_id, order["revisit_required"]))
        if order["status"] == "checked_out"
        else []
    )
    return {
        **order,
        "allowed_actions": lifecycle.allowed_actions(order["status"], _role(actor)),
        "verify_blockers": blockers,
        "evv_complete": lifecycle.evv_complete(order),
        "evv_missing": lifecycle.evv_missing(order),
        "timeline": db.rows(
            conn,
            "SELECT id, at, actor, action, from_status, to_status, detail FROM work_order_events"
            " WHERE work_order_id = %s ORDER BY id",
            (order_id,),
        ),
        "anomalies": anomalies_of(conn, order_id),
        "revisits": revisits_of(conn, order_id),
        "payer": entitlements.payer_of(conn, order),
    }


def anomalies_of(conn: psycopg.Connection, order_id: str) -> list[Row]:
    return db.rows(
        conn,
        "SELECT id, rule_code, severity, status, detected_at, evidence FROM anomalies"
        " WHERE work_order_id = %s ORDER BY id",
        (order_id,),
    )


def revisits_of(conn: psycopg.Connection, order_id: str) -> list[Row]:
    return db.rows(
        conn,
        "SELECT id, reason, due_at, done_at, channel, reached, service_confirmed, satisfaction,"
        " comment, by_user, created_at FROM revisits WHERE work_order_id = %s ORDER BY id",
        (order_id,),
    )


def search(
    conn: psycopg.Connection,
    actor: Actor,
    *,
    status: str | None = None,
    provider: int | None = None,
    resident: int | None = None,
    worker: int | None = None,
    district: str | None = None,
    alarm_id: str | None = None,
    item: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 500,
) -> list[Row]:
    where, params = visible_sql(actor)
    return db.rows(
        conn,
        f"SELECT {_COLS} FROM work_orders w WHERE {where}"
        " AND (%(status)s::text IS NULL OR w.status = %(status)s)"
        " AND (%(provider)s::bigint IS NULL OR w.provider_id = %(provider)s)"
        " AND (%(resident)s::bigint IS NULL OR w.resident_id = %(resident)s)"
        " AND (%(worker)s::bigint IS NULL OR w.worker_id = %(worker)s)"
        " AND (%(district)s::text IS NULL OR w.district_code IN"
        "      (SELECT district_subtree(%(district)s)))"
        " AND (%(alarm)s::uuid IS NULL OR w.alarm_id = %(alarm)s)"
        " AND (%(item)s::text IS NULL OR w.service_item_code = %(item)s)"
        " AND (%(since)s::timestamptz IS NULL"
        "      OR COALESCE(w.checked_in_at, w.scheduled_start, w.created_at) >= %(since)s)"
        " AND (%(until)s::timestamptz IS NULL"
        "      OR COALESCE(w.checked_in_at, w.scheduled_start, w.created_at) < %(until)s)"
        " ORDER BY w.created_at DESC, w.number DESC LIMIT %(limit)s",
        {
            **params,
            "status": status,
            "provider": provider,
            "resident": resident,
            "worker": worker,
            "district": district,
            "alarm": _uuid(alarm_id, "alarm") if alarm_id else None,
            "item": item,
            "since": since,
            "until": until,
            "limit": limit,
        },
    )


# ---------------------------------------------------------------- create


def create(
    conn: psycopg.Connection,
    actor: Actor,
    body: WorkOrderCreate,
    now: datetime,
    env: Env,
    *,
    source: str | None = None,
    alarm_id: str | None = None,
    hotline_call_id: int | None = None,
) -> Row:
    """A new order, with district, place, reference point and ability level snapshotted."""
    role = "system" if actor.username == "system" else actor.role
    if role not in lifecycle.CREATE_ROLES:
        raise PermissionDenied(f"role {actor.role} may not create work orders")
    people.resident_exists(conn, body.resident_id)
    died = people.deceased_at(conn, body.resident_id)
    if died is not None and died <= now:
        raise ConflictError(f"resident {body.resident_id} deceased: no new work orders")
    item = providers.item(conn, body.service_item_code)
    if not item["active"]:
        raise ConflictError(f"service item {item['code']} is not offered any more")
    place = db.one(
        conn,
        "SELECT * FROM resident_places WHERE resident_id = %s",
        (body.resident_id,),
    )
    if place["district_code"] is None:
        raise ConflictError(
            f"resident {body.resident_id} lives nowhere with a district; set the district of"
            " their home bed, household or facility first"
        )
    if body.care_agreement_id is not None:
        db.one(
            conn,
            "SELECT 1 FROM care_agreements WHERE id = %s AND resident_id = %s",
            (body.care_agreement_id, body.resident_id),
            missing=f"care agreement {body.care_agreement_id} of this resident not found",
        )
    seq = db.one(conn, "SELECT nextval('work_order_number_seq') AS n")["n"]
    number = lifecycle.number(place["district_code"], now, env.tz, int(seq))
    level = people.level_on(conn, body.resident_id, now.astimezone(env.tz).date())["level"]
    row = db.one(
        conn,
        "INSERT INTO work_orders (number, resident_id, home_bed_id, household_id, facility_id,"
        " district_code, ref_lat, ref_lon, area, ability_level, service_item_code, quantity,"
        " source, alarm_id, hotline_call_id, care_agreement_id, scheduled_start, scheduled_end,"
        " due_by, ltc_fen, created_by, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s,"
        " %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id::text AS id",
        (
            number,
            body.resident_id,
            place["home_bed_id"],
            place["household_id"],
            place["facility_id"],
            place["district_code"],
            place["lat"],
            place["lon"],
            place["area"],
            level,
            item["code"],
            Decimal(str(body.quantity)),
            source or body.source,
            alarm_id,
            hotline_call_id,
            body.care_agreement_id,
            body.scheduled_start,
            body.scheduled_end,
            body.due_by,
            body.ltc_fen,
            actor.username,
            now,
        ),
    )
    detail_: dict[str, Any] = {"number": number, "source": source or body.source}
    if alarm_id:
        detail_["alarm_id"] = alarm_id
    if hotline_call_id:
        detail_["hotline_call_id"] = hotline_call_id
    _event(conn, row["id"], now, actor.username, "created", None, "created", detail_)
    made = _load(conn, SYSTEM, row["id"])
    announce(conn, made, "created")
    if actor.role == "provider_admin":
        # A provider's own order (a planned visit for its client) goes to that provider at
        # once, under the same contract check as any dispatch; without a contract nothing
        # is created (409), and the provider never holds an order it could not see.
        assert actor.provider_id is not None
        act(
            conn,
            SYSTEM,
            row["id"],
            "dispatch",
            DispatchRequest(provider_id=actor.provider_id),
            now,
            env,
        )
    return _load(conn, SYSTEM if actor.username == SYSTEM.username else actor, row["id"])


# ---------------------------------------------------------------- moves


def _role(actor: Actor) -> str:
    return lifecycle.SYSTEM_ROLE if actor.username == "system" else actor.role


def _service_day(order: Row, now: datetime, tz: ZoneInfo) -> Any:
    return (order["scheduled_start"] or now).astimezone(tz).date()


def _worker(conn: psycopg.Connection, worker_id: int, provider_id: int) -> Row:
    w = db.rows(
        conn,
        "SELECT id, provider_id, qualifications, active FROM workers WHERE id = %s",
        (worker_id,),
    )
    if not w:
        raise NotFoundError(f"worker {worker_id} not found")
    if w[0]["provider_id"] != provider_id:
        raise ConflictError(f"worker {worker_id} does not work for provider {provider_id}")
    if not w[0]["active"]:
        raise ConflictError(f"worker {worker_id} is not active")
    return w[0]


def act(
    conn: psycopg.Connection,
    actor: Actor,
    order_id: str,
    action: str,
    body: Any,
    now: datetime,
    env: Env,
) -> Row:
    """Apply one lifecycle action; returns the order afterwards plus any new anomalies."""
    order = _load(conn, actor, order_id, lock=True)
    move = lifecycle.check_move(action, order["status"], _role(actor))
    sets: dict[str, Any] = {"status": move.to}
    if move.stamp:
        sets[move.stamp] = now
    info: dict[str, Any] = {}
    if action == "dispatch":
        info = _dispatch(conn, order, body, now, env, sets)
    elif action == "accept":
        info = _accept(conn, actor, order, body, sets)
    elif action == "reject":
        assert isinstance(body, ReasonRequest)
        # Back to 待改派: the next dispatch chooses a provider afresh.
        sets.update(provider_id=None, worker_id=None, unit_price_fen=None)
        info = {"reason": body.reason, "provider_id": order["provider_id"]}
    elif action in ("check_in", "check_out"):
        assert isinstance(body, GeoPoint)
        if actor.worker_id != order["worker_id"]:
            raise NotFoundError(f"work order {order_id} not found")
        point = _point(order, body)
        sets[action] = Jsonb(point)
        info = {"distance_m": point["distance_m"]}
        if action == "check_out":
            assert isinstance(body, CheckOut)
            # Only what was said: an empty photo list is not stored as if photos were asked for.
            sets["record"] = Jsonb(body.record.model_dump(exclude_defaults=True))
            sets["price_fen"] = _price(order)
    elif action == "verify":
        assert isinstance(body, VerifyRequest)
        blockers = lifecycle.verify_blockers(gate(conn, order_id, order["revisit_required"]))
        if blockers:
            raise ConflictError("cannot verify: " + "; ".join(blockers))
        sets["verification"] = "auto" if _role(actor) == lifecycle.SYSTEM_ROLE else "manual"
        info = {"note": body.note} if body.note else {}
    elif action == "reject_claim":
        assert isinstance(body, RejectClaim)
        _confirmed_hard(conn, order_id, body.anomaly_id)
        info = {"anomaly_id": body.anomaly_id, "was": order["status"]}
    elif action == "cancel":
        assert isinstance(body, ReasonRequest)
        info = {"reason": body.reason}
    _update(conn, order_id, sets)
    _event(conn, order_id, now, actor.username, action, order["status"], move.to, info)
    # A provider's reject takes the order out of the provider's sight (back to 待改派); the
    # answer is still the order as it now stands, not a 404 that would undo the reject.
    after = _load(conn, SYSTEM if action == "reject" else actor, order_id)
    found: list[Row] = []
    if action in ("check_in", "check_out") and env.hooks.inspect is not None:
        found = env.hooks.inspect(conn, after, action, now)
    if action == "check_out":
        after = _after_check_out(conn, actor, after, now, env)
    if action == "verify" and env.hooks.on_verified is not None:
        env.hooks.on_verified(conn, after, now)
        after = _load(conn, actor, order_id)
    announce(conn, after, action)
    if found:
        announce(conn, after, "anomaly")
    return {**after, "new_anomalies": found}


def transition(
    conn: psycopg.Connection, order_id: str, action: str, now: datetime, by: str = "system"
) -> Row:
    """A move made by the platform itself (settlement approval settles its orders)."""
    system = Actor(by, "admin")
    order = _load(conn, system, order_id, lock=True)
    move = lifecycle.check_move(action, order["status"], lifecycle.SYSTEM_ROLE)
    sets: dict[str, Any] = {"status": move.to}
    if move.stamp:
        sets[move.stamp] = now
    _update(conn, order_id, sets)
    _event(conn, order_id, now, by, action, order["status"], move.to, {})
    after = _load(conn, system, order_id)
    announce(conn, after, action)
    return after


def _update(conn: psycopg.Connection, order_id: str, sets: dict[str, Any]) -> None:
    # Column names come from this module's own literals, never from the request.
    assignments = ", ".join(f"{k} = %({k})s" for k in sets)
    conn.execute(
        f"UPDATE work_orders SET {assignments} WHERE id = %(order_id)s",
        {**sets, "order_id": order_id},
    )


def _dispatch(
    conn: psycopg.Connection, order: Row, body: Any, now: datetime, env: Env, sets: dict[str, Any]
) -> dict[str, Any]:
    assert isinstance(body, DispatchRequest)
    prov = db.one(
        conn,
        "SELECT id, status FROM providers WHERE id = %s",
        (body.provider_id,),
        missing=f"provider {body.provider_id} not found",
    )
    if prov["status"] != "active":
        raise ConflictError(f"provider {body.provider_id} is {prov['status']}")
    price = providers.unit_price(
        conn,
        body.provider_id,
        order["district_code"],
        order["service_item_code"],
        _service_day(order, now, env.tz),
    )
    if price is None:
        raise ConflictError(
            f"provider {body.provider_id} is not contracted for {order['service_item_code']}"
            f" in {order['district_code']} on that date"
        )
    sets.update(provider_id=body.provider_id, unit_price_fen=price, worker_id=None)
    if body.worker_id is not None:
        _worker(conn, body.worker_id, body.provider_id)
        sets["worker_id"] = body.worker_id
    return {"provider_id": body.provider_id, "worker_id": body.worker_id, "unit_price_fen": price}


def _accept(
    conn: psycopg.Connection, actor: Actor, order: Row, body: Any, sets: dict[str, Any]
) -> dict[str, Any]:
    assert isinstance(body, AcceptRequest)
    worker_id = body.worker_id
    if actor.role == "provider_worker":
        if worker_id is not None and worker_id != actor.worker_id:
            raise PermissionDenied("a worker accepts orders for themself only")
        worker_id = actor.worker_id
    if worker_id is None:
        raise InvalidInput("accept names the worker_id who will go")
    if order["worker_id"] is not None and order["worker_id"] != worker_id:
        raise ConflictError(f"work order is assigned to worker {order['worker_id']}")
    w = _worker(conn, worker_id, int(order["provider_id"]))
    need = providers.item(conn, order["service_item_code"])["required_qualification"]
    if need and need not in (w["qualifications"] or []):
        raise ConflictError(f"worker {worker_id} lacks the qualification {need}")
    sets["worker_id"] = worker_id
    return {"worker_id": worker_id}


def _point(order: Row, body: GeoPoint) -> dict[str, Any]:
    """The check-in/out point as stored: the worker's fix and its distance from the order's
    reference point (the home bed or household), for the GPS rule."""
    d = None
    if (
        order["ref_lat"] is not None
        and order["ref_lon"] is not None
        and body.lat is not None
        and body.lon is not None
    ):
        d = round(distance_m(order["ref_lat"], order["ref_lon"], body.lat, body.lon), 2)
    point = {
        "lat": body.lat,
        "lon": body.lon,
        "accuracy_m": body.accuracy_m,
        "client_time": body.client_time.isoformat(),
        "distance_m": d,
        "tap_msg_id": body.tap_msg_id,
    }
    if body.no_fix is not None:
        point["no_fix"] = body.no_fix
    return point


def _price(order: Row) -> int:
    """unit price x quantity, floored to the fen (design §4 Q4: never round money up)."""
    if order["unit_price_fen"] is None:
        raise ConflictError("work order has no contracted price")
    total = Decimal(order["unit_price_fen"]) * Decimal(str(order["quantity"]))
    return int(total.to_integral_value(rounding=ROUND_FLOOR))


def _after_check_out(
    conn: psycopg.Connection, actor: Actor, order: Row, now: datetime, env: Env
) -> Row:
    """A revisit for every order with an open soft anomaly (required: it gates verification),
    else for a sample of the rest (design §2.10)."""
    soft = db.rows(
        conn,
        "SELECT rule_code FROM anomalies WHERE work_order_id = %s AND severity = 'soft'"
        " AND status = 'open'",
        (order["id"],),
    )
    reason = None
    if soft:
        reason = "soft_anomaly"
        conn.execute("UPDATE work_orders SET revisit_required = true WHERE id = %s", (order["id"],))
    elif lifecycle.sampled(order["number"], env.revisit_sample_pct):
        reason = "sample"
    if reason is not None and not revisits_of(conn, order["id"]):
        conn.execute(
            "INSERT INTO revisits (work_order_id, reason, due_at, created_at)"
            " VALUES (%s, %s, %s, %s)",
            (order["id"], reason, now + REVISIT_DUE, now),
        )
    return _load(conn, actor, order["id"])


def gate(conn: psycopg.Connection, order_id: str, revisit_required: bool) -> lifecycle.Gate:
    hard = db.rows(
        conn,
        "SELECT rule_code FROM anomalies WHERE work_order_id = %s AND severity = 'hard'"
        " AND status = 'open' ORDER BY id",
        (order_id,),
    )
    visits = db.rows(
        conn,
        "SELECT reached, service_confirmed FROM revisits WHERE work_order_id = %s",
        (order_id,),
    )
    return lifecycle.Gate(
        revisit_required,
        tuple(h["rule_code"] for h in hard),
        tuple((v["reached"], v["service_confirmed"]) for v in visits),
    )


def _confirmed_hard(conn: psycopg.Connection, order_id: str, anomaly_id: int) -> None:
    a = db.rows(
        conn,
        "SELECT severity, status FROM anomalies WHERE id = %s AND work_order_id = %s",
        (anomaly_id, order_id),
    )
    if not a:
        raise NotFoundError(f"anomaly {anomaly_id} of this work order not found")
    if a[0]["severity"] != "hard" or a[0]["status"] != "confirmed":
        raise ConflictError(
            f"a claim is rejected only on a confirmed hard anomaly; {anomaly_id} is"
            f" {a[0]['severity']} and {a[0]['status']}"
        )


# ---------------------------------------------------------------- revisits (回访)


def add_revisit(
    conn: psycopg.Connection, actor: Actor, order_id: str, body: RevisitCreate, now: datetime
) -> Row:
    """Record a revisit call. It completes the oldest pending revisit of the order, or is a new
    one (a manual revisit, or the retry of an unreached one). A resident who denies the service
    makes a hard ``revisit_denied`` anomaly (design §2.8 R13)."""
    if actor.role not in lifecycle.REVISIT_ROLES:
        raise PermissionDenied(f"role {actor.role} may not record revisits")
    order = _load(conn, actor, order_id, lock=True)
    if order["status"] not in lifecycle.REVISIT_AFTER:
        raise ConflictError(
            f"a revisit follows a delivered service; the order is {order['status']}"
        )
    pending = db.rows(
        conn,
        "SELECT id FROM revisits WHERE work_order_id = %s AND done_at IS NULL ORDER BY id LIMIT 1",
        (order_id,),
    )
    values = (
        now,
        body.channel,
        body.reached,
        body.service_confirmed,
        body.satisfaction,
        body.comment,
        actor.username,
    )
    if pending:
        rid = db.one(
            conn,
            "UPDATE revisits SET done_at = %s, channel = %s, reached = %s, service_confirmed = %s,"
            " satisfaction = %s, comment = %s, by_user = %s WHERE id = %s RETURNING id",
            (*values, pending[0]["id"]),
        )["id"]
    else:
        rid = db.one(
            conn,
            "INSERT INTO revisits (work_order_id, reason, due_at, done_at, channel, reached,"
            " service_confirmed, satisfaction, comment, by_user, created_at)"
            " VALUES (%s, 'manual', %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (order_id, now, *values, now),
        )["id"]
    _event(
        conn,
        order_id,
        now,
        actor.username,
        "revisit",
        order["status"],
        order["status"],
        {"revisit_id": rid, "reached": body.reached, "service_confirmed": body.service_confirmed},
    )
    new: list[Row] = []
    if body.reached and body.service_confirmed is False:
        new = db.rows(
            conn,
            "INSERT INTO anomalies (rule_code, severity, work_order_id, resident_id, worker_id,"
            " provider_id, detected_at, evidence) VALUES ('revisit_denied', 'hard', %s, %s, %s,"
            " %s, %s, %s) ON CONFLICT (rule_code, work_order_id) DO NOTHING"
            " RETURNING id, rule_code, severity, status",
            (
                order_id,
                order["resident_id"],
                order["worker_id"],
                order["provider_id"],
                now,
                Jsonb({"revisit_id": rid, "channel": body.channel}),
            ),
        )
    revisit = db.one(
        conn,
        "SELECT id, work_order_id::text AS work_order_id, reason, due_at, done_at, channel,"
        " reached, service_confirmed, satisfaction, comment, by_user, created_at"
        " FROM revisits WHERE id = %s",
        (rid,),
    )
    return {**revisit, "new_anomalies": new}


def revisits(
    conn: psycopg.Connection, due_before: datetime | None, status: str | None
) -> list[Row]:
    return db.rows(
        conn,
        "SELECT r.id, r.work_order_id::text AS work_order_id, w.number, w.provider_id, r.reason,"
        " r.due_at, r.done_at, r.channel, r.reached, r.service_confirmed, r.satisfaction,"
        " r.by_user, r.created_at FROM revisits r JOIN work_orders w ON w.id = r.work_order_id"
        " WHERE (%(due)s::timestamptz IS NULL OR r.due_at < %(due)s)"
        " AND (%(status)s::text IS NULL OR (%(status)s = 'pending') = (r.done_at IS NULL))"
        " ORDER BY r.due_at, r.id LIMIT 1000",
        {"due": due_before, "status": status},
    )


AUTO_VERIFY_AFTER: Final = timedelta(hours=24)  # design §2.4


def auto_verify_due(conn: psycopg.Connection, now: datetime, env: Env, limit: int = 500) -> int:
    """The auto-verify job: orders checked out 24 h ago or more that nothing blocks are
    verified by ``system``; a blocked one waits for its revisit or decision. Each order is its
    own transaction, so one failure never holds back the rest."""
    due = db.rows(
        conn,
        "SELECT id::text AS id, revisit_required FROM work_orders WHERE status = 'checked_out'"
        " AND checked_out_at <= %s ORDER BY checked_out_at LIMIT %s",
        (now - AUTO_VERIFY_AFTER, limit),
    )
    done = 0
    for order in due:
        if lifecycle.verify_blockers(gate(conn, order["id"], order["revisit_required"])):
            continue
        try:
            with conn.transaction():
                act(conn, SYSTEM, order["id"], "verify", VerifyRequest(), now, env)
            done += 1
        except ConflictError:
            continue  # someone else moved it meanwhile
    return done
