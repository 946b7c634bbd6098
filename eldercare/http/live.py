"""The live feed for consoles and staff pages: ``/api/ws``.

:class:`Hub` implements the alert engine's :class:`~eldercare.alerts.engine.Feed`; the engine
pushes every alarm change into it and each connected client gets its own bounded queue, so a
slow console waits alone and the engine never knows a websocket exists.

The bearer token comes in the first message, ``{"type": "auth", "token": ...}``, never in
the URL, where access logs would keep it (audit M5). A socket is closed with 4401 when its
token expires, is logged out, or its user is disabled or changes role (:meth:`Hub.recheck`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from eldercare.alerts import rules
from eldercare.errors import AuthError, StorageError
from eldercare.registry import auth
from eldercare.registry.auth import Actor
from eldercare.storage import db

log = logging.getLogger(__name__)

router = APIRouter()
# The first message must arrive this soon after the upgrade.
AUTH_TIMEOUT_S = 10.0
CLOSE_AUTH = 4401


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

    async def close(self, client: Client, code: int = CLOSE_AUTH) -> None:
        self.remove(client)
        with contextlib.suppress(Exception):
            await client.ws.close(code=code)

    async def revoke(self, token_id: str | None) -> None:
        """Logout: close the sockets opened with this token now."""
        for c in list(self.clients):
            if token_id is not None and c.actor.token_id == token_id:
                await self.close(c)

    async def recheck(self, pool: Any, clock: rules.Clock) -> int:
        """Close sockets whose token expired or no longer stands (disabled user, changed
        role or scope, logged out elsewhere); how many were closed."""
        clients = list(self.clients)
        if not clients:
            return 0
        now = int(clock().timestamp())

        def dead() -> set[str]:
            with db.translate(), pool.connection() as conn:
                return auth.dead_tokens(conn, [c.actor for c in clients])

        gone = await asyncio.to_thread(dead)
        closed = 0
        for c in clients:
            expired = c.actor.expires_at is not None and c.actor.expires_at <= now
            if expired or c.actor.token_id in gone:
                await self.close(c)
                closed += 1
        return closed

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


async def recheck_loop(hub: Hub, pool: Any, clock: rules.Clock, every_s: float) -> None:
    """The lifespan's task behind :meth:`Hub.recheck`."""
    while True:
        await asyncio.sleep(every_s)
        try:
            await hub.recheck(pool, clock)
        except StorageError as exc:
            # A database outage must not end the task; sockets are checked next round.
            log.warning("websocket token recheck failed: %s", exc)


async def _authenticate(websocket: WebSocket) -> Actor:
    """The first message's token, checked as a request's would be; AuthError otherwise."""
    state = websocket.app.state
    try:
        msg = await asyncio.wait_for(websocket.receive_json(), AUTH_TIMEOUT_S)
    except (TimeoutError, ValueError, WebSocketDisconnect, RuntimeError) as exc:
        raise AuthError("no auth message") from exc
    token = msg.get("token") if isinstance(msg, dict) and msg.get("type") == "auth" else None
    if not isinstance(token, str) or not token:
        raise AuthError("the first message must be {type: auth, token}")
    actor = auth.read_token(state.settings, token, state.clock())

    def live() -> Actor:
        with db.translate(), state.pool.connection() as conn:
            return auth.ensure_live(conn, actor)

    try:
        return await asyncio.to_thread(live)
    except StorageError as exc:
        raise AuthError("cannot check the token now") from exc


@router.websocket("/api/ws")
async def ws(websocket: WebSocket) -> None:
    hub: Hub = websocket.app.state.hub
    if "token" in websocket.query_params:
        # Refused so that no client keeps putting live tokens into access logs.
        await websocket.close(code=4400, reason="send the token in the first message")
        return
    await websocket.accept()
    try:
        actor = await _authenticate(websocket)
    except AuthError:
        with contextlib.suppress(Exception):
            await websocket.close(code=CLOSE_AUTH)
        return
    if actor.provider_scoped:
        # The live feed carries every alarm of the desk; provider users are not part of it.
        await websocket.close(code=4403)
        return
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
