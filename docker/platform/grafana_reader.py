"""Creates the read-only database role Grafana connects as and grants it what dashboards read.

Grafana lets its editors run any SQL they type, and this database holds health
records, so the role gets SELECT on the monitoring tables only: no residents, users,
responders or credentials, and on the tables that mix clocks with private or
operational detail only the columns the dashboards read (column grants): not the
devices' password hashes, not an alarm's device payload or who acknowledged it, not
the audit trail's actor and detail, not a policy's escalation steps.

Run by the compose ``init`` service after ``eldercare db migrate`` (idempotent; it
also resets the password, so rotating ELDERCARE_GRAFANA_DB_PASSWORD takes effect on
the next start). :func:`grant` first revokes whatever the role could read, so the
grants are exactly what is listed here, also after a table moved from ``TABLES`` to
a column grant. ``tests/test_dashboards.py`` runs every dashboard query as a role
granted by :func:`grant`, so a dashboard that needs a table or column not granted
here fails its test: extend ``TABLES`` or ``COLUMNS`` when you add one.
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
    # Issue 8 reports: aggregates per month, district, programme and provider (views, which
    # read their tables with the owner's rights), and the names they are labelled with.
    "districts",
    "report_subsidy_spend",
    "report_anomalies",
    "report_settlement",
    "report_revisits",
    "report_service_coverage",
    "report_provider_visits",
    # Issue 9B: the shadow fall model's scores (device ids, scores; no personal data).
    "fall_shadow_scores",
)
# Tables readable only in part: table -> the columns granted.
COLUMNS: dict[str, tuple[str, ...]] = {
    # Alarm triage scores (issue 9B): not the reasons, which quote a resident's history.
    "alarm_triage": ("alarm_id", "p_false", "model", "version", "scored_at"),
    "device_health": (
        "device_id",
        "computed_at",
        "battery",
        "hours_to_low",
        "hours_to_empty",
        "offline_risk_24h",
        "model",
        "version",
    ),
    "providers": ("id", "name", "kind", "district_code", "status"),
    # Everything but password_hash.
    "devices": (
        "id",
        "kind",
        "resident_id",
        "facility_id",
        "home_bed_id",
        "room",
        "status",
        "created_at",
        "revoked_at",
    ),
    # Ids, kind and clocks: not details (the device's payload), resident_id, home_bed_id
    # or acknowledged_by.
    "alarms": (
        "id",
        "kind",
        "priority",
        "status",
        "facility_id",
        "area",
        "received_at",
        "acknowledged_at",
        "dispatched_at",
        "accepted_at",
        "on_site_at",
        "resolved_at",
        "closed_at",
        "supervisor_notified_at",
        # How operators closed it (a code, no notes): the fall model panels' truth.
        "disposition",
    ),
    # Which step happened when: not the actor (a username) or detail (responders asked).
    "alarm_events": ("alarm_id", "at", "action"),
    # The response targets, as clocks.py reads them.
    "response_policies": (
        "id",
        "facility_id",
        "area",
        "ack_target_s",
        "ack_target2_s",
        "on_site_target_s",
    ),
}
DEVICE_COLUMNS = COLUMNS["devices"]


def grant(conn: psycopg.Connection, role: str) -> None:
    """Grant ``role`` (which must exist) read access to the dashboards' tables, and no more."""
    r = sql.Identifier(role)
    # Revoking a table privilege revokes its column privileges too.
    conn.execute(sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {}").format(r))
    conn.execute(sql.SQL("GRANT USAGE ON SCHEMA public TO {}").format(r))
    conn.execute(
        sql.SQL("GRANT SELECT ON {} TO {}").format(
            sql.SQL(", ").join(map(sql.Identifier, TABLES)), r
        )
    )
    for table, columns in COLUMNS.items():
        conn.execute(
            sql.SQL("GRANT SELECT ({}) ON {} TO {}").format(
                sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Identifier(table), r
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
    # Creating roles is the owner's job; the app's own role may not (audit H11).
    url = os.environ.get("ELDERCARE_OWNER_DATABASE_URL") or os.environ["ELDERCARE_DATABASE_URL"]
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
    print(f"grafana_reader: role {role} can read {len(TABLES) + len(COLUMNS)} tables")
    return 0


if __name__ == "__main__":
    sys.exit(main())
