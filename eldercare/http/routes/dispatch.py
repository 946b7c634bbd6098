"""Who can be sent: responders, the rota, and per-facility response policies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from fastapi import APIRouter
from psycopg.types.json import Jsonb

from eldercare.alerts import rules
from eldercare.http.deps import Conn, Now, User, facility_scope
from eldercare.http.schemas import (
    PolicyCreate,
    ResponderCreate,
    ResponderPublic,
    RotaCreate,
)
from eldercare.storage import db

router = APIRouter(prefix="/api")


@router.get("/responders", response_model=list[ResponderPublic], tags=["dispatch"])
def responders(
    user: User, conn: Conn, facility: int | None = None, kind: str | None = None
) -> list[dict[str, Any]]:
    fac = facility_scope(user, facility)
    return db.rows(
        conn,
        "SELECT id, kind, name, phone, facility_id, lat, lon, available"
        " FROM responders WHERE (%s::bigint IS NULL OR facility_id = %s"
        " OR (kind = 'provider' AND facility_id IS NULL))"
        " AND (%s::text IS NULL OR kind = %s) ORDER BY id",
        (fac, fac, kind, kind),
    )


@router.post("/responders", response_model=ResponderPublic, status_code=201, tags=["dispatch"])
def create_responder(body: ResponderCreate, user: User, conn: Conn) -> dict[str, Any]:
    user.require("admin", "supervisor")
    return create_responder_row(conn, body)


def create_responder_row(conn: psycopg.Connection, body: ResponderCreate) -> dict[str, Any]:
    return db.rows(
        conn,
        "INSERT INTO responders (kind, name, phone, facility_id, lat, lon,"
        " available) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id, kind,"
        " name, phone, facility_id, lat, lon, available",
        (
            body.kind,
            body.name,
            body.phone,
            body.facility_id,
            body.lat,
            body.lon,
            body.available,
        ),
    )[0]


@router.post("/rota", status_code=201, tags=["dispatch"])
def add_rota(body: RotaCreate, user: User, conn: Conn) -> dict[str, Any]:
    user.require("admin", "supervisor")
    return db.rows(
        conn,
        "INSERT INTO rota (responder_id, facility_id, starts_at, ends_at)"
        " VALUES (%s, %s, %s, %s) RETURNING *",
        (body.responder_id, body.facility_id, body.starts_at, body.ends_at),
    )[0]


@router.get("/rota", tags=["dispatch"])
def get_rota(
    user: User, conn: Conn, now: Now, facility: int | None = None, at: datetime | None = None
) -> list[dict[str, Any]]:
    fac = facility_scope(user, facility)
    when = at or now
    return db.rows(
        conn,
        "SELECT ro.*, r.name, r.phone FROM rota ro JOIN responders r"
        " ON r.id = ro.responder_id WHERE ro.starts_at <= %s AND ro.ends_at > %s"
        " AND (%s::bigint IS NULL OR ro.facility_id = %s) ORDER BY ro.id",
        (when, when, fac, fac),
    )


@router.get("/policies", tags=["dispatch"])
def policies(user: User, conn: Conn) -> list[dict[str, Any]]:
    rows = db.rows(conn, "SELECT * FROM response_policies ORDER BY id")
    out = [rules.policy_from_row(r).as_dict() for r in rows]
    for area in ("town", "remote"):
        if not any(p["facility_id"] is None and p["area"] == area for p in out):
            out.append(rules.default_policy(area).as_dict())
    return out


@router.put("/policies", tags=["dispatch"])
def put_policy(body: PolicyCreate, user: User, conn: Conn, now: Now) -> dict[str, Any]:
    user.require("admin", "supervisor")
    return save_policy(conn, body, now)


def save_policy(conn: psycopg.Connection, body: PolicyCreate, now: datetime) -> dict[str, Any]:
    steps = Jsonb([s.model_dump(exclude_none=True) for s in body.steps])
    vals = (
        body.name,
        body.ack_target_s,
        body.ack_target2_s,
        body.on_site_target_s,
        body.supervisor_after_s,
        steps,
        now,
    )
    with conn.transaction():
        if body.facility_id is not None:
            existing = db.rows(
                conn,
                "SELECT id FROM response_policies WHERE facility_id = %s FOR UPDATE",
                (body.facility_id,),
            )
        else:
            existing = db.rows(
                conn,
                "SELECT id FROM response_policies WHERE facility_id IS NULL"
                " AND area = %s FOR UPDATE",
                (body.area,),
            )
        if existing:
            row = db.rows(
                conn,
                "UPDATE response_policies SET name = %s, ack_target_s = %s,"
                " ack_target2_s = %s, on_site_target_s = %s,"
                " supervisor_after_s = %s, steps = %s, updated_at = %s"
                " WHERE id = %s RETURNING *",
                (*vals, existing[0]["id"]),
            )[0]
        else:
            row = db.rows(
                conn,
                "INSERT INTO response_policies (name, ack_target_s,"
                " ack_target2_s, on_site_target_s, supervisor_after_s, steps,"
                " updated_at, facility_id, area) VALUES (%s, %s, %s, %s, %s,"
                " %s, %s, %s, %s) RETURNING *",
                (*vals, body.facility_id, body.area),
            )[0]
    return rules.policy_from_row(row).as_dict()
