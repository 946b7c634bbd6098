"""Webhooks: third parties told about alarm events."""

from __future__ import annotations

from typing import Any

import psycopg
from fastapi import APIRouter

from eldercare.alerts.lifecycle import _rows
from eldercare.errors import NotFoundError
from eldercare.http.deps import Conn, User
from eldercare.http.schemas import (
    WebhookCreate,
    WebhookPublic,
)

router = APIRouter(prefix="/api")


@router.get("/webhooks", response_model=list[WebhookPublic], tags=["notifications"])
def webhooks(user: User, conn: Conn) -> list[dict[str, Any]]:
    user.require("admin")
    return _rows(conn, "SELECT id, url, events, facility_id, active FROM webhooks ORDER BY id")


@router.post("/webhooks", response_model=WebhookPublic, status_code=201, tags=["notifications"])
def create_webhook(body: WebhookCreate, user: User, conn: Conn) -> dict[str, Any]:
    user.require("admin")
    try:
        return _rows(
            conn,
            "INSERT INTO webhooks (url, secret, events, facility_id)"
            " VALUES (%s, %s, %s, %s) RETURNING id, url, events, facility_id,"
            " active",
            (body.url, body.secret, body.events, body.facility_id),
        )[0]
    except psycopg.errors.ForeignKeyViolation as exc:
        raise NotFoundError("facility not found") from exc
