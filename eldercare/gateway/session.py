"""The gateway's MQTT session over a plain socket: the I/O edge around :mod:`.wire`.

One reader thread connects (and reconnects with back-off), reads up to 256 KiB per
``recv`` and hands every PUBLISH of that read to ``on_publishes`` in arrival order, with
one receive time. Any thread may write: :meth:`send_pubacks` and :meth:`publish` hold one
lock around ``sendall`` so packets never interleave. A small ticker thread sends PINGREQ
and drops a connection that has gone silent, so the reader can block in ``recv`` without
waking up per packet.

At-least-once stays with the caller: PUBACKs are sent only when it asks, and a PUBACK
asked for on a connection that has since been replaced is dropped (``generation``), since
the broker redelivers those messages on the new one. Downlink publishes are QoS 1 but are
not kept across a reconnect: a device re-sends an alarm until its ``ack`` arrives.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from eldercare.protocol import wire

log = logging.getLogger(__name__)

RECV_BYTES = 262144

OnPublishes = Callable[[list[wire.Publish], datetime], None]
OnConnect = Callable[[bool, int], None]  # (session present, connection generation)


class MqttSession:
    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        username: str,
        password: str,
        *,
        subscriptions: Sequence[tuple[str, int]],
        on_publishes: OnPublishes,
        on_connect: OnConnect | None = None,
        on_disconnect: Callable[[], None] | None = None,
        clean_session: bool = False,
        keepalive: int = 30,
        reconnect_min: float = 0.1,
        reconnect_max: float = 2.0,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.client_id, self.username, self.password = client_id, username, password
        self.subscriptions = list(subscriptions)
        self.on_publishes = on_publishes
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.clean_session = clean_session
        self.keepalive = keepalive
        self.reconnect_min, self.reconnect_max = reconnect_min, reconnect_max
        self.clock = clock or (lambda: datetime.now(UTC))
        self._send_lock = threading.Lock()
        self._sock: socket.socket | None = None  # set only while connected and subscribed
        self._generation = 0
        self._pid = 0
        self._last_rx = 0.0
        self._last_tx = 0.0
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._threads: list[threading.Thread] = []
        self.downlink_acked = 0  # PUBACKs the broker sent for our downlink publishes

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        for name, target in (("mqtt-rx", self._reader), ("mqtt-tick", self._ticker)):
            t = threading.Thread(target=target, name=f"{self.client_id}-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._send_lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.sendall(wire.DISCONNECT)
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # wakes the reader out of recv()
        for t in self._threads:
            t.join(timeout)

    def is_connected(self) -> bool:
        return self._connected.is_set()

    def wait_connected(self, timeout: float) -> bool:
        return self._connected.wait(timeout)

    @property
    def generation(self) -> int:
        """Counts connections; PUBACKs are only valid on the one they were received on."""
        return self._generation

    # ---------------------------------------------------------------- writing

    def _send(self, data: bytes, generation: int | None = None) -> bool:
        with self._send_lock:
            sock = self._sock
            if sock is None or (generation is not None and generation != self._generation):
                return False
            try:
                sock.sendall(data)
            except OSError as exc:
                log.warning("write to the broker failed (%s); reconnecting", exc)
                self._drop(sock)
                return False
            self._last_tx = time.monotonic()
            return True

    def send_pubacks(self, pids: Sequence[int], generation: int) -> bool:
        """PUBACK these packet ids, in order, in one write, if still on that connection."""
        return bool(pids) and self._send(wire.pubacks(pids), generation)

    def publish(self, topic: str, payload: bytes, qos: int = 1, *, retain: bool = False) -> bool:
        with self._send_lock:
            self._pid = self._pid % 65535 + 1
            pid = self._pid
        return self._send(wire.publish(topic, payload, qos, pid if qos else 0, retain=retain))

    @staticmethod
    def _drop(sock: socket.socket) -> None:
        # shutdown, not close: the reader thread may be inside recv() on it.
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)

    # ---------------------------------------------------------------- reading

    def _open(self) -> tuple[socket.socket, wire.Reader, list[wire.Publish | wire.Packet]]:
        sock = socket.create_connection((self.host, self.port), timeout=5)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.sendall(
                wire.connect(
                    self.client_id,
                    self.username,
                    self.password,
                    clean_session=self.clean_session,
                    keepalive=self.keepalive,
                )
            )
            reader = wire.Reader()
            packets: list[wire.Publish | wire.Packet] = []
            while not packets:
                data = sock.recv(RECV_BYTES)
                if not data:
                    raise ConnectionError("the broker closed the connection before CONNACK")
                packets = reader.feed(data)
            first = packets.pop(0)
            if not isinstance(first, wire.Packet):
                raise wire.MalformedPacket("expected a CONNACK")
            present, code = wire.connack_code(first)
            if code != 0:
                raise ConnectionRefusedError(f"the broker refused the gateway (CONNACK {code})")
            sock.sendall(wire.subscribe(1, self.subscriptions))
            sock.settimeout(None)  # the ticker detects a dead broker; recv may block
        except BaseException:
            sock.close()
            raise
        with self._send_lock:
            self._generation += 1
            generation = self._generation
        if self.on_connect is not None:
            # Before the socket is published to writers: acknowledgements for the previous
            # connection must already be void when anyone can write on this one.
            self.on_connect(present, generation)
        return sock, reader, packets

    def _reader(self) -> None:
        delay = self.reconnect_min
        while not self._stop.is_set():
            try:
                sock, reader, early = self._open()
            except (OSError, wire.MalformedPacket) as exc:
                log.warning("cannot connect to the broker at %s:%s (%s)", self.host, self.port, exc)
                self._stop.wait(delay)
                delay = min(delay * 2, self.reconnect_max)
                continue
            delay = self.reconnect_min
            with self._send_lock:
                self._sock = sock
                self._last_rx = self._last_tx = time.monotonic()
            self._connected.set()
            try:
                self._handle(early, self.clock())
                self._read_loop(sock, reader)
            except (OSError, wire.MalformedPacket) as exc:
                if not self._stop.is_set():
                    log.warning("connection to the broker lost (%s); reconnecting", exc)
            finally:
                self._connected.clear()
                with self._send_lock:
                    if self._sock is sock:
                        self._sock = None
                sock.close()
                if self.on_disconnect is not None and not self._stop.is_set():
                    self.on_disconnect()

    def _read_loop(self, sock: socket.socket, reader: wire.Reader) -> None:
        # recv_into one reused buffer, then copy out what arrived: sock.recv(256 KiB)
        # allocates 256 KiB per call, however few bytes a read brings.
        buf = bytearray(RECV_BYTES)
        view = memoryview(buf)
        recv_into = sock.recv_into
        while True:
            n = recv_into(buf)
            if not n:
                if not self._stop.is_set():
                    raise ConnectionError("the broker closed the connection")
                return
            self._last_rx = time.monotonic()
            packets = reader.feed(bytes(view[:n]))
            if packets:
                self._handle(packets, self.clock())

    def _handle(self, packets: list[wire.Publish | wire.Packet], received: datetime) -> None:
        pubs: list[wire.Publish] = []
        for pk in packets:
            if isinstance(pk, wire.Publish):
                pubs.append(pk)
            elif pk.type == wire.PUBACK:
                self.downlink_acked += 1
            elif pk.type == wire.SUBACK and b"\x80" in pk.body[2:]:
                log.error("the broker refused a gateway subscription: %s", self.subscriptions)
        if pubs:
            self.on_publishes(pubs, received)

    def _ticker(self) -> None:
        while not self._stop.wait(1.0):
            now = time.monotonic()
            with self._send_lock:
                sock = self._sock
            if sock is None:
                continue
            if now - self._last_rx > self.keepalive * 1.5:
                log.warning(
                    "the broker has been silent for %.0f s; reconnecting", now - self._last_rx
                )
                self._drop(sock)
            elif now - self._last_tx > self.keepalive / 2:
                self._send(wire.PINGREQ)
