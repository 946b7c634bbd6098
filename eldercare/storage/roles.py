"""Least-privilege database roles (audit H11).

Two roles per deployment:

- the **owner** (``ELDERCARE_OWNER_DATABASE_URL``) runs migrations and retention, owns
  every table and creates the app role;
- the **app** (``ELDERCARE_DATABASE_URL``) is what the platform, gateways and engine
  connect as. It owns nothing, cannot run DDL, and has only SELECT/INSERT/UPDATE/DELETE
  on tables, minus UPDATE and DELETE on the append-only audit tables (every table whose
  rows the ``eldercare_append_only()`` trigger guards). Not owning the tables is what
  makes the audit hold: only an owner or superuser can disable the trigger, and only a
  superuser can set ``session_replication_role`` to skip it. TRUNCATE is never granted.

:func:`grant_app` runs after every migration (idempotent) and sets ``ALTER DEFAULT
PRIVILEGES`` so a table a later migration creates is usable by the app at once; a new
append-only table is found by its trigger on the same run. Grafana's reader role
(docker/platform/grafana_reader.py) is separate and not touched here.
"""

from __future__ import annotations

import logging
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql

from eldercare.config import Settings
from eldercare.errors import ConfigError, StorageError

log = logging.getLogger(__name__)

# What the app may do to a table: no TRUNCATE, REFERENCES or TRIGGER.
APP_TABLE_PRIVILEGES = ("SELECT", "INSERT", "UPDATE", "DELETE")
# The migrations' bookkeeping: the app may read it (to see that the schema is current).
READ_ONLY_TABLES = ("schema_migrations",)

APPEND_ONLY_SQL = """
SELECT DISTINCT c.relname
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_proc p ON p.oid = t.tgfoid
WHERE n.nspname = 'public' AND p.proname = 'eldercare_append_only' AND NOT t.tgisinternal
ORDER BY c.relname
"""


def user_of(conninfo: str) -> str:
    """The role a ``postgresql://user:password@host/db`` URL logs in as ('' if none)."""
    return unquote(urlsplit(conninfo).username or "")


def password_of(conninfo: str) -> str:
    return unquote(urlsplit(conninfo).password or "")


def append_only_tables(conn: psycopg.Connection) -> list[str]:
    return [r[0] for r in conn.execute(APPEND_ONLY_SQL).fetchall()]


def ensure_app_role(conn: psycopg.Connection, role: str, password: str) -> None:
    """Create the app's login role, or reset it to exactly these attributes (an existing
    role of this name must not keep more rights). Needs CREATEROLE (or superuser)."""
    if not role or not password:
        raise ValueError("the app's database URL needs a user name and a password")
    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone()
    verb = "ALTER" if exists else "CREATE"
    conn.execute(
        sql.SQL(
            verb + " ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT"
            " NOREPLICATION NOBYPASSRLS PASSWORD {}"
        ).format(sql.Identifier(role), sql.Literal(password))
    )


def grant_app(conn: psycopg.Connection, role: str) -> list[str]:
    """Give ``role`` the app's rights on this database and no more; returns the
    append-only tables it may only read and insert into."""
    r = sql.Identifier(role)
    owner = sql.Identifier(conn.execute("SELECT current_user").fetchone()[0])  # type: ignore[index]
    db = sql.Identifier(conn.execute("SELECT current_database()").fetchone()[0])  # type: ignore[index]
    privileges = sql.SQL(", ").join(sql.SQL(p) for p in APP_TABLE_PRIVILEGES)
    statements: list[sql.Composed | sql.SQL] = [
        # Start from nothing, so a right granted by hand or by an older version goes.
        sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(r),
        sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {}").format(r),
        sql.SQL("REVOKE CREATE ON SCHEMA public FROM PUBLIC"),
        sql.SQL("REVOKE CREATE ON SCHEMA public FROM {}").format(r),
        sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(db, r),
        sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(r),
        sql.SQL("GRANT {} ON ALL TABLES IN SCHEMA public TO {}").format(privileges, r),
        sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {}").format(r),
        # Tables and sequences later migrations create (as this owner) follow.
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public GRANT {} ON TABLES TO {}"
        ).format(owner, privileges, r),
        sql.SQL(
            "ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA public"
            " GRANT USAGE, SELECT ON SEQUENCES TO {}"
        ).format(owner, r),
    ]
    for stmt in statements:
        conn.execute(stmt)
    for table in READ_ONLY_TABLES:
        conn.execute(
            sql.SQL("REVOKE INSERT, UPDATE, DELETE ON {} FROM {}").format(sql.Identifier(table), r)
        )
    audit = append_only_tables(conn)
    for table in audit:
        conn.execute(
            sql.SQL("REVOKE UPDATE, DELETE, TRUNCATE ON {} FROM {}").format(
                sql.Identifier(table), r
            )
        )
    return audit


def privilege_problems(conn: psycopg.Connection) -> list[str]:
    """What is wrong with the connected role as the app's role (empty: least privilege)."""
    problems = []
    row = conn.execute(
        "SELECT rolsuper, rolcreaterole, rolcreatedb, rolbypassrls FROM pg_roles"
        " WHERE rolname = current_user"
    ).fetchone()
    if row is not None:
        for flag, name in zip(
            row, ("SUPERUSER", "CREATEROLE", "CREATEDB", "BYPASSRLS"), strict=True
        ):
            if flag:
                problems.append(f"the app's database role has {name}")
    owned = conn.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND pg_get_userbyid(c.relowner) = current_user"
    ).fetchone()
    if owned and owned[0]:
        problems.append(f"the app's database role owns {owned[0]} relations")
    for table in append_only_tables(conn):
        if conn.execute(
            "SELECT has_table_privilege(%s, 'UPDATE') OR has_table_privilege(%s, 'DELETE')",
            (table, table),
        ).fetchone()[0]:  # type: ignore[index]
            problems.append(f"the app's database role may UPDATE or DELETE {table}")
    return problems


def require_least_privilege(settings: Settings) -> None:
    """Refuse to run the platform in production as a role that could bypass the audit;
    elsewhere say so in the log (a developer's single superuser still works)."""
    try:
        with psycopg.connect(settings.database_url, connect_timeout=10) as conn:
            problems = privilege_problems(conn)
    except psycopg.Error as exc:
        raise StorageError(f"cannot check the app's database role: {exc}") from exc
    if not problems:
        return
    text = "; ".join(problems) + " (see README, Security: database roles)"
    if settings.environment == "production":
        raise ConfigError(text)
    log.warning("database role is not least-privilege: %s", text)
