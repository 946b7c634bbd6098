"""A lean load publisher for benchmarks: raw MQTT 3.1.1 over sockets, QoS 1, paced.

paho spends ~50 µs of Python per publish; on a 2-core machine two paho publishers ate
1.2 cores and starved the platform under test. Here PUBLISH packets are encoded in
bulk and PUBACKs merely counted, so the measured limit is the platform's, not the load
generator's. Each device still uses its own credentials and its own topic.
"""

from __future__ import annotations

import secrets
import socket
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from eldercare import protocol as p
from eldercare.protocol import wire


@dataclass
class BlastResult:
    sent: int
    acked: int
    seconds: float
    cpu_s: float = 0.0  # the publisher process's own CPU (all threads), for the budget


class _Conn:
    def __init__(self, device_id: str, password: str, host: str, port: int) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cid = f"{device_id}-blast-{secrets.token_hex(3)}"
        self.sock.sendall(wire.connect(cid, device_id, password, clean_session=True, keepalive=60))
        connack = self.sock.recv(4)
        if len(connack) < 4 or connack[3] != 0:
            raise RuntimeError(f"broker refused {device_id}: {connack!r}")
        self.topic = wire.string(p.topic(device_id, p.Channel.UP))
        self.pid = 0
        self.acked = 0
        self.sent = 0
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        buf = b""
        self.sock.settimeout(None)
        while True:
            try:
                chunk = self.sock.recv(65536)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            # PUBACKs are 4 bytes (0x40 0x02 id id); PINGRESP 2 bytes. Nothing else arrives.
            i = 0
            n = len(buf)
            while i + 2 <= n:
                if buf[i] == 0x40:
                    if i + 4 > n:
                        break
                    self.acked += 1
                    i += 4
                else:
                    i += 2 + buf[i + 1]
            buf = buf[i:]

    def packets(self, ids: list[str], ts: str, seq: int) -> bytes:
        out = []
        for k, msg_id in enumerate(ids):
            self.pid = self.pid % 65535 + 1
            payload = (
                b'{"v":1,"id":"'
                + msg_id.encode()
                + b'","ts":"'
                + ts.encode()
                + b'","type":"vitals","heart_rate":'
                + str(60 + (seq + k) % 50).encode()
                + b"}"
            )
            var = self.topic + self.pid.to_bytes(2, "big")
            out.append(b"\x32" + wire.remaining_length(len(var) + len(payload)) + var + payload)
        self.sent += len(ids)
        return b"".join(out)

    def close(self) -> None:
        try:
            self.sock.sendall(b"\xe0\x00")
            self.sock.close()
        except OSError:
            pass


def blast(
    devices: list[tuple[str, str]], host: str, port: int, rate: float, duration: float, tag: str
) -> BlastResult:
    """Publish ``vitals`` round-robin over ``devices`` at ``rate`` msgs/s (0: as fast as the
    broker acknowledges, within a window per connection) for ``duration`` seconds."""
    cpu0 = time.process_time()
    conns = [_Conn(d, pw, host, port) for d, pw in devices]
    window, chunk = 2000, 100
    sent = 0
    start = time.monotonic()
    end = start + duration
    i = 0
    while True:
        now = time.monotonic()
        if now >= end:
            break
        if rate > 0:
            due = min(int((now - start) * rate) - sent, chunk)
            if due <= 0:
                time.sleep(0.001)
                continue
        else:
            due = chunk
        c = conns[i % len(conns)]
        i += 1
        if c.sent - c.acked > window:
            if all(x.sent - x.acked > window for x in conns):
                time.sleep(0.0005)
            continue
        ts = datetime.now(UTC).isoformat(timespec="milliseconds")
        ids = [f"{tag}-{sent + k}" for k in range(due)]
        c.sock.sendall(c.packets(ids, ts, sent))
        sent += due
    elapsed = time.monotonic() - start
    drain = time.monotonic() + 60
    while sum(c.acked for c in conns) < sent and time.monotonic() < drain:
        time.sleep(0.05)
    acked = sum(c.acked for c in conns)
    for c in conns:
        c.close()
    return BlastResult(sent, acked, elapsed, time.process_time() - cpu0)


def blast_process(args: tuple) -> BlastResult:
    return blast(*args)
