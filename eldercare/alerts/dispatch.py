"""Dispatch and escalation: who is asked, in which order, and what happens when nobody
answers. The escalation clock lives in the alarm row (``escalation_due_at``), so a
restarted engine picks every running escalation up where it was.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import psycopg

from eldercare.alerts import events, rules
from eldercare.alerts.lifecycle import ALARM_COLUMNS, Alarm, announce, lock, summary
from eldercare.errors import ConflictError, NotFoundError, PermissionDenied
from eldercare.registry.auth import SYSTEM, Actor
from eldercare.storage import db

OFFER_SQL = (
    "SELECT id, alarm_id, step, responder_id, responder_kind, name, phone, distance_m,"
    " status, offered_at, due_at, answered_at, answered_by, reason FROM dispatch_offers"
)
STALLED_RETRY = timedelta(seconds=60)


@dataclass(frozen=True, slots=True)
class Candidate:
    """Someone a dispatch step would ask: a responder, a family contact, or 120/119."""

    responder_id: int | None
    responder_kind: str
    name: str | None
    phone: str | None
    distance_m: float | None = None

    @classmethod
    def responder(cls, r: Mapping[str, Any], kind: str) -> Candidate:
        """From a ranked responder row (``rules.nearest`` adds ``distance_m``)."""
        return cls(r["id"], kind, r["name"], r["phone"], r["distance_m"])


def masked_phone(phone: str | None) -> str | None:
    """``139****0003``: enough to tell two numbers apart, not enough to call."""
    if not phone:
        return phone
    digits = phone.strip()
    if len(digits) < 8:
        return "****"
    return f"{digits[:3]}****{digits[-4:]}"


def shown(offer: Mapping[str, Any]) -> dict[str, Any]:
    """An offer or candidate as screens and the live feed show it: a family contact's name
    and number are the resident's personal data, so they leave only through the audited
    reveal (audit M2); responders and 120 are shown as they are."""
    out = dict(offer)
    if out.get("responder_kind") == "family":
        out["name"] = None
        out["phone"] = masked_phone(out.get("phone"))
    return out


def offers(conn: psycopg.Connection, alarm_id: uuid.UUID | str) -> list[dict[str, Any]]:
    return db.rows(conn, OFFER_SQL + " WHERE alarm_id = %s ORDER BY id", (alarm_id,))


def policy_for(conn: psycopg.Connection, a: Alarm) -> rules.Policy:
    rows = db.rows(
        conn,
        "SELECT * FROM response_policies WHERE facility_id = %s"
        " OR (facility_id IS NULL AND area = %s)",
        (a.facility_id, a.area),
    )
    return rules.choose_policy(rows, a.facility_id, a.area)


def _location(conn: psycopg.Connection, a: Alarm) -> tuple[float | None, float | None]:
    if a.home_bed_id is not None:
        rows = db.rows(conn, "SELECT lat, lon FROM home_beds WHERE id = %s", (a.home_bed_id,))
    else:
        rows = db.rows(conn, "SELECT lat, lon FROM facilities WHERE id = %s", (a.facility_id,))
    return (rows[0]["lat"], rows[0]["lon"]) if rows else (None, None)


@dataclass(frozen=True, slots=True)
class StepSnapshot:
    """What choosing whom a step asks reads from the database (:func:`snapshot`), so the
    choice itself (:func:`pick`) is pure and unit-tested without one."""

    lat: float | None = None  # where help is needed: the home bed, else the facility
    lon: float | None = None
    asked_ids: frozenset[int] = frozenset()  # pending, declined or called: not again
    asked_phones: frozenset[str] = frozenset()
    contacts: tuple[Mapping[str, Any], ...] = ()  # the resident's family (family step)
    pool: tuple[Mapping[str, Any], ...] = ()  # available responders of the step's kind


def pick(step: rules.Step, snap: StepSnapshot) -> list[Candidate]:
    """Who ``step`` asks: nobody already asked, nearest first, at most ``step.count``."""
    if step.kind == "emergency":
        number = step.number or "120"
        return [Candidate(None, "emergency", number, number)]
    if step.kind == "family":
        out = [
            Candidate(None, "family", c.get("name"), c.get("phone"))
            for c in snap.contacts
            if c.get("phone") not in snap.asked_phones
        ]
        return out[: step.count]
    pool = [p for p in snap.pool if p["id"] not in snap.asked_ids]
    ranked = rules.nearest(pool, snap.lat, snap.lon, step.count)
    return [Candidate.responder(p, step.kind) for p in ranked]


def snapshot(conn: psycopg.Connection, a: Alarm, step: rules.Step, now: datetime) -> StepSnapshot:
    """Read what :func:`pick` needs for ``step`` of alarm ``a`` (nothing for emergency)."""
    if step.kind == "emergency":
        return StepSnapshot()
    asked = db.rows(
        conn,
        "SELECT responder_id, phone, status FROM dispatch_offers"
        " WHERE alarm_id = %s AND status IN ('pending', 'declined', 'called')",
        (a.id,),
    )
    lat, lon = _location(conn, a)
    base = StepSnapshot(
        lat,
        lon,
        frozenset(r["responder_id"] for r in asked if r["responder_id"] is not None),
        frozenset(r["phone"] for r in asked if r["phone"]),
    )
    if step.kind == "family":
        rows = db.rows(conn, "SELECT contacts FROM residents WHERE id = %s", (a.resident_id,))
        return replace(base, contacts=tuple(rows[0]["contacts"] if rows else ()))
    if step.kind == "facility_staff":
        pool = db.rows(
            conn,
            "SELECT r.id, r.name, r.phone, r.lat, r.lon FROM responders r"
            " JOIN rota ro ON ro.responder_id = r.id WHERE ro.facility_id = %s"
            " AND ro.starts_at <= %s AND ro.ends_at > %s AND r.available"
            " AND r.kind = 'facility_staff' GROUP BY r.id",
            (a.facility_id, now, now),
        )
    elif step.kind == "outreach":
        pool = db.rows(
            conn,
            "SELECT id, name, phone, lat, lon FROM responders WHERE kind ="
            " 'outreach' AND facility_id = %s AND available",
            (a.facility_id,),
        )
    else:  # provider: community service providers, nearest first
        pool = db.rows(
            conn,
            "SELECT id, name, phone, lat, lon FROM responders WHERE kind ="
            " 'provider' AND available",
            (),
        )
    return replace(base, pool=tuple(pool))


def candidates(
    conn: psycopg.Connection, a: Alarm, step: rules.Step, now: datetime
) -> list[Candidate]:
    """Who this step would ask now: nobody who declined, nobody already asked and pending."""
    return pick(step, snapshot(conn, a, step, now))


def proposal(
    conn: psycopg.Connection, a: Alarm, policy: rules.Policy, now: datetime
) -> dict[str, Any] | None:
    """What ``dispatch`` without a body would do next (shown on the console).

    A care worker checked in at the resident's home right now is proposed first, at 0 m,
    whatever the step (design §2.9): the quickest help is already in the room.
    """
    current = a.escalation_step if a.status == "dispatched" else None
    on_site = on_site_workers(conn, a)
    for idx in rules.next_step(policy.steps, current, a.home_bed_id is not None):
        step = policy.steps[idx]
        found = candidates(conn, a, step, now)
        if found or on_site:
            ids = {w["responder_id"] for w in on_site}
            return {
                "step": idx,
                "kind": step.kind,
                "timeout_s": step.timeout_s,
                "responders": on_site
                + [shown(asdict(c)) for c in found if c.responder_id not in ids],
            }
    return None


def on_site_workers(conn: psycopg.Connection, a: Alarm) -> list[dict[str, Any]]:
    """Responders of care workers checked in on a work order for this alarm's resident or
    home bed (the platform layer's ``work_orders``, read as data: alerts imports no platform
    code)."""
    if a.resident_id is None and a.home_bed_id is None:
        return []
    found = db.rows(
        conn,
        "SELECT DISTINCT r.id, r.name, r.phone FROM work_orders w"
        " JOIN workers k ON k.id = w.worker_id JOIN responders r ON r.id = k.responder_id"
        " WHERE w.status = 'checked_in' AND r.available"
        " AND (w.resident_id = %s OR w.home_bed_id = %s) ORDER BY r.id",
        (a.resident_id, a.home_bed_id),
    )
    return [
        {
            **asdict(Candidate(r["id"], "provider", r["name"], r["phone"], 0.0)),
            "on_site_worker": True,
        }
        for r in found
    ]


def _make_offers(
    conn: psycopg.Connection,
    a: Alarm,
    step_idx: int,
    timeout_s: int,
    found: list[Candidate],
    now: datetime,
) -> list[dict[str, Any]]:
    due = now + timedelta(seconds=timeout_s)
    made = []
    for c in found:
        status = (
            rules.OfferStatus.CALLED
            if c.responder_kind == "emergency"
            else rules.OfferStatus.PENDING
        )
        made += db.rows(
            conn,
            "INSERT INTO dispatch_offers (alarm_id, step, responder_id,"
            " responder_kind, name, phone, distance_m, status, offered_at, due_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING *",
            (
                a.id,
                step_idx,
                c.responder_id,
                c.responder_kind,
                c.name,
                c.phone,
                c.distance_m,
                status,
                now,
                due,
            ),
        )
    for o in made:
        # The SMS/phone gateway needs the responder's number; the resident stays out of it.
        events.enqueue_webhooks(
            conn,
            a.id,
            "offer",
            a.facility_id,
            {
                "offer_id": o["id"],
                "responder_kind": o["responder_kind"],
                "name": o["name"],
                "phone": o["phone"],
                "kind": a.kind,
                "priority": a.priority,
                "facility_id": a.facility_id,
                "due_at": due.isoformat(),
            },
            now,
        )
    return made


def _next_offers(
    conn: psycopg.Connection,
    a: Alarm,
    policy: rules.Policy,
    after: int | None,
    now: datetime,
) -> tuple[int | None, list[dict[str, Any]]]:
    for idx in rules.next_step(policy.steps, after, a.home_bed_id is not None):
        step = policy.steps[idx]
        found = candidates(conn, a, step, now)
        if found:
            return idx, _make_offers(conn, a, idx, step.timeout_s, found, now)
    return None, []


def _offer_brief(o: dict[str, Any]) -> dict[str, Any]:
    return {
        "offer_id": o["id"],
        "kind": o["responder_kind"],
        "responder_id": o["responder_id"],
        "distance_m": o["distance_m"],
    }


def dispatch(
    conn: psycopg.Connection,
    alarm_id: uuid.UUID | str,
    actor: Actor,
    now: datetime,
    *,
    responder_ids: list[int] | None = None,
    note: str | None = None,
) -> dict[str, Any]:
    """Offer the alarm to the given responders, or to the policy's next step."""
    with conn.transaction():
        a = lock(conn, alarm_id, actor, "dispatch")
        to = rules.check_move("dispatch", a.status, a.kind)
        policy = policy_for(conn, a)
        if responder_ids:
            pool = db.rows(
                conn,
                "SELECT id, kind, name, phone, lat, lon FROM responders WHERE id = ANY(%s)",
                (responder_ids,),
            )
            missing = set(responder_ids) - {p["id"] for p in pool}
            if missing:
                raise NotFoundError(f"responders not found: {sorted(missing)}")
            lat, lon = _location(conn, a)
            ranked = rules.nearest(pool, lat, lon, len(pool))
            idx = a.escalation_step if a.escalation_step is not None else 0
            timeout = policy.steps[idx].timeout_s if idx < len(policy.steps) else 120
            made = _make_offers(
                conn,
                a,
                idx,
                timeout,
                [Candidate.responder(p, p["kind"]) for p in ranked],
                now,
            )
            step: int | None = idx
        else:
            after = a.escalation_step if a.status == "dispatched" else None
            step, made = _next_offers(conn, a, policy, after, now)
            if step is None:
                raise ConflictError("cannot dispatch: no responder available under the policy")
        due = min(o["due_at"] for o in made)
        conn.execute(
            "UPDATE alarms SET status = %s, dispatched_at = COALESCE(dispatched_at, %s),"
            " escalation_step = %s, escalation_due_at = %s, policy_id = %s"
            " WHERE id = %s",
            (to, now, step, due, policy.id, a.id),
        )
        events.audit(
            conn,
            a.id,
            now,
            actor.username,
            "dispatched",
            a.status,
            to,
            {
                "step": step,
                "offers": [_offer_brief(o) for o in made],
                **({"note": note} if note else {}),
            },
        )
        if a.status == "dispatched":
            # Re-dispatch: the device already knows help is being sent.
            events.emit(conn, a.id, "dispatched", actor.username, offer_ids=[o["id"] for o in made])
        else:
            announce(conn, a, "dispatched", to, actor, now, offer_ids=[o["id"] for o in made])
    return summary(conn, alarm_id, actor)


def escalate(
    conn: psycopg.Connection, a: Alarm, now: datetime, reason: str, actor: Actor = SYSTEM
) -> int | None:
    """Expire what is pending and ask the next step (``a`` is locked by the caller)."""
    conn.execute(
        "UPDATE dispatch_offers SET status = 'expired', answered_at = %s"
        " WHERE alarm_id = %s AND status = 'pending'",
        (now, a.id),
    )
    policy = policy_for(conn, a)
    step, made = _next_offers(conn, a, policy, a.escalation_step, now)
    if step is None:
        # Nobody at all can be asked: keep the clock running and say so loudly.
        conn.execute(
            "UPDATE alarms SET escalation_due_at = %s WHERE id = %s", (now + STALLED_RETRY, a.id)
        )
        events.audit(
            conn,
            a.id,
            now,
            actor.username,
            "escalation_stalled",
            a.status,
            a.status,
            {"reason": reason},
        )
        events.emit(conn, a.id, "escalated", actor.username, stalled=True)
        return None
    due = min(o["due_at"] for o in made)
    conn.execute(
        "UPDATE alarms SET escalation_step = %s, escalation_due_at = %s WHERE id = %s",
        (step, due, a.id),
    )
    events.audit(
        conn,
        a.id,
        now,
        actor.username,
        "escalated",
        a.status,
        a.status,
        {
            "reason": reason,
            "from_step": a.escalation_step,
            "to_step": step,
            "offers": [_offer_brief(o) for o in made],
        },
    )
    events.enqueue_webhooks(
        conn,
        a.id,
        "escalated",
        a.facility_id,
        {"kind": a.kind, "priority": a.priority, "step": step},
        now,
    )
    events.emit(conn, a.id, "escalated", actor.username, offer_ids=[o["id"] for o in made])
    return step


def escalate_due(conn: psycopg.Connection, now: datetime, limit: int = 100) -> list[str]:
    """Advance every dispatched alarm whose step ran out without an acceptance."""
    done = []
    with conn.transaction():
        due = db.rows_as(
            conn,
            Alarm,
            f"SELECT {ALARM_COLUMNS} FROM alarms"
            " WHERE status = 'dispatched' AND escalation_due_at <= %s"
            " ORDER BY escalation_due_at LIMIT %s FOR UPDATE SKIP LOCKED",
            (now, limit),
        )
        for a in due:
            escalate(conn, a, now, "no acceptance in time")
            done.append(str(a.id))
    return done


def _find_offer(
    conn: psycopg.Connection,
    a: Alarm,
    actor: Actor,
    offer_id: int | None,
    usable: tuple[str, ...],
) -> dict[str, Any]:
    if offer_id is not None:
        rows = db.rows(
            conn, OFFER_SQL + " WHERE id = %s AND alarm_id = %s FOR UPDATE", (offer_id, a.id)
        )
        if not rows:
            raise NotFoundError(f"offer {offer_id} not found on this alarm")
        o = rows[0]
        # Staff answer only offers made to them: a login linked to no responder has none,
        # so it cannot answer a family or 120 offer (None == None, audit M7).
        if actor.role == "facility_staff" and (
            actor.responder_id is None or o["responder_id"] != actor.responder_id
        ):
            raise PermissionDenied("facility staff answer only their own offers")
    else:
        if actor.responder_id is None:
            raise ConflictError("name the offer (offer_id): you are not a responder")
        rows = db.rows(
            conn,
            OFFER_SQL + " WHERE alarm_id = %s AND responder_id = %s"
            " AND status = ANY(%s) ORDER BY id DESC LIMIT 1 FOR UPDATE",
            (a.id, actor.responder_id, list(usable)),
        )
        if not rows:
            raise ConflictError("you have no open offer on this alarm")
        o = rows[0]
    if o["status"] not in usable:
        raise ConflictError(f"offer {o['id']} is {o['status']}")
    return o


def accept(
    conn: psycopg.Connection,
    alarm_id: uuid.UUID | str,
    actor: Actor,
    now: datetime,
    *,
    offer_id: int | None = None,
) -> dict[str, Any]:
    with conn.transaction():
        a = lock(conn, alarm_id, actor, "accept")
        to = rules.check_move("accept", a.status, a.kind)
        # A responder answering after the step expired is still good news.
        o = _find_offer(conn, a, actor, offer_id, ("pending", "called", "expired"))
        conn.execute(
            "UPDATE dispatch_offers SET status = 'accepted', answered_at = %s,"
            " answered_by = %s WHERE id = %s",
            (now, actor.username, o["id"]),
        )
        conn.execute(
            "UPDATE dispatch_offers SET status = 'withdrawn', answered_at = %s"
            " WHERE alarm_id = %s AND status = 'pending'",
            (now, a.id),
        )
        conn.execute(
            "UPDATE alarms SET status = %s, accepted_at = COALESCE(accepted_at, %s),"
            " escalation_due_at = NULL WHERE id = %s",
            (to, now, a.id),
        )
        events.audit(
            conn,
            a.id,
            now,
            actor.username,
            "accepted",
            a.status,
            to,
            {
                "offer_id": o["id"],
                "responder_kind": o["responder_kind"],
                "responder_id": o["responder_id"],
            },
        )
        announce(conn, a, "accepted", to, actor, now, offer_ids=[o["id"]])
    return summary(conn, alarm_id, actor)


def decline(
    conn: psycopg.Connection,
    alarm_id: uuid.UUID | str,
    actor: Actor,
    now: datetime,
    *,
    offer_id: int | None = None,
    reason: str | None = None,
) -> dict[str, Any]:
    with conn.transaction():
        a = lock(conn, alarm_id, actor, "decline")
        rules.check_move("decline", a.status, a.kind)
        o = _find_offer(conn, a, actor, offer_id, ("pending", "called"))
        conn.execute(
            "UPDATE dispatch_offers SET status = 'declined', answered_at = %s,"
            " answered_by = %s, reason = %s WHERE id = %s",
            (now, actor.username, reason, o["id"]),
        )
        events.audit(
            conn,
            a.id,
            now,
            actor.username,
            "declined",
            a.status,
            a.status,
            {"offer_id": o["id"], **({"reason": reason} if reason else {})},
        )
        events.emit(conn, a.id, "declined", actor.username, offer_ids=[o["id"]])
        left = db.rows(
            conn,
            "SELECT 1 FROM dispatch_offers WHERE alarm_id = %s AND status = 'pending' LIMIT 1",
            (a.id,),
        )
        if not left:
            escalate(conn, a, now, "declined")
    return summary(conn, alarm_id, actor)


def call_emergency(
    conn: psycopg.Connection,
    alarm_id: uuid.UUID | str,
    actor: Actor,
    now: datetime,
    *,
    service: str,
    note: str | None = None,
) -> dict[str, Any]:
    """Emergency services (120 ambulance / 119 fire) called: recorded as an offer step."""
    with conn.transaction():
        a = lock(conn, alarm_id, actor, "emergency")
        to = rules.check_move("emergency", a.status, a.kind)
        made = _make_offers(
            conn,
            a,
            a.escalation_step or 0,
            0,
            [Candidate(None, "emergency", service, service)],
            now,
        )
        if to != a.status:
            # rules.MOVES["emergency"]: calling 120 for an acknowledged alarm is a dispatch.
            stamp = rules.MOVES["emergency"].stamp
            conn.execute(
                f"UPDATE alarms SET status = %s, {stamp} = COALESCE({stamp}, %s) WHERE id = %s",
                (to, now, a.id),
            )
        events.audit(
            conn,
            a.id,
            now,
            actor.username,
            "emergency",
            a.status,
            to,
            {"service": service, "offer_id": made[0]["id"], **({"note": note} if note else {})},
        )
        if to != a.status:
            announce(
                conn, a, rules.MOVES["dispatch"].event, to, actor, now, offer_ids=[made[0]["id"]]
            )
        events.emit(conn, a.id, "emergency", actor.username, offer_ids=[made[0]["id"]])
    return summary(conn, alarm_id, actor)


def supervisor_due(conn: psycopg.Connection, now: datetime, limit: int = 100) -> list[str]:
    """Tell supervisors about alarms nobody acknowledged within their policy's target."""
    done = []
    with conn.transaction():
        due = db.rows(
            conn,
            """
            SELECT a.id, a.kind, a.priority, a.facility_id, a.received_at FROM alarms a
            WHERE a.status = 'raised' AND a.supervisor_notified_at IS NULL
              AND a.kind <> ALL(%s)
              AND a.received_at <= %s - interval '1 second' * COALESCE(
                    (SELECT supervisor_after_s FROM response_policies p
                      WHERE p.facility_id = a.facility_id),
                    (SELECT supervisor_after_s FROM response_policies p
                      WHERE p.facility_id IS NULL AND p.area = a.area), 60)
            ORDER BY a.received_at LIMIT %s FOR UPDATE SKIP LOCKED""",
            (list(rules.NO_SUPERVISOR), now, limit),
        )
        for r in due:
            waited = int((now - r["received_at"]).total_seconds())
            conn.execute(
                "UPDATE alarms SET supervisor_notified_at = %s WHERE id = %s", (now, r["id"])
            )
            events.audit(
                conn,
                r["id"],
                now,
                "system",
                "supervisor_notified",
                "raised",
                "raised",
                {"unacknowledged_s": waited},
            )
            events.enqueue_webhooks(
                conn,
                r["id"],
                "supervisor",
                r["facility_id"],
                {
                    "kind": r["kind"],
                    "priority": r["priority"],
                    "facility_id": r["facility_id"],
                    "unacknowledged_s": waited,
                },
                now,
            )
            events.emit(
                conn, r["id"], "supervisor", "system", reason=f"unacknowledged for {waited} s"
            )
            done.append(str(r["id"]))
    return done
