"""Device-health alarms, reconciled from the liveness tables rather than from NOTIFYs.

The gateway's ``eldercare_state`` NOTIFY only wakes the scan early; the scan itself
compares ``device_status`` / ``camera_status`` with the open health alarms, so a
notification missed while the engine was down is caught by the next scan.

- device offline (Last Will or missed heartbeats) -> ``device_offline``, cleared when it
  is back; most of a facility's devices offline together -> one ``facility_outage``,
  and the unattended per-device alarms of that facility are merged into it;
- a camera offline longer than ``camera_offline_alarm_s`` while its bridge is online
  -> ``camera_offline`` (a bridge that is offline already has its own alarm);
- battery below ``low_battery_pct`` -> ``low_battery``, cleared a few percent above.

An alarm that is not yet cleared suppresses a new one of the same kind for the same
subject, so an operator closing "device offline" while it still is does not re-raise it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from eldercare.alerts import events, rules
from eldercare.config import Settings
from eldercare.storage import db

_OPEN_HEALTH = "cleared_at IS NULL AND status <> 'merged'"


def _raise(
    conn: psycopg.Connection,
    kind: str,
    now: datetime,
    *,
    event_time: datetime,
    facility_id: int | None,
    device: dict[str, Any] | None = None,
    camera_id: str | None = None,
    details: dict[str, Any] | None = None,
    area: str = "town",
) -> uuid.UUID:
    dev = device or {}
    row = db.rows(
        conn,
        "INSERT INTO alarms (kind, kinds, devices, priority, device_id, camera_id,"
        " resident_id, facility_id, home_bed_id, event_time, received_at,"
        " last_occurrence_at, details, area) VALUES (%s, %s, %s, %s, %s, %s, %s,"
        " %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (
            kind,
            [kind],
            [dev["id"]] if dev else [],
            rules.PRIORITY[kind],
            dev.get("id"),
            camera_id,
            dev.get("resident_id"),
            facility_id,
            dev.get("home_bed_id"),
            event_time,
            now,
            now,
            Jsonb(details or {}),
            area,
        ),
    )
    alarm_id: uuid.UUID = row[0]["id"]
    events.audit(conn, alarm_id, now, "system", "raised", None, "raised", details or {})
    events.enqueue_webhooks(
        conn,
        alarm_id,
        "raised",
        facility_id,
        {
            "kind": kind,
            "priority": rules.PRIORITY[kind],
            "facility_id": facility_id,
            "device_id": dev.get("id"),
            "camera_id": camera_id,
        },
        now,
    )
    events.emit(conn, alarm_id, "raised", "system", kind=kind, facility_id=facility_id)
    return alarm_id


def _clear(
    conn: psycopg.Connection,
    where: str,
    params: Iterable[Any],
    now: datetime,
    restore: dict[str, Any],
) -> int:
    """Record the restore on every uncleared matching alarm; close those nobody took up."""
    rows = db.rows(
        conn,
        f"SELECT id, status FROM alarms WHERE cleared_at IS NULL AND {where} FOR UPDATE",
        list(params),
    )
    for r in rows:
        close = r["status"] in rules.UNTAKEN
        conn.execute(
            "UPDATE alarms SET cleared_at = %s, details = details || %s,"
            " status = CASE WHEN %s THEN 'closed' ELSE status END,"
            " closed_at = CASE WHEN %s THEN %s ELSE closed_at END,"
            " disposition = CASE WHEN %s THEN 'no_response_needed' ELSE disposition END"
            " WHERE id = %s",
            (now, Jsonb({"restore": restore}), close, close, now, close, r["id"]),
        )
        to = "closed" if close else r["status"]
        events.audit(conn, r["id"], now, "system", "cleared", r["status"], to, restore)
        events.emit(conn, r["id"], "cleared", "system")
    return len(rows)


def _areas(conn: psycopg.Connection) -> dict[int, str]:
    return {r["id"]: r["area"] for r in db.rows(conn, "SELECT id, area FROM facilities")}


def scan(
    conn: psycopg.Connection,
    settings: Settings,
    now: datetime,
    facilities: Iterable[int] | None = None,
) -> dict[str, int]:
    """One reconciliation pass; returns how many alarms were raised/cleared/merged."""
    stats = {"raised": 0, "cleared": 0, "merged": 0}
    only = sorted(set(facilities)) if facilities is not None else None
    areas = _areas(conn)
    totals = db.rows(
        conn,
        """
        SELECT d.facility_id, count(*) AS total,
               count(*) FILTER (WHERE NOT s.online) AS offline
        FROM devices d JOIN device_status s ON s.device_id = d.id
        WHERE d.status = 'active' AND s.last_seen_at IS NOT NULL AND d.facility_id IS NOT NULL
          AND (%s::bigint[] IS NULL OR d.facility_id = ANY(%s))
        GROUP BY d.facility_id""",
        (only, only),
    )
    # Only facilities with something offline or a health alarm still open need a look.
    watched = {
        r["facility_id"]
        for r in db.rows(
            conn,
            """
        SELECT DISTINCT facility_id FROM alarms WHERE cleared_at IS NULL
          AND kind IN ('device_offline', 'facility_outage')""",
        )
    }
    for t in totals:
        if t["offline"] == 0 and t["facility_id"] not in watched:
            continue
        with conn.transaction():
            _facility(
                conn,
                t["facility_id"],
                t["total"],
                t["offline"],
                now,
                areas.get(t["facility_id"], "town"),
                stats,
            )
    with conn.transaction():
        _cameras(conn, settings, now, only, areas, stats)
    if only is None:
        with conn.transaction():
            _batteries(conn, settings, now, areas, stats)
    return stats


def _facility(
    conn: psycopg.Connection,
    fac: int,
    total: int,
    offline: int,
    now: datetime,
    area: str,
    stats: dict[str, int],
) -> None:
    # Two engines (or a scan and a NOTIFY-triggered scan) must not both raise the outage.
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"health:{fac}",))
    outage = db.rows(
        conn,
        f"SELECT id, status FROM alarms WHERE kind = 'facility_outage'"
        f" AND facility_id = %s AND {_OPEN_HEALTH} LIMIT 1",
        (fac,),
    )
    down = rules.is_outage(total, offline)
    if outage and not down:
        stats["cleared"] += _clear(
            conn,
            "kind = 'facility_outage' AND facility_id = %s",
            [fac],
            now,
            {"offline": offline, "total": total, "at": now.isoformat()},
        )
        outage = []
    if down and not outage:
        oid = _raise(
            conn,
            "facility_outage",
            now,
            event_time=now,
            facility_id=fac,
            area=area,
            details={"offline": offline, "total": total},
        )
        stats["raised"] += 1
        # Fold the storm: per-device alarms nobody has taken up yet join the incident.
        merged = db.rows(
            conn,
            "UPDATE alarms SET status = 'merged', merged_into = %s"
            " WHERE kind = 'device_offline' AND facility_id = %s"
            " AND status = 'raised' AND cleared_at IS NULL RETURNING id",
            (oid, fac),
        )
        for m in merged:
            events.audit(
                conn, m["id"], now, "system", "merged", "raised", "merged", {"into": str(oid)}
            )
            events.emit(conn, m["id"], "merged", "system", into=str(oid))
        stats["merged"] += len(merged)
        outage = [{"id": oid}]
    elif outage:
        conn.execute(
            "UPDATE alarms SET occurrences = %s, last_occurrence_at = %s,"
            " details = details || %s WHERE id = %s AND occurrences <> %s",
            (offline, now, Jsonb({"offline": offline, "total": total}), outage[0]["id"], offline),
        )
    # Devices back online: clear their alarms (merged ones too, so they never re-surface).
    back = db.rows(
        conn,
        """
        SELECT DISTINCT a.device_id FROM alarms a JOIN device_status s ON s.device_id = a.device_id
        WHERE a.kind = 'device_offline' AND a.facility_id = %s AND a.cleared_at IS NULL
          AND s.online""",
        (fac,),
    )
    for b in back:
        stats["cleared"] += _clear(
            conn,
            "kind = 'device_offline' AND device_id = %s",
            [b["device_id"]],
            now,
            {"online_at": now.isoformat()},
        )
    if outage:
        return
    gone = db.rows(
        conn,
        """
        SELECT d.id, d.resident_id, d.home_bed_id, s.changed_at,
               (SELECT cause FROM state_changes c WHERE c.device_id = d.id AND c.camera_id IS NULL
                 ORDER BY c.time DESC LIMIT 1) AS cause
        FROM devices d JOIN device_status s ON s.device_id = d.id
        WHERE d.facility_id = %s AND d.status = 'active' AND NOT s.online
          AND s.last_seen_at IS NOT NULL
          AND NOT EXISTS (SELECT 1 FROM alarms a WHERE a.kind = 'device_offline'
                           AND a.device_id = d.id AND a.cleared_at IS NULL
                           AND a.status <> 'merged')
        ORDER BY d.id""",
        (fac,),
    )
    for g in gone:
        _raise(
            conn,
            "device_offline",
            now,
            event_time=g["changed_at"] or now,
            facility_id=fac,
            device=g,
            area=area,
            details={"cause": g["cause"]},
        )
        stats["raised"] += 1


def _cameras(
    conn: psycopg.Connection,
    settings: Settings,
    now: datetime,
    only: list[int] | None,
    areas: dict[int, str],
    stats: dict[str, int],
) -> None:
    late = now - timedelta(seconds=settings.camera_offline_alarm_s)
    rows = db.rows(
        conn,
        """
        SELECT c.device_id, c.camera_id, c.status, c.changed_at, d.facility_id, d.resident_id,
               d.home_bed_id, d.id
        FROM camera_status c JOIN devices d ON d.id = c.device_id
        JOIN device_status s ON s.device_id = c.device_id
        WHERE NOT c.online AND c.changed_at <= %s AND d.status = 'active' AND s.online
          AND (%s::bigint[] IS NULL OR d.facility_id = ANY(%s))
          AND NOT EXISTS (SELECT 1 FROM alarms a WHERE a.kind = 'camera_offline'
                           AND a.device_id = c.device_id AND a.camera_id = c.camera_id
                           AND a.cleared_at IS NULL AND a.status <> 'merged')""",
        (late, only, only),
    )
    for r in rows:
        _raise(
            conn,
            "camera_offline",
            now,
            event_time=r["changed_at"],
            facility_id=r["facility_id"],
            device=r,
            camera_id=r["camera_id"],
            area=areas.get(r["facility_id"], "town"),
            details={"camera_status": r["status"]},
        )
        stats["raised"] += 1
    back = db.rows(
        conn,
        """
        SELECT a.device_id, a.camera_id FROM alarms a JOIN camera_status c
          ON c.device_id = a.device_id AND c.camera_id = a.camera_id
        WHERE a.kind = 'camera_offline' AND a.cleared_at IS NULL AND c.online
          AND (%s::bigint[] IS NULL OR a.facility_id = ANY(%s))""",
        (only, only),
    )
    for b in back:
        stats["cleared"] += _clear(
            conn,
            "kind = 'camera_offline' AND device_id = %s AND camera_id = %s",
            [b["device_id"], b["camera_id"]],
            now,
            {"online_at": now.isoformat()},
        )


def _batteries(
    conn: psycopg.Connection,
    settings: Settings,
    now: datetime,
    areas: dict[int, str],
    stats: dict[str, int],
) -> None:
    low = db.rows(
        conn,
        """
        SELECT d.id, d.facility_id, d.resident_id, d.home_bed_id, s.battery, s.last_heartbeat_at
        FROM device_status s JOIN devices d ON d.id = s.device_id
        WHERE s.battery < %s AND d.status = 'active'
          AND NOT EXISTS (SELECT 1 FROM alarms a WHERE a.kind = 'low_battery'
                           AND a.device_id = d.id AND a.cleared_at IS NULL
                           AND a.status <> 'merged')""",
        (settings.low_battery_pct,),
    )
    for r in low:
        _raise(
            conn,
            "low_battery",
            now,
            event_time=r["last_heartbeat_at"] or now,
            facility_id=r["facility_id"],
            device=r,
            area=areas.get(r["facility_id"], "town"),
            details={"battery": r["battery"]},
        )
        stats["raised"] += 1
    back = db.rows(
        conn,
        """
        SELECT a.device_id, s.battery FROM alarms a JOIN device_status s
          ON s.device_id = a.device_id
        WHERE a.kind = 'low_battery' AND a.cleared_at IS NULL AND s.battery >= %s""",
        (settings.low_battery_pct + rules.BATTERY_HYSTERESIS,),
    )
    for b in back:
        stats["cleared"] += _clear(
            conn,
            "kind = 'low_battery' AND device_id = %s",
            [b["device_id"]],
            now,
            {"battery": b["battery"]},
        )
