"""Sign-in: a bearer token for a login, and who the token belongs to."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.security import OAuth2PasswordRequestForm

from eldercare.http.deps import AnyUser, Conn, Now
from eldercare.http.schemas import (
    MePublic,
    TokenPublic,
)
from eldercare.registry import auth

router = APIRouter(prefix="/api")


@router.post("/auth/token", response_model=TokenPublic, tags=["auth"])
def token(
    request: Request, form: Annotated[OAuth2PasswordRequestForm, Depends()], conn: Conn, now: Now
) -> dict[str, Any]:
    actor = auth.authenticate(conn, form.username, form.password)
    settings = request.app.state.settings
    return {
        "access_token": auth.make_token(settings, actor, now),
        "token_type": "bearer",
        "expires_in": settings.token_minutes * 60,
        "username": actor.username,
        "role": actor.role,
        "facility_id": actor.facility_id,
    }


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
