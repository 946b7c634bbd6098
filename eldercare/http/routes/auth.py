"""Sign-in: a bearer token for a login, who the token belongs to, and logout."""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Request, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from eldercare.http.deps import AnyUser, Conn, Now
from eldercare.http.limits import LoginGate
from eldercare.http.schemas import (
    MePublic,
    TokenPublic,
)
from eldercare.registry import auth

router = APIRouter(prefix="/api")


@router.post("/auth/token", response_model=TokenPublic, tags=["auth"])
async def token(
    request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()], now: Now
) -> dict[str, Any]:
    # Async on purpose: no pool connection is held while bcrypt runs, and failed
    # sign-ins are throttled per user and per address (audit H5, limits.LoginGate).
    state = request.app.state
    gate: LoginGate = state.login_gate
    address = request.client.host if request.client else "unknown"
    actor = await gate.sign_in(state.pool, form.username, form.password, address)
    settings = state.settings
    return {
        "access_token": auth.make_token(settings, actor, now),
        "token_type": "bearer",
        "expires_in": settings.token_minutes * 60,
        "username": actor.username,
        "role": actor.role,
        "facility_id": actor.facility_id,
    }


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT, tags=["auth"])
async def logout(request: Request, user: AnyUser, conn: Conn, now: Now) -> Response:
    """This token stops working at once, for the API and for a websocket opened with it
    (audit M5); the user's sign-ins elsewhere stand."""
    await anyio.to_thread.run_sync(auth.revoke, conn, user, now)
    await request.app.state.hub.revoke(user.token_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/me", response_model=MePublic, tags=["auth"])
def me(user: AnyUser) -> dict[str, Any]:
    # Any signed-in user may read who they are, provider workers included (/worker page).
    return {
        "provider_id": user.provider_id,
        "worker_id": user.worker_id,
        "username": user.username,
        "role": user.role,
        "facility_id": user.facility_id,
        "responder_id": user.responder_id,
    }
