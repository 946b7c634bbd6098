"""Versioned schema migrations: ``NNNN_name.sql`` files applied once each, in order."""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg

from eldercare.errors import MigrationError
from eldercare.storage import roles

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    found = []
    for entry in resources.files("eldercare.storage").joinpath("migrations").iterdir():
        m = _NAME.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text("utf-8")))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration versions: {versions}")
    return found


def migrate(conninfo: str, app_conninfo: str | None = None) -> list[Migration]:
    """Apply pending migrations, each in its own transaction; return those applied.

    ``conninfo`` is the owner's. With ``app_conninfo`` (another user), that user's role
    is created or reset and given the app's rights afterwards (storage/roles.py), also
    when nothing was pending. Run as the app role itself this only checks that nothing
    is pending: the app cannot run DDL, so a pending migration fails here.
    A session advisory lock keeps two starting processes from racing.
    """
    applied: list[Migration] = []
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("SELECT pg_advisory_lock(4242001)")
            try:
                if conn.execute("SELECT to_regclass('schema_migrations')").fetchone() == (None,):
                    conn.execute(
                        "CREATE TABLE schema_migrations ("
                        " version integer PRIMARY KEY, name text NOT NULL,"
                        " applied_at timestamptz NOT NULL DEFAULT now())"
                    )
                done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
                known = available()
                newer = done - {m.version for m in known}
                if newer:
                    raise MigrationError(
                        f"database has migrations this code does not know: {sorted(newer)}"
                    )
                for mig in known:
                    if mig.version in done:
                        continue
                    with conn.transaction():
                        conn.execute(mig.sql.encode())
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                            (mig.version, mig.name),
                        )
                    applied.append(mig)
                app_role = roles.user_of(app_conninfo or conninfo)
                if app_conninfo and app_role != roles.user_of(conninfo):
                    with conn.transaction():
                        roles.ensure_app_role(conn, app_role, roles.password_of(app_conninfo))
                        roles.grant_app(conn, app_role)
            finally:
                conn.execute("SELECT pg_advisory_unlock(4242001)")
    except psycopg.errors.InsufficientPrivilege as exc:
        raise MigrationError(
            f"migration refused ({exc}): run `eldercare db migrate` with"
            " ELDERCARE_OWNER_DATABASE_URL, the owner's connection"
        ) from exc
    except (psycopg.Error, ValueError) as exc:
        raise MigrationError(f"migration failed: {exc}") from exc
    return applied


def timescale_license(conn: psycopg.Connection) -> str:
    """``apache`` (hypertables only) or ``timescale`` (policies, compression, caggs)."""
    row = conn.execute("SELECT current_setting('timescaledb.license', true)").fetchone()
    return (row[0] if row and row[0] else "apache").lower()
