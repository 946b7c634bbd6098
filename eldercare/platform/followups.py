"""Alarms that create work orders (design §2.9): an alarm closed with a disposition that calls
for a visit gets its follow-up order in the same transaction as the close, and the alarm's
timeline records ``work_order_created``.

Called by the HTTP close handler (``alerts`` never imports the platform layer).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import psycopg

from eldercare.alerts import events
from eldercare.errors import ConflictError, InvalidInput, NotFoundError
from eldercare.platform import workorders as wo
from eldercare.platform.schemas import DispatchRequest, WorkOrderCreate
from eldercare.registry.auth import SYSTEM, Actor
from eldercare.storage import db

Row = dict[str, Any]


@dataclass(frozen=True, slots=True)
class FollowUp:
    """What the operator asks for when closing (``CloseCreate.follow_up``)."""

    service_item_code: str
    due_by: datetime | None = None


@dataclass(frozen=True, slots=True)
class Plan:
    item: str
    due_after: timedelta | None
    dispatch: bool  # to the provider linked to the resident's facility


AT_HOME: Final = ("home_bed", "household")
ACCIDENTAL_REPEAT: Final = 3  # accidental presses of one device within 7 days
ACCIDENTAL_WINDOW: Final = timedelta(days=7)
PLANS: Final = {
    "fall_without_injury": Plan("post_fall_visit", timedelta(hours=24), True),
    "genuine_emergency": Plan("post_incident_visit", timedelta(hours=48), True),
}


def require_follow_up(disposition: str, follow_up: FollowUp | None) -> None:
    """A ``service_request`` close (the 12349 服务转介 path) must say which service (422)."""
    if disposition == "service_request" and follow_up is None:
        raise InvalidInput("disposition service_request needs follow_up.service_item_code")


def on_close(
    conn: psycopg.Connection,
    alarm_id: str,
    disposition: str,
    follow_up: FollowUp | None,
    actor: Actor,
    now: datetime,
    env: wo.Env,
) -> Row | None:
    """The follow-up order of a just-closed alarm, or None when the close calls for none."""
    alarm = db.one(
        conn,
        "SELECT id::text AS id, kind, device_id, resident_id, closed_at FROM alarms WHERE id = %s",
        (alarm_id,),
    )
    if alarm["resident_id"] is None:
        return None
    place = db.one(
        conn, "SELECT * FROM resident_places WHERE resident_id = %s", (alarm["resident_id"],)
    )
    closed = alarm["closed_at"] or now
    plan: Plan | None = None
    due: datetime | None = None
    if disposition == "service_request":
        assert follow_up is not None  # require_follow_up ran before the close
        plan, due = Plan(follow_up.service_item_code, None, False), follow_up.due_by
    elif disposition in PLANS and place["setting"] in AT_HOME:
        plan = PLANS[disposition]
        assert plan.due_after is not None
        due = closed + plan.due_after
    elif disposition == "accidental_press" and _accidental_repeat(conn, alarm, now):
        plan = Plan("device_training_visit", None, True)
        # One at a time: an unfinished training visit for this resident already covers it.
        if db.rows(
            conn,
            "SELECT 1 FROM work_orders WHERE resident_id = %s AND service_item_code = %s"
            " AND status IN ('created', 'dispatched', 'accepted', 'checked_in')",
            (alarm["resident_id"], plan.item),
        ):
            return None
    if plan is None:
        return None
    try:
        with conn.transaction():  # a savepoint: a refused order leaves nothing behind
            order = wo.create(
                conn,
                SYSTEM,
                WorkOrderCreate(
                    resident_id=alarm["resident_id"], service_item_code=plan.item, due_by=due
                ),
                now,
                env,
                source="alarm",
                alarm_id=alarm["id"],
            )
    except (ConflictError, NotFoundError) as exc:
        if disposition == "service_request":
            raise  # the operator asked for this service: they hear why it cannot be ordered
        # A visit the platform plans by itself never keeps the duty operator from closing an
        # alarm (a catalogue without the item, a resident without a district): the close
        # stands and the alarm's timeline says which order was not created, and why.
        events.audit(
            conn,
            alarm["id"],
            now,
            actor.username,
            "work_order_not_created",
            detail={"service_item_code": plan.item, "reason": str(exc)},
        )
        return None
    if plan.dispatch:
        order = _dispatch_to_home_provider(conn, order, place, now, env)
    events.audit(
        conn,
        alarm["id"],
        now,
        actor.username,
        "work_order_created",
        detail={
            "work_order_id": order["id"],
            "number": order["number"],
            "service_item_code": plan.item,
        },
    )
    return order


def _accidental_repeat(conn: psycopg.Connection, alarm: Row, now: datetime) -> bool:
    if alarm["device_id"] is None:
        return False
    n = db.one(
        conn,
        "SELECT count(*) AS n FROM alarms WHERE device_id = %s AND disposition = 'accidental_press'"
        " AND closed_at > %s",
        (alarm["device_id"], now - ACCIDENTAL_WINDOW),
    )["n"]
    return int(n) >= ACCIDENTAL_REPEAT


def _dispatch_to_home_provider(
    conn: psycopg.Connection, order: Row, place: Row, now: datetime, env: wo.Env
) -> Row:
    """Dispatch to the active provider linked to the facility serving the resident; an order no
    provider is contracted for stays ``created`` for the desk to place."""
    found = db.rows(
        conn,
        "SELECT id FROM providers WHERE facility_id = %s AND status = 'active' ORDER BY id LIMIT 1",
        (place["facility_id"],),
    )
    if not found:
        return order
    try:
        with conn.transaction():
            return wo.act(
                conn,
                SYSTEM,
                order["id"],
                "dispatch",
                DispatchRequest(provider_id=found[0]["id"]),
                now,
                env,
            )
    except ConflictError:
        return order


MAINTENANCE_AFTER: Final = timedelta(hours=24)
MAINTENANCE_KINDS: Final = ("device_offline", "low_battery")


def device_maintenance_due(conn: psycopg.Connection, now: datetime, env: wo.Env) -> int:
    """Home-bed devices offline or on low battery for 24 h get a ``device_maintenance`` order
    for the home bed's facility (design §2.9: the device part of the home-care-bed package).
    One order per alarm; each in its own transaction."""
    due = db.rows(
        conn,
        "SELECT a.id::text AS id, COALESCE(a.resident_id, (SELECT r.id FROM residents r"
        " WHERE r.home_bed_id = a.home_bed_id ORDER BY r.id LIMIT 1)) AS resident_id"
        " FROM alarms a WHERE a.kind = ANY(%s) AND a.home_bed_id IS NOT NULL"
        " AND a.cleared_at IS NULL AND a.status NOT IN ('closed', 'merged')"
        " AND a.event_time <= %s"
        " AND NOT EXISTS (SELECT 1 FROM work_orders w WHERE w.alarm_id = a.id)"
        " ORDER BY a.event_time LIMIT 200",
        (list(MAINTENANCE_KINDS), now - MAINTENANCE_AFTER),
    )
    made = 0
    for alarm in due:
        if alarm["resident_id"] is None:
            continue  # an empty home bed: nobody to visit, the facility sees the alarm itself
        with conn.transaction():
            place = db.one(
                conn,
                "SELECT * FROM resident_places WHERE resident_id = %s",
                (alarm["resident_id"],),
            )
            order = wo.create(
                conn,
                SYSTEM,
                WorkOrderCreate(
                    resident_id=alarm["resident_id"], service_item_code="device_maintenance"
                ),
                now,
                env,
                source="alarm",
                alarm_id=alarm["id"],
            )
            order = _dispatch_to_home_provider(conn, order, place, now, env)
            events.audit(
                conn,
                alarm["id"],
                now,
                SYSTEM.username,
                "work_order_created",
                detail={"work_order_id": order["id"], "number": order["number"]},
            )
        made += 1
    return made
