"""12349 calls, complaints and the revisit-satisfaction report (design §2.10, §2.13).

A caller's number is personal data: stored for call-backs, never logged, and listed only
masked to its last four digits.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

import psycopg

from eldercare.errors import ConflictError, PermissionDenied
from eldercare.platform import workorders as wo
from eldercare.platform.schemas import (
    CallWorkOrder,
    ComplaintClose,
    ComplaintCreate,
    HotlineCallCreate,
    WorkOrderCreate,
)
from eldercare.registry.auth import Actor
from eldercare.storage import db

Row = dict[str, Any]
# Complaint SLAs by severity (design §3.10: red 3 days, orange 7, yellow 15).
SLA: Final = {"red": timedelta(days=3), "orange": timedelta(days=7), "yellow": timedelta(days=15)}

_CALL_COLS: Final = (
    "id, CASE WHEN caller IS NULL THEN NULL ELSE '****' || right(caller, 4) END AS caller,"
    " agent, started_at, answered_at, ended_at, request_type, resident_id,"
    " alarm_id::text AS alarm_id, satisfaction, recording_ref, note, recorded_by, recorded_at"
)


def create_call(conn: psycopg.Connection, c: HotlineCallCreate, user: str, now: datetime) -> Row:
    made = db.one(
        conn,
        "INSERT INTO hotline_calls (caller, agent, started_at, answered_at, ended_at,"
        " request_type, resident_id, alarm_id, satisfaction, recording_ref, note, recorded_by,"
        " recorded_at) VALUES (%(caller)s, %(agent)s, %(started_at)s, %(answered_at)s,"
        " %(ended_at)s, %(request_type)s, %(resident_id)s, %(alarm_id)s::uuid, %(satisfaction)s,"
        " %(recording_ref)s, %(note)s, %(user)s, %(now)s) RETURNING id",
        {**c.model_dump(), "user": user, "now": now},
    )
    return call(conn, made["id"])


def call(conn: psycopg.Connection, call_id: int) -> Row:
    return db.one(
        conn,
        f"SELECT {_CALL_COLS} FROM hotline_calls WHERE id = %s",
        (call_id,),
        missing=f"hotline call {call_id} not found",
    )


def calls(conn: psycopg.Connection, since: datetime | None, until: datetime | None) -> list[Row]:
    return db.rows(
        conn,
        f"SELECT {_CALL_COLS} FROM hotline_calls"
        " WHERE (%(s)s::timestamptz IS NULL OR started_at >= %(s)s)"
        " AND (%(u)s::timestamptz IS NULL OR started_at < %(u)s)"
        " ORDER BY started_at DESC LIMIT 1000",
        {"s": since, "u": until},
    )


def call_work_order(
    conn: psycopg.Connection,
    actor: Actor,
    call_id: int,
    body: CallWorkOrder,
    now: datetime,
    env: wo.Env,
) -> Row:
    """A 服务转介 (referral) call becomes a work order with source ``hotline``."""
    c = db.one(
        conn,
        "SELECT request_type, resident_id FROM hotline_calls WHERE id = %s FOR UPDATE",
        (call_id,),
        missing=f"hotline call {call_id} not found",
    )
    if c["request_type"] != "referral":
        raise ConflictError(
            f"only referral calls create work orders; this one is {c['request_type']}"
        )
    if c["resident_id"] is None:
        raise ConflictError("the call names no resident (resident_id)")
    return wo.create(
        conn,
        actor,
        WorkOrderCreate(
            resident_id=c["resident_id"],
            service_item_code=body.service_item_code,
            quantity=body.quantity,
            scheduled_start=body.scheduled_start,
            scheduled_end=body.scheduled_end,
            due_by=body.due_by,
        ),
        now,
        env,
        source="hotline",
        hotline_call_id=call_id,
    )


_COMPLAINT_COLS: Final = (
    "id, hotline_call_id, resident_id, provider_id, work_order_id::text AS work_order_id,"
    " severity, due_at, status, note, resolution, created_by, created_at, closed_by, closed_at"
)


def create_complaint(conn: psycopg.Connection, c: ComplaintCreate, user: str, now: datetime) -> Row:
    """The SLA runs from the call's start when the complaint came by phone, else from now."""
    start = now
    if c.hotline_call_id is not None:
        start = call(conn, c.hotline_call_id)["started_at"]
    made = db.one(
        conn,
        "INSERT INTO complaints (hotline_call_id, resident_id, provider_id, work_order_id,"
        " severity, due_at, note, created_by, created_at) VALUES (%s, %s, %s, %s::uuid, %s, %s,"
        " %s, %s, %s) RETURNING id",
        (
            c.hotline_call_id,
            c.resident_id,
            c.provider_id,
            c.work_order_id,
            c.severity,
            start + SLA[c.severity],
            c.note,
            user,
            now,
        ),
    )
    return complaint(conn, made["id"])


def complaint(conn: psycopg.Connection, complaint_id: int) -> Row:
    return db.one(
        conn,
        f"SELECT {_COMPLAINT_COLS} FROM complaints WHERE id = %s",
        (complaint_id,),
        missing=f"complaint {complaint_id} not found",
    )


def complaints(
    conn: psycopg.Connection, actor: Actor, status: str | None, provider: int | None
) -> list[Row]:
    if actor.provider_scoped:
        if actor.role != "provider_admin":
            raise PermissionDenied("complaints are for the provider's office")
        provider = actor.provider_id
    return db.rows(
        conn,
        f"SELECT {_COMPLAINT_COLS} FROM complaints"
        " WHERE (%(s)s::text IS NULL OR status = %(s)s)"
        " AND (%(p)s::bigint IS NULL OR provider_id = %(p)s) ORDER BY due_at, id LIMIT 1000",
        {"s": status, "p": provider},
    )


def close_complaint(
    conn: psycopg.Connection, complaint_id: int, body: ComplaintClose, user: str, now: datetime
) -> Row:
    current = db.one(
        conn,
        "SELECT status FROM complaints WHERE id = %s FOR UPDATE",
        (complaint_id,),
        missing=f"complaint {complaint_id} not found",
    )
    if current["status"] == "closed":
        raise ConflictError(f"complaint {complaint_id} is already closed")
    conn.execute(
        "UPDATE complaints SET status = 'closed', resolution = %s, closed_by = %s, closed_at = %s"
        " WHERE id = %s",
        (body.resolution, user, now, complaint_id),
    )
    return complaint(conn, complaint_id)


def revisits_report(
    conn: psycopg.Connection,
    since: datetime,
    until: datetime,
    district: str | None,
    provider: int | None,
) -> Row:
    """Done revisits in [since, until): reach, confirmation and satisfaction (1+2 of reached)."""
    rows = db.rows(
        conn,
        "SELECT r.reached, r.service_confirmed, r.satisfaction, w.provider_id FROM revisits r"
        " JOIN work_orders w ON w.id = r.work_order_id"
        " WHERE r.done_at >= %(s)s AND r.done_at < %(u)s"
        " AND (%(d)s::text IS NULL OR w.district_code IN (SELECT district_subtree(%(d)s)))"
        " AND (%(p)s::bigint IS NULL OR w.provider_id = %(p)s)",
        {"s": since, "u": until, "d": district, "p": provider},
    )
    by_provider: dict[Any, list[Row]] = {}
    for r in rows:
        by_provider.setdefault(r["provider_id"], []).append(r)
    per_provider = [
        {"provider_id": k, **revisit_rates(v)}
        for k, v in sorted(by_provider.items(), key=lambda kv: kv[0] or 0)
    ]
    return {
        "from": since,
        "to": until,
        "district": district,
        "provider": provider,
        **revisit_rates(rows),
        "by_provider": per_provider,
        # The CSV export: one line per provider, the distribution flattened to n1..n4.
        "rows": [
            {
                **{k: v for k, v in p.items() if k != "distribution"},
                **{f"n{k}": n for k, n in p["distribution"].items()},
            }
            for p in per_provider
        ],
    }


def _ratio(n: int, d: int) -> float | None:
    return round(n / d, 4) if d else None


def revisit_rates(rows: list[Row]) -> Row:
    """Reach, confirmation and satisfaction of done revisits (design §2.10)."""
    reached = [r for r in rows if r["reached"]]
    dist = {str(k): 0 for k in range(1, 5)}
    for r in reached:
        if r["satisfaction"] is not None:
            dist[str(r["satisfaction"])] += 1
    return {
        "revisits": len(rows),
        "reached": len(reached),
        "reach_rate": _ratio(len(reached), len(rows)),
        "confirmed_rate": _ratio(sum(1 for r in reached if r["service_confirmed"]), len(reached)),
        "distribution": dist,
        "satisfaction_rate": _ratio(dist["1"] + dist["2"], len(reached)),
    }
