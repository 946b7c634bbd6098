"""One gateway worker: MQTT in, TimescaleDB out, downlink acks and nacks back.

Threads, each with one job:
- the session's reader (:mod:`.session`) reads up to 256 KiB per ``recv``, parses every
  MQTT packet in it (:mod:`.wire`) and hands the run of PUBLISHes to :meth:`_on_publishes`,
  which parses each payload once (pure) and routes it: alarms one by one to the alarm lane,
  everything else as one chunk to the batch lane;
- the alarm lane commits alarm and cancel events one by one and sends the ``ack``
  at once (an SOS never waits behind a telemetry batch);
- the batch lane commits everything else with COPY, in batches bounded by rows and time;
- the sweeper marks devices offline when their heartbeat clock runs out.
PUBACKs go to the broker only after commit, in arrival order (AckSequencer), many per write.

Admission control and bounded queues: the per-device budget (:meth:`GatewayWorker.admit`,
audit H3) is applied to every message before it is routed (for ``up`` messages inline in
the routing loop, the bucket settled once per read); ``unacked()`` is how many received
messages wait for commit.
"""

from __future__ import annotations

import functools
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from eldercare import protocol as p
from eldercare.config import Settings
from eldercare.errors import ProtocolError, StorageError
from eldercare.gateway import metrics as m
from eldercare.gateway.acks import AckSequencer, Slot
from eldercare.gateway.session import MqttSession
from eldercare.gateway.store import AlarmResult, Refusal, StateReport, Store
from eldercare.protocol import wire

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

_ALARM_LANE = (p.EventClass.ALARM, p.EventClass.CONTROL)
_TOPICS_CACHED = 100_000
_SWITCH_INTERVAL_S = 0.0005
_BATCH_POLL_S = 0.005
# The cache's "not seen yet" marker: typed like an entry, never equal to a real one.
_UNSEEN: tuple[str, p.Channel] = ("", p.Channel.DOWN)


# Not a protocol nack reason: rate-limited messages are never nacked (see admit).
RATE_LIMITED = "rate_limited"
_RATE_LIMIT_KEEP_S = 60.0
# admit()'s answer for a message dropped within _RATE_LIMIT_KEEP_S of a kept one: counted, not kept.
_SUPPRESSED = Refusal("", None, None, RATE_LIMITED, "", b"", datetime.min.replace(tzinfo=UTC))


class TokenBuckets:
    """One token bucket per key: ``rate`` tokens/s up to ``burst``. Not thread-safe: the
    reader thread is its only user."""

    _MAX_KEYS = 200_000

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = float(burst)
        self._state: dict[str, tuple[float, float]] = {}

    def take(self, key: str, now: float) -> bool:
        tokens = self.level(key, now)
        ok = tokens >= 1.0
        self.put(key, tokens - 1.0 if ok else tokens, now)
        return ok

    def level(self, key: str, now: float) -> float:
        """The tokens ``key`` has at ``now`` (refilled, at most ``burst``), none taken."""
        tokens, last = self._state.get(key, (self.burst, now))
        return min(self.burst, tokens + max(0.0, now - last) * self.rate)

    def put(self, key: str, tokens: float, now: float) -> None:
        """What ``key`` has left at ``now``, after taking any number of tokens at once."""
        if len(self._state) >= self._MAX_KEYS and key not in self._state:
            # Bounded: forgetting full buckets only ever errs towards admitting.
            self._state = {k: v for k, v in self._state.items() if v[0] < self.burst - 1}
        self._state[key] = (tokens, now)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class _Alarm:
    slot: Slot | None
    event: p.Uplink


@dataclass(slots=True)
class _Chunk:
    """What one read brought for the batch lane; committed (possibly with other chunks)
    in one transaction, then all its slots are released together."""

    events: list[p.Uplink] = field(default_factory=list)
    states: list[StateReport] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    slots: list[Slot] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.events) + len(self.states) + len(self.refusals)


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
        self._alarm_q: queue.Queue[_Alarm] = queue.Queue()
        self._batch_q: queue.Queue[_Chunk] = queue.Queue()
        self._stop = threading.Event()
        self._budget = TokenBuckets(settings.device_rate_per_s, settings.device_burst)
        self._limited: dict[str, float] = {}  # device -> when its last one was kept
        self._threads: list[threading.Thread] = []
        self._sweep_enabled = sweep
        # topic -> (device id, channel), or None for a topic that is not a device's.
        self._topics: dict[str, tuple[str, p.Channel] | None] = {}
        up = f"{p.TOPIC_ROOT}/+/up"
        subs = [(f"$share/{settings.mqtt_share_group}/{up}" if shared else up, 1)]
        if index == 0 and settings.gateway_state:
            # Not shared: one worker sees every device's state in order, retained ones too.
            subs.append((f"{p.TOPIC_ROOT}/+/state", 1))
        self.client = MqttSession(
            settings.mqtt_host,
            settings.mqtt_port,
            self.client_id,
            settings.mqtt_username,
            settings.mqtt_password,
            subscriptions=subs,
            on_publishes=self._on_publishes,
            on_connect=self._on_connect,
            on_disconnect=self._on_disconnect,
            clean_session=False,
            keepalive=30,
            clock=clock,
        )
        self.acks = AckSequencer(self.client.send_pubacks)

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        # The alarm lane waits for the interpreter lock after every database round trip
        # (~10 per alarm). While the reader parses a read of background telemetry, a waiting
        # thread gets the lock only after the switch interval: 5 ms by default, which made
        # the SOS p99 ~10 round trips x up to 5 ms. A waiter is handed the lock sooner now;
        # with nobody waiting, the interval costs nothing.
        sys.setswitchinterval(_SWITCH_INTERVAL_S)
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
        self.client.start()

    def wait_connected(self, timeout: float = 10.0) -> bool:
        return self.client.wait_connected(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Commit what was received, then leave; anything uncommitted is redelivered later."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        self.client.stop()

    def run_forever(self) -> None:
        self.start()
        try:
            while not self._stop.wait(1.0):
                pass
        finally:
            self.stop()

    def unacked(self) -> int:
        """Messages received and not yet acknowledged to the broker."""
        return len(self.acks)

    # ---------------------------------------------------------------- MQTT side

    def _on_connect(self, session_present: bool, generation: int) -> None:
        self.acks.new_generation(generation)
        m.BROKER_RECONNECTS.inc()
        log.info("gateway worker %s connected (session present: %s)", self.index, session_present)

    def _on_disconnect(self) -> None:
        if not self._stop.is_set():
            log.warning("gateway worker %s lost the broker; reconnecting", self.index)

    def admit(
        self, device_id: str, channel: p.Channel, payload: bytes, received: datetime
    ) -> Refusal | None:
        """Per-device budget (audit H3), before parsing. Over budget, the first refused
        message per device per minute is kept as a ``rate_limited`` dead letter, the rest
        are only counted (a flood must not become a dead-letter flood); none is nacked (no
        downlink amplification). An alarm over budget gets no ack, so the device re-sends
        it once its budget has refilled."""
        now = time.monotonic()
        if self._budget.take(device_id, now):
            return None
        return self._over_budget(device_id, channel, payload, received, now)

    def _over_budget(
        self, device_id: str, channel: p.Channel, payload: bytes, received: datetime, now: float
    ) -> Refusal:
        """A message refused by the budget: kept once per device per minute, else counted."""
        m.RATE_LIMITED.inc()
        kept = self._limited.get(device_id)
        if kept is not None and now - kept < _RATE_LIMIT_KEEP_S:
            return _SUPPRESSED
        if len(self._limited) > 100_000:
            self._limited.clear()
        self._limited[device_id] = now
        log.warning("device on %s is over its message budget", p.topic(device_id, channel))
        return Refusal(
            p.topic(device_id, channel),
            device_id,
            None,
            RATE_LIMITED,
            f"over {self.settings.device_rate_per_s:g} messages/s (burst"
            f" {self.settings.device_burst}); further messages are dropped until the rate falls",
            bytes(payload),
            received,
        )

    def _device_topic(self, topic: str) -> tuple[str, p.Channel] | None:
        try:
            parsed: tuple[str, p.Channel] | None = p.parse_topic(topic)
        except ValueError:
            parsed = None
        if len(self._topics) >= _TOPICS_CACHED:
            self._topics.clear()  # bounded: a fleet larger than this just re-parses
        self._topics[topic] = parsed
        return parsed

    def _on_publishes(self, pubs: list[wire.Publish], received: datetime) -> None:
        """Route one read's worth of messages. Runs on the reader thread; must not raise,
        or the session drops the connection (and the broker redelivers).

        The loop is written out for the common case, an ``up`` message (a read brings
        thousands; every call and lookup per message shows in the gateway's CPU)."""
        chunk = _Chunk()
        events = chunk.events
        run: list[int] = []  # packet ids of batch-lane messages since the last alarm
        n_up = 0
        other: dict[str, int] = {}
        topics = self._topics
        parse = p.parse_uplink
        up = p.Channel.UP
        # The per-device budget (admit's, audit H3) for ``up`` messages, settled once per
        # read rather than once per message (a bucket update per message was a fifth of the
        # reader's time): the read's messages arrived together, so the bucket is refilled to
        # one instant, spent here message by message, and written back at the end.
        budget = self._budget
        now = time.monotonic()
        left: dict[str, float] = {}
        for pb in pubs:
            alarm: p.Uplink | None = None
            try:
                dev = topics.get(pb.topic, _UNSEEN)
                if dev is _UNSEEN:
                    dev = self._device_topic(pb.topic)
                if dev is None or dev[1] is not up:
                    if dev is not None and dev[0] in left:
                        budget.put(dev[0], left.pop(dev[0]), now)  # admit() spends from it
                    label = self._route_other(pb, dev, received, chunk)
                    other[label] = other.get(label, 0) + 1
                else:
                    n_up += 1
                    device_id = dev[0]
                    tokens = left.get(device_id)
                    if tokens is None:
                        tokens = budget.level(device_id, now)
                    if pb.retain or not pb.payload:
                        self._retained_or_empty(pb, device_id, received, chunk)
                    elif tokens < 1.0:
                        left[device_id] = tokens
                        refused = self._over_budget(device_id, up, pb.payload, received, now)
                        if refused is not _SUPPRESSED:
                            self._keep_refusal(chunk, refused)
                    else:
                        left[device_id] = tokens - 1.0
                        try:
                            event = parse(device_id, pb.payload, received)
                        except ProtocolError as err:
                            self._refuse(chunk, pb.topic, device_id, err, pb.payload, received)
                        else:
                            if event.cls in _ALARM_LANE:
                                alarm = event
                            else:
                                events.append(event)
            except Exception:
                log.exception("unexpected error routing a message on %s", pb.topic)
                internal = ProtocolError("schema", "internal error while parsing")
                self._refuse(chunk, pb.topic, None, internal, pb.payload, received)
            if alarm is None:
                if pb.qos:
                    run.append(pb.pid)
                continue
            # Slots are taken in arrival order: first the run before this alarm, then it.
            if run:
                chunk.slots.append(self.acks.take(run))
                run = []
            slot = self.acks.take([pb.pid]) if pb.qos else None
            self._alarm_q.put(_Alarm(slot, alarm))
        if run:
            chunk.slots.append(self.acks.take(run))
        for device_id, tokens in left.items():
            budget.put(device_id, tokens, now)
        if n_up:
            m.RECEIVED.labels(up.value).inc(n_up)
        for label, n in other.items():
            m.RECEIVED.labels(label).inc(n)
        if chunk.slots or len(chunk):
            self._batch_q.put(chunk)

    def _retained_or_empty(
        self, pb: wire.Publish, device_id: str, received: datetime, chunk: _Chunk
    ) -> None:
        if not pb.payload:
            # Zero bytes is MQTT's "delete the retained message": our own clearing (below)
            # echoed back, or a device clearing its own. It carries nothing to refuse.
            return
        # A retained uplink is replayed at every (re)subscribe, and once its id has left
        # the dedup table it would raise a phantom alarm (audit M6). Live copies arrive
        # unflagged (MQTT 3.1.1) and were processed then; a flagged copy is a replay:
        # refuse it and delete it at the broker.
        self.client.publish(pb.topic, b"", qos=1, retain=True)
        err = ProtocolError("schema", "retained uplinks are not accepted; publish with retain=0")
        self._refuse(chunk, pb.topic, device_id, err, pb.payload, received)

    def _route_other(
        self,
        pb: wire.Publish,
        dev: tuple[str, p.Channel] | None,
        received: datetime,
        chunk: _Chunk,
    ) -> str:
        """A ``state`` message or one on a topic that is not a device's; returns its label."""
        payload = pb.payload
        if dev is None:
            err = ProtocolError("schema", "not a device topic")
            self._refuse(chunk, pb.topic, None, err, payload, received)
            return "other"
        device_id, channel = dev
        refused = self.admit(device_id, channel, payload, received)
        if refused is not None:
            if refused is not _SUPPRESSED:
                self._keep_refusal(chunk, refused)
            return channel.value
        try:
            online = p.parse_state(payload)
        except ProtocolError as err:
            self._refuse(chunk, pb.topic, device_id, err, payload, received)
            return channel.value
        chunk.states.append(StateReport(device_id, online, received))
        return channel.value

    def _refuse(
        self,
        chunk: _Chunk,
        topic: str,
        device_id: str | None,
        err: ProtocolError,
        payload: bytes,
        received: datetime,
    ) -> None:
        self._keep_refusal(
            chunk,
            Refusal(topic, device_id, err.msg_id, err.reason, err.detail, bytes(payload), received),
        )

    @staticmethod
    def _keep_refusal(chunk: _Chunk, refusal: Refusal) -> None:
        # Topic and reason only: payloads may carry what a resident typed or said.
        log.info("refused message on %s: %s", refusal.topic, refusal.reason)
        chunk.refusals.append(refusal)

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
        if r.device_id is not None and r.reason != RATE_LIMITED:
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

    def _take_batch(self) -> _Chunk | None:
        """Chunks merged until ``batch_max_rows`` rows or ``batch_max_ms`` after the first."""
        try:
            batch = self._batch_q.get(timeout=0.2)
        except queue.Empty:
            return None
        deadline = time.monotonic() + self.settings.batch_max_ms / 1000
        limit = self.settings.batch_max_rows
        rows = len(batch)
        while rows < limit:
            try:
                more = self._batch_q.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                # Look again in a few ms rather than waking for every chunk: the reader
                # queues one per read, thousands a second at full ingest, and each wake-up
                # of this thread took the interpreter lock from the reader.
                time.sleep(min(left, _BATCH_POLL_S))
                continue
            batch.events += more.events
            batch.states += more.states
            batch.refusals += more.refusals
            batch.slots += more.slots
            rows += len(more)
        return batch

    def _batch_lane(self) -> None:
        store = Store(
            self.settings.database_url, self.clock, liveness_factor=self.settings.liveness_factor
        )
        try:
            while True:
                batch = self._take_batch()
                if batch is None:
                    if self._stop.is_set():
                        return
                    continue
                m.QUEUE_DEPTH.set(self._batch_q.qsize())
                events = batch.events
                started = time.perf_counter()
                try:
                    res = self._retry(
                        "a batch",
                        functools.partial(store.store_batch, events, batch.states, batch.refusals),
                    )
                except StorageError:
                    return
                m.BATCH_SECONDS.observe(time.perf_counter() - started)
                m.BATCH_ROWS.observe(len(batch))
                for e_cls, n in _count_classes(events, res.stored):
                    m.STORED.labels(e_cls).inc(n)
                if res.duplicates:
                    m.DEDUPLICATED.inc(res.duplicates)
                self.acks.complete(batch.slots)
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
    # total rather than paying a second query per batch. Counted by type (a str, hashed
    # once) and mapped to classes per type: Enum hashing and .value cost per event.
    if not events:
        return []
    by_type: dict[str, int] = {}
    for e in events:
        by_type[e.type] = by_type.get(e.type, 0) + 1
    counts: dict[str, int] = {}
    for etype, n in by_type.items():
        cls = p.event_class(etype).value
        counts[cls] = counts.get(cls, 0) + n
    scale = stored / len(events)
    return [(k, round(v * scale)) for k, v in counts.items()]
