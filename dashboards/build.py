"""Writes the Grafana dashboards in this directory as JSON: ``python dashboards/build.py``.

Dashboards are code so that a review reads SQL, not a 2,000-line export. Each
dashboard is one function returning the dashboard dict; add yours to
``DASHBOARDS`` and re-run. ``--check`` exits non-zero when a committed JSON file
differs from what this script builds (for CI).

Every panel queries the provisioned TimescaleDB data source (see
``provisioning/datasources/eldercare.yaml``) with raw SQL and Grafana macros;
``tests/test_dashboards.py`` expands the macros the way Grafana does and runs
every query against a migrated database, as the read-only Grafana role.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

# Must match provisioning/datasources/eldercare.yaml (the test checks it does).
DATASOURCE = {"type": "grafana-postgresql-datasource", "uid": "eldercare-timescaledb"}
SCHEMA_VERSION = 39  # Grafana 11's dashboard schema; newer Grafana migrates it on load.

Json = dict[str, Any]

# ------------------------------------------------------------------ building blocks

# The facility picker. "All" is a custom value (-1), not the list of ids, so rows
# with no facility (events from unknown devices) still count under "All".
FACILITY_FILTER = "(-1 IN ($facility) OR {col} IN ($facility))"


def facility_filter(col: str) -> str:
    return FACILITY_FILTER.format(col=col)


def facility_variable() -> Json:
    return {
        "name": "facility",
        "label": "Facility",
        "type": "query",
        "datasource": DATASOURCE,
        "query": "SELECT id AS __value, name AS __text FROM facilities ORDER BY name",
        "definition": "SELECT id AS __value, name AS __text FROM facilities ORDER BY name",
        "refresh": 1,  # on dashboard load: facilities are added while the platform runs
        "includeAll": True,
        "allValue": "-1",
        "multi": True,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 0,
        "hide": 0,
    }


def constant_variable(name: str, value: str, description: str) -> Json:
    return {
        "name": name,
        "type": "constant",
        "query": value,
        "description": description,
        "hide": 2,
        "current": {"text": value, "value": value},
    }


def target(sql: str, fmt: str, ref: str = "A") -> Json:
    if fmt not in ("time_series", "table"):
        raise ValueError(f"unknown format {fmt}")
    return {
        "refId": ref,
        "datasource": DATASOURCE,
        "editorMode": "code",
        "format": fmt,
        "rawQuery": True,
        "rawSql": _dedent(sql),
    }


def _dedent(sql: str) -> str:
    lines = [line.rstrip() for line in sql.strip("\n").splitlines()]
    indent = min(len(x) - len(x.lstrip()) for x in lines if x.strip())
    return "\n".join(x[indent:] for x in lines)


class Layout:
    """Places panels left to right on Grafana's 24-column grid, wrapping rows."""

    def __init__(self) -> None:
        self.x = self.y = self.row_h = 0
        self.next_id = 1

    def place(self, panel: Json, w: int, h: int) -> Json:
        if self.x + w > 24:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel["id"] = self.next_id
        panel["gridPos"] = {"x": self.x, "y": self.y, "w": w, "h": h}
        self.next_id += 1
        self.x += w
        self.row_h = max(self.row_h, h)
        return panel

    def row(self, title: str) -> Json:
        if self.x:
            self.x, self.y, self.row_h = 0, self.y + self.row_h, 0
        panel = {
            "type": "row",
            "title": title,
            "collapsed": False,
            "panels": [],
            "id": self.next_id,
            "gridPos": {"x": 0, "y": self.y, "w": 24, "h": 1},
        }
        self.next_id += 1
        self.y += 1
        return panel


def panel(
    kind: str,
    title: str,
    description: str,
    targets: list[Json],
    *,
    unit: str | None = None,
    options: Json | None = None,
    overrides: list[Json] | None = None,
    interval: str | None = None,
    thresholds: list[tuple[float | None, str]] | None = None,
    custom: Json | None = None,
    decimals: int | None = None,
) -> Json:
    defaults: Json = {}
    if unit:
        defaults["unit"] = unit
    if decimals is not None:
        defaults["decimals"] = decimals
    if thresholds:
        defaults["thresholds"] = {
            "mode": "absolute",
            "steps": [{"value": v, "color": c} for v, c in thresholds],
        }
    if custom:
        defaults["custom"] = custom
    p: Json = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "targets": targets,
        "fieldConfig": {"defaults": defaults, "overrides": overrides or []},
        "options": options or {},
    }
    if interval:
        p["interval"] = interval  # the smallest $__interval this panel is given
    return p


def stat(title: str, description: str, sql: str, **kw: Any) -> Json:
    kw.setdefault(
        "options",
        {
            "reduceOptions": {"calcs": ["lastNotNull"], "values": False},
            "colorMode": "background",
            "graphMode": "none",
        },
    )
    return panel("stat", title, description, [target(sql, "table")], **kw)


def timeseries(
    title: str, description: str, sql: str, *, stacked: bool = False, bars: bool = False, **kw: Any
) -> Json:
    custom: Json = {
        "drawStyle": "bars" if bars else "line",
        "fillOpacity": 60 if bars else 10,
        "spanNulls": False,
        "showPoints": "never",
    }
    if stacked:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    kw.setdefault(
        "options",
        {
            "legend": {"displayMode": "table", "placement": "right", "calcs": ["sum", "max"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    )
    return panel(
        "timeseries", title, description, [target(sql, "time_series")], custom=custom, **kw
    )


def table(title: str, description: str, sql: str, **kw: Any) -> Json:
    kw.setdefault("options", {"showHeader": True, "cellHeight": "sm"})
    return panel("table", title, description, [target(sql, "table")], **kw)


def bargauge(title: str, description: str, sql: str, **kw: Any) -> Json:
    kw.setdefault(
        "options",
        {
            "orientation": "horizontal",
            "displayMode": "basic",
            "showUnfilled": True,
            "reduceOptions": {"calcs": ["lastNotNull"], "values": True},
        },
    )
    return panel("bargauge", title, description, [target(sql, "table")], **kw)


def dashboard(
    uid: str,
    title: str,
    description: str,
    panels: list[Json],
    *,
    variables: list[Json],
    tags: list[str],
    time_from: str = "now-6h",
) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": tags,
        "editable": False,  # provisioned: change build.py, not the UI
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "timezone": "browser",
        "refresh": "30s",
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": [],
        "panels": panels,
    }


# ------------------------------------------------------------------ dashboards


def device_ingest_health() -> Json:
    """Is data arriving, what is refused, which devices and cameras are down."""
    lay = Layout()
    ev_facility = facility_filter("e.facility_id")
    dev_facility = facility_filter("d.facility_id")
    panels: list[Json] = []

    panels.append(lay.row("Now"))
    panels.append(
        lay.place(
            stat(
                "Devices online",
                "Active devices whose liveness is online now (state topic online and heard from "
                "within 2.5 × their heartbeat interval).",
                f"""
        SELECT count(*) FILTER (WHERE coalesce(s.online, false)) AS online
        FROM devices d
        LEFT JOIN device_status s ON s.device_id = d.id
        WHERE d.status = 'active' AND {dev_facility}
        """,
                thresholds=[(None, "green")],
            ),
            4,
            4,
        )
    )
    panels.append(
        lay.place(
            stat(
                "Devices offline",
                "Active devices not online now, including devices never heard from.",
                f"""
        SELECT count(*) FILTER (WHERE NOT coalesce(s.online, false)) AS offline
        FROM devices d
        LEFT JOIN device_status s ON s.device_id = d.id
        WHERE d.status = 'active' AND {dev_facility}
        """,
                thresholds=[(None, "green"), (1, "red")],
            ),
            4,
            4,
        )
    )
    panels.append(
        lay.place(
            stat(
                "Cameras offline",
                "Cameras behind active video bridges that are offline now (a camera whose bridge "
                "is offline counts as offline; one that never reported counts too).",
                f"""
        SELECT count(*) FILTER (WHERE NOT coalesce(cs.online, false)) AS cameras_offline
        FROM cameras c
        JOIN devices d ON d.id = c.device_id AND d.status = 'active'
        LEFT JOIN camera_status cs
               ON cs.device_id = c.device_id AND cs.camera_id = c.camera_id
        WHERE {dev_facility}
        """,
                thresholds=[(None, "green"), (1, "red")],
            ),
            4,
            4,
        )
    )
    panels.append(
        lay.place(
            stat(
                "Low batteries",
                "Active devices whose last heartbeat reported a battery below $low_battery_pct %.",
                f"""
        SELECT count(*) AS low_batteries
        FROM device_status s
        JOIN devices d ON d.id = s.device_id
        WHERE d.status = 'active' AND s.battery < $low_battery_pct AND {dev_facility}
        """,
                thresholds=[(None, "green"), (1, "orange")],
            ),
            4,
            4,
        )
    )
    # $__timeFrom()/$__timeTo() rather than a count: the rate stays comparable
    # whatever range the operator picks.
    panels.append(
        lay.place(
            stat(
                "Events per minute (range average)",
                "Stored device events per minute, averaged over the selected time range.",
                f"""
        SELECT count(*) / greatest(
                 extract(epoch FROM $__timeTo()::timestamptz - $__timeFrom()::timestamptz) / 60,
                 1) AS events_per_minute
        FROM device_events e
        WHERE $__timeFilter(e.time) AND {ev_facility}
        """,
                unit="short",
                thresholds=[(None, "blue")],
            ),
            4,
            4,
        )
    )
    panels.append(
        lay.place(
            stat(
                "Clock-skewed events (range)",
                "Share of events in the range whose device clock was more than 24 h ahead or "
                "7 days behind; those are stored at their receive time.",
                f"""
        SELECT coalesce(100.0 * count(*) FILTER (WHERE e.clock_skew) / nullif(count(*), 0), 0)
               AS skewed_percent
        FROM device_events e
        WHERE $__timeFilter(e.time) AND {ev_facility}
        """,
                unit="percent",
                thresholds=[(None, "green"), (1, "orange"), (10, "red")],
            ),
            4,
            4,
        )
    )

    panels.append(lay.row("Ingest"))
    # Buckets of $__interval (at least 1 min, see interval=) scaled to a per-minute
    # rate, so the curve keeps its meaning when Grafana widens buckets on long ranges.
    panels.append(
        lay.place(
            timeseries(
                "Events per minute by type",
                "Stored device events per minute, by event type (device time; receive time when "
                "the device clock is off).",
                f"""
        SELECT time_bucket('$__interval', e.time) AS "time",
               e.type AS metric,
               count(*) / (extract(epoch FROM '$__interval'::interval) / 60) AS events_per_minute
        FROM device_events e
        WHERE $__timeFilter(e.time) AND {ev_facility}
        GROUP BY 1, 2
        ORDER BY 1, 2
        """,
                stacked=True,
                interval="1m",
                unit="short",
            ),
            16,
            8,
        )
    )
    panels.append(
        lay.place(
            bargauge(
                "Dead letters by reason (range)",
                "Refused messages in the range by reason (malformed_json, schema, too_large, "
                "unknown_type, unknown_device...). Dead letters carry no facility: not filtered.",
                """
        SELECT reason, count(*) AS dead_letters
        FROM dead_letters
        WHERE $__timeFilter(received_at)
        GROUP BY reason
        ORDER BY dead_letters DESC
        """,
                thresholds=[(None, "orange")],
            ),
            8,
            8,
        )
    )
    panels.append(
        lay.place(
            timeseries(
                "Dead letters by reason",
                "Refused messages per interval, by reason.",
                """
        SELECT time_bucket('$__interval', received_at) AS "time",
               reason AS metric,
               count(*) AS dead_letters
        FROM dead_letters
        WHERE $__timeFilter(received_at)
        GROUP BY 1, 2
        ORDER BY 1, 2
        """,
                stacked=True,
                bars=True,
                interval="1m",
                unit="short",
            ),
            16,
            8,
        )
    )
    panels.append(
        lay.place(
            timeseries(
                "Clock-skewed events share",
                "Percentage of events per interval stored with the clock-skew flag.",
                f"""
        SELECT time_bucket('$__interval', e.time) AS "time",
               100.0 * count(*) FILTER (WHERE e.clock_skew) / count(*) AS skewed_percent
        FROM device_events e
        WHERE $__timeFilter(e.time) AND {ev_facility}
        GROUP BY 1
        ORDER BY 1
        """,
                interval="1m",
                unit="percent",
            ),
            8,
            8,
        )
    )

    panels.append(lay.row("Device health"))
    panels.append(
        lay.place(
            timeseries(
                "Device online/offline transitions",
                "Device (not camera) liveness transitions per interval; offline ones by cause "
                "(last_will, heartbeat_timeout, state...).",
                f"""
        SELECT time_bucket('$__interval', sc.time) AS "time",
               CASE WHEN sc.online THEN 'online' ELSE 'offline: ' || sc.cause END AS metric,
               count(*) AS transitions
        FROM state_changes sc
        WHERE $__timeFilter(sc.time) AND sc.camera_id IS NULL
          AND {facility_filter("sc.facility_id")}
        GROUP BY 1, 2
        ORDER BY 1, 2
        """,
                stacked=True,
                bars=True,
                interval="1m",
                unit="short",
            ),
            16,
            8,
        )
    )
    panels.append(
        lay.place(
            bargauge(
                "Cameras offline per facility",
                "Cameras offline now, per facility (never-reported cameras count as offline).",
                f"""
        SELECT coalesce(f.name, 'no facility') AS facility,
               count(*) FILTER (WHERE NOT coalesce(cs.online, false)) AS cameras_offline
        FROM cameras c
        JOIN devices d ON d.id = c.device_id AND d.status = 'active'
        LEFT JOIN camera_status cs
               ON cs.device_id = c.device_id AND cs.camera_id = c.camera_id
        LEFT JOIN facilities f ON f.id = d.facility_id
        WHERE {dev_facility}
        GROUP BY 1
        ORDER BY cameras_offline DESC, facility
        """,
                thresholds=[(None, "green"), (1, "red")],
            ),
            8,
            8,
        )
    )
    panels.append(
        lay.place(
            table(
                "Low batteries",
                "Active devices whose last heartbeat reported a battery below $low_battery_pct %, "
                "lowest first.",
                f"""
        SELECT d.id AS device, d.kind, coalesce(f.name, '') AS facility,
               coalesce(d.room, '') AS room, s.battery, s.online,
               s.last_heartbeat_at AS last_heartbeat
        FROM device_status s
        JOIN devices d ON d.id = s.device_id
        LEFT JOIN facilities f ON f.id = d.facility_id
        WHERE d.status = 'active' AND s.battery < $low_battery_pct AND {dev_facility}
        ORDER BY s.battery, d.id
        LIMIT 200
        """,
                overrides=[
                    {
                        "matcher": {"id": "byName", "options": "battery"},
                        "properties": [{"id": "unit", "value": "percent"}],
                    }
                ],
            ),
            12,
            8,
        )
    )
    panels.append(
        lay.place(
            table(
                "Devices with skewed clocks (range)",
                "Devices that sent clock-skewed events in the range: their clocks need fixing, "
                "and their response times are measured from receive time.",
                f"""
        SELECT e.device_id AS device,
               count(*) AS skewed_events,
               max(e.received_at) AS last_received,
               round(max(abs(extract(epoch FROM e.received_at - e.device_ts))) / 3600, 1)
                 AS worst_offset_hours
        FROM device_events e
        WHERE $__timeFilter(e.time) AND e.clock_skew AND {ev_facility}
        GROUP BY e.device_id
        ORDER BY skewed_events DESC, device
        LIMIT 100
        """,
            ),
            12,
            8,
        )
    )

    return dashboard(
        "eldercare-device-ingest",
        "Device ingest & health",
        "Events arriving per type, refused messages, device and camera liveness, "
        "batteries and device clocks.",
        panels,
        variables=[
            facility_variable(),
            constant_variable(
                "low_battery_pct",
                "20",
                "Low-battery threshold; keep equal to ELDERCARE_LOW_BATTERY_PCT.",
            ),
        ],
        tags=["eldercare", "devices"],
    )


# ------------------------------------------------------------------ response times

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


# The months a panel shows: every month that overlaps the picked time range. Report rows are
# keyed by the month's first day, which a 6 h range would otherwise never contain.
def months_in_range(col: str = "month") -> str:
    return (
        f"{col} >= date_trunc('month',"
        " $__timeFrom()::timestamptz AT TIME ZONE 'Asia/Shanghai')::date"
        f" AND {col} <= ($__timeTo()::timestamptz AT TIME ZONE 'Asia/Shanghai')::date"
    )


def subsidies() -> Json:
    """Subsidy spend, funding split, settlement, verification findings, service coverage and
    revisit satisfaction (design §2.13).

    Panels read only the report views of migrations 0054, 0045 and 0046, so the read-only role sees
    aggregates per month, district, programme and provider, never a resident.
    """
    lay = Layout()
    panels: list[Json] = [lay.row("Spend (yuan; cash entitlements + approved settlements)")]
    panels.append(
        lay.place(
            stat(
                "Subsidy spend in range",
                "All programmes, months overlapping the time range. Cash programmes count "
                "their live entitlements; vouchers count approved settlement lines in the "
                "order's service month, clawbacks in their batch's month.",
                f"""
                SELECT coalesce(sum(amount_fen), 0) / 100.0 AS "yuan"
                FROM report_subsidy_spend
                WHERE {months_in_range()}
                """,
                unit="currencyCNY",
                decimals=2,
            ),
            6,
            5,
        )
    )
    panels.append(
        lay.place(
            bargauge(
                "Funding: central / local",
                "The policy's shares for the district's fiscal region; the central share is "
                "floored to the fen, local takes the remainder (design §4 Q4).",
                f"""
                SELECT 'central' AS "share", coalesce(sum(central_fen), 0) / 100.0 AS "yuan"
                FROM report_subsidy_spend WHERE {months_in_range()}
                UNION ALL
                SELECT 'local', coalesce(sum(local_fen), 0) / 100.0
                FROM report_subsidy_spend WHERE {months_in_range()}
                """,
                unit="currencyCNY",
            ),
            6,
            5,
        )
    )
    panels.append(
        lay.place(
            table(
                "Spend by district and programme",
                "Same definition as GET /api/reports/subsidy-spend (which also sums a "
                "district's sub-districts).",
                f"""
                SELECT to_char(s.month, 'YYYY-MM') AS "month", s.district_code AS "district",
                       d.name AS "name", s.programme_code AS "programme",
                       sum(s.amount_fen) / 100.0 AS "yuan",
                       sum(s.central_fen) / 100.0 AS "central",
                       sum(s.local_fen) / 100.0 AS "local"
                FROM report_subsidy_spend s
                LEFT JOIN districts d ON d.code = s.district_code
                WHERE {months_in_range("s.month")}
                GROUP BY s.month, s.district_code, d.name, s.programme_code
                ORDER BY s.month DESC, s.district_code, s.programme_code
                """,
            ),
            12,
            8,
        )
    )
    panels.append(lay.row("Settlement and verification"))
    panels.append(
        lay.place(
            table(
                "Settlement batches",
                "Per provider and batch month: lines, gross price, subsidy payable, copay "
                "collected by the provider, and clawbacks (negative).",
                f"""
                SELECT to_char(r.month, 'YYYY-MM') AS "month", p.name AS "provider",
                       r.status AS "status", r.lines AS "lines",
                       r.gross_fen / 100.0 AS "gross", r.subsidy_fen / 100.0 AS "subsidy",
                       r.copay_fen / 100.0 AS "copay", r.clawback_fen / 100.0 AS "clawback"
                FROM report_settlement r
                JOIN providers p ON p.id = r.provider_id
                WHERE {months_in_range("r.month")}
                ORDER BY r.month DESC, p.name
                """,
            ),
            12,
            8,
        )
    )
    panels.append(
        lay.place(
            bargauge(
                "Verification findings by rule",
                "Anomalies of work orders checked in during the months in range (all "
                "severities and decisions). Hard findings block verification.",
                f"""
                SELECT rule_code AS "rule", sum(n) AS "findings"
                FROM report_anomalies
                WHERE {months_in_range()}
                GROUP BY rule_code ORDER BY 2 DESC, 1
                """,
            ),
            12,
            8,
        )
    )
    panels.append(lay.row("Service coverage and revisit satisfaction"))
    panels.append(
        lay.place(
            stat(
                "Revisit satisfaction (满意 of reached)",
                "Share of reached revisits answered 1 非常满意 or 2 满意 on the 4-level "
                "scale, revisits done in the months in range. Same definition as "
                "GET /api/reports/revisits.",
                f"""
                SELECT coalesce(round(100.0 * sum(s1 + s2) / nullif(sum(reached), 0), 1), 0)
                       AS "satisfied %"
                FROM report_revisits
                WHERE {months_in_range()}
                """,
                unit="percent",
                decimals=1,
            ),
            6,
            6,
        )
    )
    panels.append(
        lay.place(
            table(
                "Revisits by provider",
                "回访 per provider and month: reach, confirmation of the service and the "
                "satisfaction distribution (1 非常满意 .. 4 不满意).",
                f"""
                SELECT to_char(r.month, 'YYYY-MM') AS "month", p.name AS "provider",
                       sum(r.revisits) AS "revisits", sum(r.reached) AS "reached",
                       round(100.0 * sum(r.reached) / nullif(sum(r.revisits), 0), 1)
                           AS "reach %",
                       round(100.0 * sum(r.confirmed) / nullif(sum(r.reached), 0), 1)
                           AS "confirmed %",
                       round(100.0 * sum(r.s1 + r.s2) / nullif(sum(r.reached), 0), 1)
                           AS "satisfied %",
                       sum(r.s1) AS "1", sum(r.s2) AS "2", sum(r.s3) AS "3", sum(r.s4) AS "4"
                FROM report_revisits r
                LEFT JOIN providers p ON p.id = r.provider_id
                WHERE {months_in_range("r.month")}
                GROUP BY r.month, p.name
                ORDER BY r.month DESC, p.name
                """,
            ),
            18,
            6,
        )
    )
    panels.append(
        lay.place(
            table(
                "Service coverage by district and programme",
                "Residents with a positive entitlement of the month's run (eligible) and "
                "those of them with a verified service that month (served). Same "
                "definition as GET /api/reports/coverage, which also sums sub-districts.",
                f"""
                SELECT to_char(c.month, 'YYYY-MM') AS "month", c.district_code AS "district",
                       d.name AS "name", c.programme_code AS "programme",
                       sum(c.eligible) AS "eligible", sum(c.served) AS "served",
                       round(100.0 * sum(c.served) / nullif(sum(c.eligible), 0), 1)
                           AS "coverage %"
                FROM report_service_coverage c
                LEFT JOIN districts d ON d.code = c.district_code
                WHERE {months_in_range("c.month")}
                GROUP BY c.month, c.district_code, d.name, c.programme_code
                ORDER BY c.month DESC, c.district_code, c.programme_code
                """,
            ),
            24,
            8,
        )
    )
    panels.append(
        lay.place(
            table(
                "Providers: on time, findings, EVV completeness (target 90 %)",
                "Visits checked in during the month: on time = within ±2 h of the scheduled "
                "start; flagged = a soft or hard verification finding; EVV = verified visits "
                "with all six elements (service, resident, worker, start and end times, both "
                "points). Same definitions as GET /api/reports/providers.",
                f"""
                SELECT to_char(v.month, 'YYYY-MM') AS "month", p.name AS "provider",
                       sum(v.visits) AS "visits",
                       round(100.0 * sum(v.on_time) / nullif(sum(v.scheduled), 0), 1)
                           AS "on time %",
                       round(100.0 * sum(v.flagged) / nullif(sum(v.visits), 0), 1)
                           AS "flagged %",
                       sum(v.verified) AS "verified",
                       round(100.0 * sum(v.evv_complete) / nullif(sum(v.verified), 0), 1)
                           AS "EVV %"
                FROM report_provider_visits v
                LEFT JOIN providers p ON p.id = v.provider_id
                WHERE {months_in_range("v.month")}
                GROUP BY v.month, p.name
                ORDER BY v.month DESC, p.name
                """,
            ),
            24,
            8,
        )
    )
    return dashboard(
        "eldercare-subsidies",
        "Subsidies and settlement",
        "Monthly subsidy spend by district, programme and funding source, settlement batches "
        "per provider, verification findings, service coverage and revisit satisfaction. "
        "Same definitions as the /api/reports endpoints; money in yuan (stored as fen).",
        panels,
        variables=[],
        tags=["eldercare", "platform", "subsidies"],
        time_from="now-90d",
    )


# Alarm triage labels, as eldercare.models.triage reads dispositions (the test checks them).
TRIAGE_FALSE = ("accidental_press", "false_sensor_alarm")
TRIAGE_NEEDED = ("genuine_emergency", "fall_without_injury", "service_request")
TRIAGE_GENUINE = ("genuine_emergency", "fall_without_injury")
TRIAGE_FLAG = 0.5  # "likely false": the score the precision/recall panels threshold at


def _sql_words(words: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{w}'" for w in words) + ")"


def model_quality() -> Json:
    """Is alarm triage right? Its scores against the dispositions operators recorded.

    Only closed alarms with a disposition that says false or needed count (test, other and
    no_response_needed are left out, as in training). The score is the last one the queue
    was ordered by (scoring stops when an alarm closes).
    """
    lay = Layout()
    fac = facility_filter("a.facility_id")
    false_ = _sql_words(TRIAGE_FALSE)
    scored = f"""
        FROM alarms a JOIN alarm_triage t ON t.alarm_id = a.id
        WHERE a.status = 'closed' AND a.disposition IN {_sql_words(TRIAGE_FALSE + TRIAGE_NEEDED)}
          AND $__timeFilter(a.received_at) AND {fac}"""
    flagged = f"t.p_false >= {TRIAGE_FLAG}"
    precision = (
        f"count(*) FILTER (WHERE {flagged} AND a.disposition IN {false_})::float"
        f" / nullif(count(*) FILTER (WHERE {flagged}), 0)"
    )
    recall = (
        f"count(*) FILTER (WHERE {flagged} AND a.disposition IN {false_})::float"
        f" / nullif(count(*) FILTER (WHERE a.disposition IN {false_}), 0)"
    )
    panels: list[Json] = [lay.row("Alarm triage: P(false alarm) against operators' dispositions")]
    panels.append(
        lay.place(
            stat(
                "Scored alarms closed",
                "Closed alarms with a score and a false/needed disposition, received in range.",
                f'SELECT count(*) AS "alarms" {scored}',
            ),
            6,
            5,
        )
    )
    panels.append(
        lay.place(
            stat(
                "Precision of 'likely false'",
                f"Of alarms scored >= {TRIAGE_FLAG}, the share operators closed as accidental "
                "press or false sensor alarm.",
                f'SELECT {precision} AS "precision" {scored}',
                unit="percentunit",
                decimals=2,
            ),
            6,
            5,
        )
    )
    panels.append(
        lay.place(
            stat(
                "Recall of false alarms",
                f"Of alarms operators closed as false, the share scored >= {TRIAGE_FLAG}.",
                f'SELECT {recall} AS "recall" {scored}',
                unit="percentunit",
                decimals=2,
            ),
            6,
            5,
        )
    )
    panels.append(
        lay.place(
            stat(
                "Genuine emergencies called likely false",
                "Must stay 0 (the release gate): genuine_emergency / fall_without_injury "
                f"scored >= {TRIAGE_FLAG}. They were still handled first in their priority "
                "band's order of arrival only if unscored: look at each one.",
                f"SELECT count(*) FILTER (WHERE {flagged} AND a.disposition IN "
                f'{_sql_words(TRIAGE_GENUINE)}) AS "alarms" {scored}',
                thresholds=[(None, "green"), (1, "red")],
            ),
            6,
            5,
        )
    )
    panels.append(
        lay.place(
            timeseries(
                "Precision and recall over time",
                "Per interval of arrival; gaps where an interval had no flagged or no false alarm.",
                f"""
                WITH per AS (
                    SELECT time_bucket('$__interval', a.received_at) AS "time",
                           {precision} AS p, {recall} AS r
                    {scored}
                    GROUP BY 1
                )
                SELECT "time", metric, value FROM (
                    SELECT "time", 'precision' AS metric, p AS value FROM per
                    UNION ALL
                    SELECT "time", 'recall', r FROM per
                ) x WHERE value IS NOT NULL
                ORDER BY 1, 2
                """,
                unit="percentunit",
                interval="1d",
            ),
            16,
            8,
        )
    )
    panels.append(
        lay.place(
            table(
                "Calibration (score bands)",
                "Observed false share per band of the score: a calibrated model's share lies "
                "inside its band.",
                f"""
                SELECT to_char(least(floor(t.p_false * 5), 4) * 0.2, 'FM0.0') || '–'
                         || to_char(least(floor(t.p_false * 5), 4) * 0.2 + 0.2, 'FM0.0')
                         AS "score band",
                       count(*) AS "alarms",
                       avg(t.p_false) AS "mean score",
                       avg((a.disposition IN {false_})::int) AS "observed false share"
                {scored}
                GROUP BY 1 ORDER BY 1
                """,
                decimals=2,
            ),
            8,
            8,
        )
    )
    panels.append(
        lay.place(
            table(
                "By model version",
                "After a promotion the version changes; compare before and after. "
                "triage-rates v0 is the cold start (per-device rates, no model).",
                f"""
                SELECT t.model || ' v' || t.version AS "model", count(*) AS "alarms",
                       {precision} AS "precision", {recall} AS "recall",
                       avg(power(t.p_false - (a.disposition IN {false_})::int, 2)) AS "Brier"
                {scored}
                GROUP BY 1 ORDER BY 1
                """,
                decimals=3,
            ),
            24,
            6,
        )
    )
    panels += fall_shadow_panels(lay)
    panels.append(lay.row("Device health: battery time-to-low and offline risk (latest run)"))
    panels.append(
        lay.place(
            table(
                "Devices due a charge or likely to drop",
                "From the latest device-health run (eldercare models score device_health, "
                "every 10 min in serve): low battery within 24 h, or offline risk in the next "
                "24 h of at least 50 %. Soonest charge first.",
                f"""
                SELECT h.device_id AS "device", d.kind AS "kind", f.name AS "facility",
                       h.battery AS "battery %", h.hours_to_low AS "hours to low",
                       h.offline_risk_24h AS "offline risk 24 h", h.computed_at AS "computed"
                FROM device_health h
                JOIN devices d ON d.id = h.device_id
                LEFT JOIN facilities f ON f.id = d.facility_id
                WHERE (h.hours_to_low <= 24 OR h.offline_risk_24h >= 0.5)
                  AND {facility_filter("d.facility_id")}
                ORDER BY h.hours_to_low ASC NULLS LAST, h.offline_risk_24h DESC NULLS LAST
                LIMIT 200
                """,
                decimals=2,
            ),
            24,
            8,
        )
    )
    return dashboard(
        "eldercare-model-quality",
        "Model quality",
        "Alarm triage scores against operators' dispositions. Triage orders alarms only "
        "within a priority band; it never changes a priority or closes an alarm. The fall "
        "model runs in shadow only: its scores sit next to the devices' own fall decisions.",
        panels,
        variables=[facility_variable()],
        tags=["eldercare", "models"],
        time_from="now-30d",
    )


# The shadow fall model (issue 9B, docs/models/fall-detection.md): scores next to the
# device's own decision. "Real" is how operators closed the alarm.
FALL_REAL = _sql_words(TRIAGE_GENUINE)
FALL_FALSE = _sql_words(TRIAGE_FALSE)
DEVICE_FALL_CUT = 0.75  # the simulator's split (real falls 0.75-0.99); tune on real data


def fall_shadow_panels(lay: Layout) -> list[Json]:
    """The fall model in shadow mode against device-raised falls and operators' dispositions
    (a row of the model-quality dashboard).

    It never raises or changes an alarm; these panels are how a supervisor judges whether
    it ever should (the promotion gates in docs/models/fall-detection.md).
    """
    fac = facility_filter("s.facility_id")
    per_fall = f"""
        WITH per_fall AS (
            SELECT s.device_alarm_id, bool_or(s.suspected) AS model,
                   max(s.device_confidence) AS confidence
            FROM fall_shadow_scores s
            WHERE s.device_alarm_id IS NOT NULL AND $__timeFilter(s.time) AND {fac}
            GROUP BY s.device_alarm_id
        )"""
    panels: list[Json] = [
        lay.row("Fall model (shadow only: synthetic-trained, not clinically validated)")
    ]
    panels.append(
        lay.place(
            stat(
                "Windows scored",
                "imu windows the shadow model scored (eldercare models shadow fall).",
                f'SELECT count(*) AS "windows" FROM fall_shadow_scores s '
                f"WHERE $__timeFilter(s.time) AND {fac}",
            ),
            6,
            5,
        )
    )
    panels.append(
        lay.place(
            stat(
                "Device-raised falls with a scored window",
                "Fall alarms whose device streamed imu from 4 s before to 30 s after.",
                per_fall + ' SELECT count(*) AS "falls" FROM per_fall',
            ),
            6,
            5,
        )
    )
    panels.append(
        lay.place(
            stat(
                "Model agrees with device falls",
                "Share of device-raised falls where any scored window was a model-suspected "
                "fall (score >= threshold).",
                per_fall
                + """
                SELECT coalesce(round(100.0 * count(*) FILTER (WHERE model)
                                      / nullif(count(*), 0), 1), 0) AS "agree %"
                FROM per_fall""",
                unit="percent",
                decimals=1,
            ),
            6,
            5,
        )
    )
    panels.append(
        lay.place(
            stat(
                "Model-only suspected falls per wearable-day",
                "Suspected windows with no device fall, merged per device within 30 s, per "
                "day a wearable was scored. Promotion gate: at most 0.1.",
                f"""
                WITH s AS (
                    SELECT s.device_id, s.time,
                           s.suspected AND s.device_alarm_id IS NULL AS model_only
                    FROM fall_shadow_scores s
                    WHERE $__timeFilter(s.time) AND {fac}
                ), o AS (
                    SELECT time - lag(time) OVER (PARTITION BY device_id ORDER BY time) AS gap
                    FROM s WHERE model_only
                )
                SELECT coalesce(round(
                    (SELECT count(*) FROM o WHERE gap IS NULL OR gap > interval '30 seconds')
                    / nullif((SELECT count(DISTINCT (device_id, date_trunc('day', time)))
                              FROM s), 0)::numeric, 3), 0) AS "per wearable-day"
                """,
                thresholds=[(None, "green"), (0.1, "red")],
                decimals=3,
            ),
            6,
            5,
        )
    )
    panels.append(
        lay.place(
            table(
                "Agreement by how operators closed the device's fall",
                "Device-raised falls with a scored window, by disposition: how often the "
                "model also suspected a fall.",
                per_fall
                + f"""
                SELECT CASE WHEN a.disposition IN {FALL_REAL} THEN 'real fall'
                            WHEN a.disposition IN {FALL_FALSE} THEN 'false alarm'
                            WHEN a.disposition IS NULL THEN 'not closed yet'
                            ELSE 'other' END AS "closed as",
                       count(*) AS "device falls",
                       count(*) FILTER (WHERE p.model) AS "model agrees",
                       round(100.0 * count(*) FILTER (WHERE p.model) / count(*), 1)
                           AS "agree %"
                FROM per_fall p JOIN alarms a ON a.id = p.device_alarm_id
                GROUP BY 1 ORDER BY 1
                """,
            ),
            12,
            7,
        )
    )
    panels.append(
        lay.place(
            table(
                "Precision and recall on closed falls: model vs the device's confidence",
                f"Closed device falls with a scored window. Device baseline: confidence >= "
                f"{DEVICE_FALL_CUT} (the simulator's split; tune on real data). The model "
                "may only be promoted if its precision beats the device's.",
                per_fall
                + f""",
                closed AS (
                    SELECT p.model, p.confidence >= {DEVICE_FALL_CUT} AS device,
                           a.disposition IN {FALL_REAL} AS real
                    FROM per_fall p JOIN alarms a ON a.id = p.device_alarm_id
                    WHERE a.disposition IN {FALL_REAL} OR a.disposition IN {FALL_FALSE}
                )
                SELECT 'model (shadow)' AS "detector",
                       count(*) FILTER (WHERE model) AS "flagged",
                       count(*) FILTER (WHERE model AND real) AS "real among flagged",
                       round(100.0 * count(*) FILTER (WHERE model AND real)
                             / nullif(count(*) FILTER (WHERE model), 0), 1) AS "precision %",
                       round(100.0 * count(*) FILTER (WHERE model AND real)
                             / nullif(count(*) FILTER (WHERE real), 0), 1) AS "recall %"
                FROM closed
                UNION ALL
                SELECT 'device confidence >= {DEVICE_FALL_CUT}',
                       count(*) FILTER (WHERE device),
                       count(*) FILTER (WHERE device AND real),
                       round(100.0 * count(*) FILTER (WHERE device AND real)
                             / nullif(count(*) FILTER (WHERE device), 0), 1),
                       round(100.0 * count(*) FILTER (WHERE device AND real)
                             / nullif(count(*) FILTER (WHERE real), 0), 1)
                FROM closed
                """,
            ),
            12,
            7,
        )
    )
    panels.append(
        lay.place(
            timeseries(
                "Scored windows and model-only suspected windows",
                "Per interval. Model-only: suspected with no device fall linked.",
                f"""
                SELECT time_bucket('$__interval', s.time) AS "time",
                       count(*) AS "scored",
                       count(*) FILTER (WHERE s.suspected AND s.device_alarm_id IS NULL)
                           AS "model-only suspected"
                FROM fall_shadow_scores s
                WHERE $__timeFilter(s.time) AND {fac}
                GROUP BY 1 ORDER BY 1
                """,
                interval="1m",
            ),
            24,
            7,
        )
    )
    return panels


# File name (without .json) -> builder. Add new dashboards here.
DASHBOARDS: dict[str, Callable[[], Json]] = {
    "device-ingest-health": device_ingest_health,
    "response-times": response_times,
    "subsidies": subsidies,
    "model-quality": model_quality,
}


def render(build: Callable[[], Json]) -> str:
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--check", action="store_true", help="fail if a JSON file is missing or out of date"
    )
    args = parser.parse_args(argv)
    stale = []
    for name, build in DASHBOARDS.items():
        path = HERE / f"{name}.json"
        text = render(build)
        if args.check:
            if not path.exists() or path.read_text("utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, "utf-8")
            print(f"wrote {path.relative_to(HERE.parent)}")
    if stale:
        print("out of date (run python dashboards/build.py): " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
