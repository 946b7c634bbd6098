"""Settlement batches per provider and month (design §2.7).

A draft batch takes one ``service`` line per verified order of the provider whose local month
is at or before the batch month and that no live batch holds yet, and one ``clawback`` line
(the exact negative of the settled line) per order rejected after it was settled. Lines are
frozen when written; approval settles the orders, a rejection frees them for a new batch.
The voucher amount of a line is the one allocated when the order was verified.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from eldercare.errors import ConflictError, NotFoundError
from eldercare.platform import entitlements, policies, subsidies, workorders
from eldercare.registry.auth import Actor
from eldercare.storage import db

Row = dict[str, Any]
_BATCH = (
    "id, provider_id, to_char(month, 'YYYY-MM') AS month, status, totals, excluded, created_by,"
    " created_at, submitted_by, submitted_at, approved_by, approved_at, rejected_by, rejected_at,"
    " reject_reason, paid_at, payment_ref"
)
_LINE = (
    "id, work_order_id::text AS work_order_id, kind, to_char(service_month, 'YYYY-MM')"
    " AS service_month, district_code, price_fen, ltc_fen, copay_fen, subsidy, funding, live"
)


def _scope(actor: Actor, provider_id: int) -> None:
    if actor.provider_scoped and actor.provider_id != provider_id:
        raise NotFoundError(f"provider {provider_id} not found")


def _order_month_sql(tz: ZoneInfo) -> str:
    # The tz name is the configured zone's key, not request input.
    return f"date_trunc('month', wo.checked_in_at AT TIME ZONE '{tz.key}')::date"


def create(
    conn: psycopg.Connection,
    actor: Actor,
    provider_id: int,
    month: date,
    now: datetime,
    tz: ZoneInfo,
) -> Row:
    _scope(actor, provider_id)
    db.one(
        conn,
        "SELECT id FROM providers WHERE id = %s",
        (provider_id,),
        missing=f"provider {provider_id} not found",
    )
    conn.execute("SELECT pg_advisory_xact_lock(hashtext('settlement'), %s::int)", (provider_id,))
    if db.rows(
        conn,
        "SELECT id FROM settlement_batches WHERE provider_id = %s AND month = %s"
        " AND status <> 'rejected'",
        (provider_id, month),
    ):
        raise ConflictError(f"provider {provider_id} already has a batch for {month:%Y-%m}")
    in_month = _order_month_sql(tz)
    candidates = db.rows(
        conn,
        f"SELECT wo.id::text AS id, wo.number, wo.status, wo.district_code, wo.price_fen,"
        f" wo.ltc_fen, wo.resident_id, wo.revisit_required, {in_month} AS service_month"
        f" FROM work_orders wo WHERE wo.provider_id = %s AND wo.checked_out_at IS NOT NULL"
        f" AND {in_month} <= %s AND NOT EXISTS (SELECT 1 FROM settlement_lines sl"
        "   WHERE sl.work_order_id = wo.id AND sl.live AND sl.kind = 'service')"
        " AND wo.status IN ('checked_out', 'verified', 'rejected') ORDER BY wo.checked_in_at",
        (provider_id, month),
    )
    batch = db.one(
        conn,
        "INSERT INTO settlement_batches (provider_id, month, totals, created_by, created_at)"
        " VALUES (%s, %s, '{}', %s, %s) RETURNING id",
        (provider_id, month, actor.username, now),
    )
    excluded: list[Row] = []
    for wo in candidates:
        # A hard finding can arrive after verification (the other order of an overlapping
        # pair checked in later): such an order waits for the decision, like an unverified one.
        if wo["status"] == "verified" and not _open_hard(conn, wo["id"]):
            _service_line(conn, batch["id"], wo, tz)
        else:
            excluded.append(
                {"work_order_id": wo["id"], "number": wo["number"], "reason": _why_not(conn, wo)}
            )
    for wo in _to_claw_back(conn, provider_id):
        _clawback_line(conn, batch["id"], wo)
    conn.execute(
        "UPDATE settlement_batches SET totals = %s, excluded = %s WHERE id = %s",
        (Jsonb(_totals(conn, batch["id"])), Jsonb(excluded), batch["id"]),
    )
    return detail(conn, actor, batch["id"])


def _open_hard(conn: psycopg.Connection, order_id: str) -> str | None:
    hard = db.rows(
        conn,
        "SELECT rule_code FROM anomalies WHERE work_order_id = %s AND severity = 'hard'"
        " AND status = 'open' ORDER BY id LIMIT 1",
        (order_id,),
    )
    return str(hard[0]["rule_code"]) if hard else None


def _why_not(conn: psycopg.Connection, wo: Row) -> str:
    if wo["status"] == "rejected":
        return "rejected"
    hard = _open_hard(conn, wo["id"])
    if hard:
        return hard
    if wo["revisit_required"] and not db.rows(
        conn,
        "SELECT 1 FROM revisits WHERE work_order_id = %s AND reached AND service_confirmed",
        (wo["id"],),
    ):
        return "revisit_required"
    return "not_verified"


def _service_line(conn: psycopg.Connection, batch_id: int, wo: Row, tz: ZoneInfo) -> None:
    order = {**wo}
    payer = entitlements.payer_of(conn, order)
    price, ltc = int(wo["price_fen"] or 0), int(wo["ltc_fen"] or 0)
    subsidy: dict[str, int] = {}
    funding: dict[str, int] = {}
    copay = price - ltc
    if payer is not None:
        code = payer["programme_code"]
        subsidy[code] = payer["voucher_fen"]
        copay = payer["copay_fen"]
        funding = _funding(
            conn, code, wo["district_code"], wo["service_month"], payer["voucher_fen"]
        )
    conn.execute(
        "INSERT INTO settlement_lines (batch_id, work_order_id, kind, service_month, district_code,"
        " price_fen, ltc_fen, copay_fen, subsidy, funding)"
        " VALUES (%s, %s, 'service', %s, %s, %s, %s, %s, %s, %s)",
        (
            batch_id,
            wo["id"],
            wo["service_month"],
            wo["district_code"],
            price,
            ltc,
            copay,
            Jsonb(subsidy),
            Jsonb(funding),
        ),
    )


def _funding(
    conn: psycopg.Connection, code: str, district_code: str, month: date, amount: int
) -> dict[str, int]:
    pv = policies.in_force(conn, code, district_code, month)
    region = policies.district(conn, district_code)["fiscal_region"]
    shares = subsidies.funding_shares(pv["funding"] if pv else {}, region)
    return subsidies.split_funding(amount, shares)


def _to_claw_back(conn: psycopg.Connection, provider_id: int) -> list[Row]:
    """Orders rejected after a batch that settled them was approved, not yet clawed back."""
    return db.rows(
        conn,
        "SELECT sl.work_order_id::text AS id, sl.service_month, sl.district_code, sl.price_fen,"
        " sl.ltc_fen, sl.copay_fen, sl.subsidy, sl.funding FROM settlement_lines sl"
        " JOIN settlement_batches b ON b.id = sl.batch_id"
        " JOIN work_orders wo ON wo.id = sl.work_order_id"
        " WHERE b.provider_id = %s AND b.status IN ('approved', 'paid') AND sl.kind = 'service'"
        " AND sl.live AND wo.status = 'rejected' AND NOT EXISTS (SELECT 1 FROM settlement_lines c"
        "   WHERE c.work_order_id = sl.work_order_id AND c.kind = 'clawback' AND c.live)",
        (provider_id,),
    )


def _clawback_line(conn: psycopg.Connection, batch_id: int, line: Row) -> None:
    conn.execute(
        "INSERT INTO settlement_lines (batch_id, work_order_id, kind, service_month, district_code,"
        " price_fen, ltc_fen, copay_fen, subsidy, funding)"
        " VALUES (%s, %s, 'clawback', %s, %s, %s, %s, %s, %s, %s)",
        (
            batch_id,
            line["id"],
            line["service_month"],
            line["district_code"],
            -int(line["price_fen"]),
            -int(line["ltc_fen"]),
            -int(line["copay_fen"]),
            Jsonb({k: -int(v) for k, v in line["subsidy"].items()}),
            Jsonb({k: -int(v) for k, v in line["funding"].items()}),
        ),
    )


def _totals(conn: psycopg.Connection, batch_id: int) -> Row:
    lines = db.rows(conn, f"SELECT {_LINE} FROM settlement_lines WHERE batch_id = %s", (batch_id,))
    subsidy: dict[str, int] = {}
    funding: dict[str, int] = {}
    for line in lines:
        for k, v in line["subsidy"].items():
            subsidy[k] = subsidy.get(k, 0) + int(v)
        for k, v in line["funding"].items():
            funding[k] = funding.get(k, 0) + int(v)
    return {
        "lines": len(lines),
        "service_lines": sum(1 for x in lines if x["kind"] == "service"),
        "clawback_lines": sum(1 for x in lines if x["kind"] == "clawback"),
        "gross_fen": sum(int(x["price_fen"]) for x in lines),
        "ltc_fen": sum(int(x["ltc_fen"]) for x in lines),
        "copay_fen": sum(int(x["copay_fen"]) for x in lines),
        "subsidy_fen": subsidy,
        "payable_fen": sum(subsidy.values()),
        "funding_fen": funding,
    }


def _load(conn: psycopg.Connection, actor: Actor, batch_id: int, lock: bool = False) -> Row:
    b = db.one(
        conn,
        f"SELECT {_BATCH} FROM settlement_batches WHERE id = %s" + (" FOR UPDATE" if lock else ""),
        (batch_id,),
        missing=f"settlement batch {batch_id} not found",
    )
    _scope(actor, int(b["provider_id"]))
    return b


def detail(conn: psycopg.Connection, actor: Actor, batch_id: int) -> Row:
    b = _load(conn, actor, batch_id)
    lines = db.rows(
        conn, f"SELECT {_LINE} FROM settlement_lines WHERE batch_id = %s ORDER BY id", (batch_id,)
    )
    return {**b, "lines": lines}


def list_batches(
    conn: psycopg.Connection, actor: Actor, provider_id: int | None, month: date | None
) -> list[Row]:
    if actor.provider_scoped:
        provider_id = actor.provider_id
    return db.rows(
        conn,
        f"SELECT {_BATCH} FROM settlement_batches"
        " WHERE (%(p)s::bigint IS NULL OR provider_id = %(p)s)"
        " AND (%(m)s::date IS NULL OR month = %(m)s::date) ORDER BY month, provider_id, id",
        {"p": provider_id, "m": month},
    )


_MOVES = {
    # action: (from statuses, to status, roles)
    "submit": (("draft",), "submitted", ("provider_admin", "civil_affairs", "admin")),
    "approve": (("submitted",), "approved", ("civil_affairs",)),
    "reject": (("draft", "submitted"), "rejected", ("civil_affairs",)),
    "mark_paid": (("approved",), "paid", ("civil_affairs",)),
}


def act(
    conn: psycopg.Connection,
    actor: Actor,
    batch_id: int,
    action: str,
    now: datetime,
    *,
    reason: str | None = None,
    payment_ref: str | None = None,
) -> Row:
    allowed, to, roles = _MOVES[action]
    actor.require(*roles)
    b = _load(conn, actor, batch_id, lock=True)
    if b["status"] not in allowed:
        raise ConflictError(
            f"settlement batch {batch_id} is {b['status']}: cannot {action.replace('_', '-')}"
        )
    if action == "submit":
        conn.execute(
            "UPDATE settlement_batches SET status = %s, submitted_by = %s, submitted_at = %s"
            " WHERE id = %s",
            (to, actor.username, now, batch_id),
        )
    elif action == "approve":
        conn.execute(
            "UPDATE settlement_batches SET status = %s, approved_by = %s, approved_at = %s"
            " WHERE id = %s",
            (to, actor.username, now, batch_id),
        )
        for line in db.rows(
            conn,
            "SELECT sl.work_order_id::text AS id FROM settlement_lines sl"
            " JOIN work_orders wo ON wo.id = sl.work_order_id"
            " WHERE sl.batch_id = %s AND sl.kind = 'service' AND wo.status = 'verified'",
            (batch_id,),
        ):
            workorders.transition(conn, line["id"], "settle", now, by=actor.username)
    elif action == "reject":
        conn.execute(
            "UPDATE settlement_batches SET status = %s, rejected_by = %s, rejected_at = %s,"
            " reject_reason = %s WHERE id = %s",
            (to, actor.username, now, reason, batch_id),
        )
        conn.execute("UPDATE settlement_lines SET live = false WHERE batch_id = %s", (batch_id,))
    else:
        conn.execute(
            "UPDATE settlement_batches SET status = %s, paid_at = %s, payment_ref = %s"
            " WHERE id = %s",
            (to, now, payment_ref, batch_id),
        )
    return detail(conn, actor, batch_id)
