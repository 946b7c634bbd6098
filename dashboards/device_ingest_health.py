"""The device ingest & health dashboard: is data arriving, what is refused, which devices
and cameras are down.
"""

from __future__ import annotations

from dashboards.grafana import (
    Json,
    Layout,
    bargauge,
    constant_variable,
    dashboard,
    facility_filter,
    facility_variable,
    stat,
    table,
    timeseries,
)


def device_ingest_health() -> Json:
    """Is data arriving, what is refused, which devices and cameras are down."""
    lay = Layout()
    ev_facility = facility_filter("e.facility_id")
    dev_facility = facility_filter("d.facility_id")
    panels: list[Json] = []

    panels.append(lay.row("Now"))
    panels += lay.place_row(
        [
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
            # $__timeFrom()/$__timeTo() rather than a count: the rate stays comparable
            # whatever range the operator picks.
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
        ],
        4,
        4,
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
