"""Retention: drop old chunks (a policy where the licence has one) and prune dedup ids."""

from __future__ import annotations

from typing import Any

import psycopg

from eldercare.errors import StorageError
from eldercare.storage.migrate import timescale_license

# fall_shadow_scores: one row per scored imu window (issue 9B), as bulky as the imu itself.
HYPERTABLES = ("device_events", "state_changes", "fall_shadow_scores")


def apply_retention(conninfo: str, *, days: int, dedup_days: int) -> dict[str, Any]:
    """Drop chunks older than ``days`` now; under the community licence also keep a policy.

    The Apache edition has drop_chunks but no background jobs, so this command is
    what a cron (or ``eldercare serve``'s housekeeping) runs there.
    """
    report: dict[str, Any] = {"days": days, "dropped": {}}
    try:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            lic = timescale_license(conn)
            report["license"] = lic
            for table in HYPERTABLES:
                rows = conn.execute(
                    "SELECT drop_chunks(%s::regclass, older_than => %s * interval '1 day')",
                    (table, days),
                ).fetchall()
                report["dropped"][table] = len(rows)
                if lic == "timescale":
                    conn.execute(
                        "SELECT add_retention_policy(%s::regclass, %s * interval '1 day',"
                        " if_not_exists => true)",
                        (table, days),
                    )
            cur = conn.execute(
                "DELETE FROM message_ids WHERE received_at < now() - %s * interval '1 day'",
                (dedup_days,),
            )
            report["dedup_ids_pruned"] = cur.rowcount
            # A logged-out token past its expiry is refused by its exp claim anyway.
            cur = conn.execute("DELETE FROM revoked_tokens WHERE expires_at < now()")
            report["revoked_tokens_pruned"] = cur.rowcount
            report["policy"] = lic == "timescale"
    except psycopg.Error as exc:
        raise StorageError(f"retention failed: {exc}") from exc
    return report
