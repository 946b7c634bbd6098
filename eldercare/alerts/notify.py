"""Notification channels behind one outbox.

The outbox rows are written with the alarm change (see events.py); delivery here
takes due rows one at a time (``FOR UPDATE SKIP LOCKED``, so several engines never
send the same row twice at once), records every attempt, and reschedules failures
with exponential backoff. A channel that keeps failing ends as ``failed`` with every
attempt on record; the alarm itself never depended on it.

Channels: ``device`` (MQTT ``alarm_status`` on the device's down topic, QoS 1) and
``webhook`` (signed POST for SMS/phone gateways, one lane per endpoint under the
outbound policy of outbound.py; see :class:`WebhookWorker`). The console/staff websocket push
is not in the outbox: it is live state, rebuilt by a reconnecting console from the API.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import orjson
import psycopg

from eldercare import mqtt
from eldercare.alerts import events, rules
from eldercare.config import Settings
from eldercare.errors import BrokerError, EldercareError
from eldercare.protocol import Channel, topic
from eldercare.storage import db

log = logging.getLogger(__name__)


class Publisher(Protocol):
    """Publishes one downlink to a device and returns once the broker has it (QoS 1)."""

    def publish(self, device_id: str, payload: dict[str, Any]) -> None: ...


# (url, body, headers) -> HTTP status; raises on any failure (outbound.WebhookPoster).
Poster = Callable[[str, bytes, dict[str, str]], int]


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


def deliver_due(
    conn: psycopg.Connection,
    now: datetime,
    channel: str,
    *,
    publisher: Publisher | None = None,
    limit: int = 200,
) -> dict[str, int]:
    """Attempt every due device notification; one short transaction per row.

    Webhooks go through :class:`WebhookWorker` instead: an HTTP call must not hold a
    transaction, and one endpoint must not make the others wait.
    """
    if channel != "device":
        raise ValueError(f"deliver_due handles the device channel, not {channel!r}")
    stats = {"delivered": 0, "retry": 0, "failed": 0}
    for _ in range(limit):
        with conn.transaction():
            rows = db.rows(
                conn,
                "SELECT id, alarm_id, channel, target, event, payload, attempts"
                " FROM notifications WHERE status = 'pending' AND channel = 'device'"
                " AND next_attempt_at <= %s ORDER BY next_attempt_at, id LIMIT 1"
                " FOR UPDATE SKIP LOCKED",
                (now,),
            )
            if not rows:
                break
            n = rows[0]
            try:
                if publisher is None:
                    raise BrokerError("no publisher")
                publisher.publish(n["target"], n["payload"])
                outcome = Outcome(True)
            except Exception as exc:  # any failure is recorded; none may stop the outbox
                outcome = Outcome(False, error=_describe(exc))
            stats[_record(conn, n, outcome, now, rules.DEVICE_MAX_ATTEMPTS)] += 1
    return stats


@dataclass(frozen=True, slots=True)
class Outcome:
    """One attempt's result, as recorded in ``notification_attempts``."""

    ok: bool
    status_code: int | None = None
    error: str | None = None
    final: bool = False  # no point retrying (the webhook was removed)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:500]


def _record(
    conn: psycopg.Connection, n: dict[str, Any], outcome: Outcome, now: datetime, cap: int
) -> str:
    """Write the attempt and the row's next state; returns delivered/retry/failed."""
    attempts = n["attempts"] + 1
    conn.execute(
        "INSERT INTO notification_attempts (notification_id, at, ok, status_code, error)"
        " VALUES (%s, %s, %s, %s, %s)",
        (n["id"], now, outcome.ok, outcome.status_code, outcome.error),
    )
    if outcome.ok:
        status, nxt = "delivered", now
    elif outcome.final or attempts >= cap:
        status, nxt = "failed", now
        log.warning(
            "notification %s (%s) failed after %s attempts", n["id"], n["channel"], attempts
        )
        if n.get("alarm_id") is not None:
            # Consoles are told at once (websocket "alarm" message, event
            # notification_failed): somebody who should have been messaged was not (M8).
            events.emit(
                conn,
                n["alarm_id"],
                "notification_failed",
                "system",
                notification_id=n["id"],
                channel=n["channel"],
                target=n["target"],
            )
    else:
        status, nxt = "pending", now + timedelta(seconds=rules.retry_delay(attempts))
    conn.execute(
        "UPDATE notifications SET status = %s, attempts = %s,"
        " next_attempt_at = %s, delivered_at = CASE WHEN %s THEN %s END"
        " WHERE id = %s",
        (status, attempts, nxt, outcome.ok, now, n["id"]),
    )
    return "retry" if status == "pending" else status


# ---------------------------------------------------------------- webhooks


class WebhookWorker:
    """Webhook delivery in per-endpoint lanes (audit H8).

    Each webhook with due rows gets one lane at a time, run on a small thread pool: a
    lane claims a row in a short transaction (pushing ``next_attempt_at`` past the
    attempt's deadline, so another engine leaves it alone and a crash only delays it),
    POSTs with no transaction open, then records the attempt. A lane stops at its
    endpoint's first failure, so a dead endpoint costs one attempt per pass while other
    endpoints' lanes, and the device channel's own thread, carry on.
    """

    def __init__(
        self,
        connect: Callable[[], psycopg.Connection],
        clock: rules.Clock,
        poster: Poster,
        *,
        lanes: int = 8,
        lease_s: float = 60.0,
        per_lane: int = 100,
    ) -> None:
        self.connect, self.clock, self.poster = connect, clock, poster
        self.lanes, self.lease_s, self.per_lane = lanes, lease_s, per_lane
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def run_once(self, conn: psycopg.Connection, *, wait: bool = True) -> dict[str, int]:
        """Start a lane for every endpoint with due rows that has none running; with
        ``wait``, wait for them and return what they did (tests, :meth:`Engine.tick`)."""
        due = db.rows(
            conn,
            "SELECT target FROM notifications WHERE status = 'pending'"
            " AND channel = 'webhook' AND next_attempt_at <= %s"
            " GROUP BY target ORDER BY min(next_attempt_at) LIMIT 1000",
            (self.clock(),),
        )
        started: list[Future[dict[str, int]]] = []
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.lanes, thread_name_prefix="webhook-lane")
            for row in due:
                if row["target"] in self._busy:
                    continue
                self._busy.add(row["target"])
                started.append(self._pool.submit(self._lane, row["target"]))
        stats = {"delivered": 0, "retry": 0, "failed": 0}
        if wait:
            for f in started:
                for k, v in f.result().items():
                    stats[k] += v
        return stats

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            # Running lanes end within one attempt's deadline; queued ones are dropped
            # (their rows stay due for the next engine).
            pool.shutdown(wait=False, cancel_futures=True)

    def _lane(self, target: str) -> dict[str, int]:
        stats = {"delivered": 0, "retry": 0, "failed": 0}
        try:
            with self.connect() as conn:
                for _ in range(self.per_lane):
                    n = self._claim(conn, target)
                    if n is None:
                        break
                    outcome = self._attempt(conn, n)
                    with conn.transaction():
                        result = _record(conn, n, outcome, self.clock(), rules.WEBHOOK_MAX_ATTEMPTS)
                    stats[result] += 1
                    if not outcome.ok:
                        break
        except (psycopg.Error, EldercareError) as exc:
            # The database went away mid-lane: claimed rows come due again after the lease.
            # Class and SQLSTATE only: a driver's message can quote a row's values.
            cause = exc if isinstance(exc, psycopg.Error) else exc.__cause__
            log.warning(
                "webhook lane for webhook %s: %s (SQLSTATE %s); rows retried after the lease",
                target,
                type(exc).__name__,
                getattr(cause, "sqlstate", None),
            )
        except Exception:
            log.exception("webhook lane for webhook %s failed", target)
        finally:
            with self._lock:
                self._busy.discard(target)
        return stats

    def _claim(self, conn: psycopg.Connection, target: str) -> dict[str, Any] | None:
        now = self.clock()
        with conn.transaction():
            rows = db.rows(
                conn,
                "SELECT id, alarm_id, channel, target, event, payload, attempts FROM notifications"
                " WHERE status = 'pending' AND channel = 'webhook' AND target = %s"
                " AND next_attempt_at <= %s ORDER BY next_attempt_at, id LIMIT 1"
                " FOR UPDATE SKIP LOCKED",
                (target, now),
            )
            if not rows:
                return None
            conn.execute(
                "UPDATE notifications SET next_attempt_at = %s WHERE id = %s",
                (now + timedelta(seconds=self.lease_s), rows[0]["id"]),
            )
            return rows[0]

    def _attempt(self, conn: psycopg.Connection, n: dict[str, Any]) -> Outcome:
        hooks = db.rows(
            conn, "SELECT url, secret, active FROM webhooks WHERE id = %s", (int(n["target"]),)
        )
        if not hooks or not hooks[0]["active"]:
            return Outcome(False, error="webhook removed or inactive", final=True)
        hook = hooks[0]
        body = json.dumps(n["payload"], separators=(",", ":")).encode()
        ts = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "X-Eldercare-Timestamp": str(ts),
            "X-Eldercare-Signature": rules.sign(hook["secret"], ts, body),
            "X-Eldercare-Delivery": str(n["id"]),
        }
        try:
            code = self.poster(hook["url"], body, headers)
        except Exception as exc:  # whatever the endpoint did, it is one failed attempt
            return Outcome(False, error=_describe(exc))
        if 200 <= code < 300:
            return Outcome(True, code)
        if 300 <= code < 400:
            return Outcome(False, code, f"HTTP {code}: redirects are not followed")
        return Outcome(False, code, f"HTTP {code}")


def failed(
    conn: psycopg.Connection, channel: str | None = None, limit: int = 200
) -> list[dict[str, Any]]:
    """Notifications that gave up, newest first, with their last error: what an admin
    checks to learn that a responder or gateway was never told."""
    return db.rows(
        conn,
        "SELECT n.id, n.alarm_id, n.channel, n.target, n.event, n.attempts,"
        " a.at AS failed_at, a.status_code AS last_status_code, a.error AS last_error"
        " FROM notifications n LEFT JOIN LATERAL (SELECT at, status_code, error"
        "   FROM notification_attempts WHERE notification_id = n.id"
        "   ORDER BY id DESC LIMIT 1) a ON true"
        " WHERE n.status = 'failed' AND (%s::text IS NULL OR n.channel = %s)"
        " ORDER BY a.at DESC NULLS LAST, n.id DESC LIMIT %s",
        (channel, channel, limit),
    )


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
