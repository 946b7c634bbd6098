"""One simulated field device that speaks only the device protocol (docs/device-protocol.md).

A :class:`SimDevice` owns one paho client and one I/O thread. Every network
operation (connect, reconnect, drop, close, alarm re-sends) runs on that
thread, so the caller's thread only queues publishes, which paho supports
from any thread; the thread drives paho's external-loop API with
``selectors`` so a dropped connection stays dropped until :meth:`reconnect`
(paho's own ``loop_start`` would silently reconnect, hiding the Last Will).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import secrets
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, TypeVar

import orjson
import paho.mqtt.client as mqtt

from eldercare import mqtt as shared
from eldercare.errors import BrokerError
from eldercare.protocol import Channel, topic, uplink
from eldercare.registry.schemas import DeviceCredentials

log = logging.getLogger(__name__)

T = TypeVar("T")
Downlink = dict[str, Any]
# Key added to every decoded downlink: time.monotonic() when it arrived.
RX_KEY: Final = "_rx"
DEFAULT_RETRY_S: Final = 2.0
ONLINE: Final = b"online"
OFFLINE: Final = b"offline"


def make_client(
    device_id: str, password: str, *, clean_session: bool = True, client_id: str | None = None
) -> mqtt.Client:
    """A paho client configured as a protocol device: own credentials and a Last Will."""
    client = shared.make_client(
        client_id or device_id,
        device_id,
        password,
        clean_session=clean_session,
        reconnect=False,
        # Devices may have many alarms in flight while the platform is slow to commit.
        max_inflight=100,
    )
    client.will_set(topic(device_id, Channel.STATE), OFFLINE, qos=1, retain=True)
    return client


def now_utc() -> datetime:
    return datetime.now(UTC)


def decode_downlink(payload: bytes, rx: float) -> Downlink:
    """A downlink as a dict plus its receive time; undecodable payloads are kept as ``_raw``."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        body = None
    out: Downlink = (
        dict(body) if isinstance(body, dict) else {"_raw": payload.decode("utf-8", "replace")}
    )
    out[RX_KEY] = rx
    return out


@dataclass(slots=True)
class _Pending:
    """An alarm the device keeps re-sending until the platform acks it (mutable retry state)."""

    msg_id: str
    payload: bytes
    next_due: float


class SimDevice:
    """A simulated device: QoS 1 uplinks, retained ``online``/``offline`` state, alarm retries.

    Thread-safe: call it from any thread while its own I/O thread runs paho.
    """

    def __init__(
        self,
        device_id: str,
        password: str,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        retry_s: float = DEFAULT_RETRY_S,
        keepalive: int = 30,
        clean_session: bool = True,
    ) -> None:
        self.device_id = device_id
        self.host, self.port = host, port
        self.retry_s = retry_s
        self.keepalive = keepalive
        self.up_topic = topic(device_id, Channel.UP)
        self.down_topic = topic(device_id, Channel.DOWN)
        self.state_topic = topic(device_id, Channel.STATE)
        self._client = make_client(device_id, password, clean_session=clean_session)
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect
        self._client.on_socket_close = self._on_socket_close
        self._client.on_socket_register_write = self._wake_cb

        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._downlinks: list[Downlink] = []
        self._pending: dict[str, _Pending] = {}
        self._attempts: dict[str, int] = {}
        self._infos: dict[str, mqtt.MQTTMessageInfo] = {}
        self._ready = False
        self._connect_error: str | None = None
        self._sub_mid: int | None = None

        # A unique prefix per instance keeps message ids unique per device across restarts.
        self._id_prefix = secrets.token_hex(4)
        self._seq = 0

        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._sock: Any = None
        self._connected_once = False
        self._stopping = False
        self._closed = False
        self._thread: threading.Thread | None = None

    @classmethod
    def from_credentials(cls, creds: DeviceCredentials, **kwargs: Any) -> SimDevice:
        return cls(creds.username, creds.password, creds.mqtt_host, creds.mqtt_port, **kwargs)

    def __repr__(self) -> str:
        return f"SimDevice({self.device_id!r}, connected={self.connected})"

    def __enter__(self) -> SimDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ public API

    @property
    def connected(self) -> bool:
        """True once the broker accepted us and the ``down`` subscription is in place."""
        with self._lock:
            return self._ready

    def connect(self, timeout: float = 5.0) -> None:
        """Connect, publish retained ``online`` and subscribe to ``down``; raise BrokerError if not.

        Returns only after the broker granted the ``down`` subscription, so no ack is missed.
        """
        if self._closed:
            raise BrokerError(f"{self.device_id}: device is closed")
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name=f"sim-{self.device_id}", daemon=True
            )
            self._thread.start()
        self._call(self._do_connect, timeout)
        self._wait_ready(timeout)

    def reconnect(self, timeout: float = 5.0) -> None:
        """Come back after :meth:`drop` (or a broker restart); alarms still pending are re-sent."""
        self._call(self._do_connect, timeout)
        self._wait_ready(timeout)
        self._wake()

    def next_id(self) -> str:
        with self._lock:
            self._seq += 1
            return f"{self._id_prefix}-{self._seq}"

    def send(
        self, event_type: str, msg_id: str | None = None, ts: datetime | None = None, **fields: Any
    ) -> str:
        """Publish one uplink with QoS 1 and return its message id."""
        msg_id = msg_id or self.next_id()
        payload = uplink(msg_id, event_type, ts or now_utc(), **fields)
        self._publish_up(msg_id, payload)
        return msg_id

    def raise_alarm(
        self, event_type: str, msg_id: str | None = None, ts: datetime | None = None, **fields: Any
    ) -> str:
        """Publish an alarm and re-send the identical message every ``retry_s`` until acked."""
        msg_id = msg_id or self.next_id()
        payload = uplink(msg_id, event_type, ts or now_utc(), **fields)
        with self._lock:
            self._pending[msg_id] = _Pending(msg_id, payload, time.monotonic() + self.retry_s)
        self._publish_up(msg_id, payload)
        self._wake()  # the I/O thread must re-arm its retry deadline
        return msg_id

    def publish_raw(
        self,
        payload: bytes,
        channel: Channel | str = Channel.UP,
        *,
        qos: int = 1,
        retain: bool = False,
    ) -> int:
        """Publish arbitrary bytes to one of this device's topics (for bad-input tests)."""
        info = self._client.publish(topic(self.device_id, channel), payload, qos=qos, retain=retain)
        return info.mid

    @property
    def downlinks(self) -> list[Downlink]:
        """A snapshot of every downlink received so far (decoded, with ``_rx`` monotonic time)."""
        with self._lock:
            return list(self._downlinks)

    @property
    def pending_alarms(self) -> list[str]:
        """Ids of alarms still being re-sent (no ack yet)."""
        with self._lock:
            return list(self._pending)

    def attempts(self, msg_id: str) -> int:
        """How many times this message was handed to the broker (1 + re-sends)."""
        with self._lock:
            return self._attempts.get(msg_id, 0)

    def wait_downlink(
        self, predicate: Callable[[Downlink], bool], timeout: float = 5.0
    ) -> Downlink:
        """The first downlink (already received or arriving within ``timeout``) matching."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for d in self._downlinks[seen:]:
                    if predicate(d):
                        return d
                seen = len(self._downlinks)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{self.device_id}: no matching downlink in {timeout} s")
                self._changed.wait(left)

    def ack_for(self, msg_id: str, timeout: float = 5.0) -> Downlink:
        """The platform's ``ack`` for an uplink id."""
        return self.wait_downlink(
            lambda d: d.get("type") == "ack" and d.get("ack_id") == msg_id, timeout
        )

    def wait_puback(self, msg_id: str, timeout: float = 5.0) -> None:
        """Wait until the broker acknowledged (PUBACK) the latest publish of ``msg_id``."""
        with self._lock:
            info = self._infos.get(msg_id)
        if info is None:
            raise KeyError(msg_id)
        info.wait_for_publish(timeout)
        if not info.is_published():
            raise TimeoutError(f"{self.device_id}: no PUBACK for {msg_id} in {timeout} s")

    def drop(self, timeout: float = 5.0) -> None:
        """Lose the network: close the socket without DISCONNECT so the broker fires the Will."""
        self._call(self._do_drop, timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Clean shutdown: retained ``offline``, DISCONNECT, stop re-sending and the I/O thread."""
        if self._closed:
            return
        if self._thread is not None and self._thread.is_alive():
            try:
                self._call(self._do_close, timeout)
            except (TimeoutError, BrokerError):
                log.warning("%s: clean close timed out", self.device_id)
            self._stopping = True
            self._wake()
            self._thread.join(timeout)
        self._closed = True
        self._sel.close()
        self._wake_r.close()
        self._wake_w.close()
        self._thread = None

    # ------------------------------------------------------------------ caller side helpers

    def _publish_up(self, msg_id: str, payload: bytes) -> None:
        info = self._client.publish(self.up_topic, payload, qos=1)
        with self._lock:
            self._attempts[msg_id] = self._attempts.get(msg_id, 0) + 1
            self._infos[msg_id] = info

    def _wake(self) -> None:
        # A full pipe already guarantees a wake-up; a closed one means nobody is listening.
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _wake_cb(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        self._wake()

    def _call(self, fn: Callable[[], T], timeout: float) -> T:
        if self._thread is None or not self._thread.is_alive():
            raise BrokerError(f"{self.device_id}: device is closed")
        fut: Future[T] = Future()
        self._calls.put((fn, fut))
        self._wake()
        return fut.result(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self._ready and self._connect_error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise BrokerError(f"{self.device_id}: not connected within {timeout} s")
                self._changed.wait(left)
            if self._connect_error is not None:
                raise BrokerError(f"{self.device_id}: broker refused: {self._connect_error}")

    # ------------------------------------------------------------------ I/O thread

    def _do_connect(self) -> None:
        with self._lock:
            self._ready = False
            self._connect_error = None
        try:
            if not self._connected_once:
                self._client.connect(self.host, self.port, self.keepalive)
                self._connected_once = True
            else:
                self._client.reconnect()
        except OSError as exc:
            raise BrokerError(f"cannot reach the broker at {self.host}:{self.port}: {exc}") from exc
        self._track_socket()

    def _do_drop(self) -> None:
        sock: Any = self._client.socket()
        with self._lock:
            self._ready = False
        if sock is None:
            return
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        # paho now reads EOF, reports the lost connection and closes its socket (no DISCONNECT).
        self._client.loop_read()
        self._track_socket()

    def _do_close(self) -> None:
        with self._lock:
            self._pending.clear()
            was_ready = self._ready
            self._ready = False
        if was_ready:
            self._client.publish(self.state_topic, OFFLINE, qos=1, retain=True)
            self._client.disconnect()
            self._flush(2.0)
        elif self._client.socket() is not None:
            self._client.disconnect()
            self._flush(1.0)
        self._track_socket()

    def _flush(self, timeout: float) -> None:
        """Write queued packets (the ``offline`` state, then DISCONNECT) before returning."""
        deadline = time.monotonic() + timeout
        while self._client.socket() is not None and time.monotonic() < deadline:
            sock: Any = self._client.socket()
            if self._client.want_write():
                self._client.loop_write()
            else:
                ready = selectors.DefaultSelector()
                try:
                    ready.register(sock, selectors.EVENT_READ)
                    if ready.select(0.05):
                        self._client.loop_read()
                finally:
                    ready.close()

    def _track_socket(self) -> None:
        """Keep the selector in step with paho's current socket."""
        sock = self._client.socket()
        if sock is self._sock:
            return
        if self._sock is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(self._sock)
        self._sock = sock
        if sock is not None:
            self._sel.register(sock, selectors.EVENT_READ, "mqtt")

    def _on_socket_close(self, client: mqtt.Client, userdata: Any, sock: Any) -> None:
        if sock is self._sock:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(sock)
            self._sock = None

    def _run(self) -> None:
        next_misc = time.monotonic() + 1.0
        while not self._stopping:
            self._run_calls()
            now = time.monotonic()
            due = self._resend_due(now)
            timeout = max(0.0, min(next_misc, due) - now)
            sock = self._sock
            if sock is not None:
                want = selectors.EVENT_READ | (
                    selectors.EVENT_WRITE if self._client.want_write() else 0
                )
                # Checked on every pass: a publish queued from another thread between paho's
                # flush and its unregister-write would otherwise wait for the next wake-up.
                self._sel.modify(sock, want, "mqtt")
            for key, mask in self._sel.select(timeout):
                if key.data is None:
                    try:
                        while self._wake_r.recv(4096):
                            pass
                    except (BlockingIOError, OSError):
                        pass
                    continue
                if mask & selectors.EVENT_READ:
                    self._client.loop_read()
                if mask & selectors.EVENT_WRITE and self._client.socket() is not None:
                    self._client.loop_write()
                self._track_socket()
            if time.monotonic() >= next_misc:
                if self._client.socket() is not None:
                    self._client.loop_misc()
                    self._track_socket()
                next_misc = time.monotonic() + 1.0
        self._run_calls()

    def _run_calls(self) -> None:
        while True:
            try:
                fn, fut = self._calls.get_nowait()
            except queue.Empty:
                return
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                fut.set_result(fn())
            except BaseException as exc:
                fut.set_exception(exc)

    def _resend_due(self, now: float) -> float:
        """Re-send every pending alarm whose retry time has come; return the next deadline."""
        with self._lock:
            ready = self._ready
            due = [p for p in self._pending.values() if p.next_due <= now] if ready else []
            for p in due:
                p.next_due = now + self.retry_s
        for p in due:
            self._publish_up(p.msg_id, p.payload)
        with self._lock:
            # While disconnected the deadlines are moot: the reconnect wakes this thread.
            dues = [p.next_due for p in self._pending.values()] if ready else []
        return max(min(dues, default=now + 3600.0), now)

    # ------------------------------------------------------------------ paho callbacks (I/O thread)

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        if reason_code.is_failure:
            with self._changed:
                self._connect_error = str(reason_code)
                self._changed.notify_all()
            return
        client.publish(self.state_topic, ONLINE, qos=1, retain=True)
        _, mid = client.subscribe(self.down_topic, qos=1)
        with self._lock:
            self._sub_mid = mid

    def _on_subscribe(
        self, client: mqtt.Client, userdata: Any, mid: int, reason_codes: Any, properties: Any
    ) -> None:
        with self._changed:
            if mid != self._sub_mid:
                return
            if any(rc.is_failure for rc in reason_codes):
                self._connect_error = "subscription to the down topic refused"
            else:
                self._ready = True
                # Back online: re-send what is still unacked now rather than at the next tick.
                for p in self._pending.values():
                    p.next_due = 0.0
            self._changed.notify_all()

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        d = decode_downlink(bytes(msg.payload), time.monotonic())
        with self._changed:
            self._downlinks.append(d)
            if d.get("type") == "ack" and isinstance(d.get("ack_id"), str):
                self._pending.pop(d["ack_id"], None)
            self._changed.notify_all()

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: Any, properties: Any
    ) -> None:
        with self._changed:
            self._ready = False
            self._changed.notify_all()


__all__ = ["RX_KEY", "Downlink", "SimDevice", "decode_downlink", "make_client"]
