"""HTTP endpoints (see docs/api.md). Sync handlers: FastAPI runs them in its thread pool,
each with one pooled connection in autocommit mode (transactions are explicit)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

import psycopg
from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
from psycopg.types.json import Jsonb

from eldercare.errors import AuthError, NotFoundError
from eldercare.models.registry import FacilityCreate, ResidentDetail, ResidentPublic
from eldercare.platform import alarms, auth, clocks, dispatch, notify, rules
from eldercare.platform import registry as reg
from eldercare.platform.alarms import _rows
from eldercare.platform.auth import Actor
from eldercare.platform.schemas import (
    AlarmDetail,
    AlarmPublic,
    CloseCreate,
    DeclineCreate,
    DispatchCreate,
    EmergencyCreate,
    MePublic,
    NoteCreate,
    NoteOptional,
    OfferAnswer,
    PolicyCreate,
    ResponderCreate,
    ResponderPublic,
    RevealCreate,
    RotaCreate,
    TokenPublic,
    WebhookCreate,
    WebhookPublic,
)

oauth2 = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)


def get_conn(request: Request) -> Iterator[psycopg.Connection]:
    with request.app.state.pool.connection() as conn:
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

router = APIRouter(prefix="/api")


# ---------------------------------------------------------------- auth


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
def me(user: User) -> dict[str, Any]:
    return {
        "username": user.username,
        "role": user.role,
        "facility_id": user.facility_id,
        "responder_id": user.responder_id,
    }


# ---------------------------------------------------------------- alarms


@router.get("/alarms", response_model=list[AlarmPublic], tags=["alarms"])
def list_alarms(
    user: User,
    conn: Conn,
    status_: Annotated[list[str] | None, Query(alias="status")] = None,
    priority: Annotated[int | None, Query(ge=1, le=4)] = None,
    facility: int | None = None,
    since: datetime | None = None,
    category: Literal["alarm", "health"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[dict[str, Any]]:
    allowed = {"open", *rules.ACTIVE, *rules.TERMINAL}
    bad = [s for s in status_ or [] if s not in allowed]
    if bad:
        from fastapi import HTTPException

        raise HTTPException(
            422,
            [{"loc": ["query", "status"], "msg": f"unknown status {bad}", "type": "value_error"}],
        )
    return alarms.list_alarms(
        conn,
        user,
        statuses=status_,
        priority=priority,
        facility=facility,
        since=since,
        category=category,
        limit=limit,
    )


@router.get("/alarms/{alarm_id}", response_model=AlarmDetail, tags=["alarms"])
def get_alarm(alarm_id: uuid.UUID, user: User, conn: Conn, now: Now) -> dict[str, Any]:
    return alarms.detail(conn, alarm_id, user, now)


@router.post("/alarms/{alarm_id}/acknowledge", response_model=AlarmPublic, tags=["alarms"])
def acknowledge(
    alarm_id: uuid.UUID, user: User, conn: Conn, now: Now, body: NoteOptional | None = None
) -> dict[str, Any]:
    return alarms.act(conn, alarm_id, "acknowledge", user, now, note=body.note if body else None)


@router.post("/alarms/{alarm_id}/dispatch", response_model=AlarmPublic, tags=["alarms"])
def dispatch_alarm(
    alarm_id: uuid.UUID, user: User, conn: Conn, now: Now, body: DispatchCreate | None = None
) -> dict[str, Any]:
    body = body or DispatchCreate(responder_ids=None, note=None)
    return dispatch.dispatch(
        conn, alarm_id, user, now, responder_ids=body.responder_ids, note=body.note
    )


@router.post("/alarms/{alarm_id}/accept", response_model=AlarmPublic, tags=["alarms"])
def accept(
    alarm_id: uuid.UUID, user: User, conn: Conn, now: Now, body: OfferAnswer | None = None
) -> dict[str, Any]:
    return dispatch.accept(conn, alarm_id, user, now, offer_id=body.offer_id if body else None)


@router.post("/alarms/{alarm_id}/decline", response_model=AlarmPublic, tags=["alarms"])
def decline(
    alarm_id: uuid.UUID, user: User, conn: Conn, now: Now, body: DeclineCreate | None = None
) -> dict[str, Any]:
    body = body or DeclineCreate(offer_id=None, reason=None)
    return dispatch.decline(conn, alarm_id, user, now, offer_id=body.offer_id, reason=body.reason)


@router.post("/alarms/{alarm_id}/on-site", response_model=AlarmPublic, tags=["alarms"])
def on_site(
    alarm_id: uuid.UUID, user: User, conn: Conn, now: Now, body: NoteOptional | None = None
) -> dict[str, Any]:
    return alarms.act(conn, alarm_id, "on_site", user, now, note=body.note if body else None)


@router.post("/alarms/{alarm_id}/resolve", response_model=AlarmPublic, tags=["alarms"])
def resolve(
    alarm_id: uuid.UUID, user: User, conn: Conn, now: Now, body: NoteOptional | None = None
) -> dict[str, Any]:
    return alarms.act(conn, alarm_id, "resolve", user, now, note=body.note if body else None)


@router.post("/alarms/{alarm_id}/close", response_model=AlarmPublic, tags=["alarms"])
def close(
    alarm_id: uuid.UUID, body: CloseCreate, user: User, conn: Conn, now: Now
) -> dict[str, Any]:
    return alarms.act(
        conn, alarm_id, "close", user, now, note=body.note, disposition=body.disposition
    )


@router.post("/alarms/{alarm_id}/note", response_model=AlarmPublic, tags=["alarms"])
def note(alarm_id: uuid.UUID, body: NoteCreate, user: User, conn: Conn, now: Now) -> dict[str, Any]:
    return alarms.add_note(conn, alarm_id, user, now, body.text)


@router.post("/alarms/{alarm_id}/emergency", response_model=AlarmPublic, tags=["alarms"])
def emergency(
    alarm_id: uuid.UUID, body: EmergencyCreate, user: User, conn: Conn, now: Now
) -> dict[str, Any]:
    return dispatch.call_emergency(conn, alarm_id, user, now, service=body.service, note=body.note)


@router.get("/alarms/{alarm_id}/notifications", tags=["alarms"])
def alarm_notifications(alarm_id: uuid.UUID, user: User, conn: Conn) -> list[dict[str, Any]]:
    alarms.summary(conn, alarm_id, user)  # 404 for unknown / other facility
    return notify.history(conn, str(alarm_id))


# ---------------------------------------------------------------- metrics


@router.get("/metrics/response", tags=["metrics"])
def response_metrics(
    user: User,
    conn: Conn,
    now: Now,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
    facility: int | None = None,
) -> dict[str, Any]:
    user.require("operator", "supervisor", "admin")
    end = to or now
    start = from_ or end - timedelta(hours=24)
    return clocks.response_metrics(conn, start, end, facility, now)


# ---------------------------------------------------------------- registry (console reads)


def _scope(user: Actor, facility: int | None) -> int | None:
    """Facility staff are pinned to their facility whatever they ask for."""
    if user.scoped:
        if facility is not None and facility != user.facility_id:
            raise NotFoundError(f"facility {facility} not found")
        return user.facility_id
    return facility


_FACILITY_SQL = """
SELECT f.id, f.code, f.name, f.kind, f.area, f.address, f.lat, f.lon, f.phone,
  (SELECT count(*) FROM alarms a WHERE a.facility_id = f.id
     AND a.status NOT IN ('closed', 'merged')) AS open_alarms,
  (SELECT count(*) FROM devices d WHERE d.facility_id = f.id AND d.status = 'active')
     AS devices_total,
  (SELECT count(*) FROM devices d JOIN device_status s ON s.device_id = d.id
     WHERE d.facility_id = f.id AND d.status = 'active' AND NOT s.online
       AND s.last_seen_at IS NOT NULL) AS devices_offline,
  (SELECT count(*) FROM cameras c JOIN devices d ON d.id = c.device_id
     WHERE d.facility_id = f.id AND d.status = 'active') AS cameras_total,
  (SELECT count(*) FROM camera_status c JOIN devices d ON d.id = c.device_id
     WHERE d.facility_id = f.id AND d.status = 'active' AND NOT c.online) AS cameras_offline
FROM facilities f
"""


@router.get("/facilities", tags=["registry"])
def facilities(user: User, conn: Conn) -> list[dict[str, Any]]:
    if user.scoped:
        return _rows(conn, _FACILITY_SQL + " WHERE f.id = %s", (user.facility_id,))
    return _rows(conn, _FACILITY_SQL + " ORDER BY f.id")


@router.get("/facilities/{facility_id}", tags=["registry"])
def facility(facility_id: int, user: User, conn: Conn) -> dict[str, Any]:
    _scope(user, facility_id)
    rows = _rows(conn, _FACILITY_SQL + " WHERE f.id = %s", (facility_id,))
    if not rows:
        raise NotFoundError(f"facility {facility_id} not found")
    return rows[0]


@router.post("/facilities", status_code=status.HTTP_201_CREATED, tags=["registry"])
def create_facility(body: FacilityCreate, user: User, conn: Conn) -> dict[str, Any]:
    user.require("admin")
    with conn.transaction():
        row = reg.create_facility(conn, body)
    return {k: v for k, v in row.items() if k != "created_at"}


@router.get("/health/summary", tags=["registry"])
def health_summary(
    request: Request, user: User, conn: Conn, facility: int | None = None
) -> dict[str, Any]:
    fac = _scope(user, facility)
    per = _rows(
        conn,
        """
        SELECT f.id AS facility_id,
          (SELECT count(*) FROM devices d WHERE d.facility_id = f.id AND d.status = 'active')
             AS devices_total,
          (SELECT count(*) FROM devices d JOIN device_status s ON s.device_id = d.id
             WHERE d.facility_id = f.id AND d.status = 'active' AND NOT s.online
               AND s.last_seen_at IS NOT NULL) AS devices_offline,
          (SELECT count(*) FROM devices d JOIN device_status s ON s.device_id = d.id
             WHERE d.facility_id = f.id AND d.status = 'active' AND s.battery < %s)
             AS low_battery,
          (SELECT count(*) FROM cameras c JOIN devices d ON d.id = c.device_id
             WHERE d.facility_id = f.id AND d.status = 'active') AS cameras_total,
          (SELECT count(*) FROM camera_status c JOIN devices d ON d.id = c.device_id
             WHERE d.facility_id = f.id AND d.status = 'active' AND NOT c.online)
             AS cameras_offline
        FROM facilities f WHERE (%s::bigint IS NULL OR f.id = %s) ORDER BY f.id""",
        (request.app.state.settings.low_battery_pct, fac, fac),
    )
    dt = sum(r["devices_total"] for r in per)
    do = sum(r["devices_offline"] for r in per)
    ct = sum(r["cameras_total"] for r in per)
    co = sum(r["cameras_offline"] for r in per)
    return {
        "devices": {
            "total": dt,
            "online": dt - do,
            "offline": do,
            "low_battery": sum(r["low_battery"] for r in per),
        },
        "cameras": {"total": ct, "online": ct - co, "offline": co},
        "facilities": per,
    }


@router.get("/devices", tags=["registry"])
def devices(
    user: User,
    conn: Conn,
    facility: int | None = None,
    online: bool | None = None,
    kind: str | None = None,
) -> list[dict[str, Any]]:
    fac = _scope(user, facility)
    return _rows(
        conn,
        """
        SELECT d.id, d.kind, d.facility_id, d.resident_id, d.home_bed_id, d.room, d.status,
               COALESCE(s.online, false) AS online, s.battery, s.last_seen_at, s.changed_at
        FROM devices d LEFT JOIN device_status s ON s.device_id = d.id
        WHERE (%s::bigint IS NULL OR d.facility_id = %s)
          AND (%s::boolean IS NULL OR COALESCE(s.online, false) = %s)
          AND (%s::text IS NULL OR d.kind = %s)
        ORDER BY d.id LIMIT 1000""",
        (fac, fac, online, online, kind, kind),
    )


@router.get("/cameras", tags=["registry"])
def cameras(
    user: User, conn: Conn, facility: int | None = None, online: bool | None = None
) -> list[dict[str, Any]]:
    fac = _scope(user, facility)
    return _rows(
        conn,
        """
        SELECT c.device_id, c.camera_id, c.location, d.facility_id, s.status,
               COALESCE(s.online, false) AS online, s.recording, s.reported_at, s.changed_at
        FROM cameras c JOIN devices d ON d.id = c.device_id
        LEFT JOIN camera_status s ON s.device_id = c.device_id AND s.camera_id = c.camera_id
        WHERE d.status = 'active' AND (%s::bigint IS NULL OR d.facility_id = %s)
          AND (%s::boolean IS NULL OR COALESCE(s.online, false) = %s)
        ORDER BY c.device_id, c.camera_id LIMIT 1000""",
        (fac, fac, online, online),
    )


_RESIDENT_SQL = (
    "SELECT r.id, r.name, r.birth_date, r.gender, r.ability_level,"
    " COALESCE(r.facility_id, hb.facility_id) AS facility_id, r.room, r.home_bed_id"
    " FROM residents r LEFT JOIN home_beds hb ON hb.id = r.home_bed_id"
)


@router.get("/residents", response_model=list[ResidentPublic], tags=["registry"])
def residents(user: User, conn: Conn, facility: int | None = None) -> list[dict[str, Any]]:
    fac = _scope(user, facility)
    return _rows(
        conn,
        f"SELECT * FROM ({_RESIDENT_SQL}) x WHERE (%s::bigint IS NULL"
        " OR x.facility_id = %s) ORDER BY x.id LIMIT 5000",
        (fac, fac),
    )


def _resident(conn: psycopg.Connection, user: Actor, resident_id: int) -> dict[str, Any]:
    rows = _rows(conn, _RESIDENT_SQL + " WHERE r.id = %s", (resident_id,))
    if not rows or (user.scoped and rows[0]["facility_id"] != user.facility_id):
        raise NotFoundError(f"resident {resident_id} not found")
    return rows[0]


@router.get("/residents/{resident_id}", response_model=ResidentPublic, tags=["registry"])
def resident(resident_id: int, user: User, conn: Conn) -> dict[str, Any]:
    return _resident(conn, user, resident_id)


@router.post("/residents/{resident_id}/reveal", response_model=ResidentDetail, tags=["registry"])
def reveal(
    resident_id: int, body: RevealCreate, user: User, conn: Conn, now: Now
) -> dict[str, Any]:
    base = _resident(conn, user, resident_id)
    with conn.transaction():
        # The record of who looked, and why, commits before the data leaves.
        conn.execute(
            "INSERT INTO reveals (at, username, resident_id, alarm_id, reason)"
            " VALUES (%s, %s, %s, %s, %s)",
            (now, user.username, resident_id, body.alarm_id, body.reason),
        )
        if body.alarm_id is not None:
            from eldercare.platform import events

            found = _rows(
                conn,
                "SELECT id FROM alarms WHERE id = %s AND resident_id = %s",
                (body.alarm_id, resident_id),
            )
            if found:
                events.audit(
                    conn,
                    body.alarm_id,
                    now,
                    user.username,
                    "revealed",
                    detail={"resident_id": resident_id, "reason": body.reason},
                )
    extra = _rows(
        conn,
        "SELECT r.id_number, r.medical_notes, r.allergies, r.contacts,"
        " hb.address, hb.access_notes FROM residents r LEFT JOIN home_beds hb"
        " ON hb.id = r.home_bed_id WHERE r.id = %s",
        (resident_id,),
    )[0]
    return {**base, **extra}


@router.get("/residents/{resident_id}/reveals", tags=["registry"])
def reveals(resident_id: int, user: User, conn: Conn) -> list[dict[str, Any]]:
    user.require("supervisor", "admin")
    return _rows(
        conn,
        "SELECT id, at, username, alarm_id, reason FROM reveals"
        " WHERE resident_id = %s ORDER BY id DESC LIMIT 500",
        (resident_id,),
    )


# ---------------------------------------------------------------- responders, rota, policies


@router.get("/responders", response_model=list[ResponderPublic], tags=["dispatch"])
def responders(
    user: User, conn: Conn, facility: int | None = None, kind: str | None = None
) -> list[dict[str, Any]]:
    fac = _scope(user, facility)
    return _rows(
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
    try:
        return _rows(
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
    except psycopg.errors.ForeignKeyViolation as exc:
        raise NotFoundError("facility not found") from exc


@router.post("/rota", status_code=201, tags=["dispatch"])
def add_rota(body: RotaCreate, user: User, conn: Conn) -> dict[str, Any]:
    user.require("admin", "supervisor")
    try:
        return _rows(
            conn,
            "INSERT INTO rota (responder_id, facility_id, starts_at, ends_at)"
            " VALUES (%s, %s, %s, %s) RETURNING *",
            (body.responder_id, body.facility_id, body.starts_at, body.ends_at),
        )[0]
    except psycopg.errors.ForeignKeyViolation as exc:
        raise NotFoundError("responder or facility not found") from exc


@router.get("/rota", tags=["dispatch"])
def get_rota(
    user: User, conn: Conn, now: Now, facility: int | None = None, at: datetime | None = None
) -> list[dict[str, Any]]:
    fac = _scope(user, facility)
    when = at or now
    return _rows(
        conn,
        "SELECT ro.*, r.name, r.phone FROM rota ro JOIN responders r"
        " ON r.id = ro.responder_id WHERE ro.starts_at <= %s AND ro.ends_at > %s"
        " AND (%s::bigint IS NULL OR ro.facility_id = %s) ORDER BY ro.id",
        (when, when, fac, fac),
    )


@router.get("/policies", tags=["dispatch"])
def policies(user: User, conn: Conn) -> list[dict[str, Any]]:
    rows = _rows(conn, "SELECT * FROM response_policies ORDER BY id")
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
            existing = _rows(
                conn,
                "SELECT id FROM response_policies WHERE facility_id = %s FOR UPDATE",
                (body.facility_id,),
            )
        else:
            existing = _rows(
                conn,
                "SELECT id FROM response_policies WHERE facility_id IS NULL"
                " AND area = %s FOR UPDATE",
                (body.area,),
            )
        if existing:
            row = _rows(
                conn,
                "UPDATE response_policies SET name = %s, ack_target_s = %s,"
                " ack_target2_s = %s, on_site_target_s = %s,"
                " supervisor_after_s = %s, steps = %s, updated_at = %s"
                " WHERE id = %s RETURNING *",
                (*vals, existing[0]["id"]),
            )[0]
        else:
            try:
                row = _rows(
                    conn,
                    "INSERT INTO response_policies (name, ack_target_s,"
                    " ack_target2_s, on_site_target_s, supervisor_after_s, steps,"
                    " updated_at, facility_id, area) VALUES (%s, %s, %s, %s, %s,"
                    " %s, %s, %s, %s) RETURNING *",
                    (*vals, body.facility_id, body.area),
                )[0]
            except psycopg.errors.ForeignKeyViolation as exc:
                raise NotFoundError(f"facility {body.facility_id} not found") from exc
    return rules.policy_from_row(row).as_dict()


# ---------------------------------------------------------------- webhooks


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
