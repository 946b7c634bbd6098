"""Alarm lifecycle: queries and validated, audited, concurrency-safe transitions.

Every transition locks the alarm row (``SELECT ... FOR UPDATE``) and checks the
status it finds, so of two operators acting at once the second waits, sees the
first one's result and gets a ConflictError (HTTP 409) naming it.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from typing import Any, Final

import psycopg

from eldercare.alerts import events, rules
from eldercare.errors import NotFoundError, PermissionDenied
from eldercare.registry.auth import Actor
from eldercare.storage import db

SUMMARY_SQL: Final = """
SELECT a.id, a.kind, a.kinds, a.priority, a.status, a.facility_id, f.name AS facility_name,
       a.home_bed_id, a.resident_id, r.name AS resident_name,
       COALESCE(d.room, r.room) AS room, a.device_id, a.camera_id, a.devices, a.occurrences,
       a.cancel_requested_at,
       a.event_time, a.received_at, a.acknowledged_at, a.dispatched_at, a.accepted_at,
       a.on_site_at, a.resolved_at, a.closed_at, a.cleared_at, a.disposition,
       a.acknowledged_by, a.escalation_step, a.escalation_due_at, a.supervisor_notified_at,
       a.merged_into, a.area, a.details,
       t.p_false AS triage_p_false, t.reasons AS triage_reasons, t.model AS triage_model
FROM alarms a
LEFT JOIN facilities f ON f.id = a.facility_id
LEFT JOIN alarm_triage t ON t.alarm_id = a.id
LEFT JOIN residents r ON r.id = a.resident_id
LEFT JOIN devices d ON d.id = a.device_id
"""

# The operator queue: priority first, always; within a band, the triage model's
# P(false alarm) (written as data by eldercare.models, which this package never imports),
# likely-genuine first and unscored alarms as if certainly genuine; then arrival.
# Triage may hold an unanswered alarm back only for TRIAGE_HOLD_S: operators answer
# 97.5 % of alarms within 60 s, so past that an alarm still 'raised' ranks as if genuine
# and, being older, ahead of newer ones (no alarm starves behind a stream of fresh ones).
TRIAGE_HOLD_S: Final = 60


def queue_order(now_sql: str = "now()") -> str:
    """ORDER BY terms for the operator queue; ``now_sql`` is SQL for the current time."""
    return (
        "a.priority, CASE WHEN a.status = 'raised' AND a.received_at <= "
        f"{now_sql} - make_interval(secs => {TRIAGE_HOLD_S}) THEN 0 "
        "ELSE COALESCE(t.p_false, 0) END, a.received_at"
    )


# Who may start each action (facility staff: only on their own facility's alarms).
ALL_ROLES: Final = ("operator", "supervisor", "admin", "facility_staff")
DESK_ROLES: Final = ("operator", "supervisor", "admin")
PERMITTED: Final = {
    "acknowledge": ALL_ROLES,
    "dispatch": DESK_ROLES,
    "accept": ALL_ROLES,
    "decline": ALL_ROLES,
    "on_site": ALL_ROLES,
    "resolve": ALL_ROLES,
    "close": DESK_ROLES,
    "note": ALL_ROLES,
    "emergency": ALL_ROLES,
}


@dataclass(frozen=True, slots=True)
class Alarm:
    """What the engine's decisions read about an alarm: the row locked for a change
    (:func:`lock`, ``dispatch.escalate_due``), or the fields of a summary (:meth:`of`)."""

    id: uuid.UUID
    kind: str
    status: str
    facility_id: int | None
    home_bed_id: int | None
    resident_id: int | None
    devices: list[str]
    area: str
    escalation_step: int | None
    priority: int

    @classmethod
    def of(cls, summary: Mapping[str, Any]) -> Alarm:
        return cls(**{f: summary[f] for f in cls.__slots__})  # type: ignore[attr-defined]


ALARM_COLUMNS: Final = ", ".join(f.name for f in fields(Alarm))


def _finish(row: dict[str, Any]) -> dict[str, Any]:
    row["category"] = rules.category(row["kind"])
    # The console enables exactly these; it keeps no copy of the state machine. Pushes to
    # every console carry this list; answers to one user narrow it (:func:`for_actor`).
    row["allowed_actions"] = rules.allowed_actions(row["status"], row["kind"])
    return row


_HOLDERS_SQL: Final = """
SELECT a.id, a.status, a.acknowledged_by,
  (SELECT o.responder_id FROM dispatch_offers o WHERE o.alarm_id = a.id
     AND o.status = 'accepted' ORDER BY o.answered_at DESC NULLS LAST, o.id DESC
     LIMIT 1) AS accepted_by,
  EXISTS (SELECT 1 FROM dispatch_offers o WHERE o.alarm_id = a.id
     AND o.status = 'accepted') AS any_accepted,
  (SELECT array_agg(DISTINCT o.status) FROM dispatch_offers o WHERE o.alarm_id = a.id
     AND %(responder)s::bigint IS NOT NULL AND o.responder_id = %(responder)s)
     AS my_offers
FROM alarms a WHERE a.id = ANY(%(ids)s)
"""
# The offer states in which its responder may still accept or decline it (dispatch.py).
_ANSWERABLE: Final = {"accept": {"pending", "called", "expired"}, "decline": {"pending", "called"}}


def _holds(held: Mapping[str, Any], actor: Actor) -> bool:
    """Whether facility staff ``actor`` holds the alarm (audit M7): its accepted offer is
    theirs, or, with no offer accepted, they acknowledged it themselves."""
    if held["any_accepted"]:
        return actor.responder_id is not None and held["accepted_by"] == actor.responder_id
    return held["acknowledged_by"] == actor.username and held["status"] == "acknowledged"


def _holders(conn: psycopg.Connection, ids: list[Any], actor: Actor) -> dict[Any, Any]:
    found = db.rows(conn, _HOLDERS_SQL, {"ids": ids, "responder": actor.responder_id})
    return {r["id"]: r for r in found}


def for_actor(
    conn: psycopg.Connection, rows: list[dict[str, Any]], actor: Actor
) -> list[dict[str, Any]]:
    """``allowed_actions`` narrowed to what ``actor`` may start now, so a page shows no
    button the server would refuse: the role's actions (PERMITTED), and for facility staff
    resolve only on an alarm they hold and accept/decline only on an offer of their own."""
    holders = _holders(conn, [r["id"] for r in rows], actor) if actor.scoped and rows else {}
    for row in rows:
        acts = [a for a in row["allowed_actions"] if actor.role in PERMITTED[a]]
        held = holders.get(row["id"])
        if held is not None:
            mine = set(held["my_offers"] or ())
            acts = [
                a
                for a in acts
                if (a != "resolve" or _holds(held, actor))
                and (a not in _ANSWERABLE or bool(mine & _ANSWERABLE[a]))
            ]
        row["allowed_actions"] = acts
    return rows


def summary(
    conn: psycopg.Connection, alarm_id: uuid.UUID | str, actor: Actor | None = None
) -> dict[str, Any]:
    """One alarm; with ``actor``, only if they may see it (else NotFoundError) and with
    ``allowed_actions`` for them."""
    rows = db.rows(conn, SUMMARY_SQL + " WHERE a.id = %s", (alarm_id,))
    if not rows or (
        actor is not None and actor.scoped and rows[0]["facility_id"] != actor.facility_id
    ):
        raise NotFoundError(f"alarm {alarm_id} not found")
    row = _finish(rows[0])
    return row if actor is None else for_actor(conn, [row], actor)[0]


def list_alarms(
    conn: psycopg.Connection,
    actor: Actor,
    *,
    statuses: list[str] | None = None,
    priority: int | None = None,
    facility: int | None = None,
    since: datetime | None = None,
    category: str | None = None,
    limit: int = 200,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    where: list[str] = []
    params: list[Any] = []
    wanted = statuses or ["open"]
    expanded: set[str] = set()
    for s in wanted:
        expanded.update(rules.ACTIVE if s == "open" else (s,))
    where.append("a.status = ANY(%s)")
    params.append(sorted(expanded))
    if actor.scoped:
        where.append("a.facility_id = %s")
        params.append(actor.facility_id)
    if facility is not None:
        where.append("a.facility_id = %s")
        params.append(facility)
    if priority is not None:
        where.append("a.priority = %s")
        params.append(priority)
    if since is not None:
        where.append("a.received_at >= %s")
        params.append(since)
    if category is not None:
        where.append("a.kind = ANY(%s)")
        params.append(list(rules.HEALTH_KINDS if category == "health" else rules.ALARM_KINDS))
    order = queue_order("COALESCE(%s::timestamptz, now())")
    sql = SUMMARY_SQL + " WHERE " + " AND ".join(where) + " ORDER BY " + order + " LIMIT %s"
    params.extend([now, limit])
    return for_actor(conn, [_finish(r) for r in db.rows(conn, sql, params)], actor)


def detail(
    conn: psycopg.Connection, alarm_id: uuid.UUID | str, actor: Actor, now: datetime
) -> dict[str, Any]:
    from eldercare.alerts import dispatch

    a = summary(conn, alarm_id, actor)
    out: dict[str, Any] = {"alarm": a, "resident": None, "device": None, "facility": None}
    if a["resident_id"] is not None:
        res = db.rows(
            conn,
            "SELECT id, name, birth_date, gender, ability_level, facility_id, room,"
            " home_bed_id FROM residents WHERE id = %s",
            (a["resident_id"],),
        )
        out["resident"] = res[0] if res else None
    if a["device_id"] is not None:
        dev = db.rows(
            conn,
            "SELECT d.id, d.kind, d.room, COALESCE(s.online, false) AS online,"
            " s.battery, s.last_seen_at FROM devices d LEFT JOIN device_status s"
            " ON s.device_id = d.id WHERE d.id = %s",
            (a["device_id"],),
        )
        out["device"] = dev[0] if dev else None
    if a["facility_id"] is not None:
        fac = db.rows(
            conn,
            "SELECT id, name, area, lat, lon, phone FROM facilities WHERE id = %s",
            (a["facility_id"],),
        )
        out["facility"] = fac[0] if fac else None
    window = timedelta(minutes=10)
    out["events"] = db.rows(
        conn,
        "SELECT time, received_at, device_id, type, msg_id, payload FROM device_events"
        " WHERE device_id = ANY(%s) AND time BETWEEN %s AND %s ORDER BY time LIMIT 100",
        (a["devices"] or [], a["event_time"] - window, a["event_time"] + window),
    )
    out["timeline"] = timeline(conn, a["id"])
    out["offers"] = [dispatch.shown(o) for o in dispatch.offers(conn, a["id"])]
    ref = Alarm.of(a)
    policy = dispatch.policy_for(conn, ref)
    out["policy"] = policy.as_dict()
    out["proposal"] = (
        dispatch.proposal(conn, ref, policy, now) if a["status"] in rules.PROPOSAL_FOR else None
    )
    return out


def timeline(conn: psycopg.Connection, alarm_id: uuid.UUID | str) -> list[dict[str, Any]]:
    return db.rows(
        conn,
        "SELECT id, at, actor, action, from_status, to_status, detail"
        " FROM alarm_events WHERE alarm_id = %s ORDER BY id",
        (alarm_id,),
    )


def lock(conn: psycopg.Connection, alarm_id: uuid.UUID | str, actor: Actor, action: str) -> Alarm:
    """Lock the alarm for a change; unknown (or another facility's) -> NotFoundError."""
    found = db.rows_as(
        conn, Alarm, f"SELECT {ALARM_COLUMNS} FROM alarms WHERE id = %s FOR UPDATE", (alarm_id,)
    )
    if not found or (actor.scoped and found[0].facility_id != actor.facility_id):
        raise NotFoundError(f"alarm {alarm_id} not found")
    actor.require(*PERMITTED[action])
    return found[0]


def announce(
    conn: psycopg.Connection,
    a: Alarm,
    event: str,
    to_status: str,
    actor: Actor,
    now: datetime,
    **extra: Any,
) -> None:
    """Outbox and NOTIFY for a committed-with-us change of alarm ``a``."""
    if rules.category(a.kind) == "alarm":
        events.enqueue_device(conn, a.id, a.devices or [], to_status, now)
    events.enqueue_webhooks(
        conn,
        a.id,
        event,
        a.facility_id,
        {
            "kind": a.kind,
            "priority": a.priority,
            "status": to_status,
            "facility_id": a.facility_id,
            "actor": actor.username,
        },
        now,
    )
    events.emit(conn, a.id, event, actor.username, **extra)


def act(
    conn: psycopg.Connection,
    alarm_id: uuid.UUID | str,
    action: str,
    actor: Actor,
    now: datetime,
    *,
    note: str | None = None,
    disposition: str | None = None,
) -> dict[str, Any]:
    """acknowledge, on_site, resolve or close (dispatch/accept/decline live in dispatch.py)."""
    with conn.transaction():
        a = lock(conn, alarm_id, actor, action)
        to = rules.check_move(action, a.status, a.kind)
        if action == "resolve" and actor.scoped:
            _staff_may_resolve(conn, a, actor)
        move = rules.MOVES[action]
        sets = ["status = %s"]
        params: list[Any] = [to]
        if move.stamp:
            sets.append(f"{move.stamp} = COALESCE({move.stamp}, %s)")
            params.append(now)
        if action == "acknowledge":
            sets.append("acknowledged_by = %s")
            params.append(actor.username)
        if action == "close":
            sets.append("disposition = %s")
            params.append(disposition)
        if action in ("resolve", "close"):
            # Nobody is needed any more: stop the escalation clock and the open offers.
            sets.append("escalation_due_at = NULL")
            conn.execute(
                "UPDATE dispatch_offers SET status = 'withdrawn', answered_at = %s"
                " WHERE alarm_id = %s AND status = 'pending'",
                (now, a.id),
            )
        params.append(a.id)
        conn.execute(f"UPDATE alarms SET {', '.join(sets)} WHERE id = %s", params)
        detail: dict[str, Any] = {}
        if note:
            detail["note"] = note
        if disposition:
            detail["disposition"] = disposition
        past = move.event
        events.audit(conn, a.id, now, actor.username, past, a.status, to, detail)
        announce(conn, a, past, to, actor, now)
    return summary(conn, alarm_id, actor)


def _staff_may_resolve(conn: psycopg.Connection, a: Alarm, actor: Actor) -> None:
    """Resolving stops escalation and withdraws offers, so a member of staff may resolve
    only an alarm they hold (audit M7; the same test narrows their ``allowed_actions``)."""
    if not _holds(_holders(conn, [a.id], actor)[a.id], actor):
        raise PermissionDenied("facility staff resolve only alarms they attend")


def add_note(
    conn: psycopg.Connection, alarm_id: uuid.UUID | str, actor: Actor, now: datetime, text: str
) -> dict[str, Any]:
    with conn.transaction():
        a = lock(conn, alarm_id, actor, "note")
        rules.check_move("note", a.status, a.kind)
        events.audit(conn, a.id, now, actor.username, "note", a.status, a.status, {"text": text})
        events.emit(conn, a.id, "note", actor.username)
    return summary(conn, alarm_id, actor)
