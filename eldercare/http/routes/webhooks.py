"""Webhooks: third parties told about alarm events."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request

from eldercare.alerts import notify
from eldercare.alerts.engine import webhook_policy
from eldercare.http.deps import Conn, User
from eldercare.http.schemas import (
    WebhookCreate,
    WebhookFailure,
    WebhookPublic,
)
from eldercare.storage import db

router = APIRouter(prefix="/api")


@router.get("/webhooks", response_model=list[WebhookPublic], tags=["notifications"])
def webhooks(user: User, conn: Conn) -> list[dict[str, Any]]:
    user.require("admin")
    return db.rows(conn, "SELECT id, url, events, facility_id, active FROM webhooks ORDER BY id")


def checked_webhook(body: WebhookCreate, user: User, request: Request) -> WebhookCreate:
    """422 for http://, credentials in the URL, a name that does not resolve or resolves to
    loopback/private/link-local/metadata addresses, unless allow-listed (audit H8).

    A dependency, so it runs after sign-in and before a pooled connection is taken: a slow
    DNS answer must not hold one of the API's database connections.
    """
    user.require("admin")
    webhook_policy(request.app.state.settings).check(body.url)
    return body


@router.post("/webhooks", response_model=WebhookPublic, status_code=201, tags=["notifications"])
def create_webhook(
    body: Annotated[WebhookCreate, Depends(checked_webhook)], conn: Conn
) -> dict[str, Any]:
    return db.rows(
        conn,
        "INSERT INTO webhooks (url, secret, events, facility_id)"
        " VALUES (%s, %s, %s, %s) RETURNING id, url, events, facility_id,"
        " active",
        (body.url.strip(), body.secret, body.events, body.facility_id),
    )[0]


@router.get("/notifications/failed", response_model=list[WebhookFailure], tags=["notifications"])
def failed_notifications(
    user: User,
    conn: Conn,
    channel: Annotated[Literal["device", "webhook"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    """Notifications that gave up (every attempt failed): who was never told, and why."""
    user.require("admin", "supervisor")
    return notify.failed(conn, channel, limit)
