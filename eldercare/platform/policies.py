"""Programmes and policy versions: drafted, published (then immutable), withdrawn, and looked
up by programme, district and day, the most specific district winning (design §2.5)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg.types.range import Range

from eldercare.errors import ConflictError, InvalidInput
from eldercare.platform import subsidies
from eldercare.platform.subsidy_schemas import PolicyDraft, PolicyPatch, ProgrammeCreate
from eldercare.storage import db

Row = dict[str, Any]
_PV = (
    "id, programme_code, district_code, lower(effective) AS effective_from,"
    " upper(effective) AS effective_to, status, rules, funding, rounding, as_of, source_doc,"
    " source_quote, created_by, created_at, published_by, published_at, withdrawn_by, withdrawn_at"
)


def create_programme(conn: psycopg.Connection, p: ProgrammeCreate) -> Row:
    return db.one(
        conn,
        "INSERT INTO programmes (code, name_zh, kind, payee, period) VALUES (%s, %s, %s, %s, %s)"
        " RETURNING code, name_zh, kind, payee, period",
        (p.code, p.name_zh, p.kind, p.payee, p.period),
    )


def programmes(conn: psycopg.Connection) -> list[Row]:
    return db.rows(conn, "SELECT code, name_zh, kind, payee, period FROM programmes ORDER BY code")


def programme(conn: psycopg.Connection, code: str) -> Row:
    return db.one(
        conn,
        "SELECT code, name_zh, kind, payee, period FROM programmes WHERE code = %s",
        (code,),
        missing=f"programme {code[:63]} not found",
    )


def _checked(rules: list[dict[str, Any]], funding: dict[str, Any]) -> None:
    subsidies.validate_rules(rules)
    subsidies.validate_funding(funding)


def create_draft(conn: psycopg.Connection, d: PolicyDraft, user: str, now: datetime) -> Row:
    programme(conn, d.programme_code)
    db.one(
        conn,
        "SELECT code FROM districts WHERE code = %s",
        (d.district_code,),
        missing=f"district {d.district_code} not found",
    )
    _checked(d.rules, d.funding)
    return db.one(
        conn,
        "INSERT INTO policy_versions (programme_code, district_code, effective, rules, funding,"
        " rounding, as_of, source_doc, source_quote, created_by, created_at)"
        f" VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) RETURNING {_PV}",
        (
            d.programme_code,
            d.district_code,
            Range(d.effective_from, d.effective_to, "[)"),
            Jsonb(d.rules),
            Jsonb(d.funding),
            d.rounding,
            d.as_of,
            d.source_doc,
            d.source_quote,
            user,
            now,
        ),
    )


def version(conn: psycopg.Connection, version_id: int, *, lock: bool = False) -> Row:
    return db.one(
        conn,
        f"SELECT {_PV} FROM policy_versions WHERE id = %s" + (" FOR UPDATE" if lock else ""),
        (version_id,),
        missing=f"policy version {version_id} not found",
    )


def patch(conn: psycopg.Connection, version_id: int, p: PolicyPatch) -> Row:
    pv = version(conn, version_id, lock=True)
    if pv["status"] != "draft":
        raise ConflictError(
            f"policy version {version_id} is {pv['status']}: published versions are immutable;"
            " withdraw it and publish a new version"
        )
    rules = p.rules if p.rules is not None else pv["rules"]
    funding = p.funding if p.funding is not None else pv["funding"]
    _checked(rules, funding)
    lo = p.effective_from or pv["effective_from"]
    hi = p.effective_to if "effective_to" in p.model_fields_set else pv["effective_to"]
    if hi is not None and hi <= lo:
        raise InvalidInput("effective_to (exclusive) must be after effective_from")
    return db.one(
        conn,
        "UPDATE policy_versions SET effective = %s, rules = %s, funding = %s, source_doc = %s,"
        f" source_quote = %s WHERE id = %s RETURNING {_PV}",
        (
            Range(lo, hi, "[)"),
            Jsonb(rules),
            Jsonb(funding),
            p.source_doc or pv["source_doc"],
            p.source_quote if "source_quote" in p.model_fields_set else pv["source_quote"],
            version_id,
        ),
    )


def publish(conn: psycopg.Connection, version_id: int, user: str, now: datetime) -> Row:
    pv = version(conn, version_id, lock=True)
    if pv["status"] != "draft":
        raise ConflictError(f"policy version {version_id} is already {pv['status']}")
    problems = subsidies.band_violations(pv["rules"], pv["source_quote"])
    if problems:
        raise InvalidInput("; ".join(problems))
    clash = db.rows(
        conn,
        "SELECT id FROM policy_versions WHERE status = 'published' AND programme_code = %s"
        " AND district_code = %s AND effective && (SELECT effective FROM policy_versions"
        " WHERE id = %s)",
        (pv["programme_code"], pv["district_code"], version_id),
    )
    if clash:
        raise ConflictError(
            f"overlaps published policy version(s) {', '.join(str(c['id']) for c in clash)}"
            f" of {pv['programme_code']} in {pv['district_code']}"
        )
    return db.one(
        conn,
        "UPDATE policy_versions SET status = 'published', published_by = %s, published_at = %s"
        f" WHERE id = %s RETURNING {_PV}",
        (user, now, version_id),
    )


def withdraw(conn: psycopg.Connection, version_id: int, user: str, now: datetime) -> Row:
    pv = version(conn, version_id, lock=True)
    if pv["status"] == "withdrawn":
        raise ConflictError(f"policy version {version_id} is already withdrawn")
    # A withdrawn draft was never in force; it is kept for the record all the same.
    return db.one(
        conn,
        "UPDATE policy_versions SET status = 'withdrawn', withdrawn_by = %s, withdrawn_at = %s,"
        f" published_at = coalesce(published_at, %s) WHERE id = %s RETURNING {_PV}",
        (user, now, now, version_id),
    )


def versions(
    conn: psycopg.Connection, programme_code: str | None, district: str | None, on: date | None
) -> list[Row]:
    return db.rows(
        conn,
        f"SELECT {_PV} FROM policy_versions WHERE (%(p)s::text IS NULL OR programme_code = %(p)s)"
        " AND (%(d)s::text IS NULL OR district_code = %(d)s)"
        " AND (%(on)s::date IS NULL OR effective @> %(on)s::date) ORDER BY id",
        {"p": programme_code, "d": district, "on": on},
    )


def in_force(conn: psycopg.Connection, programme_code: str, district: str, day: date) -> Row | None:
    """The published version for the district or its nearest ancestor on ``day``."""
    found = db.rows(
        conn,
        f"SELECT {_PV} FROM policy_versions pv"
        " JOIN district_ancestors(%s) a ON a.code = pv.district_code"
        " WHERE pv.programme_code = %s AND pv.status = 'published' AND pv.effective @> %s::date"
        " ORDER BY a.depth LIMIT 1",
        (district, programme_code, day),
    )
    return found[0] if found else None


def district(conn: psycopg.Connection, code: str) -> Row:
    return db.one(
        conn,
        "SELECT code, name, level, fiscal_region FROM districts WHERE code = %s",
        (code,),
        missing=f"district {code} not found",
    )
