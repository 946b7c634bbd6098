"""The platform layer's schema (migrations 0040-0043) holds its own invariants: the database
refuses what the services must never write, whatever code path tries."""

from __future__ import annotations

import psycopg
import pytest

from eldercare.errors import InvalidInput, NotFoundError
from eldercare.registry import auth
from tests.alarm_support import one_row


@pytest.fixture
def tx(settings):
    """A connection whose work is rolled back, so these checks leave nothing behind."""
    with psycopg.connect(settings.database_url) as conn:
        yield conn
        conn.rollback()


@pytest.fixture
def owner_tx(settings):
    """As ``tx``, but the owner's: the append-only triggers hold even for the owner (the
    app's role may not even try; tests/test_db_roles.py)."""
    with psycopg.connect(settings.migration_url) as conn:
        yield conn
        conn.rollback()


def _district(conn: psycopg.Connection) -> str:
    conn.execute(
        "INSERT INTO districts (code, name, level) VALUES ('000000', '全国', 'country')"
        " ON CONFLICT DO NOTHING"
    )
    conn.execute(
        "INSERT INTO districts (code, name, parent_code, level, fiscal_region)"
        " VALUES ('330683', '嵊州市', '000000', 'county', 'east') ON CONFLICT DO NOTHING"
    )
    return "330683"


def _household_resident(conn: psycopg.Connection) -> int:
    d = _district(conn)
    hh = one_row(
        conn.execute(
            "INSERT INTO households (address, district_code, lat, lon)"
            " VALUES ('x', %s, 29.5, 120.8) RETURNING id",
            (d,),
        )
    )[0]
    return one_row(
        conn.execute(
            "INSERT INTO residents (name, household_id) VALUES ('住户', %s) RETURNING id", (hh,)
        )
    )[0]


def test_a_resident_may_live_in_a_household_but_somewhere(tx: psycopg.Connection) -> None:
    assert _household_resident(tx) > 0
    with pytest.raises(psycopg.errors.CheckViolation):
        tx.execute("INSERT INTO residents (name) VALUES ('无处')")


def test_district_codes_and_tree(tx: psycopg.Connection) -> None:
    _district(tx)
    with pytest.raises(psycopg.errors.CheckViolation):
        tx.execute(
            "INSERT INTO districts (code, name, parent_code, level)"
            " VALUES ('33068', 'x', '000000', 'city')"
        )


def test_categories_do_not_overlap_and_tekun_needs_a_mode(tx: psycopg.Connection) -> None:
    rid = _household_resident(tx)
    sql = (
        "INSERT INTO resident_categories (resident_id, category, support_mode, valid, source,"
        " recorded_by, recorded_at) VALUES (%s, %s, %s, %s, 'staff', 't', now())"
    )
    tx.execute(sql, (rid, "tekun", "dispersed", "[2021-01-01,)"))
    with pytest.raises(psycopg.errors.ExclusionViolation), tx.transaction():
        tx.execute(sql, (rid, "tekun", "centralised", "[2022-01-01,2023-01-01)"))
    with pytest.raises(psycopg.errors.CheckViolation), tx.transaction():
        tx.execute(sql, (rid, "dibao", "dispersed", "[2021-01-01,)"))
    with pytest.raises(psycopg.errors.RaiseException), tx.transaction():
        tx.execute("DELETE FROM resident_categories WHERE resident_id = %s", (rid,))


def test_assessments_are_corrected_by_new_rows(tx: psycopg.Connection) -> None:
    rid = _household_resident(tx)
    aid = one_row(
        tx.execute(
            "INSERT INTO assessments (resident_id, total_score, preliminary_level, final_level,"
            " reason, assessed_at, effective_from, assessor, recorded_by, recorded_at)"
            " VALUES (%s, 50, 'moderate', 'moderate', 'initial', now(), '2026-01-01', 'A', 'as1',"
            " now())"
            " RETURNING id",
            (rid,),
        )
    )[0]
    with pytest.raises(psycopg.errors.RaiseException), tx.transaction():
        tx.execute("UPDATE assessments SET final_level = 'mild' WHERE id = %s", (aid,))
    with pytest.raises(psycopg.errors.CheckViolation), tx.transaction():
        tx.execute(
            "INSERT INTO assessments (resident_id, total_score, preliminary_level, final_level,"
            " reason, assessed_at, effective_from, assessor, recorded_by, recorded_at)"
            " VALUES (%s, 91, 'intact', 'intact', 'initial', now(), '2026-01-01', 'A', 'x', now())",
            (rid,),
        )
    tx.execute(
        "UPDATE assessments SET status = 'revoked', revoked_at = now(), revoked_by = 'ca'"
        " WHERE id = %s",
        (aid,),
    )


def test_work_order_events_are_append_only(owner_tx: psycopg.Connection) -> None:
    tx = owner_tx
    rid = _household_resident(tx)
    tx.execute(
        "INSERT INTO service_items (code, name_zh, category, setting, unit)"
        " VALUES ('visit_t', '探访', 'visit', 'home', 'visit') ON CONFLICT DO NOTHING"
    )
    wo = one_row(
        tx.execute(
            "INSERT INTO work_orders (number, resident_id, district_code, service_item_code,"
            " source, created_by, created_at)"
            " VALUES ('WO-330683-20260106-000001', %s, '330683', 'visit_t', 'app', 'op', now())"
            " RETURNING id",
            (rid,),
        )
    )[0]
    tx.execute(
        "INSERT INTO work_order_events (work_order_id, at, actor, action, to_status)"
        " VALUES (%s, now(), 'op', 'create', 'created')",
        (wo,),
    )
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"), tx.transaction():
        tx.execute("UPDATE work_order_events SET actor = 'x' WHERE work_order_id = %s", (wo,))
    with pytest.raises(psycopg.errors.RaiseException, match="append-only"), tx.transaction():
        tx.execute("DELETE FROM work_order_events WHERE work_order_id = %s", (wo,))
    # A dispatched order names its provider; the database refuses one that does not.
    with pytest.raises(psycopg.errors.CheckViolation), tx.transaction():
        tx.execute("UPDATE work_orders SET status = 'dispatched' WHERE id = %s", (wo,))


def test_provider_users_belong_to_their_provider(tx: psycopg.Connection) -> None:
    p1 = one_row(
        tx.execute("INSERT INTO providers (name, kind) VALUES ('P1', 'company') RETURNING id")
    )[0]
    p2 = one_row(
        tx.execute("INSERT INTO providers (name, kind) VALUES ('P2', 'company') RETURNING id")
    )[0]
    w1, w2 = (
        one_row(
            tx.execute(
                "INSERT INTO workers (provider_id, name) VALUES (%s, 'W') RETURNING id", (p1,)
            )
        )[0]
        for _ in range(2)
    )
    row = auth.create_user(tx, "w1-schema", "password-1", "provider_worker", worker_id=w1)
    assert (row["provider_id"], row["worker_id"]) == (p1, w1)
    with pytest.raises(NotFoundError), tx.transaction():
        auth.create_user(
            tx, "w2-wrong", "password-1", "provider_worker", provider_id=p2, worker_id=w2
        )
    with pytest.raises(InvalidInput, match="--provider"):
        auth.create_user(tx, "pa-none", "password-1", "provider_admin")
    with pytest.raises(InvalidInput, match="--worker"):
        auth.create_user(tx, "pa-w", "password-1", "provider_admin", provider_id=p1, worker_id=w1)
    with pytest.raises(psycopg.errors.CheckViolation), tx.transaction():
        tx.execute(
            "INSERT INTO users (username, password_hash, role)"
            " VALUES ('pa-raw', 'x', 'provider_admin')"
        )
