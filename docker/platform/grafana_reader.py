"""Creates the read-only database role Grafana connects as and grants it what dashboards read.

Grafana lets its editors run any SQL they type, and this database holds health
records, so the role gets SELECT on the monitoring tables only: no residents, no
home addresses, and not the devices' password hashes (column grants).

Run by the compose ``init`` service after ``eldercare db migrate`` (idempotent; it
also resets the password, so rotating ELDERCARE_GRAFANA_DB_PASSWORD takes effect on
the next start). ``tests/test_dashboards.py`` runs every dashboard query as a role
granted by :func:`grant`, so a dashboard that needs a table not granted here fails
its test: extend ``TABLES`` when you add one.
"""

from __future__ import annotations

import os
import sys

import psycopg
from psycopg import sql

TABLES = (
    "facilities",
    "cameras",
    "device_events",
    "device_status",
    "camera_status",
    "state_changes",
    "dead_letters",
    "alarms",
)
# Everything but password_hash.
DEVICE_COLUMNS = (
    "id",
    "kind",
    "resident_id",
    "facility_id",
    "home_bed_id",
    "room",
    "status",
    "created_at",
    "revoked_at",
)


def grant(conn: psycopg.Connection, role: str) -> None:
    """Grant ``role`` (which must exist) read access to the dashboards' tables."""
    r = sql.Identifier(role)
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(r))
    conn.execute(
        sql.SQL("GRANT SELECT ON {} TO {}").format(
            sql.SQL(", ").join(map(sql.Identifier, TABLES)), r
        )
    )
    conn.execute(
        sql.SQL("GRANT SELECT ({}) ON devices TO {}").format(
            sql.SQL(", ").join(map(sql.Identifier, DEVICE_COLUMNS)), r
        )
    )


def ensure_role(conn: psycopg.Connection, role: str, password: str) -> None:
    """Create the login role, or reset its password, then grant."""
    r = sql.Identifier(role)
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    # NOSUPERUSER etc. explicitly: an existing role of this name must not keep more rights.
    conn.execute(
        sql.SQL(
            verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT PASSWORD {}"
        ).format(r, sql.Literal(password))
    )
    grant(conn, role)


def main() -> int:
    url = os.environ["ELDERCARE_DATABASE_URL"]
    role = os.environ.get("ELDERCARE_GRAFANA_DB_USER", "grafana_reader")
    password = os.environ.get("ELDERCARE_GRAFANA_DB_PASSWORD", "")
    if len(password) < 16:
        print(
            "grafana_reader: ELDERCARE_GRAFANA_DB_PASSWORD must have 16+ characters",
            file=sys.stderr,
        )
        return 1
    with psycopg.connect(url) as conn, conn.transaction():
        ensure_role(conn, role, password)
    print(f"grafana_reader: role {role} can read {len(TABLES) + 1} tables")
    return 0


if __name__ == "__main__":
    sys.exit(main())
