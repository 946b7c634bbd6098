"""Entitlements, voucher accounts and the payer split of a service (design §2.6).

The facts of a resident-month are read as of the 1st of the month in local time
(``as_of = month_start``) and handed to the pure :mod:`eldercare.platform.subsidies`; this
module only gathers, stores and allocates. A voucher is allocated when an order is verified,
in verification order, and never reallocated (§4 Q24): :func:`on_verified` is the work-order
lifecycle's hook for that.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb

from eldercare.errors import NotFoundError
from eldercare.platform import people, policies, subsidies
from eldercare.platform.subsidy_schemas import PreviewRequest, QuoteRequest, month_start
from eldercare.storage import db

Row = dict[str, Any]
MONTHLY_KINDS = ("cash_allowance", "care_fee", "voucher", "service_credit")
ACCOUNT_KINDS = ("voucher", "service_credit")
_SETTING = {"home_bed": "home", "household": "home", "facility": "institution"}


def local_month(at: datetime, tz: ZoneInfo) -> date:
    local = at.astimezone(tz)
    return date(local.year, local.month, 1)


def next_month(month: date) -> date:
    return date(month.year + month.month // 12, month.month % 12 + 1, 1)


def _age(born: date | None, on: date) -> int | None:
    if born is None:
        return None
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


@dataclass(frozen=True, slots=True)
class Resident:
    id: int
    district_code: str
    setting: str
    facts: subsidies.Facts


def resident_facts(
    conn: psycopg.Connection, resident_id: int, month: date, tz: ZoneInfo
) -> Resident:
    """The resident as their month's 1st (local midnight) finds them."""
    place = db.one(
        conn,
        "SELECT r.id, r.birth_date, p.setting, p.district_code FROM residents r"
        " JOIN resident_places p ON p.resident_id = r.id WHERE r.id = %s",
        (resident_id,),
        missing=f"resident {resident_id} not found",
    )
    if place["district_code"] is None:
        raise NotFoundError(f"resident {resident_id} has no district: their home has none")
    cats = db.rows(
        conn,
        "SELECT category, support_mode FROM resident_categories"
        " WHERE resident_id = %s AND valid @> %s::date",
        (resident_id, month),
    )
    start = datetime.combine(month, time(0), tz)
    stopped = db.rows(
        conn,
        "SELECT status FROM resident_status_periods WHERE resident_id = %s"
        " AND status IN ('deceased', 'moved_out') AND during @> %s::timestamptz"
        " ORDER BY status = 'deceased' DESC LIMIT 1",
        (resident_id, start),
    )
    level = people.level_on(conn, resident_id, month)["level"]
    mode = next((c["support_mode"] for c in cats if c["support_mode"]), None)
    setting = _SETTING.get(place["setting"], "home")
    facts = subsidies.Facts(
        categories=frozenset(c["category"] for c in cats),
        support_mode=mode,
        ability_level=level,
        age=_age(place["birth_date"], month),
        setting=setting,
        status=stopped[0]["status"] if stopped else None,
    )
    return Resident(resident_id, place["district_code"], setting, facts)


def _basis(out: subsidies.Outcome, facts: subsidies.Facts, pv: Row | None) -> Row:
    basis: Row = {
        **out.basis,
        "level": facts.ability_level,
        "support_mode": facts.support_mode,
        "age": facts.age,
        "categories": sorted(facts.categories),
        "setting": facts.setting,
    }
    if pv is not None:
        basis["policy_version_id"] = pv["id"]
        basis["source_doc"] = pv["source_doc"]
    if out.reason:
        basis["reason"] = out.reason
    return basis


def _outcome_public(out: subsidies.Outcome, pv: Row) -> Row:
    shown: Row = {
        "amount_fen": out.amount_fen,
        "policy_version_id": pv["id"],
        "rule_code": out.rule_code,
        "source_doc": pv["source_doc"],
        "source_quote": pv["source_quote"],
    }
    if out.reason and out.amount_fen == 0:
        shown["reason"] = out.reason
    if out.ratio is not None:
        shown["ratio"] = float(out.ratio)
    return shown


def preview(conn: psycopg.Connection, req: PreviewRequest) -> Row:
    """Evaluate the version in force for hypothetical facts; nothing is stored."""
    policies.programme(conn, req.programme_code)
    policies.district(conn, req.district_code)
    month = month_start(req.month)
    pv = policies.in_force(conn, req.programme_code, req.district_code, month)
    if pv is None:
        return {"status": "no_policy", "programme_code": req.programme_code, "month": req.month}
    f = req.facts
    facts = subsidies.Facts(
        frozenset(f.categories), f.support_mode, f.ability_level, f.age, f.setting, f.status
    )
    out = subsidies.evaluate(pv["rules"], facts)
    return {
        "status": "ok",
        "programme_code": req.programme_code,
        "month": req.month,
        **_outcome_public(out, pv),
    }


# ------------------------------------------------------------------ monthly runs


def run(
    conn: psycopg.Connection,
    month: date,
    district_code: str,
    user: str,
    now: datetime,
    tz: ZoneInfo,
) -> Row:
    """Evaluate every resident of the district (and below) for every monthly programme with a
    version in force. Re-running voids and supersedes; the same facts give the same amounts."""
    policies.district(conn, district_code)
    # One run at a time per month x district, so two clicks cannot interleave their voids.
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('entitlement_run'), hashtext(%s))",
        (f"{month}:{district_code}",),
    )
    run_row = db.one(
        conn,
        "INSERT INTO entitlement_runs (month, district_code, started_by, started_at)"
        " VALUES (%s, %s, %s, %s) RETURNING id",
        (month, district_code, user, now),
    )
    progs = db.rows(
        conn,
        "SELECT code, kind FROM programmes WHERE period = 'month' AND kind = ANY(%s) ORDER BY code",
        (list(MONTHLY_KINDS),),
    )
    residents = db.rows(
        conn,
        "SELECT resident_id FROM resident_places"
        " WHERE district_code IN (SELECT district_subtree(%s)) ORDER BY resident_id",
        (district_code,),
    )
    pv_cache: dict[tuple[str, str], Row | None] = {}
    stats: dict[str, Any] = {
        "residents": len(residents),
        "rows": 0,
        "voided": 0,
        "total_fen": {},
        # 补发 (+) and 追回 (-) against the rows this run superseded, per programme (§2.6).
        "adjustments_fen": {},
    }
    for r in residents:
        res = resident_facts(conn, r["resident_id"], month, tz)
        for prog in progs:
            key = (prog["code"], res.district_code)
            if key not in pv_cache:
                pv_cache[key] = policies.in_force(conn, prog["code"], res.district_code, month)
            pv = pv_cache[key]
            if pv is None:
                continue
            out = subsidies.evaluate(pv["rules"], res.facts)
            voided, delta = _store(conn, run_row["id"], res, prog, month, out, pv, now)
            stats["voided"] += voided
            if delta:
                adj = stats["adjustments_fen"]
                adj[prog["code"]] = adj.get(prog["code"], 0) + delta
            if out.amount_fen > 0 or out.reason != "not_eligible":
                stats["rows"] += 1
            totals = stats["total_fen"]
            totals[prog["code"]] = totals.get(prog["code"], 0) + out.amount_fen
    return db.one(
        conn,
        "UPDATE entitlement_runs SET finished_at = %s, stats = %s WHERE id = %s"
        " RETURNING id, month, district_code, started_by, started_at, finished_at, stats",
        (now, Jsonb(stats), run_row["id"]),
    )


def _store(
    conn: psycopg.Connection,
    run_id: int,
    res: Resident,
    prog: Row,
    month: date,
    out: subsidies.Outcome,
    pv: Row,
    now: datetime,
) -> tuple[int, int]:
    """Write one evaluation; returns how many earlier rows it voided (0 or 1) and the change
    of amount against the row it superseded (补发 positive, 追回 negative)."""
    old = db.rows(
        conn,
        "SELECT id, amount_fen FROM entitlements WHERE resident_id = %s AND programme_code = %s"
        " AND month = %s AND status <> 'void' FOR UPDATE",
        (res.id, prog["code"], month),
    )
    # Residents a programme never concerned leave no row (a county has thousands of them);
    # anyone it did concern keeps a row, a zero with its reason included (death, level...).
    if not old and out.amount_fen == 0 and out.reason == "not_eligible":
        return 0, 0
    if old:
        conn.execute("UPDATE entitlements SET status = 'void' WHERE id = %s", (old[0]["id"],))
    ent = db.one(
        conn,
        "INSERT INTO entitlements (run_id, resident_id, programme_code, month, amount_fen,"
        " policy_version_id, rule_code, district_code, basis, supersedes_id, created_at)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            run_id,
            res.id,
            prog["code"],
            month,
            out.amount_fen,
            pv["id"],
            out.rule_code,
            res.district_code,
            Jsonb(_basis(out, res.facts, pv)),
            old[0]["id"] if old else None,
            now,
        ),
    )
    if prog["kind"] in ACCOUNT_KINDS:
        credited = _credited(conn, res.id, prog["code"], month)
        if credited is None or credited != out.amount_fen:
            conn.execute(
                "INSERT INTO subsidy_ledger (resident_id, programme_code, month, kind, amount_fen,"
                " entitlement_id, at, note) VALUES (%s, %s, %s, 'credit', %s, %s, %s, %s)",
                (
                    res.id,
                    prog["code"],
                    month,
                    out.amount_fen - (credited or 0),
                    ent["id"],
                    now,
                    "entitlement run",
                ),
            )
    return len(old), (out.amount_fen - int(old[0]["amount_fen"])) if old else 0


def run_detail(conn: psycopg.Connection, run_id: int) -> Row:
    return db.one(
        conn,
        "SELECT id, month, district_code, started_by, started_at, finished_at, stats"
        " FROM entitlement_runs WHERE id = %s",
        (run_id,),
        missing=f"entitlement run {run_id} not found",
    )


def of_resident(
    conn: psycopg.Connection, resident_id: int, month: date | None, include_void: bool
) -> list[Row]:
    people.resident_exists(conn, resident_id)
    return db.rows(
        conn,
        "SELECT e.id, e.run_id, e.programme_code, e.month, e.amount_fen, e.policy_version_id,"
        " e.rule_code, e.district_code, e.basis, e.status, e.supersedes_id,"
        " e.amount_fen - s.amount_fen AS adjustment_fen, e.created_at FROM entitlements e"
        " LEFT JOIN entitlements s ON s.id = e.supersedes_id"
        " WHERE e.resident_id = %s AND (%s::date IS NULL OR e.month = %s::date)"
        " AND (%s OR e.status <> 'void') ORDER BY e.month, e.programme_code, e.id",
        (resident_id, month, month, include_void),
    )


# ------------------------------------------------------------------ accounts and quotes


def _credited(conn: psycopg.Connection, resident_id: int, code: str, month: date) -> int | None:
    got = db.one(
        conn,
        "SELECT count(*) AS n, coalesce(sum(amount_fen), 0)::bigint AS fen FROM subsidy_ledger"
        " WHERE resident_id = %s AND programme_code = %s AND month = %s AND kind = 'credit'",
        (resident_id, code, month),
    )
    return int(got["fen"]) if got["n"] else None


def _used(conn: psycopg.Connection, resident_id: int, code: str, month: date) -> int:
    got = db.one(
        conn,
        "SELECT coalesce(sum(CASE kind WHEN 'debit' THEN amount_fen WHEN 'reversal'"
        " THEN -amount_fen ELSE 0 END), 0)::bigint AS fen FROM subsidy_ledger"
        " WHERE resident_id = %s AND programme_code = %s AND month = %s",
        (resident_id, code, month),
    )
    return int(got["fen"])


@dataclass(frozen=True, slots=True)
class Account:
    programme_code: str
    month: date
    credit_fen: int
    used_fen: int
    outcome: subsidies.Outcome | None
    pv: Row | None
    res: Resident

    @property
    def balance_fen(self) -> int:
        return max(self.credit_fen - self.used_fen, 0)


def account(
    conn: psycopg.Connection, resident_id: int, code: str, month: date, tz: ZoneInfo
) -> Account:
    """The month's credit (from the entitlement run, or evaluated now if no run wrote one:
    the same facts as of the 1st give the same amount), what verified services used, the
    balance. A month's balance never carries into the next (当月获得，当月使用，次月失效)."""
    res = resident_facts(conn, resident_id, month, tz)
    pv = policies.in_force(conn, code, res.district_code, month)
    out = subsidies.evaluate(pv["rules"], res.facts) if pv is not None else None
    credited = _credited(conn, resident_id, code, month)
    credit = credited if credited is not None else (out.amount_fen if out else 0)
    return Account(code, month, credit, _used(conn, resident_id, code, month), out, pv, res)


def account_public(acc: Account, now: datetime, tz: ZoneInfo) -> Row:
    shown: Row = {
        "resident_id": acc.res.id,
        "programme_code": acc.programme_code,
        "month": acc.month.strftime("%Y-%m"),
        "credit_fen": acc.credit_fen,
        "used_fen": acc.used_fen,
        "balance_fen": acc.balance_fen,
        # A past month's balance has lapsed: it is shown, never spendable.
        "spendable": acc.month == local_month(now, tz),
        "policy_version_id": acc.pv["id"] if acc.pv else None,
    }
    if acc.pv is None:
        shown["reason"] = "no_policy"
    elif acc.credit_fen == 0 and acc.outcome is not None and acc.outcome.reason:
        shown["reason"] = acc.outcome.reason
    return shown


def voucher_programmes(conn: psycopg.Connection) -> list[str]:
    return [
        r["code"]
        for r in db.rows(conn, "SELECT code FROM programmes WHERE kind = 'voucher' ORDER BY code")
    ]


def _item_setting(conn: psycopg.Connection, code: str) -> str:
    return str(
        db.one(
            conn,
            "SELECT setting FROM service_items WHERE code = %s",
            (code,),
            missing=f"service item {code[:63]} not found",
        )["setting"]
    )


@dataclass(frozen=True, slots=True)
class Payer:
    split: subsidies.Split
    programme_code: str | None
    ratio: Fraction
    cap_left_fen: int
    reason: str | None
    funding: dict[str, Any]
    fiscal_region: str | None


def payer_split(
    conn: psycopg.Connection,
    resident_id: int,
    item_code: str,
    price_fen: int,
    ltc_fen: int,
    at: datetime,
    tz: ZoneInfo,
) -> Payer:
    """The waterfall for one service at ``at``: insurance, then the voucher on the rest
    (ratio of the service's setting, capped by what the month has left), then the copay."""
    setting = _item_setting(conn, item_code)
    month = local_month(at, tz)
    for code in voucher_programmes(conn):
        acc = account(conn, resident_id, code, month, tz)
        if acc.pv is None or acc.outcome is None:
            continue
        formula = next(
            (r["formula"] for r in acc.pv["rules"] if r["code"] == acc.outcome.rule_code), None
        )
        if acc.outcome.amount_fen == 0 or formula is None:
            split = subsidies.waterfall(price_fen, ltc_fen=ltc_fen)
            return Payer(
                split,
                code,
                Fraction(0),
                0,
                acc.outcome.reason or "not_eligible",
                acc.pv["funding"],
                _region(conn, acc.res.district_code),
            )
        ratio = subsidies.exact(formula["ratio_by_setting"].get(setting, 0), "ratio")
        left = acc.balance_fen
        split = subsidies.waterfall(price_fen, ltc_fen=ltc_fen, ratio=ratio, cap_left_fen=left)
        return Payer(
            split, code, ratio, left, None, acc.pv["funding"], _region(conn, acc.res.district_code)
        )
    return Payer(
        subsidies.waterfall(price_fen, ltc_fen=ltc_fen), None, Fraction(0), 0, "no_policy", {}, None
    )


def _region(conn: psycopg.Connection, district_code: str) -> str | None:
    return policies.district(conn, district_code)["fiscal_region"]


def quote(conn: psycopg.Connection, q: QuoteRequest, tz: ZoneInfo) -> Row:
    people.resident_exists(conn, q.resident_id)
    p = payer_split(conn, q.resident_id, q.service_item_code, q.price_fen, q.ltc_fen, q.at, tz)
    shown: Row = {
        "resident_id": q.resident_id,
        "service_item_code": q.service_item_code,
        "price_fen": q.price_fen,
        "ltc_fen": p.split.ltc_fen,
        "voucher_fen": p.split.voucher_fen,
        "copay_fen": p.split.copay_fen,
        "ratio": float(p.ratio),
        "cap_remaining_fen": p.cap_left_fen,
        "programme_code": p.programme_code,
    }
    if p.reason:
        shown["reason"] = p.reason
    return shown


# ------------------------------------------------------------------ the verify hook


def on_verified(tz: ZoneInfo) -> Any:
    """The lifecycle hook: allocate the voucher to a just-verified order, once."""

    def hook(conn: psycopg.Connection, order: Row, now: datetime) -> None:
        allocate(conn, order, now, tz)

    return hook


def allocate(conn: psycopg.Connection, order: Row, now: datetime, tz: ZoneInfo) -> None:
    resident_id = int(order["resident_id"])
    # Two orders of one resident verified at once must not both take the last of the cap.
    conn.execute(
        "SELECT pg_advisory_xact_lock(hashtext('voucher_account'), %s::int)", (resident_id,)
    )
    at = order["checked_in_at"]
    price = int(order["price_fen"] or 0)
    p = payer_split(
        conn, resident_id, order["service_item_code"], price, int(order["ltc_fen"] or 0), at, tz
    )
    if p.programme_code is None:
        return
    month = local_month(at, tz)
    if _credited(conn, resident_id, p.programme_code, month) is None and p.split.voucher_fen:
        acc = account(conn, resident_id, p.programme_code, month, tz)
        conn.execute(
            "INSERT INTO subsidy_ledger (resident_id, programme_code, month, kind, amount_fen,"
            " at, note) VALUES (%s, %s, %s, 'credit', %s, %s, 'first use in the month')",
            (resident_id, p.programme_code, month, acc.credit_fen, now),
        )
    # A zero debit is written too: it records that the order was allocated, and with what.
    conn.execute(
        "INSERT INTO subsidy_ledger (resident_id, programme_code, month, kind, amount_fen,"
        " work_order_id, at, note) VALUES (%s, %s, %s, 'debit', %s, %s, %s, %s)"
        " ON CONFLICT DO NOTHING",
        (
            resident_id,
            p.programme_code,
            month,
            p.split.voucher_fen,
            order["id"],
            now,
            p.reason or "verified",
        ),
    )


def payer_of(conn: psycopg.Connection, order: Row) -> Row | None:
    """Who pays what of a verified order, as allocated at verification."""
    got = db.rows(
        conn,
        "SELECT programme_code, amount_fen FROM subsidy_ledger"
        " WHERE work_order_id = %s AND kind = 'debit'",
        (order["id"],),
    )
    if not got or order["price_fen"] is None:
        return None
    voucher = sum(int(g["amount_fen"]) for g in got)
    ltc = int(order["ltc_fen"] or 0)
    return {
        "ltc_fen": ltc,
        "voucher_fen": voucher,
        "copay_fen": int(order["price_fen"]) - ltc - voucher,
        "programme_code": got[0]["programme_code"],
    }
