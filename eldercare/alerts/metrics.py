"""The clocks a supervisor judges: response intervals, their percentiles and the share
of alarms within each target, in plain SQL (the Apache edition has no continuous
aggregates). Measured from ``received_at``: the platform's clock, immune to device skew.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

import psycopg

from eldercare.alerts import rules
from eldercare.storage import db

# name -> (end column, start column)
INTERVALS: Final = {
    "ack": ("acknowledged_at", "received_at"),
    "dispatch": ("dispatched_at", "received_at"),
    "accept": ("accepted_at", "dispatched_at"),
    "on_site": ("on_site_at", "received_at"),
    "resolve": ("resolved_at", "received_at"),
}

_BASE: Final = """
WITH pol AS (
    SELECT a.*,
           COALESCE(pf.ack_target_s, pa.ack_target_s, 60) AS t_ack,
           COALESCE(pf.ack_target2_s, pa.ack_target2_s, 180) AS t_ack2,
           COALESCE(pf.on_site_target_s, pa.on_site_target_s,
                    CASE a.area WHEN 'remote' THEN 1800 ELSE 900 END) AS t_on_site
    FROM alarms a
    LEFT JOIN response_policies pf ON pf.facility_id = a.facility_id
    LEFT JOIN response_policies pa ON pa.facility_id IS NULL AND pa.area = a.area
    WHERE a.received_at >= %(from)s AND a.received_at < %(to)s AND a.kind = ANY(%(kinds)s)
      AND a.status <> 'merged'
      AND (%(facility)s::bigint IS NULL OR a.facility_id = %(facility)s)
)
"""


def response_metrics(
    conn: psycopg.Connection, start: datetime, end: datetime, facility: int | None, now: datetime
) -> dict[str, Any]:
    params = {
        "from": start,
        "to": end,
        "kinds": list(rules.ALARM_KINDS),
        "facility": facility,
        "now": now,
    }
    counts = db.rows(
        conn,
        _BASE
        + """
        SELECT count(*) AS total, count(acknowledged_at) AS acknowledged,
               count(dispatched_at) AS dispatched, count(accepted_at) AS accepted,
               count(on_site_at) AS on_site, count(resolved_at) AS resolved,
               count(closed_at) AS closed, count(*) FILTER (WHERE status <> 'closed') AS open
        FROM pol""",
        params,
    )[0]
    parts = []
    for name, (end_col, start_col) in INTERVALS.items():
        d = f"extract(epoch FROM {end_col} - {start_col})"
        parts.append(
            f"count({end_col}) AS {name}_n,"
            f" percentile_cont(0.5) WITHIN GROUP (ORDER BY {d}) AS {name}_p50,"
            f" percentile_cont(0.9) WITHIN GROUP (ORDER BY {d}) AS {name}_p90,"
            f" percentile_cont(0.99) WITHIN GROUP (ORDER BY {d}) AS {name}_p99"
        )
    p = db.rows(conn, _BASE + "SELECT " + ", ".join(parts) + " FROM pol", params)[0]
    intervals = {
        name: {
            "n": p[f"{name}_n"],
            "p50_s": _r(p[f"{name}_p50"]),
            "p90_s": _r(p[f"{name}_p90"]),
            "p99_s": _r(p[f"{name}_p99"]),
        }
        for name in INTERVALS
    }
    # An alarm still waiting past its target is already outside it: count it in n.
    t = db.rows(
        conn,
        _BASE
        + """
        SELECT
          count(*) FILTER (WHERE acknowledged_at IS NOT NULL
                            OR received_at + t_ack * interval '1 second' < %(now)s) AS ack1_n,
          count(*) FILTER (WHERE acknowledged_at <= received_at + t_ack * interval '1 second')
            AS ack1_in,
          count(*) FILTER (WHERE acknowledged_at IS NOT NULL
                            OR received_at + t_ack2 * interval '1 second' < %(now)s) AS ack2_n,
          count(*) FILTER (WHERE acknowledged_at <= received_at + t_ack2 * interval '1 second')
            AS ack2_in,
          min(t_ack) AS t_ack, min(t_ack2) AS t_ack2,
          count(*) FILTER (WHERE area = 'town' AND (on_site_at IS NOT NULL OR (dispatched_at IS
            NOT NULL AND resolved_at IS NULL
            AND received_at + t_on_site * interval '1 second' < %(now)s))) AS town_n,
          count(*) FILTER (WHERE area = 'town'
            AND on_site_at <= received_at + t_on_site * interval '1 second') AS town_in,
          count(*) FILTER (WHERE area = 'remote' AND (on_site_at IS NOT NULL OR (dispatched_at IS
            NOT NULL AND resolved_at IS NULL
            AND received_at + t_on_site * interval '1 second' < %(now)s))) AS remote_n,
          count(*) FILTER (WHERE area = 'remote'
            AND on_site_at <= received_at + t_on_site * interval '1 second') AS remote_in,
          min(t_on_site) FILTER (WHERE area = 'town') AS t_town,
          min(t_on_site) FILTER (WHERE area = 'remote') AS t_remote
        FROM pol""",
        params,
    )[0]
    targets = [
        _target(
            "ack_60s" if (t["t_ack"] or 60) == 60 else f"ack_{t['t_ack']}s",
            "ack",
            t["t_ack"] or 60,
            0.975,
            t["ack1_n"],
            t["ack1_in"],
        ),
        _target(
            "ack_180s" if (t["t_ack2"] or 180) == 180 else f"ack_{t['t_ack2']}s",
            "ack",
            t["t_ack2"] or 180,
            0.99,
            t["ack2_n"],
            t["ack2_in"],
        ),
        _target(
            "on_site_town",
            "on_site",
            t["t_town"] or rules.ON_SITE_TARGET_S["town"],
            None,
            t["town_n"],
            t["town_in"],
        ),
        _target(
            "on_site_remote",
            "on_site",
            t["t_remote"] or rules.ON_SITE_TARGET_S["remote"],
            None,
            t["remote_n"],
            t["remote_in"],
        ),
    ]
    return {
        "from": start,
        "to": end,
        "facility_id": facility,
        "counts": counts,
        "intervals": intervals,
        "targets": targets,
    }


def _r(v: Any) -> float | None:
    return None if v is None else round(float(v), 3)


def _target(
    name: str, interval: str, target_s: int, goal: float | None, n: int, within: int
) -> dict[str, Any]:
    share = round(within / n, 4) if n else None
    met = None if goal is None or share is None else share >= goal
    return {
        "name": name,
        "interval": interval,
        "target_s": target_s,
        "goal": goal,
        "n": n,
        "within": within,
        "share": share,
        "met": met,
    }
