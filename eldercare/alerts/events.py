"""What every alarm change writes in its own transaction: the audit row, the outbox rows
(device downlink, webhooks) and the NOTIFY that wakes the engine and the consoles.

Writing all of these with the change means a crash between "changed" and "told"
cannot happen: either everything commits or nothing does.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Final

import psycopg
from psycopg.types.json import Jsonb

from eldercare.alerts import rules

ALARM_CHANNEL: Final = "eldercare_alarms"
STATE_CHANNEL: Final = "eldercare_state"
# Other layers' changes the consoles show live (the platform's work orders): the payload is
# relayed as it is, so it must already be fit for every desk user (no personal data).
RELAY_CHANNEL: Final = "eldercare_relay"


def relay(conn: psycopg.Connection, message: dict[str, Any], facility_id: int | None) -> None:
    """NOTIFY after commit: the engine forwards ``message`` to the consoles' websockets."""
    body = {"message": message, "facility_id": facility_id}
    conn.execute("SELECT pg_notify(%s, %s)", (RELAY_CHANNEL, json.dumps(body, default=str)))


def audit(
    conn: psycopg.Connection,
    alarm_id: uuid.UUID | str,
    at: datetime,
    actor: str,
    action: str,
    from_status: str | None = None,
    to_status: str | None = None,
    detail: dict[str, Any] | None = None,
) -> None:
    conn.execute(
        "INSERT INTO alarm_events (alarm_id, at, actor, action, from_status, to_status, detail)"
        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
        (alarm_id, at, actor, action, from_status, to_status, Jsonb(detail or {})),
    )


def emit(
    conn: psycopg.Connection, alarm_id: uuid.UUID | str, event: str, actor: str, **extra: Any
) -> None:
    """NOTIFY after commit: the engine pushes the alarm to consoles and runs the outbox."""
    body = {"alarm_id": str(alarm_id), "event": event, "actor": actor, **extra}
    conn.execute("SELECT pg_notify(%s, %s)", (ALARM_CHANNEL, json.dumps(body, default=str)))


def enqueue_device(
    conn: psycopg.Connection,
    alarm_id: uuid.UUID | str,
    devices: Iterable[str],
    status: str,
    now: datetime,
) -> None:
    """Tell every device that contributed to the alarm (protocol ``alarm_status``)."""
    if status not in rules.DEVICE_TOLD:
        return
    payload = {"v": 1, "type": "alarm_status", "alarm_id": str(alarm_id), "status": status}
    rows = [(alarm_id, d, status, Jsonb(payload), now, now) for d in dict.fromkeys(devices)]
    if not rows:
        return
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO notifications (alarm_id, channel, target, event, payload,"
            " next_attempt_at, created_at) VALUES (%s, 'device', %s, %s, %s, %s, %s)",
            rows,
        )


def enqueue_webhooks(
    conn: psycopg.Connection,
    alarm_id: uuid.UUID | str | None,
    event: str,
    facility_id: int | None,
    payload: dict[str, Any],
    now: datetime,
) -> None:
    """One outbox row per subscribed webhook; none when nobody subscribed (one cheap query)."""
    body = {
        "event": event,
        "alarm_id": str(alarm_id) if alarm_id else None,
        "at": now.isoformat(),
        **payload,
    }
    conn.execute(
        "INSERT INTO notifications (alarm_id, channel, target, event, payload, next_attempt_at,"
        " created_at) SELECT %s, 'webhook', w.id::text, %s, %s, %s, %s FROM webhooks w"
        " WHERE w.active AND (w.events = '{}' OR %s = ANY(w.events))"
        " AND (w.facility_id IS NULL OR w.facility_id = %s)",
        (alarm_id, event, Jsonb(body), now, now, event, facility_id),
    )
