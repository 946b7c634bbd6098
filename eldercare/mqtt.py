"""The one place paho clients are built: the alert engine's publisher, the device simulators
and tests get theirs from :func:`make_client`, with :func:`set_nodelay` as the socket hook.
(The gateway's subscriber does not use paho: it has its own lean session,
:mod:`eldercare.gateway.session`, which sets TCP_NODELAY itself.)

A shared utility below every layer: it imports only paho.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

SocketHook = Callable[[mqtt.Client, Any, Any], None]


def set_nodelay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    """paho ``on_socket_open`` hook: small MQTT packets must not wait for Nagle.

    Without it a QoS 1 round trip costs ~88 ms here (Nagle + delayed ACK) instead of ~0.5 ms.
    """
    # Not every socket is TCP (a unix socket in a test); those have no Nagle to disable.
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def make_client(
    client_id: str,
    username: str,
    password: str,
    *,
    clean_session: bool = True,
    manual_ack: bool = False,
    reconnect: bool = True,
    max_inflight: int = 1000,
    on_socket_open: SocketHook = set_nodelay,
) -> mqtt.Client:
    """An MQTT 3.1.1 client with paho's v2 callbacks, these credentials and the Nagle hook.

    ``reconnect=True`` (services) retries quickly after a broker restart; devices pass
    ``False`` and reconnect themselves, as real devices with their own back-off do.
    """
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        clean_session=clean_session,
        protocol=mqtt.MQTTv311,
        manual_ack=manual_ack,
        reconnect_on_failure=reconnect,
    )
    client.username_pw_set(username, password)
    client.on_socket_open = on_socket_open
    if reconnect:
        # paho's annotation says int; it sleeps on floats, and a sub-second first retry
        # matters after a broker restart.
        client.reconnect_delay_set(min_delay=0.1, max_delay=2)  # type: ignore[arg-type]
    client.max_inflight_messages_set(max_inflight)
    client.max_queued_messages_set(0)
    return client
