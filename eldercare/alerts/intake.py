"""Alarm intake: turn an alarm-class device event into an alarm, inside the gateway's
transaction, so the device's ``ack`` can carry the platform's alarm id.

Called with an open transaction on ``conn`` (plain tuple rows); never commits. An
advisory lock per resident (or per device when it has no resident) makes concurrent
gateway workers agree on joining: every alarm a device can raise takes the same lock.

Correlation, in order:
1. the same device and kind while that alarm is open -> joined (counted);
2. a fall or SOS of a resident whose fall/SOS alarm is open and younger than
   :data:`rules.CORRELATION_WINDOW` -> the same incident (``kinds`` grows);
3. otherwise a new alarm.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import orjson
import psycopg

from eldercare.alerts import events, rules
from eldercare.protocol import Uplink
from eldercare.registry.schemas import DeviceInfo


def _details(event: Uplink) -> str:
    """The device's own fields, nested under ``device``: nothing a device sends can land
    next to (or be read as) platform state such as ``cancel_requested_at`` (audit C2).
    orjson re-serialises them, so PostgreSQL only ever parses JSON orjson wrote."""
    keep = {k: v for k, v in event.body.items() if k not in ("v", "id", "ts", "type")}
    return orjson.dumps({"device": keep}).decode()


def _lock(conn: psycopg.Connection, device: DeviceInfo) -> None:
    key = f"res:{device.resident_id}" if device.resident_id is not None else f"dev:{device.id}"
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (key,))


def _join(
    conn: psycopg.Connection,
    alarm_id: uuid.UUID,
    event: Uplink,
    device: DeviceInfo,
    now: datetime,
    how: str,
) -> None:
    conn.execute(
        "UPDATE alarms SET occurrences = occurrences + 1,"
        " last_occurrence_at = GREATEST(last_occurrence_at, %s),"
        " kinds = CASE WHEN %s = ANY(kinds) THEN kinds ELSE array_append(kinds, %s) END,"
        " devices = CASE WHEN %s = ANY(devices) THEN devices ELSE array_append(devices, %s) END"
        " WHERE id = %s",
        (event.received_at, event.type, event.type, device.id, device.id, alarm_id),
    )
    actor = f"device:{device.id}"
    events.audit(
        conn,
        alarm_id,
        now,
        actor,
        how,
        detail={"kind": event.type, "msg_id": event.msg_id, "event_time": event.time.isoformat()},
    )
    events.emit(conn, alarm_id, "joined", actor, how=how, kind=event.type)


def raise_alarm(
    conn: psycopg.Connection, event: Uplink, device: DeviceInfo, now: datetime
) -> tuple[uuid.UUID, bool]:
    """Open a new alarm, or join an open one (see the module's correlation rules).

    Returns ``(alarm_id, created)``.
    """
    _lock(conn, device)
    row = conn.execute(
        "SELECT id FROM alarms WHERE %s = ANY(devices) AND %s = ANY(kinds) AND status = ANY(%s)"
        " ORDER BY received_at DESC LIMIT 1",
        (device.id, event.type, list(rules.JOINABLE)),
    ).fetchone()
    if row is not None:
        _join(conn, row[0], event, device, now, "joined")
        return row[0], False
    if event.type in rules.PERSONAL_KINDS and device.resident_id is not None:
        row = conn.execute(
            "SELECT id FROM alarms WHERE resident_id = %s AND kinds && %s AND status = ANY(%s)"
            " AND received_at >= %s ORDER BY received_at DESC LIMIT 1",
            (
                device.resident_id,
                sorted(rules.PERSONAL_KINDS),
                list(rules.JOINABLE),
                event.received_at - rules.CORRELATION_WINDOW,
            ),
        ).fetchone()
        if row is not None:
            _join(conn, row[0], event, device, now, "correlated")
            return row[0], False
    area_row = conn.execute(
        "SELECT COALESCE((SELECT area FROM home_beds WHERE id = %s),"
        " (SELECT area FROM facilities WHERE id = %s), 'town'),"
        " (SELECT ability_level FROM residents WHERE id = %s)",
        (device.home_bed_id, device.facility_id, device.resident_id),
    ).fetchone()
    area = area_row[0] if area_row else "town"
    priority = rules.alarm_priority(event.type, area_row[1] if area_row else None)
    new = conn.execute(
        "INSERT INTO alarms (kind, kinds, devices, priority, device_id, resident_id, facility_id,"
        " home_bed_id, source_msg_id, event_time, received_at, clock_skew, last_occurrence_at,"
        " details, area) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s,"
        " %s::jsonb, %s) RETURNING id",
        (
            event.type,
            [event.type],
            [device.id],
            priority,
            device.id,
            device.resident_id,
            device.facility_id,
            device.home_bed_id,
            event.msg_id,
            event.time,
            event.received_at,
            event.clock_skew,
            event.received_at,
            _details(event),
            area,
        ),
    ).fetchone()
    assert new is not None
    alarm_id: uuid.UUID = new[0]
    actor = f"device:{device.id}"
    events.audit(
        conn,
        alarm_id,
        now,
        actor,
        "raised",
        None,
        "raised",
        {"kind": event.type, "msg_id": event.msg_id},
    )
    events.emit(conn, alarm_id, "raised", actor, kind=event.type, facility_id=device.facility_id)
    events.enqueue_webhooks(
        conn,
        alarm_id,
        "raised",
        device.facility_id,
        {
            "kind": event.type,
            "priority": priority,
            "facility_id": device.facility_id,
            "device_id": device.id,
            "room": device.room,
        },
        now,
    )
    return alarm_id, True


def record_cancel(
    conn: psycopg.Connection, event: Uplink, device: DeviceInfo, now: datetime
) -> uuid.UUID | None:
    """A resident's ``cancel``: recorded on the alarm, never closing it by itself."""
    row = conn.execute(
        "SELECT alarm_id FROM message_ids WHERE device_id = %s AND msg_id = %s",
        (device.id, event.body["ref"]),
    ).fetchone()
    if row is None or row[0] is None:
        return None
    conn.execute(
        "UPDATE alarms SET cancel_requested_at = %s, cancel_msg_id = %s WHERE id = %s",
        (event.time, event.msg_id, row[0]),
    )
    actor = f"device:{device.id}"
    events.audit(
        conn,
        row[0],
        now,
        actor,
        "cancel_requested",
        detail={"msg_id": event.msg_id, "ref": event.body["ref"]},
    )
    events.emit(conn, row[0], "cancel_requested", actor)
    return row[0]
