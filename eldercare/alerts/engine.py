"""The running alert engine: timers, outbox delivery, the LISTEN loop, and a feed of alarm
changes for whoever listens (the websocket hub lives in eldercare.http.live).

Everything it acts on is derived from database state (escalation_due_at, raised
alarms past their target, due outbox rows, liveness tables), so a restarted engine
resumes every running escalation and undelivered notification. NOTIFYs only make it
act sooner. :meth:`Engine.tick` runs one pass of everything with the engine's clock,
which is how tests drive timers with frozen time.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any, Protocol

import psycopg
from psycopg.rows import dict_row

from eldercare.alerts import dispatch, events, health, notify, outbound, rules
from eldercare.alerts.dispatch import OFFER_SQL, shown
from eldercare.alerts.lifecycle import SUMMARY_SQL, _finish
from eldercare.config import Settings

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- live feed


class Feed(Protocol):
    """Where alarm changes are pushed as they happen. The engine knows nothing of
    websockets: :class:`eldercare.http.live.Hub` implements this for consoles."""

    def active(self) -> bool:
        """Whether anyone is listening (the engine skips the summary query if not)."""
        ...

    def send(
        self, message: dict[str, Any], facility_id: int | None, *, staff: bool = True
    ) -> int: ...


class NoFeed:
    """A feed nobody listens to (an engine without an HTTP front end)."""

    def active(self) -> bool:
        return False

    def send(self, message: dict[str, Any], facility_id: int | None, *, staff: bool = True) -> int:
        return 0


# ---------------------------------------------------------------- engine


def webhook_policy(settings: Settings) -> outbound.OutboundPolicy:
    return outbound.OutboundPolicy.of(
        settings.webhook_allow_hosts,
        connect_timeout=min(settings.webhook_connect_timeout_s, settings.webhook_timeout_s),
        total_timeout=settings.webhook_timeout_s,
        max_response_bytes=settings.webhook_max_response_bytes,
    )


class Engine:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: rules.Clock,
        publisher: notify.Publisher | None,
        poster: notify.Poster | None = None,
        feed: Feed | None = None,
        tick_s: float = 0.5,
        health_s: float = 5.0,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.publisher = publisher
        self.poster = poster or outbound.WebhookPoster(webhook_policy(settings))
        self.webhooks = notify.WebhookWorker(
            self._connect,
            clock,
            self.poster,
            lanes=settings.webhook_lanes,
            lease_s=settings.webhook_timeout_s + 60,
        )
        self.feed: Feed = feed or NoFeed()
        self.tick_s = tick_s
        self.health_s = health_s
        self.listening = threading.Event()
        self._stop = threading.Event()
        self._wake_device = threading.Event()
        self._wake_webhook = threading.Event()
        self._wake_health = threading.Event()
        self._dirty: set[int] = set()
        self._dirty_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # ---------------------------------------------------------------- one pass (tests)

    def tick(self, now: datetime | None = None) -> dict[str, Any]:
        """Run every timer and delivery once, synchronously."""
        now = now or self.clock()
        with self._connect() as conn:
            return {
                "escalated": dispatch.escalate_due(conn, now),
                "supervisor": dispatch.supervisor_due(conn, now),
                "health": health.scan(conn, self.settings, now),
                "device": notify.deliver_due(conn, now, "device", publisher=self.publisher),
                "webhook": self.webhooks.run_once(conn, wait=True),
            }

    def _connect(self) -> psycopg.Connection:
        return psycopg.connect(self.settings.database_url, autocommit=True, connect_timeout=5)

    # ---------------------------------------------------------------- background threads

    def start(self) -> None:
        self._stop.clear()
        for name, target in (
            ("timers", self._timers),
            ("health", self._health),
            ("device-out", self._device_out),
            ("webhook-out", self._webhook_out),
        ):
            t = threading.Thread(
                target=self._loop, args=(name, target), name=f"engine-{name}", daemon=True
            )
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for ev in (self._wake_device, self._wake_webhook, self._wake_health):
            ev.set()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()
        self.webhooks.close()

    def _loop(self, name: str, body: Callable[[psycopg.Connection], None]) -> None:
        while not self._stop.is_set():
            try:
                with self._connect() as conn:
                    while not self._stop.is_set():
                        body(conn)
            except Exception:
                # Never let a timer die: log, back off, reconnect.
                log.exception("engine %s loop failed; restarting in 1 s", name)
                self._stop.wait(1.0)

    def _timers(self, conn: psycopg.Connection) -> None:
        now = self.clock()
        dispatch.escalate_due(conn, now)
        dispatch.supervisor_due(conn, now)
        self._stop.wait(self.tick_s)

    def _health(self, conn: psycopg.Connection) -> None:
        woken = self._wake_health.wait(self.health_s)
        self._wake_health.clear()
        if self._stop.is_set():
            return
        with self._dirty_lock:
            dirty, self._dirty = self._dirty, set()
        if woken and dirty:
            # Let a burst of offline transitions land before judging the facility.
            self._stop.wait(0.2)
            with self._dirty_lock:
                dirty |= self._dirty
                self._dirty = set()
            health.scan(conn, self.settings, self.clock(), dirty)
        else:
            health.scan(conn, self.settings, self.clock())

    def _device_out(self, conn: psycopg.Connection) -> None:
        notify.deliver_due(conn, self.clock(), "device", publisher=self.publisher)
        self._wake_device.wait(1.0)
        self._wake_device.clear()

    def _webhook_out(self, conn: psycopg.Connection) -> None:
        # Starts lanes and returns: a slow endpoint's lane never delays this loop.
        self.webhooks.run_once(conn, wait=False)
        self._wake_webhook.wait(1.0)
        self._wake_webhook.clear()

    # ---------------------------------------------------------------- LISTEN

    async def listen(self) -> None:
        """Forward alarm NOTIFYs to websockets and wake the outbox; survive DB restarts."""
        while not self._stop.is_set():
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self.settings.database_url, autocommit=True
                )
                query = await psycopg.AsyncConnection.connect(
                    self.settings.database_url, autocommit=True, row_factory=dict_row
                )
                async with conn, query:
                    await conn.execute(f"LISTEN {events.ALARM_CHANNEL}")
                    await conn.execute(f"LISTEN {events.STATE_CHANNEL}")
                    await conn.execute(f"LISTEN {events.RELAY_CHANNEL}")
                    self.listening.set()
                    async for n in conn.notifies():
                        try:
                            await self._on_notify(n.channel, n.payload, query)
                        except psycopg.Error:
                            raise
                        except Exception:
                            log.exception("could not handle a %s notification", n.channel)
            except asyncio.CancelledError:
                raise
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning("engine lost its LISTEN connection (%s); reconnecting", exc)
                # Anything missed meanwhile is caught by the timers' database scans.
                self._wake_device.set()
                self._wake_webhook.set()
                self._wake_health.set()
                await asyncio.sleep(1.0)

    async def _on_notify(
        self, channel: str, payload: str, query: psycopg.AsyncConnection[dict[str, Any]]
    ) -> None:
        body = json.loads(payload)
        if channel == events.RELAY_CHANNEL:
            if self.feed.active():
                self.feed.send(body["message"], body.get("facility_id"))
            return
        if channel == events.STATE_CHANNEL:
            if body.get("facility_id") is not None:
                with self._dirty_lock:
                    self._dirty.add(int(body["facility_id"]))
            self._wake_health.set()
            return
        self._wake_device.set()
        self._wake_webhook.set()
        if not self.feed.active():
            return
        cur = await query.execute(SUMMARY_SQL + " WHERE a.id = %s", (body["alarm_id"],))
        row = await cur.fetchone()
        if row is None:
            return
        alarm = _finish(row)
        at = self.clock().isoformat()
        event = body.get("event", "changed")
        fac = alarm["facility_id"]
        if event == "supervisor":
            self.feed.send(
                {"type": "supervisor", "alarm": alarm, "reason": body.get("reason"), "at": at},
                fac,
                staff=False,
            )
        self.feed.send(
            {"type": "alarm", "event": event, "alarm": alarm, "at": at, "actor": body.get("actor")},
            fac,
        )
        offer_ids = body.get("offer_ids") or []
        if offer_ids and event in ("dispatched", "escalated", "emergency"):
            cur = await query.execute(OFFER_SQL + " WHERE id = ANY(%s) ORDER BY id", (offer_ids,))
            for offer in await cur.fetchall():
                self.feed.send(
                    {"type": "offer", "offer": shown(offer), "alarm": alarm, "at": at}, fac
                )
