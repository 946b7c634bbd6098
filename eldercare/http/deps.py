"""Request dependencies shared by every route module: the pooled connection (``Conn``),
the signed-in actor (``User``) and the injected clock (``Now``), as ``Annotated`` aliases
in the style of the FastAPI template."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Annotated, Any

import psycopg
from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from eldercare.alerts import rules
from eldercare.errors import AuthError, InvalidInput, NotFoundError, PermissionDenied
from eldercare.platform import workorders
from eldercare.registry import auth
from eldercare.registry.auth import Actor
from eldercare.storage import db

log = logging.getLogger(__name__)
oauth2 = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)
TEST_NOW_HEADER = "X-Eldercare-Test-Now"


def get_conn(request: Request) -> Iterator[psycopg.Connection]:
    # The one place a request's database errors are translated (storage.db.PG_ERRORS): a
    # constraint the database enforces reaches the client as 409/422, never as a 500.
    with db.translate(), request.app.state.pool.connection() as conn:
        yield conn


def parse_test_now(value: str) -> datetime:
    """An RFC 3339 instant with its offset; a naive time would be ambiguous, so refused."""
    try:
        at = datetime.fromisoformat(value.strip())
    except ValueError as exc:
        raise InvalidInput(f"{TEST_NOW_HEADER}: not an RFC 3339 time: {value[:40]!r}") from exc
    if at.tzinfo is None or at.utcoffset() is None:
        raise InvalidInput(f"{TEST_NOW_HEADER}: the time needs an offset (Z or +08:00)")
    return at


def now_of(request: Request) -> datetime:
    """The request's "now": the app's clock, or the tester's header in environment ``test``.

    Only ``ELDERCARE_ENVIRONMENT=test`` honours ``X-Eldercare-Test-Now`` (design §2.1) so an
    HTTP tester can place check-ins in any month; anywhere else the header is ignored, and
    logged because it means a test client is talking to a real deployment.
    """
    clock: rules.Clock = request.app.state.clock
    header = request.headers.get(TEST_NOW_HEADER)
    if header is None:
        return clock()
    if request.app.state.settings.environment == "test":
        return parse_test_now(header)
    log.warning(
        "ignored %s on %s %s: only honoured when ELDERCARE_ENVIRONMENT=test",
        TEST_NOW_HEADER,
        request.method,
        request.url.path,
    )
    return clock()


def current_actor(
    request: Request,
    token: Annotated[str | None, Depends(oauth2)],
    conn: Annotated[psycopg.Connection, Depends(get_conn)],
) -> Actor:
    """Any signed-in user, provider users included: for the platform-layer routes that
    scope provider users to their own provider themselves.

    The token's signature is not enough: the login must still be active, with the role and
    scope the token names, and the token not logged out (audit M5). The connection is the
    request's own (FastAPI gives a request one ``get_conn``), so this costs one query.
    """
    if not token:
        raise AuthError("not authenticated")
    # Token expiry follows the app's clock, not the test header: a tester moving "now"
    # into 2026-01 must not make a fresh token look expired or not yet issued.
    clock: rules.Clock = request.app.state.clock
    return auth.ensure_live(conn, auth.read_token(request.app.state.settings, token, clock()))


def monitoring_actor(actor: Annotated[Actor, Depends(current_actor)]) -> Actor:
    """The monitoring desk's routes (alarms, residents, devices...) predate provider users
    and scope only facility staff, so provider users are refused there outright."""
    if actor.provider_scoped:
        raise PermissionDenied(f"role {actor.role} may use only the work-order API")
    return actor


Conn = Annotated[psycopg.Connection, Depends(get_conn)]
User = Annotated[Actor, Depends(monitoring_actor)]
AnyUser = Annotated[Actor, Depends(current_actor)]
Now = Annotated[datetime, Depends(now_of)]


def facility_scope(user: Actor, facility: int | None) -> int | None:
    """Facility staff are pinned to their facility whatever they ask for."""
    if user.scoped:
        if facility is not None and facility != user.facility_id:
            raise NotFoundError(f"facility {facility} not found")
        return user.facility_id
    return facility


def platform_env(request: Request) -> workorders.Env:
    return platform_env_of(request.app)


def platform_env_of(app: Any) -> workorders.Env:
    """The work-order lifecycle's view of the deployment, with the hooks other platform
    modules (visit checks, subsidy allocation) put on ``app.state.platform_hooks``."""
    settings = app.state.settings
    return workorders.Env(
        tz=settings.tz,
        revisit_sample_pct=settings.revisit_sample_pct,
        hooks=getattr(app.state, "platform_hooks", None) or workorders.Hooks(),
    )
