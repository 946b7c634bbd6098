"""The alarm vocabularies live once, as enums in eldercare.alerts.rules; the SQL that must
repeat them (CHECK constraints, partial-index predicates) is compared with the enums here,
read back from the migrated test database so a later migration cannot drift silently."""

from __future__ import annotations

import re

import psycopg

from eldercare.alerts import rules


def _quoted(sql: str) -> set[str]:
    return set(re.findall(r"'([a-z_]+)'", sql))


def _constraint(db: psycopg.Connection, name: str) -> str:
    row = db.execute(
        "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = %s", (name,)
    ).fetchone()
    assert row is not None, name
    return str(row[0])


def _check_on(db: psycopg.Connection, table: str, column: str) -> str:
    rows = db.execute(
        "SELECT pg_get_constraintdef(c.oid) FROM pg_constraint c"
        " JOIN pg_class t ON t.oid = c.conrelid WHERE t.relname = %s AND c.contype = 'c'",
        (table,),
    ).fetchall()
    found = [r[0] for r in rows if re.search(rf"\b{column}\b", r[0])]
    assert len(found) == 1, (table, column, found)
    return str(found[0])


def _index(db: psycopg.Connection, name: str) -> str:
    row = db.execute("SELECT indexdef FROM pg_indexes WHERE indexname = %s", (name,)).fetchone()
    assert row is not None, name
    return str(row[0])


def test_check_constraints_match_the_enums(db: psycopg.Connection) -> None:
    assert _quoted(_constraint(db, "alarms_status_ok")) == set(rules.AlarmStatus)
    assert _quoted(_constraint(db, "alarms_disposition_ok")) == set(rules.Disposition)
    assert _quoted(_check_on(db, "dispatch_offers", "status")) == set(rules.OfferStatus)


def test_partial_index_predicates_match_the_enums(db: psycopg.Connection) -> None:
    where = _index(db, "alarms_uncleared_health").split(" WHERE ", 1)[1]
    assert _quoted(where) == set(rules.HEALTH_KINDS)
    where = _index(db, "alarms_resident_open").split(" WHERE ", 1)[1]
    assert _quoted(where) == set(rules.TERMINAL)


def test_every_status_is_open_or_terminal_and_moves_name_real_statuses() -> None:
    assert set(rules.ACTIVE) | set(rules.TERMINAL) == set(rules.AlarmStatus)
    assert not set(rules.ACTIVE) & set(rules.TERMINAL)
    assert set(rules.ALARM_KINDS) | set(rules.HEALTH_KINDS) == set(rules.AlarmKind)
    assert set(rules.PRIORITY) == set(rules.AlarmKind)
    for move in rules.MOVES.values():
        assert move.allowed <= set(rules.AlarmStatus)
        assert not move.allowed & {rules.AlarmStatus.CLOSED, rules.AlarmStatus.MERGED} or (
            move.event == "note"
        )


def test_allowed_actions_agree_with_check_move() -> None:
    for kind in rules.AlarmKind:
        for status in rules.AlarmStatus:
            allowed = rules.allowed_actions(status, kind)
            for action in rules.MOVES:
                try:
                    rules.check_move(action, status, kind)
                    ok = True
                except Exception:
                    ok = False
                assert ok == (action in allowed), (kind, status, action)
    assert rules.allowed_actions("raised", "sos") == ["acknowledge", "note"]
    assert rules.allowed_actions("raised", "low_battery") == ["acknowledge", "close", "note"]
    assert rules.check_move("emergency", "acknowledged", "fall") == "dispatched"
    assert rules.check_move("emergency", "accepted", "fall") == "accepted"


def test_sql_list_renders_vocabularies_and_refuses_anything_else() -> None:
    import pytest

    from eldercare.storage import db

    assert db.sql_list(rules.TERMINAL) == "('closed', 'merged')"
    with pytest.raises(ValueError):
        db.sql_list(["closed", "x'); DROP TABLE alarms; --"])
