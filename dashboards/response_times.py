"""The response-times dashboard: are alarms answered in time (acknowledge goals, interval
percentiles, on-site targets), by the definitions of GET /api/metrics/response.
"""

from __future__ import annotations

from dashboards.grafana import (
    Json,
    Layout,
    dashboard,
    facility_filter,
    facility_variable,
    stat,
    table,
    timeseries,
)

# The answer-time panels measure what eldercare.alerts.metrics (GET
# /api/metrics/response) measures, so a supervisor reads the same numbers in both:
# alarms of category "alarm" (rules.ALARM_KINDS, never device health), merged alarms
# left out (they count once, in the alarm they joined), intervals from received_at,
# and targets from the alarm's response policy (the facility's, else its area's)
# with the platform defaults behind them. tests/test_dashboards.py checks these
# constants against eldercare.alerts.rules and the numbers against clocks.py.
ALARM_KINDS = ("sos", "fall", "smoke", "gas", "water_leak", "bed_exit", "inactivity")
ACK_TARGET_S = 60  # acknowledge within 60 s for 97.5 % of alarms ...
ACK_GOAL_PCT = 97.5
ACK_TARGET2_S = 180  # ... and within 180 s for 99 %
ACK_GOAL2_PCT = 99.0
ON_SITE_TARGET_S = {"town": 15 * 60, "remote": 30 * 60}

_KINDS_SQL = ", ".join(f"'{k}'" for k in ALARM_KINDS)
IS_ALARM = "a.kind IN (" + _KINDS_SQL + ")"

# (title, end column, start column, how it relates to clocks.INTERVALS). The API's
# "dispatch" runs from receipt; the dashboard shows the operator's own step instead.
RESPONSE_INTERVALS = (
    ("Receive → acknowledge", "acknowledged_at", "received_at", "The API's interval 'ack'."),
    (
        "Acknowledge → dispatch",
        "dispatched_at",
        "acknowledged_at",
        "Not the API's 'dispatch', which runs from receipt (this plus the acknowledge time).",
    ),
    ("Dispatch → accept", "accepted_at", "dispatched_at", "The API's interval 'accept'."),
    ("Receive → on site", "on_site_at", "received_at", "The API's interval 'on_site'."),
    ("Receive → resolved", "resolved_at", "received_at", "The API's interval 'resolve'."),
)


def alarm_clocks(facility: str) -> str:
    """``WITH pol AS (...)``: the range's alarms with their policy's targets (clocks._BASE).

    Columns are listed rather than ``a.*``: Grafana's role may not read ``details``
    (device payloads) or who acknowledged.
    """
    return f"""
        WITH pol AS (
            SELECT a.id, a.kind, a.priority, a.status, a.facility_id, a.area,
                   a.received_at, a.acknowledged_at, a.dispatched_at, a.accepted_at,
                   a.on_site_at, a.resolved_at, a.closed_at,
                   coalesce(pf.ack_target_s, pa.ack_target_s, {ACK_TARGET_S}) AS t_ack,
                   coalesce(pf.ack_target2_s, pa.ack_target2_s, {ACK_TARGET2_S}) AS t_ack2,
                   coalesce(pf.on_site_target_s, pa.on_site_target_s,
                            CASE a.area WHEN 'remote' THEN {ON_SITE_TARGET_S["remote"]}
                                        ELSE {ON_SITE_TARGET_S["town"]} END) AS t_on_site
            FROM alarms a
            LEFT JOIN response_policies pf ON pf.facility_id = a.facility_id
            LEFT JOIN response_policies pa ON pa.facility_id IS NULL AND pa.area = a.area
            WHERE $__timeFilter(a.received_at) AND {IS_ALARM} AND a.status <> 'merged'
              AND {facility}
        )"""


def ack_share(target_col: str, alias: str) -> str:
    """Percent acknowledged within the target; one still waiting past it counts as outside."""
    return f"""
        SELECT 100.0 * count(*) FILTER (
                 WHERE acknowledged_at <= received_at + {target_col} * interval '1 second')
               / nullif(count(*) FILTER (
                 WHERE acknowledged_at IS NOT NULL
                    OR received_at + {target_col} * interval '1 second' < now()), 0) AS {alias}
        FROM pol"""


def response_times() -> Json:
    """Are alarms answered in time: acknowledge goals, interval percentiles, on-site targets."""
    lay = Layout()
    fac = facility_filter("a.facility_id")
    pol = alarm_clocks(fac)
    panels: list[Json] = []

    panels.append(lay.row("Goals (selected range)"))
    for target_col, seconds, goal, alias in (
        ("t_ack", ACK_TARGET_S, ACK_GOAL_PCT, "ack_within_60s_percent"),
        ("t_ack2", ACK_TARGET2_S, ACK_GOAL2_PCT, "ack_within_180s_percent"),
    ):
        panels.append(
            lay.place(
                stat(
                    f"Acknowledged within {seconds} s (goal {goal:g} %)",
                    f"Share of alarms (category alarm, received in the range) acknowledged within "
                    f"their policy's target ({seconds} s unless a response policy says otherwise); "
                    "green at the goal. An alarm still unacknowledged past the target counts as "
                    "outside it; one still within it is not counted yet. Same numbers as "
                    "GET /api/metrics/response.",
                    pol + ack_share(target_col, alias),
                    unit="percent",
                    decimals=2,
                    thresholds=[(None, "red"), (goal, "green")],
                ),
                5,
                4,
            )
        )
    panels.append(
        lay.place(
            stat(
                "Open unacknowledged alarms (now)",
                "Alarms of category alarm raised and not acknowledged yet, whatever the time "
                "range (device-health alarms not included).",
                f"""
        SELECT count(*) AS unacknowledged
        FROM alarms a
        WHERE a.status = 'raised' AND {IS_ALARM} AND {fac}
        """,
                thresholds=[(None, "green"), (1, "orange")],
            ),
            5,
            4,
        )
    )
    panels.append(
        lay.place(
            stat(
                "Longest unacknowledged wait (now)",
                "How long the oldest unacknowledged alarm (category alarm) has been waiting; "
                "0 when none is.",
                f"""
        SELECT coalesce(extract(epoch FROM now() - min(a.received_at)), 0) AS waiting_s
        FROM alarms a
        WHERE a.status = 'raised' AND {IS_ALARM} AND {fac}
        """,
                unit="s",
                decimals=0,
                thresholds=[(None, "green"), (ACK_TARGET_S, "orange"), (ACK_TARGET2_S, "red")],
            ),
            5,
            4,
        )
    )
    panels.append(
        lay.place(
            stat(
                "Alarms in range",
                "Alarms of category alarm received in the range (merged ones count once, in the "
                "alarm they joined).",
                pol + "\n        SELECT count(*) AS alarms FROM pol",
                thresholds=[(None, "blue")],
            ),
            4,
            4,
        )
    )

    panels.append(lay.row("Volume and escalation"))
    panels.append(
        lay.place(
            timeseries(
                "Alarms by kind and priority",
                "Alarms received per interval by priority (P1 = life-safety) and kind, device-"
                "health alarms included so their load shows; merged alarms count once.",
                f"""
        SELECT time_bucket('$__interval', a.received_at) AS "time",
               'P' || a.priority || ' ' || a.kind AS metric,
               count(*) AS alarms
        FROM alarms a
        WHERE $__timeFilter(a.received_at) AND a.status <> 'merged' AND {fac}
        GROUP BY 1, 2
        ORDER BY 1, 2
        """,
                stacked=True,
                bars=True,
                interval="1m",
                unit="short",
            ),
            14,
            8,
        )
    )
    # alarm_events has no index on "at": reach it through the alarms received from a
    # day before the range (alarms_received, then alarm_events_alarm).
    panels.append(
        lay.place(
            timeseries(
                "Escalations and supervisor notifications",
                "Per interval: escalations to the next responder step, escalations that found "
                "nobody to ask (stalled), and supervisors told of an alarm unacknowledged past "
                "its policy's limit. From the audit trail, for alarms received up to a day "
                "before the range.",
                f"""
        SELECT time_bucket('$__interval', ev.at) AS "time",
               CASE ev.action
                 WHEN 'escalated' THEN 'escalated'
                 WHEN 'escalation_stalled' THEN 'escalation stalled'
                 ELSE 'supervisor notified'
               END AS metric,
               count(*) AS events
        FROM alarms a
        JOIN alarm_events ev ON ev.alarm_id = a.id
        WHERE a.received_at >= $__timeFrom()::timestamptz - interval '1 day'
          AND $__timeFilter(ev.at)
          AND ev.action IN ('escalated', 'escalation_stalled', 'supervisor_notified')
          AND {fac}
        GROUP BY 1, 2
        ORDER BY 1, 2
        """,
                stacked=True,
                bars=True,
                interval="1m",
                unit="short",
            ),
            10,
            8,
        )
    )

    panels.append(lay.row("Response intervals (p50 / p90 / p99 per interval)"))
    for i, (title, end_col, start_col, api) in enumerate(RESPONSE_INTERVALS):
        d = f"extract(epoch FROM {end_col} - {start_col})"
        panels.append(
            lay.place(
                timeseries(
                    title,
                    f"Percentiles (percentile_cont) of {end_col} − {start_col} in seconds, for "
                    "alarms of category alarm bucketed by receive time; only alarms that have "
                    f"both times. {api}",
                    pol
                    + f"""
        SELECT time_bucket('$__interval', received_at) AS "time",
               percentile_cont(0.5) WITHIN GROUP (ORDER BY {d}) AS p50,
               percentile_cont(0.9) WITHIN GROUP (ORDER BY {d}) AS p90,
               percentile_cont(0.99) WITHIN GROUP (ORDER BY {d}) AS p99
        FROM pol
        WHERE {end_col} IS NOT NULL AND {start_col} IS NOT NULL
        GROUP BY 1
        ORDER BY 1
        """,
                    interval="5m",
                    unit="s",
                    options={
                        "legend": {
                            "displayMode": "table",
                            "placement": "right",
                            "calcs": ["mean", "max"],
                        },
                        "tooltip": {"mode": "multi", "sort": "desc"},
                    },
                ),
                24 if i == len(RESPONSE_INTERVALS) - 1 else 12,
                8,
            )
        )

    panels.append(lay.row("On site and slowest alarms"))
    panels.append(
        lay.place(
            table(
                "On site within target, per facility",
                "Per facility: alarms whose responder reached the resident (or that were "
                "dispatched, are unresolved and already past the target), and how many were on "
                "site within the target of the alarm's area (town 15 min, remote 30 min unless "
                "the facility's or the area's response policy says otherwise).",
                pol
                + """
        SELECT coalesce(f.name, 'no facility') AS facility,
               string_agg(DISTINCT pol.area || ' ' || (pol.t_on_site / 60) || ' min', ', ')
                 AS targets,
               count(*) AS measured,
               count(*) FILTER (
                 WHERE on_site_at <= received_at + t_on_site * interval '1 second')
                 AS within_target,
               100.0 * count(*) FILTER (
                 WHERE on_site_at <= received_at + t_on_site * interval '1 second')
                 / count(*) AS within_percent
        FROM pol
        LEFT JOIN facilities f ON f.id = pol.facility_id
        WHERE pol.area IN ('town', 'remote')
          AND (on_site_at IS NOT NULL
               OR (dispatched_at IS NOT NULL AND resolved_at IS NULL
                   AND received_at + t_on_site * interval '1 second' < now()))
        GROUP BY pol.facility_id, f.name
        ORDER BY within_percent, facility
        """,
                overrides=[
                    {
                        "matcher": {"id": "byName", "options": "within_percent"},
                        "properties": [
                            {"id": "unit", "value": "percent"},
                            {"id": "decimals", "value": 1},
                        ],
                    }
                ],
            ),
            10,
            9,
        )
    )
    # Ids, kind, facility and clocks only: who the resident is stays behind the
    # console's audited reveal (the role cannot read residents anyway).
    panels.append(
        lay.place(
            table(
                "Slowest alarms (range)",
                "The 50 alarms of category alarm in the range that waited longest for an "
                "acknowledgement (still-waiting ones up to now), with their other intervals in "
                "seconds. Ids only: look the alarm up in the console.",
                pol
                + """
        SELECT pol.id::text AS alarm, pol.kind, pol.priority,
               coalesce(f.name, 'no facility') AS facility, pol.area, pol.status,
               pol.received_at AS received,
               round(extract(epoch FROM coalesce(acknowledged_at, now()) - received_at), 1)
                 AS ack_wait_s,
               round(extract(epoch FROM dispatched_at - acknowledged_at), 1) AS dispatch_s,
               round(extract(epoch FROM accepted_at - dispatched_at), 1) AS accept_s,
               round(extract(epoch FROM on_site_at - received_at), 1) AS on_site_s,
               round(extract(epoch FROM resolved_at - received_at), 1) AS resolve_s
        FROM pol
        LEFT JOIN facilities f ON f.id = pol.facility_id
        ORDER BY ack_wait_s DESC, on_site_s DESC NULLS LAST, received
        LIMIT 50
        """,
            ),
            14,
            9,
        )
    )

    return dashboard(
        "eldercare-response-times",
        "Response times",
        "Alarm answer times against the goals (acknowledge within 60 s for 97.5 %, within "
        "180 s for 99 %; on site within 15 min in town, 30 min in remote areas), interval "
        "percentiles, escalations and what is waiting now. Same definitions as "
        "GET /api/metrics/response.",
        panels,
        variables=[facility_variable()],
        tags=["eldercare", "alarms", "response"],
        time_from="now-24h",
    )
