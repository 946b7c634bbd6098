"""Facility grading (等级评定) and yearly grade awards from a ``band_table`` policy (§3.11)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg.types.range import Range

from eldercare.platform import policies, subsidies
from eldercare.platform.subsidy_schemas import AwardRun, RatingCreate
from eldercare.storage import db

Row = dict[str, Any]


def add_rating(
    conn: psycopg.Connection, facility_id: int, r: RatingCreate, user: str, now: datetime
) -> Row:
    db.one(
        conn,
        "SELECT id FROM facilities WHERE id = %s",
        (facility_id,),
        missing=f"facility {facility_id} not found",
    )
    return db.one(
        conn,
        "INSERT INTO facility_ratings (facility_id, scheme, level, score, rated_on, valid,"
        " rated_by, doc_ref, recorded_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        " RETURNING id, facility_id, scheme, level, score::float8 AS score, rated_on,"
        " lower(valid) AS valid_from, upper(valid) AS valid_to, rated_by, doc_ref",
        (
            facility_id,
            r.scheme,
            r.level,
            r.score,
            r.rated_on,
            Range(r.valid_from, r.valid_to, "[)"),
            user,
            r.doc_ref,
            now,
        ),
    )


def run(conn: psycopg.Connection, req: AwardRun, now: datetime) -> Row:
    """Award every rated facility of the district for the year from the version in force on
    1 January; the rating used is the latest one valid during the year. Idempotent: a
    facility already awarded for the programme and year keeps its award."""
    prog = policies.programme(conn, req.programme_code)
    policies.district(conn, req.district_code)
    jan1 = date(req.year, 1, 1)
    facilities = db.rows(
        conn,
        "SELECT f.id, f.kind, f.district_code, ("
        "   SELECT row_to_json(x) FROM (SELECT id, level FROM facility_ratings fr"
        "     WHERE fr.facility_id = f.id AND fr.valid && daterange(%s, %s)"
        "     ORDER BY rated_on DESC, id DESC LIMIT 1) x) AS rating"
        " FROM facilities f WHERE f.district_code IN (SELECT district_subtree(%s)) ORDER BY f.id",
        (jan1, date(req.year + 1, 1, 1), req.district_code),
    )
    awarded: list[Row] = []
    skipped: list[Row] = []
    for f in facilities:
        pv = policies.in_force(conn, prog["code"], f["district_code"], jan1)
        if pv is None:
            skipped.append({"facility_id": f["id"], "reason": "no_policy"})
            continue
        rating = f["rating"]
        facts = subsidies.Facts(
            facility_kind=f["kind"], rating_level=rating["level"] if rating else None
        )
        out = subsidies.evaluate(pv["rules"], facts)
        if out.amount_fen == 0:
            skipped.append({"facility_id": f["id"], "reason": out.reason})
            continue
        conn.execute(
            "INSERT INTO facility_awards (facility_id, programme_code, year, amount_fen,"
            " policy_version_id, rating_id, basis, created_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (facility_id, programme_code, year) DO NOTHING",
            (
                f["id"],
                prog["code"],
                req.year,
                out.amount_fen,
                pv["id"],
                rating["id"],
                Jsonb({**out.basis, "kind": f["kind"], "level": rating["level"]}),
                now,
            ),
        )
        awarded.append({"facility_id": f["id"], "amount_fen": out.amount_fen})
    return {
        "programme_code": prog["code"],
        "year": req.year,
        "district_code": req.district_code,
        "awards": list_awards(conn, req.year, req.district_code),
        "skipped": skipped,
    }


def list_awards(conn: psycopg.Connection, year: int | None, district: str | None) -> list[Row]:
    return db.rows(
        conn,
        "SELECT a.id, a.facility_id, f.code AS facility_code, f.name AS facility_name, f.kind,"
        " a.programme_code, a.year, a.amount_fen, a.policy_version_id, a.rating_id, a.basis,"
        " a.status FROM facility_awards a JOIN facilities f ON f.id = a.facility_id"
        " WHERE (%(y)s::int IS NULL OR a.year = %(y)s)"
        " AND (%(d)s::text IS NULL OR f.district_code IN (SELECT district_subtree(%(d)s)))"
        " ORDER BY a.year, a.facility_id",
        {"y": year, "d": district},
    )
