"""Who can be sent: responders, the rota, and per-facility response policies."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
from fastapi import APIRouter

from eldercare.alerts import policies as alert_policies
from eldercare.alerts import rules
from eldercare.http.deps import Conn, Now, User, facility_scope
from eldercare.http.schemas import (
    PolicyCreate,
    PolicyPublic,
    ResponderCreate,
    ResponderPublic,
    RotaCreate,
    RotaOnDuty,
    RotaPublic,
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


@router.post("/rota", response_model=RotaPublic, status_code=201, tags=["dispatch"])
def add_rota(body: RotaCreate, user: User, conn: Conn) -> dict[str, Any]:
    user.require("admin", "supervisor")
    return db.rows(
        conn,
        "INSERT INTO rota (responder_id, facility_id, starts_at, ends_at)"
        " VALUES (%s, %s, %s, %s) RETURNING *",
        (body.responder_id, body.facility_id, body.starts_at, body.ends_at),
    )[0]


@router.get("/rota", response_model=list[RotaOnDuty], tags=["dispatch"])
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


@router.get("/policies", response_model=list[PolicyPublic], tags=["dispatch"])
def policies(user: User, conn: Conn) -> list[dict[str, Any]]:
    return [p.as_dict() for p in alert_policies.all_policies(conn)]


@router.put("/policies", response_model=PolicyPublic, tags=["dispatch"])
def put_policy(body: PolicyCreate, user: User, conn: Conn, now: Now) -> dict[str, Any]:
    user.require("admin", "supervisor")
    policy = rules.Policy(
        None,
        body.facility_id,
        body.area,
        body.name,
        body.ack_target_s,
        body.ack_target2_s,
        body.on_site_target_s,
        body.supervisor_after_s,
        tuple(rules.Step(s.kind, s.count, s.timeout_s, s.number) for s in body.steps),
    )
    return alert_policies.save(conn, policy, now).as_dict()
