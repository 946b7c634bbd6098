"""Many device connections from one process, for the scale and soak benchmarks.

One thread and one ``selectors`` loop hold thousands of non-blocking MQTT 3.1.1 device
connections, each with its own credentials (so the broker's authentication and ACL work
as for real devices). It connects them at a paced rate, keeps them alive with PINGREQ,
and can publish QoS 1 ``heartbeat`` messages round-robin over the fleet, counting the
broker's PUBACKs. Everything stops by itself: every loop is bounded in time.
"""

from __future__ import annotations

import secrets
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from eldercare import protocol as p
from eldercare.protocol import wire


@dataclass
class _Dev:
    device_id: str
    sock: socket.socket
    topic: bytes
    connected: bool = False
    closed: bool = False
    sent: int = 0
    acked: int = 0
    pid: int = 0
    seq: int = 0
    last_tx: float = 0.0
    want_write: bool = True
    reader: wire.Reader = field(default_factory=wire.Reader)
    out: bytearray = field(default_factory=bytearray)


@dataclass
class FleetStats:
    devices: int
    connected: int
    refused: int
    dropped: int
    sent: int
    acked: int
    connect_seconds: float


class Fleet:
    def __init__(self, host: str, port: int, keepalive: int = 60) -> None:
        self.host, self.port, self.keepalive = host, port, keepalive
        self.sel = selectors.DefaultSelector()
        self.devs: list[_Dev] = []
        self.refused = 0
        self.dropped = 0
        self.connect_seconds = 0.0

    # ---------------------------------------------------------------- connections

    def connect(
        self, creds: list[tuple[str, str]], per_second: float = 1000, timeout: float = 120
    ) -> int:
        """Open one connection per device, ``per_second`` at a time; returns how many the
        broker accepted (CONNACK 0) before ``timeout``."""
        start = time.monotonic()
        deadline = start + timeout
        for i, (device_id, password) in enumerate(creds):
            while time.monotonic() - start < i / per_second:
                self._poll(0.001)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.connect((self.host, self.port))  # loopback: immediate
            sock.setblocking(False)
            cid = f"{device_id}-fleet-{secrets.token_hex(3)}"
            dev = _Dev(device_id, sock, wire.string(p.topic(device_id, p.Channel.UP)))
            dev.out += wire.connect(
                cid, device_id, password, clean_session=True, keepalive=self.keepalive
            )
            self.devs.append(dev)
            self.sel.register(sock, selectors.EVENT_READ | selectors.EVENT_WRITE, dev)
        while time.monotonic() < deadline:
            if sum(d.connected or d.closed for d in self.devs) == len(self.devs):
                break
            self._poll(0.05)
        self.connect_seconds = time.monotonic() - start
        return self.connected

    @property
    def connected(self) -> int:
        return sum(d.connected and not d.closed for d in self.devs)

    def hold(self, seconds: float) -> None:
        """Stay connected and idle (answering keepalive) for ``seconds``."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._poll(0.2)
            self._keepalive()

    def close(self) -> None:
        for d in self.devs:
            if not d.closed:
                try:
                    d.sock.setblocking(True)
                    d.sock.sendall(wire.DISCONNECT)
                except OSError:
                    pass
                d.sock.close()
                d.closed = True
        self.sel.close()

    def stats(self) -> FleetStats:
        return FleetStats(
            len(self.devs),
            self.connected,
            self.refused,
            self.dropped,
            sum(d.sent for d in self.devs),
            sum(d.acked for d in self.devs),
            round(self.connect_seconds, 2),
        )

    # ---------------------------------------------------------------- heartbeats

    def heartbeats(
        self,
        total: int,
        credit: Callable[[], int],
        max_seconds: float,
        window: int = 20,
        on_second: Callable[[int, int], None] | None = None,
    ) -> None:
        """Publish ``total`` heartbeats round-robin over the connected devices, as fast as
        ``credit()`` (how many may have been sent by now) and a per-device window of
        unacknowledged messages allow; stops after ``max_seconds`` whatever is left."""
        live = [d for d in self.devs if d.connected and not d.closed]
        if not live:
            return
        sent = 0
        i = 0
        start = time.monotonic()
        next_tick = start + 1
        allowed = credit()
        while sent < total:
            now = time.monotonic()
            if now - start > max_seconds:
                break
            if now >= next_tick:
                next_tick += 1
                allowed = credit()
                if on_second is not None:
                    on_second(sent, sum(d.acked for d in live))
                self._keepalive()
            burst = min(total - sent, allowed - sent, 500)
            if burst <= 0:
                self._poll(0.01)
                continue
            ts = datetime.now(UTC).isoformat(timespec="milliseconds").encode()
            skipped = 0
            for _ in range(burst):
                d = live[i % len(live)]
                i += 1
                if d.closed or d.sent - d.acked >= window:
                    skipped += 1
                    continue
                self._queue_heartbeat(d, ts)
                sent += 1
            if skipped == burst:
                self._poll(0.002)
            else:
                self._poll(0)
        end = time.monotonic() + 60
        while sum(d.acked for d in live) < sent and time.monotonic() < end:
            self._poll(0.05)

    def _queue_heartbeat(self, d: _Dev, ts: bytes) -> None:
        d.pid = d.pid % 65535 + 1
        d.seq += 1
        payload = (
            b'{"v":1,"id":"hb-%d","ts":"%s","type":"heartbeat","battery":%d,"interval_s":60}'
            % (d.seq, ts, 100 - d.seq % 50)
        )
        var = d.topic + d.pid.to_bytes(2, "big")
        d.out += b"\x32" + wire.remaining_length(len(var) + len(payload)) + var + payload
        d.sent += 1
        self._flush(d)

    # ---------------------------------------------------------------- I/O

    def _keepalive(self) -> None:
        now = time.monotonic()
        for d in self.devs:
            if d.connected and not d.closed and now - d.last_tx > self.keepalive / 2:
                d.out += wire.PINGREQ
                self._flush(d)

    def _flush(self, d: _Dev) -> None:
        if d.closed or not d.out:
            return
        try:
            n = d.sock.send(d.out)
        except BlockingIOError:
            n = 0
        except OSError:
            self._lost(d)
            return
        del d.out[:n]
        d.last_tx = time.monotonic()
        want = bool(d.out)
        if want != d.want_write:  # epoll_ctl only when write interest changes
            d.want_write = want
            mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if want else 0)
            self.sel.modify(d.sock, mask, d)

    def _lost(self, d: _Dev) -> None:
        if d.closed:
            return
        if d.connected:
            self.dropped += 1
        else:
            self.refused += 1
        d.closed = True
        self.sel.unregister(d.sock)
        d.sock.close()

    def _poll(self, timeout: float) -> None:
        for key, events in self.sel.select(timeout):
            d: _Dev = key.data
            if events & selectors.EVENT_WRITE:
                self._flush(d)
            if d.closed or not events & selectors.EVENT_READ:
                continue
            try:
                data = d.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                self._lost(d)
                continue
            try:
                packets = d.reader.feed(data)
            except wire.MalformedPacket:
                self._lost(d)
                continue
            for pk in packets:
                if isinstance(pk, wire.Publish):
                    continue  # downlink (nacks): not expected for valid heartbeats
                if pk.type == wire.PUBACK:
                    d.acked += 1
                elif pk.type == wire.CONNACK:
                    if wire.connack_code(pk)[1] == 0:
                        d.connected = True
                    else:
                        self._lost(d)
                        break
