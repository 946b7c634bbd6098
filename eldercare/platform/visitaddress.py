"""The visit address of a work order, for the worker who is to make the visit.

Work-order payloads carry no address, phone or ID number (design §2.1, §3.12); a worker
still has to find the door. So the worker assigned to an order, or their provider's admin,
may see where to go, for that order only and only while the visit is ahead or under way
(``accepted`` or ``checked_in``). It is a reveal like the desk's (audit M1): every attempt,
allowed or refused, is a row of ``reveals`` naming the order, within the same hourly budget.
Never the ID number, medical notes or the whole contact list: only what gets a worker in.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

import psycopg

from eldercare.errors import ConflictError, EldercareError, NotFoundError, PermissionDenied
from eldercare.registry import reveals
from eldercare.registry.auth import Actor
from eldercare.storage import db

Row = dict[str, Any]
# From accepting to checking out: before, the order may still go to another worker; after,
# the visit is over and the address is no longer needed.
ACTIVE: Final = ("accepted", "checked_in")


def _order(conn: psycopg.Connection, order_id: str) -> Row:
    """The order whatever the caller's scope: a refusal is recorded against it, so a worker
    probing another's order is seen by the supervisor rather than told "not found"."""
    try:
        key = uuid.UUID(order_id)
    except ValueError as exc:
        raise NotFoundError(f"work order {order_id[:40]} not found") from exc
    return db.one(
        conn,
        "SELECT id::text AS id, number, resident_id, status, provider_id, worker_id,"
        " home_bed_id, household_id, facility_id FROM work_orders WHERE id = %s",
        (key,),
        missing=f"work order {order_id[:40]} not found",
    )


def refusal(actor: Actor, order: Row) -> EldercareError | None:
    """Why ``actor`` may not see this order's visit address now, or None (pure)."""
    holder = (
        actor.role == "provider_worker"
        and actor.worker_id is not None
        and actor.worker_id == order["worker_id"]
    ) or (
        actor.role == "provider_admin"
        and actor.provider_id is not None
        and actor.provider_id == order["provider_id"]
    )
    if not holder:
        return PermissionDenied(
            "only the worker assigned to this order, or its provider's admin, sees its"
            " visit address"
        )
    if order["status"] not in ACTIVE:
        return ConflictError(
            f"the visit address is shown only while the order is accepted or checked in;"
            f" this one is {order['status']}"
        )
    return None


def reveal(
    conn: psycopg.Connection, actor: Actor, order_id: str, now: datetime, per_hour: int
) -> Row:
    """The address, access notes and first contact for ``order_id``, recorded as a reveal;
    a refusal is recorded too, then raised (403, 409, or 429 past the hourly budget)."""
    with conn.transaction():
        order = _order(conn, order_id)
        why = refusal(actor, order) or reveals.throttle(conn, actor.username, now, per_hour)
        # The record of who looked, and for which visit, commits before the data leaves.
        reveals.record(
            conn,
            at=now,
            username=actor.username,
            resident_id=order["resident_id"],
            reason=f"work order {order['number']}",
            refusal=why,
            work_order_id=order["id"],
        )
    if why is not None:
        raise why
    # The place snapshotted on the order (design §2.4), not wherever the resident lives now.
    place = db.one(
        conn,
        "SELECT COALESCE(hb.address, hh.address, f.address) AS address, hb.access_notes,"
        " r.contacts -> 0 AS contact FROM work_orders w"
        " JOIN residents r ON r.id = w.resident_id"
        " LEFT JOIN home_beds hb ON hb.id = w.home_bed_id"
        " LEFT JOIN households hh ON hh.id = w.household_id"
        " LEFT JOIN facilities f ON f.id = w.facility_id AND w.home_bed_id IS NULL"
        "  AND w.household_id IS NULL"
        " WHERE w.id = %s",
        (order["id"],),
    )
    contact = place["contact"]
    return {
        "work_order_id": order["id"],
        "number": order["number"],
        "resident_id": order["resident_id"],
        "address": place["address"],
        "access_notes": place["access_notes"],
        # Whom to ring when nobody opens: the first contact, name and phone only.
        "contact": (
            {k: contact.get(k) for k in ("name", "relation", "phone")}
            if isinstance(contact, dict)
            else None
        ),
        "revealed_at": now,
    }
