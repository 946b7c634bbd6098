"""MQTT 3.1.1 packets, pure bytes in and bytes out: the gateway's own subscriber session,
the broker credential probe and the benchmark's load generator all encode here.

The gateway is one subscriber client that speaks a small part of MQTT: CONNECT/CONNACK,
SUBSCRIBE/SUBACK, PUBLISH at QoS 0/1 in both directions, PUBACK, PINGREQ/PINGRESP and
DISCONNECT. paho's generic loop cost ~36 µs of Python per received message here (three
``recv`` calls, a ``select`` and a callback per packet); :class:`Reader` instead parses every
complete packet of one large ``recv`` in one loop, and :func:`pubacks` turns a run of
acknowledgements into one write. No I/O here (:mod:`eldercare.gateway.session` owns the socket).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
SUBSCRIBE = 8
SUBACK = 9
PINGREQ_TYPE = 12
PINGRESP = 13
DISCONNECT_TYPE = 14

PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"

# The broker's limit for one packet is far above what a device may send (16 KiB payloads);
# a length beyond this means the stream is corrupt, not that a large packet is coming.
MAX_PACKET = 1 << 20


class MalformedPacket(ValueError):
    """The byte stream is not MQTT; the connection must be dropped (MQTT 3.1.1 §4.8)."""


class Publish(NamedTuple):
    topic: str
    payload: bytes
    qos: int
    pid: int  # 0 for QoS 0 (packet ids start at 1)
    retain: bool
    dup: bool


class Packet(NamedTuple):
    """Any packet other than PUBLISH: its type, the header's flag bits and its body."""

    type: int
    flags: int
    body: bytes


def remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def string(s: str) -> bytes:
    b = s.encode()
    if len(b) > 0xFFFF:
        raise ValueError("an MQTT string holds at most 65,535 bytes")
    return len(b).to_bytes(2, "big") + b


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + remaining_length(len(body)) + body


def connect(
    client_id: str, username: str, password: str, *, clean_session: bool, keepalive: int
) -> bytes:
    flags = 0xC0 | (0x02 if clean_session else 0)  # username + password
    var = string("MQTT") + bytes([4, flags]) + keepalive.to_bytes(2, "big")
    return _packet(0x10, var + string(client_id) + string(username) + string(password))


def subscribe(pid: int, topics: Iterable[tuple[str, int]]) -> bytes:
    body = pid.to_bytes(2, "big") + b"".join(string(t) + bytes([q]) for t, q in topics)
    return _packet(0x82, body)


def publish(
    topic: str,
    payload: bytes,
    qos: int = 0,
    pid: int = 0,
    *,
    dup: bool = False,
    retain: bool = False,
) -> bytes:
    first = 0x30 | (qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
    var = string(topic) + (pid.to_bytes(2, "big") if qos else b"")
    return _packet(first, var + payload)


def pubacks(pids: Sequence[int]) -> bytes:
    """One write's worth of PUBACKs, in the given order."""
    return b"".join(b"\x40\x02" + pid.to_bytes(2, "big") for pid in pids)


def connack_code(packet: Packet) -> tuple[bool, int]:
    """(session present, return code) of a CONNACK; code 0 is accepted."""
    if packet.type != CONNACK or len(packet.body) != 2:
        raise MalformedPacket("expected a CONNACK")
    return bool(packet.body[0] & 1), packet.body[1]


class Reader:
    """Incremental parser: :meth:`feed` any bytes, get back every packet they complete.

    A packet split across reads waits in the tail until the rest arrives.
    """

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail = b""

    @property
    def pending(self) -> int:
        """Bytes held back as the start of an incomplete packet."""
        return len(self._tail)

    def feed(self, data: bytes) -> list[Publish | Packet]:
        buf = self._tail + data if self._tail else data
        n = len(buf)
        i = 0
        out: list[Publish | Packet] = []
        append = out.append
        new = tuple.__new__
        while n - i >= 2:
            first = buf[i]
            b = buf[i + 1]
            j = i + 2
            if b < 128:
                length = b
            elif n > j and buf[j] < 128:
                # Two bytes: 128-16,383, which is where a device's telemetry packet falls.
                length = (b & 127) | (buf[j] << 7)
                j += 1
            else:
                length = b & 127
                shift = 7
                while True:
                    if j >= n:
                        self._tail = buf[i:]
                        return out
                    b = buf[j]
                    j += 1
                    length |= (b & 127) << shift
                    if b < 128:
                        break
                    shift += 7
                    if shift > 21:
                        raise MalformedPacket("remaining length longer than 4 bytes")
                if length > MAX_PACKET:
                    raise MalformedPacket(f"packet of {length} bytes")
            end = j + length
            if end > n:
                break
            if first >> 4 == PUBLISH:
                if length < 2:
                    raise MalformedPacket("PUBLISH without a topic")
                t_end = j + 2 + ((buf[j] << 8) | buf[j + 1])
                qos = (first >> 1) & 3
                p0 = t_end + 2 if qos else t_end
                if qos == 3 or p0 > end:
                    raise MalformedPacket("bad PUBLISH header")
                try:
                    topic = buf[j + 2 : t_end].decode()
                except UnicodeDecodeError as exc:
                    raise MalformedPacket("topic is not UTF-8") from exc
                pid = (buf[t_end] << 8) | buf[t_end + 1] if qos else 0
                # tuple.__new__ skips the NamedTuple's Python-level __new__ (per message).
                append(new(Publish, (topic, buf[p0:end], qos, pid, first & 1 == 1, first & 8 == 8)))
            else:
                append(Packet(first >> 4, first & 15, buf[j:end]))
            i = end
        self._tail = buf[i:] if i < n else b""
        return out
