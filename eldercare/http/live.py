"""The live feed for consoles and staff pages: ``/api/ws``.

:class:`Hub` implements the alert engine's :class:`~eldercare.alerts.engine.Feed`; the engine
pushes every alarm change into it and each connected client gets its own bounded queue, so a
slow console waits alone and the engine never knows a websocket exists.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from eldercare.errors import AuthError
from eldercare.registry import auth
from eldercare.registry.auth import Actor

log = logging.getLogger(__name__)

router = APIRouter()


@dataclass(eq=False)
class Client:
    ws: WebSocket
    actor: Actor
    queue: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(maxsize=1000))

    def sees(self, facility_id: int | None) -> bool:
        return not self.actor.scoped or facility_id == self.actor.facility_id


class Hub:
    """Connected consoles and staff pages; one queue per client so a slow one waits alone."""

    def __init__(self) -> None:
        self.clients: set[Client] = set()

    def add(self, client: Client) -> None:
        self.clients.add(client)

    def remove(self, client: Client) -> None:
        self.clients.discard(client)

    def active(self) -> bool:
        return bool(self.clients)

    def send(self, message: dict[str, Any], facility_id: int | None, *, staff: bool = True) -> int:
        data = orjson.dumps(message)
        sent = 0
        for c in list(self.clients):
            if not c.sees(facility_id) or (not staff and c.actor.scoped):
                continue
            try:
                c.queue.put_nowait(data)
                sent += 1
            except asyncio.QueueFull:
                # A console this far behind reloads from the API when it reconnects.
                log.warning("websocket client %s is not reading; dropping it", c.actor.username)
                self.remove(c)
                with contextlib.suppress(Exception):
                    asyncio.get_running_loop().create_task(c.ws.close(code=1013))
        return sent


@router.websocket("/api/ws")
async def ws(websocket: WebSocket, token: str = "") -> None:
    state = websocket.app.state
    hub: Hub = state.hub
    try:
        actor = auth.read_token(state.settings, token, state.clock())
    except AuthError:
        await websocket.close(code=4401)
        return
    if actor.provider_scoped:
        # The live feed carries every alarm of the desk; provider users are not part of it.
        await websocket.close(code=4403)
        return
    await websocket.accept()
    client = Client(websocket, actor)
    await websocket.send_json(
        {
            "type": "hello",
            "username": actor.username,
            "role": actor.role,
            "facility_id": actor.facility_id,
        }
    )
    hub.add(client)

    async def pump() -> None:
        while True:
            await websocket.send_text((await client.queue.get()).decode())

    sender = asyncio.create_task(pump())
    try:
        while True:
            msg = await websocket.receive_json()
            if isinstance(msg, dict) and msg.get("type") == "ping":
                await client.queue.put(b'{"type":"pong"}')
    except (WebSocketDisconnect, RuntimeError, ValueError):
        pass
    finally:
        hub.remove(client)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
