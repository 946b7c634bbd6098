"""Request dependencies shared by every route module: the pooled connection (``Conn``),
the signed-in actor (``User``) and the injected clock (``Now``), as ``Annotated`` aliases
in the style of the FastAPI template."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Annotated

import psycopg
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from eldercare.alerts import rules
from eldercare.errors import AuthError, NotFoundError
from eldercare.registry import auth
from eldercare.registry.auth import Actor
from eldercare.storage import db

oauth2 = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)


def get_conn(request: Request) -> Iterator[psycopg.Connection]:
    # The one place a request's database errors are translated (storage.db.PG_ERRORS): a
    # constraint the database enforces reaches the client as 409/422, never as a 500.
    with db.translate(), request.app.state.pool.connection() as conn:
        yield conn


def now_of(request: Request) -> datetime:
    clock: rules.Clock = request.app.state.clock
    return clock()


def current_actor(request: Request, token: Annotated[str | None, Depends(oauth2)]) -> Actor:
    if not token:
        raise AuthError("not authenticated")
    return auth.read_token(request.app.state.settings, token, now_of(request))


Conn = Annotated[psycopg.Connection, Depends(get_conn)]
User = Annotated[Actor, Depends(current_actor)]
Now = Annotated[datetime, Depends(now_of)]


def facility_scope(user: Actor, facility: int | None) -> int | None:
    """Facility staff are pinned to their facility whatever they ask for."""
    if user.scoped:
        if facility is not None and facility != user.facility_id:
            raise NotFoundError(f"facility {facility} not found")
        return user.facility_id
    return facility
