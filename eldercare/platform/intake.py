"""Alarm intake: turn an alarm-class device event into an alarm, inside the gateway's
transaction, so the device's ``ack`` can carry the platform's alarm id.

Called with an open transaction on ``conn``; never commits. A per-device
advisory lock makes concurrent workers agree on joining an open alarm.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Final

import psycopg

from eldercare.models.protocol import Uplink
from eldercare.models.registry import DeviceInfo

# 1 = life-safety; lower numbers are served first.
PRIORITY: Final = {
    "fall": 1, "sos": 1, "smoke": 1, "gas": 1,
    "water_leak": 2,
    "bed_exit": 3, "inactivity": 3,
    "device_offline": 4, "low_battery": 4, "camera_offline": 4, "facility_outage": 2,
}
OPEN_STATUSES: Final = ("raised", "acknowledged", "dispatched", "accepted", "on_site")


def _details(event: Uplink) -> str:
    keep = {k: v for k, v in event.body.items() if k not in ("v", "id", "ts", "type")}
    return json.dumps(keep)


def raise_alarm(
    conn: psycopg.Connection, event: Uplink, device: DeviceInfo, now: datetime
) -> tuple[uuid.UUID, bool]:
    """Open a new alarm, or join this device's open alarm of the same kind.

    Returns ``(alarm_id, created)``. Repeated presses are counted, not new alarms.
    """
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (device.id,))
    row = conn.execute(
        "SELECT id FROM alarms WHERE device_id = %s AND kind = %s AND status = ANY(%s)"
        " ORDER BY received_at DESC LIMIT 1",
        (device.id, event.type, list(OPEN_STATUSES)),
    ).fetchone()
    if row is not None:
        conn.execute(
            "UPDATE alarms SET occurrences = occurrences + 1, last_occurrence_at = %s"
            " WHERE id = %s",
            (event.received_at, row[0]),
        )
        conn.execute("SELECT pg_notify('eldercare_alarms', %s)",
                     (json.dumps({"alarm_id": str(row[0]), "event": "joined"}),))
        return row[0], False
    new = conn.execute(
        "INSERT INTO alarms (kind, priority, device_id, resident_id, facility_id, home_bed_id,"
        " source_msg_id, event_time, received_at, clock_skew, last_occurrence_at, details)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb) RETURNING id",
        (event.type, PRIORITY[event.type], device.id, device.resident_id, device.facility_id,
         device.home_bed_id, event.msg_id, event.time, event.received_at, event.clock_skew,
         event.received_at, _details(event)),
    ).fetchone()
    assert new is not None
    conn.execute("SELECT pg_notify('eldercare_alarms', %s)",
                 (json.dumps({"alarm_id": str(new[0]), "event": "raised"}),))
    return new[0], True


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
        "UPDATE alarms SET details = details || jsonb_build_object('cancel_requested_at', %s::text,"
        " 'cancel_msg_id', %s::text) WHERE id = %s",
        (event.time.isoformat(), event.msg_id, row[0]),
    )
    conn.execute("SELECT pg_notify('eldercare_alarms', %s)",
                 (json.dumps({"alarm_id": str(row[0]), "event": "cancel_requested"}),))
    return row[0]
