"""Notification channels behind one outbox.

The outbox rows are written with the alarm change (see events.py); delivery here
takes due rows one at a time (``FOR UPDATE SKIP LOCKED``, so several engines never
send the same row twice at once), records every attempt, and reschedules failures
with exponential backoff. A channel that keeps failing ends as ``failed`` with every
attempt on record; the alarm itself never depended on it.

Channels: ``device`` (MQTT ``alarm_status`` on the device's down topic, QoS 1) and
``webhook`` (signed POST for SMS/phone gateways). The console/staff websocket push
is not in the outbox: it is live state, rebuilt by a reconnecting console from the API.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, Protocol

import orjson
import psycopg

from eldercare import mqtt
from eldercare.alerts import rules
from eldercare.config import Settings
from eldercare.errors import BrokerError
from eldercare.protocol import Channel, topic
from eldercare.storage import db

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """Publishes one downlink to a device and returns once the broker has it (QoS 1)."""

    def publish(self, device_id: str, payload: dict[str, Any]) -> None: ...


# (url, body, headers, timeout) -> HTTP status; raises OSError on network failure.
Poster = Callable[[str, bytes, dict[str, str], float], int]


def http_post(url: str, body: bytes, headers: dict[str, str], timeout: float) -> int:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


class MqttPublisher:
    """The engine's own MQTT client (gateway credentials), connected in the background."""

    def __init__(self, settings: Settings, timeout: float = 5.0) -> None:
        self.timeout = timeout
        self._connected = threading.Event()
        self.client = mqtt.make_client(
            f"{settings.mqtt_client_prefix}-engine-{id(self):x}",
            settings.mqtt_username,
            settings.mqtt_password,
        )
        self.client.on_connect = lambda *a, **k: self._connected.set()
        self.client.on_disconnect = lambda *a, **k: self._connected.clear()
        self.client.connect_async(settings.mqtt_host, settings.mqtt_port, keepalive=30)
        self.client.loop_start()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self._connected.wait(timeout)

    def publish(self, device_id: str, payload: dict[str, Any]) -> None:
        if not self._connected.wait(self.timeout):
            raise BrokerError("engine is not connected to the broker")
        info = self.client.publish(topic(device_id, Channel.DOWN), orjson.dumps(payload), qos=1)
        info.wait_for_publish(self.timeout)
        if not info.is_published():
            raise BrokerError(f"no PUBACK for downlink to {device_id}")

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _webhook(conn: psycopg.Connection, target: str) -> dict[str, Any] | None:
    rows = db.rows(
        conn, "SELECT id, url, secret, active FROM webhooks WHERE id = %s", (int(target),)
    )
    return rows[0] if rows and rows[0]["active"] else None


def deliver_due(
    conn: psycopg.Connection,
    now: datetime,
    channel: str,
    *,
    publisher: Publisher | None = None,
    poster: Poster = http_post,
    limit: int = 200,
    timeout: float = 5.0,
) -> dict[str, int]:
    """Attempt every due notification of ``channel``; one short transaction per row."""
    stats = {"delivered": 0, "retry": 0, "failed": 0}
    for _ in range(limit):
        with conn.transaction():
            rows = db.rows(
                conn,
                "SELECT id, alarm_id, target, event, payload, attempts"
                " FROM notifications WHERE status = 'pending' AND channel = %s"
                " AND next_attempt_at <= %s ORDER BY next_attempt_at, id LIMIT 1"
                " FOR UPDATE SKIP LOCKED",
                (channel, now),
            )
            if not rows:
                break
            n = rows[0]
            ok, code, error = _attempt(conn, channel, n, publisher, poster, timeout)
            attempts = n["attempts"] + 1
            conn.execute(
                "INSERT INTO notification_attempts (notification_id, at, ok,"
                " status_code, error) VALUES (%s, %s, %s, %s, %s)",
                (n["id"], now, ok, code, error),
            )
            cap = rules.WEBHOOK_MAX_ATTEMPTS if channel == "webhook" else rules.DEVICE_MAX_ATTEMPTS
            if ok:
                status, nxt = "delivered", now
                stats["delivered"] += 1
            elif attempts >= cap:
                status, nxt = "failed", now
                stats["failed"] += 1
                log.warning(
                    "notification %s (%s) failed after %s attempts", n["id"], channel, attempts
                )
            else:
                status, nxt = "pending", now + timedelta(seconds=rules.retry_delay(attempts))
                stats["retry"] += 1
            conn.execute(
                "UPDATE notifications SET status = %s, attempts = %s,"
                " next_attempt_at = %s, delivered_at = CASE WHEN %s THEN %s END"
                " WHERE id = %s",
                (status, attempts, nxt, ok, now, n["id"]),
            )
    return stats


def _attempt(
    conn: psycopg.Connection,
    channel: str,
    n: dict[str, Any],
    publisher: Publisher | None,
    poster: Poster,
    timeout: float,
) -> tuple[bool, int | None, str | None]:
    try:
        if channel == "device":
            if publisher is None:
                return False, None, "no publisher"
            publisher.publish(n["target"], n["payload"])
            return True, None, None
        hook = _webhook(conn, n["target"])
        if hook is None:
            return False, None, "webhook removed or inactive"
        body = json.dumps(n["payload"], separators=(",", ":")).encode()
        ts = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "X-Eldercare-Timestamp": str(ts),
            "X-Eldercare-Signature": rules.sign(hook["secret"], ts, body),
            "X-Eldercare-Delivery": str(n["id"]),
        }
        code = poster(hook["url"], body, headers, timeout)
        return 200 <= code < 300, code, None if 200 <= code < 300 else f"HTTP {code}"
    except (OSError, BrokerError, ValueError) as exc:
        return False, None, f"{type(exc).__name__}: {exc}"[:500]


def history(conn: psycopg.Connection, alarm_id: str) -> list[dict[str, Any]]:
    rows = db.rows(
        conn,
        "SELECT id, channel, target, event, status, attempts, created_at,"
        " delivered_at FROM notifications WHERE alarm_id = %s ORDER BY id",
        (alarm_id,),
    )
    if rows:
        log_rows = db.rows(
            conn,
            "SELECT notification_id, at, ok, status_code, error FROM"
            " notification_attempts WHERE notification_id = ANY(%s)"
            " ORDER BY id",
            ([r["id"] for r in rows],),
        )
        by: dict[int, list[dict[str, Any]]] = {}
        for a in log_rows:
            by.setdefault(a.pop("notification_id"), []).append(a)
        for r in rows:
            r["attempt_log"] = by.get(r["id"], [])
    return rows
