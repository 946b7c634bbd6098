"""One gateway worker: MQTT in, TimescaleDB out, downlink acks and nacks back.

Threads, each with one job:
- paho's network thread parses each payload once (pure) and routes it;
- the alarm lane commits alarm and cancel events one by one and sends the ``ack``
  at once (an SOS never waits behind a telemetry batch);
- the batch lane commits everything else with COPY, in batches bounded by rows and time;
- the sweeper marks devices offline when their heartbeat clock runs out.
PUBACKs go to the broker only after commit, in arrival order (AckSequencer).
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paho.mqtt.client as mqtt

from eldercare import protocol as p
from eldercare.config import Settings
from eldercare.errors import ProtocolError, StorageError
from eldercare.gateway import metrics as m
from eldercare.gateway.acks import AckSequencer, Slot
from eldercare.gateway.mqtt import make_client, send_pubacks
from eldercare.gateway.store import AlarmResult, Refusal, StateReport, Store

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class _Item:
    slot: Slot | None
    event: p.Uplink | None = None
    state: StateReport | None = None
    refusal: Refusal | None = None


class GatewayWorker:
    def __init__(
        self,
        settings: Settings,
        index: int = 0,
        *,
        clock: Clock = utc_now,
        sweep: bool = True,
        shared: bool = False,
    ) -> None:
        self.settings = settings
        self.index = index
        # Mosquitto 2.0 does not restore *shared* subscriptions from its persistence file,
        # so after a broker restart messages sent before a shared subscriber re-subscribes
        # are dropped. A lone worker therefore uses a plain subscription, which the broker
        # restores and queues for; several workers share one at that known cost.
        self.shared = shared
        self.clock = clock
        self.client_id = f"{settings.mqtt_client_prefix}-{index}"
        self._alarm_q: queue.Queue[_Item] = queue.Queue()
        self._batch_q: queue.Queue[_Item] = queue.Queue()
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sweep_enabled = sweep
        self.client = make_client(
            self.client_id,
            settings.mqtt_username,
            settings.mqtt_password,
            clean_session=False,
            manual_ack=True,
            buffered=True,
        )
        self.client.max_inflight_messages_set(5000)
        self.acks = AckSequencer(lambda mids: send_pubacks(self.client, mids))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        lanes: list[tuple[str, Callable[[], None]]] = [
            ("alarms", self._alarm_lane),
            ("batches", self._batch_lane),
        ]
        if self._sweep_enabled:
            lanes.append(("sweeper", self._sweeper))
        for name, target in lanes:
            t = threading.Thread(target=target, name=f"gw{self.index}-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        self.client.connect_async(self.settings.mqtt_host, self.settings.mqtt_port, keepalive=30)
        self.client.loop_start()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self._connected.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Commit what was received, then leave; anything uncommitted is redelivered later."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        self.client.disconnect()
        self.client.loop_stop()

    def run_forever(self) -> None:
        self.start()
        try:
            while not self._stop.wait(1.0):
                pass
        finally:
            self.stop()

    # ---------------------------------------------------------------- MQTT callbacks

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None
    ) -> None:
        if rc.is_failure:
            log.error("broker refused the gateway: %s", rc)
            return
        self.acks.new_generation()
        m.BROKER_RECONNECTS.inc()
        up = f"{p.TOPIC_ROOT}/+/up"
        subs = [(f"$share/{self.settings.mqtt_share_group}/{up}" if self.shared else up, 1)]
        if self.index == 0:
            # Not shared: one worker sees every device's state in order, retained ones too.
            subs.append((f"{p.TOPIC_ROOT}/+/state", 1))
        client.subscribe(subs)
        log.info(
            "gateway worker %s connected (session present: %s)", self.index, flags.session_present
        )
        self._connected.set()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any = None
    ) -> None:
        self._connected.clear()
        if not self._stop.is_set():
            log.warning("gateway worker %s lost the broker (%s); reconnecting", self.index, rc)

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        # Whatever arrives, this function must not raise: paho would drop the connection.
        received = self.clock()
        slot = self.acks.take(msg.mid) if msg.qos > 0 else None
        try:
            self._route(msg, received, slot)
        except Exception:
            log.exception("unexpected error routing a message on %s", msg.topic)
            self._batch_q.put(
                _Item(
                    slot,
                    refusal=Refusal(
                        msg.topic,
                        None,
                        None,
                        "schema",
                        "internal error while parsing",
                        bytes(msg.payload),
                        received,
                    ),
                )
            )

    def _route(self, msg: mqtt.MQTTMessage, received: datetime, slot: Slot | None) -> None:
        payload = bytes(msg.payload)
        try:
            device_id, channel = p.parse_topic(msg.topic)
        except ValueError:
            m.RECEIVED.labels("other").inc()
            self._refuse(
                slot,
                msg.topic,
                None,
                ProtocolError("schema", "not a device topic"),
                payload,
                received,
            )
            return
        m.RECEIVED.labels(channel.value).inc()
        if channel is p.Channel.STATE:
            try:
                online = p.parse_state(payload)
            except ProtocolError as err:
                self._refuse(slot, msg.topic, device_id, err, payload, received)
                return
            self._batch_q.put(_Item(slot, state=StateReport(device_id, online, received)))
            return
        try:
            event = p.parse_uplink(device_id, payload, received)
        except ProtocolError as err:
            self._refuse(slot, msg.topic, device_id, err, payload, received)
            return
        if event.cls in (p.EventClass.ALARM, p.EventClass.CONTROL):
            self._alarm_q.put(_Item(slot, event=event))
        else:
            self._batch_q.put(_Item(slot, event=event))

    def _refuse(
        self,
        slot: Slot | None,
        topic: str,
        device_id: str | None,
        err: ProtocolError,
        payload: bytes,
        received: datetime,
    ) -> None:
        # Topic and reason only: payloads may carry what a resident typed or said.
        log.info("refused message on %s: %s", topic, err.reason)
        self._batch_q.put(
            _Item(
                slot,
                refusal=Refusal(
                    topic, device_id, err.msg_id, err.reason, err.detail, bytes(payload), received
                ),
            )
        )

    # ---------------------------------------------------------------- lanes

    def _retry(self, what: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` until the database takes it; nothing is acknowledged meanwhile."""
        delay = 0.05
        while True:
            try:
                return fn()
            except StorageError as exc:
                if self._stop.is_set():
                    # Shutting down: leave it unacknowledged; the broker redelivers it.
                    raise
                log.warning("database unavailable while storing %s (%s); retrying", what, exc)
                self._stop.wait(delay)
                delay = min(delay * 2, 2.0)

    def _send_down(self, device_id: str, payload: bytes) -> None:
        self.client.publish(p.topic(device_id, p.Channel.DOWN), payload, qos=1)

    def _nack(self, r: Refusal) -> None:
        m.REFUSED.labels(r.reason).inc()
        if r.device_id is not None:
            self._send_down(r.device_id, p.nack(r.msg_id, r.reason, r.detail))

    def _alarm_lane(self) -> None:
        store = Store(
            self.settings.database_url, self.clock, liveness_factor=self.settings.liveness_factor
        )
        try:
            while True:
                try:
                    item = self._alarm_q.get(timeout=0.2)
                except queue.Empty:
                    if self._stop.is_set():
                        return
                    continue
                ev = item.event
                assert ev is not None
                try:
                    result = self._retry("an alarm", functools.partial(store.store_alarm, ev))
                except StorageError:
                    return
                if isinstance(result, Refusal):
                    self._nack(result)
                elif isinstance(result, AlarmResult):
                    if result.duplicate:
                        m.DEDUPLICATED.inc()
                    else:
                        m.STORED.labels(ev.cls.value).inc()
                        m.ALARM_COMMIT_SECONDS.observe(
                            max(0.0, (self.clock() - ev.received_at).total_seconds())
                        )
                    if ev.is_alarm and result.alarm_id is not None:
                        self._send_down(ev.device_id, p.ack(ev.msg_id, str(result.alarm_id)))
                        m.ALARM_ACKS.inc()
                if item.slot is not None:
                    self.acks.complete((item.slot,))
        finally:
            store.close()

    def _take_batch(self) -> list[_Item]:
        try:
            first = self._batch_q.get(timeout=0.2)
        except queue.Empty:
            return []
        items = [first]
        deadline = time.monotonic() + self.settings.batch_max_ms / 1000
        limit = self.settings.batch_max_rows
        while len(items) < limit:
            try:
                items.append(self._batch_q.get_nowait())
                continue
            except queue.Empty:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                items.append(self._batch_q.get(timeout=left))
            except queue.Empty:
                break
        return items

    def _batch_lane(self) -> None:
        store = Store(
            self.settings.database_url, self.clock, liveness_factor=self.settings.liveness_factor
        )
        try:
            while True:
                items = self._take_batch()
                if not items:
                    if self._stop.is_set():
                        return
                    continue
                m.QUEUE_DEPTH.set(self._batch_q.qsize())
                events = [i.event for i in items if i.event is not None]
                states = [i.state for i in items if i.state is not None]
                refusals = [i.refusal for i in items if i.refusal is not None]
                started = time.perf_counter()
                try:
                    res = self._retry(
                        "a batch", functools.partial(store.store_batch, events, states, refusals)
                    )
                except StorageError:
                    return
                m.BATCH_SECONDS.observe(time.perf_counter() - started)
                m.BATCH_ROWS.observe(len(items))
                for e_cls, n in _count_classes(events, res.stored):
                    m.STORED.labels(e_cls).inc(n)
                if res.duplicates:
                    m.DEDUPLICATED.inc(res.duplicates)
                self.acks.complete([i.slot for i in items if i.slot is not None])
                for r in res.refused:
                    self._nack(r)
        finally:
            store.close()

    def _sweeper(self) -> None:
        store = Store(
            self.settings.database_url, self.clock, liveness_factor=self.settings.liveness_factor
        )
        try:
            while not self._stop.wait(self.settings.liveness_sweep_s):
                try:
                    store.sweep()
                except StorageError as exc:
                    log.warning("liveness sweep failed (%s); will retry", exc)
        finally:
            store.close()


def _count_classes(events: list[p.Uplink], stored: int) -> list[tuple[str, int]]:
    # Per-class split of what was stored; duplicates are rare, so attribute them to the
    # total rather than paying a second query per batch.
    if not events:
        return []
    counts: dict[str, int] = {}
    for e in events:
        counts[e.cls.value] = counts.get(e.cls.value, 0) + 1
    scale = stored / len(events)
    return [(k, round(v * scale)) for k, v in counts.items()]
