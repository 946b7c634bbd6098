"""The model-quality dashboard: alarm triage scores against operators' dispositions, device
health, and the fall model in shadow mode.
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
    panels += lay.place_row(
        [
            stat(
                "Scored alarms closed",
                "Closed alarms with a score and a false/needed disposition, received in range.",
                f'SELECT count(*) AS "alarms" {scored}',
            ),
            stat(
                "Precision of 'likely false'",
                f"Of alarms scored >= {TRIAGE_FLAG}, the share operators closed as accidental "
                "press or false sensor alarm.",
                f'SELECT {precision} AS "precision" {scored}',
                unit="percentunit",
                decimals=2,
            ),
            stat(
                "Recall of false alarms",
                f"Of alarms operators closed as false, the share scored >= {TRIAGE_FLAG}.",
                f'SELECT {recall} AS "recall" {scored}',
                unit="percentunit",
                decimals=2,
            ),
            stat(
                "Genuine emergencies called likely false",
                "Must stay 0 (the release gate): genuine_emergency / fall_without_injury "
                f"scored >= {TRIAGE_FLAG}. They were still handled first in their priority "
                "band's order of arrival only if unscored: look at each one.",
                f"SELECT count(*) FILTER (WHERE {flagged} AND a.disposition IN "
                f'{_sql_words(TRIAGE_GENUINE)}) AS "alarms" {scored}',
                thresholds=[(None, "green"), (1, "red")],
            ),
        ],
        6,
        5,
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
    panels += device_health_panels(lay)
    return dashboard(
        "eldercare-model-quality",
        "Model quality",
        "Alarm triage scores against operators' dispositions. Triage orders alarms only "
        "within a priority band; it never changes a priority or closes an alarm. The fall "
        "model runs in shadow only: its scores sit next to the devices' own fall decisions. "
        "Device health: batteries due a charge and devices likely to drop off.",
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
    panels += lay.place_row(
        [
            stat(
                "Windows scored",
                "imu windows the shadow model scored (eldercare models shadow fall).",
                f'SELECT count(*) AS "windows" FROM fall_shadow_scores s '
                f"WHERE $__timeFilter(s.time) AND {fac}",
            ),
            stat(
                "Device-raised falls with a scored window",
                "Fall alarms whose device streamed imu from 4 s before to 30 s after.",
                per_fall + ' SELECT count(*) AS "falls" FROM per_fall',
            ),
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
        ],
        6,
        5,
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


def device_health_panels(lay: Layout) -> list[Json]:
    """The device-health forecasts (issue 9B, docs/models/device_health.md), latest run."""
    return [
        lay.row("Device health: battery time-to-low and offline risk (latest run)"),
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
        ),
    ]
