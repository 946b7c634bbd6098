"""Districts, households, eligibility categories, status periods and ability assessments.

Each function runs inside the caller's transaction (one per request) and writes nothing
personal to logs.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
from psycopg.types.json import Jsonb
from psycopg.types.range import Range

from eldercare.errors import ConflictError
from eldercare.platform import ability
from eldercare.platform.schemas import (
    AssessmentCreate,
    CategoryCreate,
    DeathRecords,
    DistrictCreate,
    HouseholdCreate,
    ScoreRequest,
    StatusPeriodCreate,
)
from eldercare.storage import db

Row = dict[str, Any]


def create_district(conn: psycopg.Connection, d: DistrictCreate) -> Row:
    if d.parent_code is not None:
        db.one(
            conn,
            "SELECT 1 FROM districts WHERE code = %s",
            (d.parent_code,),
            missing=f"parent district {d.parent_code} not found",
        )
    return db.one(
        conn,
        "INSERT INTO districts (code, name, parent_code, level, fiscal_region)"
        " VALUES (%(code)s, %(name)s, %(parent_code)s, %(level)s, %(fiscal_region)s)"
        " RETURNING code, name, parent_code, level, fiscal_region",
        d.model_dump(),
    )


def list_districts(conn: psycopg.Connection, under: str | None) -> list[Row]:
    if under is None:
        return db.rows(
            conn,
            "SELECT code, name, parent_code, level, fiscal_region FROM districts ORDER BY code",
        )
    return db.rows(
        conn,
        "SELECT code, name, parent_code, level, fiscal_region FROM districts"
        " WHERE code IN (SELECT district_subtree(%s)) ORDER BY code",
        (under,),
    )


def create_household(conn: psycopg.Connection, h: HouseholdCreate) -> Row:
    return db.one(
        conn,
        "INSERT INTO households (address, district_code, area, lat, lon)"
        " VALUES (%(address)s, %(district_code)s, %(area)s, %(lat)s, %(lon)s)"
        " RETURNING id, district_code, area, lat, lon, created_at",
        h.model_dump(),
    )


def list_households(conn: psycopg.Connection, district: str | None) -> list[Row]:
    # No address: it is personal data and only leaves through the audited resident reveal.
    return db.rows(
        conn,
        "SELECT id, district_code, area, lat, lon, created_at FROM households"
        " WHERE %(d)s::text IS NULL OR district_code IN (SELECT district_subtree(%(d)s))"
        " ORDER BY id LIMIT 5000",
        {"d": district},
    )


def resident_exists(conn: psycopg.Connection, resident_id: int) -> None:
    db.one(
        conn,
        "SELECT 1 FROM residents WHERE id = %s",
        (resident_id,),
        missing=f"resident {resident_id} not found",
    )


# ---------------------------------------------------------------- categories and status


def _daterange(lo: date, hi: date | None) -> Range[date]:
    return Range(lo, hi, "[)")


def _category_row(r: Row) -> Row:
    valid: Range[date] = r.pop("valid")
    return {**r, "valid_from": valid.lower, "valid_to": valid.upper}


def add_category(
    conn: psycopg.Connection, resident_id: int, c: CategoryCreate, user: str, now: datetime
) -> Row:
    resident_exists(conn, resident_id)
    overlapping = db.rows(
        conn,
        "SELECT id FROM resident_categories WHERE resident_id = %s AND category = %s"
        " AND valid && %s",
        (resident_id, c.category, _daterange(c.valid_from, c.valid_to)),
    )
    if overlapping:
        raise ConflictError(
            f"resident {resident_id} already has category {c.category} in that period"
            f" (category record {overlapping[0]['id']})"
        )
    row = db.one(
        conn,
        "INSERT INTO resident_categories (resident_id, category, support_mode, valid, source,"
        " source_ref, recorded_by, recorded_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
        " RETURNING id, resident_id, category, support_mode, valid, source, source_ref,"
        " recorded_by, recorded_at",
        (
            resident_id,
            c.category,
            c.support_mode,
            _daterange(c.valid_from, c.valid_to),
            c.source,
            c.source_ref,
            user,
            now,
        ),
    )
    return _category_row(row)


def categories(conn: psycopg.Connection, resident_id: int) -> list[Row]:
    resident_exists(conn, resident_id)
    found = db.rows(
        conn,
        "SELECT id, resident_id, category, support_mode, valid, source, source_ref,"
        " recorded_by, recorded_at FROM resident_categories WHERE resident_id = %s"
        " ORDER BY lower(valid), id",
        (resident_id,),
    )
    return [_category_row(r) for r in found]


def _period_row(r: Row) -> Row:
    during: Range[datetime] = r.pop("during")
    return {**r, "from": during.lower, "to": during.upper}


def deceased_at(conn: psycopg.Connection, resident_id: int) -> datetime | None:
    found = db.rows(
        conn,
        "SELECT lower(during) AS at FROM resident_status_periods"
        " WHERE resident_id = %s AND status = 'deceased'",
        (resident_id,),
    )
    return found[0]["at"] if found else None


def add_status_period(
    conn: psycopg.Connection, resident_id: int, p: StatusPeriodCreate, user: str, now: datetime
) -> Row:
    resident_exists(conn, resident_id)
    # Serialise a resident's life events, so two "deceased" reports cannot both pass the check.
    conn.execute("SELECT 1 FROM residents WHERE id = %s FOR UPDATE", (resident_id,))
    died = deceased_at(conn, resident_id)
    if died is not None:
        if p.status == "deceased":
            raise ConflictError(f"resident {resident_id} is already recorded as deceased")
        if p.from_ >= died:
            raise ConflictError(f"resident {resident_id} is deceased since before that period")
    row = db.one(
        conn,
        "INSERT INTO resident_status_periods (resident_id, status, during, source, source_ref,"
        " recorded_by, recorded_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " RETURNING id, resident_id, status, during, source, source_ref, recorded_by, recorded_at",
        (
            resident_id,
            p.status,
            Range(p.from_, p.to, "[)"),
            p.source,
            p.source_ref,
            user,
            now,
        ),
    )
    return _period_row(row)


def status_periods(conn: psycopg.Connection, resident_id: int) -> list[Row]:
    resident_exists(conn, resident_id)
    found = db.rows(
        conn,
        "SELECT id, resident_id, status, during, source, source_ref, recorded_by, recorded_at"
        " FROM resident_status_periods WHERE resident_id = %s ORDER BY lower(during), id",
        (resident_id,),
    )
    return [_period_row(r) for r in found]


def death_records(conn: psycopg.Connection, batch: DeathRecords, user: str, now: datetime) -> Row:
    """The funeral registry's batch: new deaths recorded, repeats of a known death skipped (a
    feed re-sends), a death that contradicts the one on file refused with the whole batch."""
    recorded, already = [], []
    for rec in batch.records:
        died = deceased_at(conn, rec.resident_id)
        if died is not None:
            if died != rec.died_at:
                raise ConflictError(
                    f"resident {rec.resident_id} is recorded as deceased at another time"
                )
            already.append(rec.resident_id)
            continue
        add_status_period(
            conn,
            rec.resident_id,
            StatusPeriodCreate.model_validate(
                {
                    "status": "deceased",
                    "from": rec.died_at,
                    "source": "funeral_registry",
                    "source_ref": rec.source_ref,
                }
            ),
            user,
            now,
        )
        recorded.append(rec.resident_id)
    return {"recorded": recorded, "already_recorded": already}


# ---------------------------------------------------------------- assessments


def score(req: ScoreRequest) -> ability.Score:
    adj = req.adjustments
    return ability.score(
        req.total_score,
        ability.Adjustments(adj.coma, adj.dementia, adj.mental_disorder, adj.risk_events_30d),
        req.item_scores,
    )


def score_public(s: ability.Score) -> Row:
    return {
        "total_score": s.total_score,
        "preliminary_level": s.preliminary_level,
        "final_level": s.final_level,
        "adjustments_applied": list(s.applied),
    }


_ASSESSMENT_COLS = (
    "id, resident_id, standard, item_scores, total_score, preliminary_level, adjustments,"
    " final_level, reason, assessed_at, effective_from, valid_until, assessor, agency, status,"
    " recorded_by, recorded_at, revoked_by, revoked_at"
)


def _history(conn: psycopg.Connection, resident_id: int) -> list[ability.Assessment]:
    return [
        ability.Assessment(
            r["id"], r["final_level"], r["effective_from"], r["valid_until"], r["status"]
        )
        for r in db.rows(
            conn,
            "SELECT id, final_level, effective_from, valid_until, status FROM assessments"
            " WHERE resident_id = %s",
            (resident_id,),
        )
    ]


def level_on(conn: psycopg.Connection, resident_id: int, day: date) -> Row:
    resident_exists(conn, resident_id)
    found = ability.current(_history(conn, resident_id), day)
    return {
        "resident_id": resident_id,
        "on": day,
        "level": found.final_level if found else None,
        "assessment_id": found.id if found else None,
        "valid_until": found.valid_until if found else None,
    }


def _refresh_cache(conn: psycopg.Connection, resident_id: int, today: date) -> None:
    """``residents.ability_level`` is the console's display cache of today's level."""
    level = ability.level_on(_history(conn, resident_id), today)
    conn.execute("UPDATE residents SET ability_level = %s WHERE id = %s", (level, resident_id))


def add_assessment(
    conn: psycopg.Connection,
    resident_id: int,
    a: AssessmentCreate,
    user: str,
    now: datetime,
    tz: ZoneInfo,
) -> Row:
    resident_exists(conn, resident_id)
    s = score(a)
    row = db.one(
        conn,
        f"INSERT INTO assessments (resident_id, item_scores, total_score, preliminary_level,"
        f" adjustments, final_level, reason, assessed_at, effective_from, valid_until, assessor,"
        f" agency, recorded_by, recorded_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
        f" %s, %s, %s, %s) RETURNING {_ASSESSMENT_COLS}",
        (
            resident_id,
            Jsonb(a.item_scores) if a.item_scores is not None else None,
            s.total_score,
            s.preliminary_level,
            Jsonb(a.adjustments.model_dump()),
            s.final_level,
            a.reason,
            a.assessed_at,
            a.effective_from,
            a.valid_until,
            a.assessor,
            a.agency,
            user,
            now,
        ),
    )
    _refresh_cache(conn, resident_id, now.astimezone(tz).date())
    return {**row, "adjustments_applied": list(s.applied)}


def assessments(conn: psycopg.Connection, resident_id: int) -> list[Row]:
    resident_exists(conn, resident_id)
    return db.rows(
        conn,
        f"SELECT {_ASSESSMENT_COLS} FROM assessments WHERE resident_id = %s"
        " ORDER BY effective_from, id",
        (resident_id,),
    )


def revoke_assessment(
    conn: psycopg.Connection, assessment_id: int, user: str, now: datetime, tz: ZoneInfo
) -> Row:
    row = db.one(
        conn,
        "SELECT resident_id, status FROM assessments WHERE id = %s FOR UPDATE",
        (assessment_id,),
        missing=f"assessment {assessment_id} not found",
    )
    if row["status"] == "revoked":
        raise ConflictError(f"assessment {assessment_id} is already revoked")
    done = db.one(
        conn,
        f"UPDATE assessments SET status = 'revoked', revoked_by = %s, revoked_at = %s"
        f" WHERE id = %s RETURNING {_ASSESSMENT_COLS}",
        (user, now, assessment_id),
    )
    _refresh_cache(conn, row["resident_id"], now.astimezone(tz).date())
    return done


def risk_event_counts(
    conn: psycopg.Connection, now: datetime, district: str | None, resident_id: int | None = None
) -> list[Row]:
    """Per resident, the fall/SOS alarms of the last 30 days closed as real incidents
    (design §2.8: >= 2 means due for reassessment)."""
    return db.rows(
        conn,
        "SELECT a.resident_id, count(*) AS risk_events_30d, array_agg(a.id::text ORDER BY"
        " a.event_time) AS alarm_ids FROM alarms a"
        " JOIN resident_places p ON p.resident_id = a.resident_id"
        " WHERE a.kind = ANY(%(kinds)s) AND a.disposition = ANY(%(disp)s)"
        " AND a.event_time > %(since)s AND a.event_time <= %(now)s"
        " AND (%(d)s::text IS NULL OR p.district_code IN (SELECT district_subtree(%(d)s)))"
        " AND (%(r)s::bigint IS NULL OR a.resident_id = %(r)s)"
        " GROUP BY a.resident_id",
        {
            "kinds": sorted(ability.RISK_KINDS),
            "disp": sorted(ability.RISK_DISPOSITIONS),
            "since": now - timedelta(days=30),
            "now": now,
            "d": district,
            "r": resident_id,
        },
    )


def assessments_report(
    conn: psycopg.Connection, now: datetime, tz: ZoneInfo, district: str | None, due_only: bool
) -> Row:
    """Counts per level on today's date, lapsing soon, lapsed, and who is due (§2.13)."""
    today = now.astimezone(tz).date()
    people = db.rows(
        conn,
        "SELECT p.resident_id FROM resident_places p"
        " WHERE %(d)s::text IS NULL OR p.district_code IN (SELECT district_subtree(%(d)s))"
        " ORDER BY p.resident_id",
        {"d": district},
    )
    ids = [p["resident_id"] for p in people]
    history: dict[int, list[ability.Assessment]] = {i: [] for i in ids}
    for r in db.rows(
        conn,
        "SELECT id, resident_id, final_level, effective_from, valid_until, status"
        " FROM assessments WHERE resident_id = ANY(%s)",
        (ids,),
    ):
        history[r["resident_id"]].append(
            ability.Assessment(
                r["id"], r["final_level"], r["effective_from"], r["valid_until"], r["status"]
            )
        )
    per_level = dict.fromkeys(ability.LEVELS, 0)
    expiring, expired, unassessed = 0, 0, 0
    for rid in ids:
        cur = ability.current(history[rid], today)
        if cur is None:
            if any(a.status == "final" for a in history[rid]):
                expired += 1
            else:
                unassessed += 1
            continue
        per_level[cur.final_level] += 1
        if cur.valid_until is not None and cur.valid_until <= today + timedelta(days=30):
            expiring += 1
    due = [
        {
            "resident_id": r["resident_id"],
            "reason": "risk_events_30d>=2",
            "risk_events_30d": r["risk_events_30d"],
            "alarm_ids": r["alarm_ids"],
        }
        for r in risk_event_counts(conn, now, district)
        if ability.reassessment_due(r["risk_events_30d"])
    ]
    if due_only:
        return {"on": today, "district": district, "due": due}
    return {
        "on": today,
        "district": district,
        "levels": per_level,
        "expiring_30d": expiring,
        "expired": expired,
        "unassessed": unassessed,
        "due": due,
    }
