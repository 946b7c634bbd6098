"""Supervisor reports (design §2.13): subsidy spend, service coverage, 特困 KPIs, anomalies,
settlement. Each returns ``rows`` (what the CSV export writes) plus the totals a client
reads. A report covers the district and every district below it."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg

from eldercare.errors import InvalidInput
from eldercare.platform import entitlements, hotline, lifecycle, policies, subsidies
from eldercare.storage import db

Row = dict[str, Any]
GROUPS = ("district", "programme", "funding")
UNABLE_DEFAULT = ("moderate", "severe", "complete")


def _rate(num: int, den: int) -> float:
    return round(num / den, 4) if den else 0.0


def subsidy_spend(conn: psycopg.Connection, month: date, district: str, group_by: str) -> Row:
    groups = [g.strip() for g in group_by.split(",") if g.strip()]
    unknown = sorted(set(groups) - set(GROUPS))
    if unknown:
        raise InvalidInput(f"group_by: unknown {unknown[0]!r}; use {', '.join(GROUPS)}")
    policies.district(conn, district)
    rows = db.rows(
        conn,
        "SELECT district_code, programme_code, sum(amount_fen)::bigint AS amount_fen,"
        " sum(central_fen)::bigint AS central_fen, sum(local_fen)::bigint AS local_fen"
        " FROM report_subsidy_spend WHERE month = %s"
        " AND district_code IN (SELECT district_subtree(%s))"
        " GROUP BY district_code, programme_code ORDER BY programme_code, district_code",
        (month, district),
    )
    programmes: dict[str, int] = {}
    districts: dict[str, int] = {}
    for r in rows:
        programmes[r["programme_code"]] = programmes.get(r["programme_code"], 0) + r["amount_fen"]
        districts[r["district_code"]] = districts.get(r["district_code"], 0) + r["amount_fen"]
    out: Row = {
        "month": month.strftime("%Y-%m"),
        "district": district,
        "group_by": groups,
        "total_fen": sum(programmes.values()),
        "programmes": programmes,
        "rows": rows,
    }
    if "district" in groups:
        # Per district per programme, so a county's streets can be compared programme by programme.
        out["districts"] = districts
        out["by_district_programme"] = {
            d: {r["programme_code"]: r["amount_fen"] for r in rows if r["district_code"] == d}
            for d in districts
        }
    if "funding" in groups:
        out["funding"] = {
            "central": sum(r["central_fen"] for r in rows),
            "local": sum(r["local_fen"] for r in rows),
        }
    return out


def coverage(
    conn: psycopg.Connection, programme: str, month: date, district: str, tz: ZoneInfo
) -> Row:
    """eligible = residents the programme gives a positive amount for the month (stored
    entitlement, else evaluated from the same as-of-the-1st facts); served = eligible
    residents with at least one verified (or settled) order checked in that month."""
    policies.programme(conn, programme)
    policies.district(conn, district)
    residents = db.rows(
        conn,
        "SELECT resident_id FROM resident_places"
        " WHERE district_code IN (SELECT district_subtree(%s)) ORDER BY resident_id",
        (district,),
    )
    start, end = _month_bounds(month, tz)
    served_ids = {
        r["resident_id"]
        for r in db.rows(
            conn,
            "SELECT DISTINCT resident_id FROM work_orders WHERE status IN ('verified', 'settled')"
            " AND checked_in_at >= %s AND checked_in_at < %s",
            (start, end),
        )
    }
    eligible: list[int] = []
    for r in residents:
        rid = r["resident_id"]
        stored = db.rows(
            conn,
            "SELECT amount_fen FROM entitlements WHERE resident_id = %s AND programme_code = %s"
            " AND month = %s AND status <> 'void'",
            (rid, programme, month),
        )
        if stored:
            amount = int(stored[0]["amount_fen"])
        else:
            res = entitlements.resident_facts(conn, rid, month, tz)
            pv = policies.in_force(conn, programme, res.district_code, month)
            amount = subsidies.evaluate(pv["rules"], res.facts).amount_fen if pv else 0
        if amount > 0:
            eligible.append(rid)
    served = [rid for rid in eligible if rid in served_ids]
    return {
        "programme": programme,
        "month": month.strftime("%Y-%m"),
        "district": district,
        "eligible": len(eligible),
        "served": len(served),
        "rate": _rate(len(served), len(eligible)),
        "rows": [{"resident_id": rid, "served": rid in served_ids} for rid in eligible],
    }


def tekun(conn: psycopg.Connection, on: date, district: str, unable_levels: tuple[str, ...]) -> Row:
    """特困 support KPIs on a day (seed rows A10-A14): centralised share of those unable to
    self-care, and the share of dispersed 特困 with an active care agreement."""
    bad = sorted(set(unable_levels) - set(subsidies.LEVELS))
    if bad:
        raise InvalidInput(f"unable_self_care_levels: unknown level {bad[0]!r}")
    policies.district(conn, district)
    rows = db.rows(
        conn,
        "SELECT c.resident_id, c.support_mode,"
        " (SELECT final_level FROM assessments a WHERE a.resident_id = c.resident_id"
        "   AND a.status = 'final' AND a.effective_from <= %(on)s"
        "   AND (a.valid_until IS NULL OR a.valid_until >= %(on)s)"
        "   ORDER BY a.effective_from DESC, a.id DESC LIMIT 1) AS level,"
        " EXISTS (SELECT 1 FROM care_agreements g WHERE g.resident_id = c.resident_id"
        "   AND g.valid @> %(on)s::date) AS agreement"
        " FROM resident_categories c JOIN resident_places p ON p.resident_id = c.resident_id"
        " WHERE c.category = 'tekun' AND c.valid @> %(on)s::date"
        " AND p.district_code IN (SELECT district_subtree(%(d)s))"
        " AND NOT EXISTS (SELECT 1 FROM resident_status_periods s"
        "   WHERE s.resident_id = c.resident_id AND s.status = 'deceased'"
        "   AND lower(s.during) < %(on)s::date)"
        " ORDER BY c.resident_id",
        {"on": on, "d": district},
    )
    unable = [r for r in rows if r["level"] in unable_levels]
    dispersed = [r for r in rows if r["support_mode"] == "dispersed"]
    central_unable = sum(1 for r in unable if r["support_mode"] == "centralised")
    agreed = sum(1 for r in dispersed if r["agreement"])
    return {
        "on": on.isoformat(),
        "district": district,
        "unable_self_care_levels": list(unable_levels),
        "tekun": len(rows),
        "centralised": sum(1 for r in rows if r["support_mode"] == "centralised"),
        "dispersed": len(dispersed),
        "unable_self_care": len(unable),
        "centralised_rate_unable": _rate(central_unable, len(unable)),
        "agreement_rate_dispersed": _rate(agreed, len(dispersed)),
        "rows": [
            {
                "resident_id": r["resident_id"],
                "support_mode": r["support_mode"],
                "level": r["level"],
                "agreement": r["agreement"],
            }
            for r in rows
        ],
    }


def anomalies(
    conn: psycopg.Connection, month: date, district: str, provider: int | None, tz: ZoneInfo
) -> Row:
    policies.district(conn, district)
    start, end = _month_bounds(month, tz)
    rows = db.rows(
        conn,
        "SELECT a.rule_code, a.severity, a.status, count(*)::bigint AS n FROM anomalies a"
        " JOIN work_orders wo ON wo.id = a.work_order_id"
        " WHERE wo.checked_in_at >= %(s)s AND wo.checked_in_at < %(e)s"
        " AND wo.district_code IN (SELECT district_subtree(%(d)s))"
        " AND (%(p)s::bigint IS NULL OR wo.provider_id = %(p)s)"
        " GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
        {"s": start, "e": end, "d": district, "p": provider},
    )
    by_rule: dict[str, int] = {}
    for r in rows:
        by_rule[r["rule_code"]] = by_rule.get(r["rule_code"], 0) + int(r["n"])
    return {
        "month": month.strftime("%Y-%m"),
        "district": district,
        "provider": provider,
        "by_rule": by_rule,
        "total": sum(by_rule.values()),
        "rows": rows,
    }


# Design §2.13 / §2.4: check-in within ±2 h of the scheduled start is on time; EVV
# completeness is measured against the 90 % target borrowed from the US EVV rule (§1b).
ON_TIME = timedelta(hours=2)
EVV_TARGET = 0.9
VISIT_GROUPS = ("tekun_dispersed", "living_alone", "empty_nest")


def _month_bounds(month: date, tz: ZoneInfo) -> tuple[datetime, datetime]:
    return (
        datetime.combine(month, time(0), tz),
        datetime.combine(entitlements.next_month(month), time(0), tz),
    )


def providers(
    conn: psycopg.Connection, month: date, district: str, provider: int | None, tz: ZoneInfo
) -> Row:
    """Per provider, the month's orders in the district (and below): dispatches and rejects
    (待改派), visits checked in and how many on time, visits with a finding, verified visits
    with all six EVV elements against the 90 % target, revisit satisfaction, complaints."""
    policies.district(conn, district)
    start, end = _month_bounds(month, tz)
    args = {"s": start, "e": end, "d": district, "p": provider}
    in_district = "wo.district_code IN (SELECT district_subtree(%(d)s))"
    handed = db.rows(
        conn,
        "SELECT (ev.detail ->> 'provider_id')::bigint AS provider_id,"
        " count(*) FILTER (WHERE ev.action = 'dispatch')::bigint AS dispatched,"
        " count(*) FILTER (WHERE ev.action = 'reject')::bigint AS rejected"
        " FROM work_order_events ev JOIN work_orders wo ON wo.id = ev.work_order_id"
        " WHERE ev.action IN ('dispatch', 'reject') AND ev.at >= %(s)s AND ev.at < %(e)s"
        f" AND {in_district} GROUP BY 1",
        args,
    )
    visits = db.rows(
        conn,
        "SELECT wo.provider_id, wo.status, wo.scheduled_start, wo.checked_in_at,"
        " wo.checked_out_at, wo.service_item_code, wo.resident_id, wo.worker_id, wo.check_in,"
        " wo.check_out, EXISTS (SELECT 1 FROM anomalies a WHERE a.work_order_id = wo.id"
        "   AND a.severity <> 'info') AS flagged"
        " FROM work_orders wo WHERE wo.checked_in_at >= %(s)s AND wo.checked_in_at < %(e)s"
        f" AND {in_district}",
        args,
    )
    revisits = db.rows(
        conn,
        "SELECT wo.provider_id, r.reached, r.service_confirmed, r.satisfaction FROM revisits r"
        " JOIN work_orders wo ON wo.id = r.work_order_id"
        f" WHERE r.done_at >= %(s)s AND r.done_at < %(e)s AND {in_district}",
        args,
    )
    complaints = db.rows(
        conn,
        "SELECT provider_id, count(*)::bigint AS n FROM complaints"
        " WHERE created_at >= %(s)s AND created_at < %(e)s AND provider_id IS NOT NULL"
        " GROUP BY 1",
        args,
    )
    seen = {r["provider_id"] for r in handed + visits} - {None}
    if provider is not None:
        seen &= {provider}
    names = {
        r["id"]: r["name"]
        for r in db.rows(conn, "SELECT id, name FROM providers WHERE id = ANY(%s)", (list(seen),))
    }
    out = []
    for pid in sorted(seen):
        mine = [v for v in visits if v["provider_id"] == pid]
        scheduled = [v for v in mine if v["scheduled_start"] is not None]
        on_time = sum(
            1 for v in scheduled if abs(v["checked_in_at"] - v["scheduled_start"]) <= ON_TIME
        )
        verified = [v for v in mine if v["status"] in ("verified", "settled")]
        evv = sum(1 for v in verified if lifecycle.evv_complete(v))
        flagged = sum(1 for v in mine if v["flagged"])
        h = next((r for r in handed if r["provider_id"] == pid), {"dispatched": 0, "rejected": 0})
        sat = hotline.revisit_rates([r for r in revisits if r["provider_id"] == pid])
        evv_rate = _rate(evv, len(verified))
        out.append(
            {
                "provider_id": pid,
                "name": names.get(pid),
                "dispatched": int(h["dispatched"]),
                "rejected": int(h["rejected"]),
                "reject_rate": _rate(int(h["rejected"]), int(h["dispatched"])),
                "visits": len(mine),
                "on_time": on_time,
                "on_time_rate": _rate(on_time, len(scheduled)),
                "flagged": flagged,
                "anomaly_rate": _rate(flagged, len(mine)),
                "verified": len(verified),
                "evv_complete": evv,
                "evv_rate": evv_rate,
                "evv_target_met": bool(verified) and evv_rate >= EVV_TARGET,
                "revisits_reached": sat["reached"],
                "satisfaction_rate": sat["satisfaction_rate"],
                "complaints": next((int(c["n"]) for c in complaints if c["provider_id"] == pid), 0),
            }
        )
    return {
        "month": month.strftime("%Y-%m"),
        "district": district,
        "evv_target": EVV_TARGET,
        "providers": out,
        "rows": out,
    }


def visits(
    conn: psycopg.Connection, month: date, district: str, groups: tuple[str, ...], tz: ZoneInfo
) -> Row:
    """探访 coverage (seed rows E6-E7, Shengzhou's target 100 %): residents of the target
    groups on the month's 1st (``tekun_dispersed`` = 特困 in dispersed support; any other
    group is a category) with at least one verified visit-category service that month.
    The dead and those moved out before the month are not counted."""
    bad = sorted(set(groups) - set(VISIT_GROUPS))
    if bad or not groups:
        raise InvalidInput(
            f"groups: unknown {bad[0]!r}; use {', '.join(VISIT_GROUPS)}"
            if bad
            else "groups: name at least one"
        )
    policies.district(conn, district)
    start, end = _month_bounds(month, tz)
    cats = [g for g in groups if g != "tekun_dispersed"]
    rows = db.rows(
        conn,
        "SELECT p.resident_id, array_agg(DISTINCT CASE WHEN c.category = 'tekun'"
        "   THEN 'tekun_dispersed' ELSE c.category END) AS groups,"
        " EXISTS (SELECT 1 FROM work_orders wo JOIN service_items i"
        "   ON i.code = wo.service_item_code AND i.category = 'visit'"
        "   WHERE wo.resident_id = p.resident_id AND wo.status IN ('verified', 'settled')"
        "   AND wo.checked_in_at >= %(s)s AND wo.checked_in_at < %(e)s) AS visited"
        " FROM resident_places p JOIN resident_categories c ON c.resident_id = p.resident_id"
        " WHERE p.district_code IN (SELECT district_subtree(%(d)s))"
        " AND c.valid @> %(day)s::date"
        " AND (c.category = ANY(%(cats)s)"
        "   OR (%(tekun)s AND c.category = 'tekun' AND c.support_mode = 'dispersed'))"
        " AND NOT EXISTS (SELECT 1 FROM resident_status_periods sp"
        "   WHERE sp.resident_id = p.resident_id AND sp.status IN ('deceased', 'moved_out')"
        "   AND lower(sp.during) < %(s)s)"
        " GROUP BY p.resident_id ORDER BY p.resident_id",
        {
            "s": start,
            "e": end,
            "d": district,
            "day": month,
            "cats": cats,
            "tekun": "tekun_dispersed" in groups,
        },
    )
    by_group: dict[str, Row] = {}
    for g in groups:
        targets = sum(1 for r in rows if g in r["groups"])
        done = sum(1 for r in rows if g in r["groups"] and r["visited"])
        by_group[g] = {"targets": targets, "visited": done, "rate": _rate(done, targets)}
    visited = sum(1 for r in rows if r["visited"])
    return {
        "month": month.strftime("%Y-%m"),
        "district": district,
        "groups": list(groups),
        "targets": len(rows),
        "visited": visited,
        "rate": _rate(visited, len(rows)),
        "by_group": by_group,
        "rows": [
            {
                "resident_id": r["resident_id"],
                "groups": " ".join(sorted(r["groups"])),
                "visited": r["visited"],
            }
            for r in rows
        ],
    }


# The CSV columns of each report, so an empty month still exports its header line.
CSV_COLUMNS: dict[str, tuple[str, ...]] = {
    "subsidy-spend": ("district_code", "programme_code", "amount_fen", "central_fen", "local_fen"),
    "coverage": ("resident_id", "served"),
    "tekun": ("resident_id", "support_mode", "level", "agreement"),
    "anomalies": ("rule_code", "severity", "status", "n"),
    "visits": ("resident_id", "groups", "visited"),
    "providers": (
        "provider_id",
        "name",
        "dispatched",
        "rejected",
        "reject_rate",
        "visits",
        "on_time",
        "on_time_rate",
        "flagged",
        "anomaly_rate",
        "verified",
        "evv_complete",
        "evv_rate",
        "evv_target_met",
        "revisits_reached",
        "satisfaction_rate",
        "complaints",
    ),
    "revisits": (
        "provider_id",
        "revisits",
        "reached",
        "reach_rate",
        "confirmed_rate",
        "satisfaction_rate",
        "n1",
        "n2",
        "n3",
        "n4",
    ),
}


# A text cell a spreadsheet would run as a formula (CSV injection: a provider named
# "=HYPERLINK(...)" opened by a supervisor in Excel). Numbers are written as they are.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def to_csv(report: Row, kind: str) -> str:
    """The report's ``rows`` as CSV (UTF-8), under the header of its ``kind``."""
    rows = report.get("rows") or []
    buf = io.StringIO()
    fields = list(CSV_COLUMNS[kind])
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _cell(r.get(k)) for k in fields})
    return buf.getvalue()
