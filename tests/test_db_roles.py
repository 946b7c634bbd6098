"""Least-privilege database roles on the real database (audit H11).

The whole suite runs the platform as the app's role (harness.services.make_settings);
these tests show what that role cannot do, and that the owner's future tables follow.
Every probe runs in a transaction that is rolled back, so on a database where the app
is still a superuser (the state before the fix) the probes fail without wiping anything.
"""

from __future__ import annotations

import secrets

import psycopg
import pytest
from psycopg import errors

from eldercare.config import Settings, load_settings
from eldercare.errors import ConfigError
from eldercare.storage import roles
from eldercare.storage.migrate import migrate

AUDIT = ("alarm_events", "notification_attempts", "reveals", "work_order_events")


def refused(conn: psycopg.Connection, statement: str) -> None:
    with pytest.raises(errors.InsufficientPrivilege), conn.transaction(force_rollback=True):
        conn.execute(statement)


def test_the_app_cannot_alter_or_bypass_the_append_only_audit(settings: Settings) -> None:
    assert roles.user_of(settings.database_url) != roles.user_of(settings.migration_url)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        found = roles.append_only_tables(conn)
        assert set(AUDIT) <= set(found)
        for table in found:
            # A permission error, not the trigger's: the right itself is gone.
            refused(conn, f"UPDATE {table} SET id = id")
            refused(conn, f"DELETE FROM {table}")
            refused(conn, f"TRUNCATE {table}")
        # The ways a superuser or owner gets around the trigger.
        refused(conn, "ALTER TABLE alarm_events DISABLE TRIGGER alarm_events_append_only")
        refused(conn, "SET session_replication_role = replica")
        refused(conn, "DROP TRIGGER alarm_events_append_only ON alarm_events")
        # No DDL, and nothing owned that could be altered.
        refused(conn, "CREATE TABLE sneaky (id int)")
        refused(conn, "ALTER TABLE alarms ADD COLUMN sneaky int")
        refused(conn, "TRUNCATE alarms")
        refused(conn, "UPDATE schema_migrations SET name = name")
        assert roles.privilege_problems(conn) == []
        # What the app does need still works: it reads and appends to the audit.
        assert conn.execute("SELECT count(*) FROM alarm_events").fetchone() is not None


def test_tables_of_later_migrations_follow(settings: Settings) -> None:
    """ALTER DEFAULT PRIVILEGES: a table the owner creates is usable by the app at once;
    an append-only one loses UPDATE/DELETE when the grants are applied after migrating."""
    table = "probe_" + secrets.token_hex(3)
    owner = psycopg.connect(settings.migration_url, autocommit=True)
    app = psycopg.connect(settings.database_url, autocommit=True)
    try:
        owner.execute(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, note text)")
        owner.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}"
            " FOR EACH ROW EXECUTE FUNCTION eldercare_append_only()"
        )
        app.execute(f"INSERT INTO {table} (note) VALUES ('x')")
        assert app.execute(f"SELECT count(*) FROM {table}").fetchone() == (1,)
        roles.grant_app(owner, roles.user_of(settings.database_url))
        app.execute(f"INSERT INTO {table} (note) VALUES ('y')")
        refused(app, f"UPDATE {table} SET note = 'z'")
        refused(app, f"DELETE FROM {table}")
    finally:
        owner.execute(f"DROP TABLE IF EXISTS {table}")
        app.close()
        owner.close()


def test_the_app_role_can_check_but_not_apply_migrations(settings: Settings) -> None:
    # compose's platform has no owner URL: its startup migrate() only checks the version.
    assert migrate(settings.database_url) == []


def test_production_refuses_an_app_that_could_bypass_the_audit(settings: Settings) -> None:
    as_owner = settings.model_copy(
        update={"environment": "production", "database_url": settings.migration_url}
    )
    with pytest.raises(ConfigError, match=r"SUPERUSER|owns"):
        roles.require_least_privilege(as_owner)
    roles.require_least_privilege(settings.model_copy(update={"environment": "production"}))
    strong = {
        "environment": "production",
        "mqtt_password": "m" * 40,
        "secret_key": "s" * 48,
        "database_url": "postgresql://eldercare:" + "d" * 40 + "@db/eldercare",
    }
    with pytest.raises(ConfigError, match="must not connect as the owner"):
        load_settings(**strong, owner_database_url="postgresql://eldercare:" + "o" * 40 + "@db/e")
    with pytest.raises(ConfigError, match="OWNER_DATABASE_URL password"):
        load_settings(**strong, owner_database_url="postgresql://owner:eldercare@db/eldercare")
