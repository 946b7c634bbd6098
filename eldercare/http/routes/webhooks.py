"""Webhooks: third parties told about alarm events."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from eldercare.http.deps import Conn, User
from eldercare.http.schemas import (
    WebhookCreate,
    WebhookPublic,
)
from eldercare.storage import db

router = APIRouter(prefix="/api")


@router.get("/webhooks", response_model=list[WebhookPublic], tags=["notifications"])
def webhooks(user: User, conn: Conn) -> list[dict[str, Any]]:
    user.require("admin")
    return db.rows(conn, "SELECT id, url, events, facility_id, active FROM webhooks ORDER BY id")


@router.post("/webhooks", response_model=WebhookPublic, status_code=201, tags=["notifications"])
def create_webhook(body: WebhookCreate, user: User, conn: Conn) -> dict[str, Any]:
    user.require("admin")
    return db.rows(
        conn,
        "INSERT INTO webhooks (url, secret, events, facility_id)"
        " VALUES (%s, %s, %s, %s) RETURNING id, url, events, facility_id,"
        " active",
        (body.url, body.secret, body.events, body.facility_id),
    )[0]
