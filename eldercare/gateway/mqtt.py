"""paho-mqtt at the gateway edge: the shared client factory (:mod:`eldercare.mqtt`) plus two
measured fast paths for the gateway's receive side.

paho 2.2 reads each packet with three or more ``recv()`` calls and sends every manual
PUBACK as its own write after a wake-up byte. :class:`BufferedSocket` reads 256 KiB at a
time (paho already honours ``pending()``, which it uses for TLS sockets) and
:func:`send_pubacks` queues a run of PUBACKs as one write. Both use paho internals, so
they are confined here and checked against the pinned paho version at import.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import paho.mqtt
import paho.mqtt.client as mqtt

from eldercare import mqtt as shared

_PAHO_INTERNALS_OK = paho.mqtt.__version__ == "2.2.0" and hasattr(mqtt.Client, "_packet_queue")
_PUBACK = 0x40


class BufferedSocket:
    """A socket whose ``recv`` serves small reads from one large read."""

    __slots__ = ("_data", "_pos", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._data = b""
        self._pos = 0

    def recv(self, n: int) -> bytes:
        if self._pos >= len(self._data):
            data = self._sock.recv(262144)  # BlockingIOError and b"" pass through to paho
            if not data:
                return data
            self._data, self._pos = data, 0
        out = self._data[self._pos : self._pos + n]
        self._pos += len(out)
        return out

    def pending(self) -> int:
        return len(self._data) - self._pos

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def _nodelay_buffered(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    shared.set_nodelay(client, userdata, sock)
    if _PAHO_INTERNALS_OK and isinstance(sock, socket.socket):
        client._sock = BufferedSocket(sock)  # type: ignore[assignment]


def send_pubacks(client: mqtt.Client, mids: Sequence[int]) -> None:
    """PUBACK these message ids, in order, with one queued write."""
    if not mids:
        return
    if not _PAHO_INTERNALS_OK:
        for mid in mids:
            client.ack(mid, 1)
        return
    packet = b"".join(b"\x40\x02" + mid.to_bytes(2, "big") for mid in mids)
    client._packet_queue(_PUBACK, packet, 0, 0)


def make_client(
    client_id: str,
    username: str,
    password: str,
    *,
    clean_session: bool = True,
    manual_ack: bool = False,
    buffered: bool = False,
) -> mqtt.Client:
    """The shared factory, with the buffered receive socket when ``buffered``."""
    return shared.make_client(
        client_id,
        username,
        password,
        clean_session=clean_session,
        manual_ack=manual_ack,
        on_socket_open=_nodelay_buffered if buffered else shared.set_nodelay,
    )
