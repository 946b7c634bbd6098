"""Registry reads for the console: facilities, devices, cameras, residents (pseudonymous
unless revealed, and every reveal recorded)."""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import psycopg
from fastapi import APIRouter, Request, status

from eldercare.alerts import events, rules
from eldercare.config import Settings
from eldercare.errors import EldercareError, InvalidInput, NotFoundError
from eldercare.http.deps import Conn, Now, User, facility_scope
from eldercare.http.schemas import (
    RevealCreate,
)
from eldercare.registry import reveals as reveals_audit
from eldercare.registry import service as reg
from eldercare.registry.auth import Actor
from eldercare.registry.schemas import (
    FacilityCreate,
    FacilityUpdate,
    HomeBedCreate,
    HomeBedPublic,
    HomeBedUpdate,
    ResidentCreate,
    ResidentDetail,
    ResidentPublic,
)
from eldercare.storage import db

router = APIRouter(prefix="/api")
log = logging.getLogger(__name__)


# Open = not closed or merged; the same predicate as the alarms_resident_open index.
TERMINAL = db.sql_list(rules.TERMINAL)
_FACILITY_SQL = f"""
SELECT f.id, f.code, f.name, f.kind, f.area, f.address, f.lat, f.lon, f.phone,
  f.district_code, f.tekun_institution,
  (SELECT count(*) FROM alarms a WHERE a.facility_id = f.id
     AND a.status NOT IN {TERMINAL}) AS open_alarms,
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
        return db.rows(conn, _FACILITY_SQL + " WHERE f.id = %s", (user.facility_id,))
    return db.rows(conn, _FACILITY_SQL + " ORDER BY f.id")


@router.get("/facilities/{facility_id}", tags=["registry"])
def facility(facility_id: int, user: User, conn: Conn) -> dict[str, Any]:
    facility_scope(user, facility_id)
    rows = db.rows(conn, _FACILITY_SQL + " WHERE f.id = %s", (facility_id,))
    if not rows:
        raise NotFoundError(f"facility {facility_id} not found")
    return rows[0]


@router.post("/facilities", status_code=status.HTTP_201_CREATED, tags=["registry"])
def create_facility(body: FacilityCreate, user: User, conn: Conn) -> dict[str, Any]:
    user.require("admin")
    with conn.transaction():
        row = reg.create_facility(conn, body)
    return {k: v for k, v in row.items() if k != "created_at"}


@router.patch("/facilities/{facility_id}", tags=["registry"])
def update_facility(
    facility_id: int, body: FacilityUpdate, user: User, conn: Conn
) -> dict[str, Any]:
    user.require("admin")
    # Only what was sent; a null for a NOT NULL column (name, area) is the database's 422.
    changes = body.model_dump(exclude_unset=True)
    with conn.transaction():
        db.one(
            conn,
            "SELECT id FROM facilities WHERE id = %s FOR UPDATE",
            (facility_id,),
            missing=f"facility {facility_id} not found",
        )
        if changes:
            sets = ", ".join(f"{k} = %({k})s" for k in changes)  # keys are the model's fields
            conn.execute(
                f"UPDATE facilities SET {sets} WHERE id = %(id)s", {**changes, "id": facility_id}
            )
        return dict(db.one(conn, _FACILITY_SQL + " WHERE f.id = %s", (facility_id,)))


@router.get("/health/summary", tags=["registry"])
def health_summary(
    request: Request, user: User, conn: Conn, facility: int | None = None
) -> dict[str, Any]:
    fac = facility_scope(user, facility)
    per = db.rows(
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
    fac = facility_scope(user, facility)
    return db.rows(
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
    fac = facility_scope(user, facility)
    return db.rows(
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
    " COALESCE(r.facility_id, hb.facility_id) AS facility_id, r.room, r.home_bed_id,"
    " r.household_id FROM residents r LEFT JOIN home_beds hb ON hb.id = r.home_bed_id"
)


@router.get("/residents", response_model=list[ResidentPublic], tags=["registry"])
def residents(user: User, conn: Conn, facility: int | None = None) -> list[dict[str, Any]]:
    fac = facility_scope(user, facility)
    return db.rows(
        conn,
        f"SELECT * FROM ({_RESIDENT_SQL}) x WHERE (%s::bigint IS NULL"
        " OR x.facility_id = %s) ORDER BY x.id LIMIT 5000",
        (fac, fac),
    )


def _resident(conn: psycopg.Connection, user: Actor, resident_id: int) -> dict[str, Any]:
    rows = db.rows(conn, _RESIDENT_SQL + " WHERE r.id = %s", (resident_id,))
    if not rows or (user.scoped and rows[0]["facility_id"] != user.facility_id):
        raise NotFoundError(f"resident {resident_id} not found")
    return rows[0]


@router.post(
    "/residents",
    response_model=ResidentPublic,
    status_code=status.HTTP_201_CREATED,
    tags=["registry"],
)
def create_resident(body: ResidentCreate, user: User, conn: Conn) -> dict[str, Any]:
    """Enrol a resident. The answer is the public shape: the ID number, notes and contacts
    just sent are not echoed back, they stay behind the audited reveal."""
    user.require("admin", "civil_affairs")
    with conn.transaction():
        row = reg.create_resident(conn, body)
    return _resident(conn, user, int(row["id"]))


_HOME_BED_SQL = (
    "SELECT id, facility_id, area, lat, lon, district_code, established_on, closed_on,"
    " liability_insured, package_code FROM home_beds"
)


@router.get("/home-beds", response_model=list[HomeBedPublic], tags=["registry"])
def home_beds(
    user: User, conn: Conn, facility: int | None = None, district: str | None = None
) -> list[dict[str, Any]]:
    fac = facility_scope(user, facility)
    return db.rows(
        conn,
        _HOME_BED_SQL + " WHERE (%(f)s::bigint IS NULL OR facility_id = %(f)s)"
        " AND (%(d)s::text IS NULL OR district_code LIKE %(d)s || '%%') ORDER BY id LIMIT 5000",
        {"f": fac, "d": district},
    )


@router.get("/home-beds/{home_bed_id}", tags=["registry"])
def home_bed(home_bed_id: int, user: User, conn: Conn) -> dict[str, Any]:
    """One home care bed (家庭养老床位) with what makes it one: the facility that runs it and
    the providers acting for that facility, the residents on it and their home-bed
    agreements (the service contract and its package), and the devices installed there.
    No address: that stays behind the audited reveal."""
    fac = facility_scope(user, None)
    bed = db.rows(conn, _HOME_BED_SQL + " WHERE id = %s", (home_bed_id,))
    if not bed or (fac is not None and bed[0]["facility_id"] != fac):
        raise NotFoundError(f"home bed {home_bed_id} not found")
    facility = db.one(
        conn, "SELECT id, code, name, kind FROM facilities WHERE id = %s", (bed[0]["facility_id"],)
    )
    providers = db.rows(
        conn,
        "SELECT id, name, kind, status FROM providers WHERE facility_id = %s ORDER BY id",
        (facility["id"],),
    )
    residents = [
        r["id"]
        for r in db.rows(
            conn, "SELECT id FROM residents WHERE home_bed_id = %s ORDER BY id", (home_bed_id,)
        )
    ]
    agreements = db.rows(
        conn,
        "SELECT g.id, g.resident_id, g.provider_id, g.kind, g.package, lower(g.valid) AS"
        " valid_from, upper(g.valid) AS valid_to, g.signed_on, g.doc_ref FROM care_agreements g"
        " WHERE g.kind = 'home_bed' AND g.resident_id = ANY(%s) ORDER BY g.id",
        (residents,),
    )
    devices = db.rows(
        conn,
        "SELECT d.id, d.kind, d.resident_id, d.status, COALESCE(s.online, false) AS online,"
        " s.battery, s.last_seen_at FROM devices d"
        " LEFT JOIN device_status s ON s.device_id = d.id"
        " WHERE d.home_bed_id = %s ORDER BY d.id",
        (home_bed_id,),
    )
    return {
        **bed[0],
        "facility": facility,
        "providers": providers,
        "residents": residents,
        "agreements": agreements,
        "devices": devices,
    }


@router.post(
    "/home-beds",
    response_model=HomeBedPublic,
    status_code=status.HTTP_201_CREATED,
    tags=["registry"],
)
def create_home_bed(body: HomeBedCreate, user: User, conn: Conn) -> dict[str, Any]:
    user.require("admin")
    with conn.transaction():
        made = reg.create_home_bed(conn, body)
        # The public shape: the address just sent stays behind the audited reveal.
        return db.one(conn, _HOME_BED_SQL + " WHERE id = %s", (made["id"],))


@router.patch("/home-beds/{home_bed_id}", response_model=HomeBedPublic, tags=["registry"])
def update_home_bed(
    home_bed_id: int, body: HomeBedUpdate, user: User, conn: Conn
) -> dict[str, Any]:
    user.require("admin")
    changes = body.model_dump(exclude_unset=True)
    with conn.transaction():
        current = db.one(
            conn,
            "SELECT established_on, closed_on FROM home_beds WHERE id = %s FOR UPDATE",
            (home_bed_id,),
            missing=f"home bed {home_bed_id} not found",
        )
        established = changes.get("established_on", current["established_on"])
        closed = changes.get("closed_on", current["closed_on"])
        if established and closed and closed < established:
            raise InvalidInput("closed_on is before established_on")
        if changes:
            sets = ", ".join(f"{k} = %({k})s" for k in changes)  # keys are the model's fields
            conn.execute(
                f"UPDATE home_beds SET {sets} WHERE id = %(id)s", {**changes, "id": home_bed_id}
            )
        return db.one(conn, _HOME_BED_SQL + " WHERE id = %s", (home_bed_id,))


@router.get("/residents/{resident_id}", response_model=ResidentPublic, tags=["registry"])
def resident(resident_id: int, user: User, conn: Conn) -> dict[str, Any]:
    return _resident(conn, user, resident_id)


# Without an open alarm of the resident, the reason must say something (audit M1); six
# characters leave room for a Chinese reason ("回访核实地址") and none for "ok"/"look".
STATED_REASON_CHARS = 6


def _reveal_refusal(
    conn: psycopg.Connection,
    user: Actor,
    resident_id: int,
    body: RevealCreate,
    now: datetime,
    settings: Settings,
) -> EldercareError | None:
    """Why this reveal may not happen now, or None (audit M1)."""
    if body.alarm_id is not None:
        found = db.rows(
            conn,
            f"SELECT 1 FROM alarms WHERE id = %s AND resident_id = %s AND status NOT IN {TERMINAL}",
            (body.alarm_id, resident_id),
        )
        if not found:
            return InvalidInput(
                f"alarm {body.alarm_id} is not an open alarm of resident {resident_id}"
            )
    elif user.scoped:
        return InvalidInput("facility staff reveal a resident's details only for an open alarm")
    elif len("".join(body.reason.split())) < STATED_REASON_CHARS:
        return InvalidInput(
            f"without an open alarm (alarm_id), state the reason in at least"
            f" {STATED_REASON_CHARS} characters"
        )
    return reveals_audit.throttle(
        conn,
        user.username,
        now,
        settings.reveals_per_hour,
        settings.reveals_without_alarm_per_hour if body.alarm_id is None else None,
    )


@router.post("/residents/{resident_id}/reveal", response_model=ResidentDetail, tags=["registry"])
def reveal(
    request: Request, resident_id: int, body: RevealCreate, user: User, conn: Conn, now: Now
) -> dict[str, Any]:
    """A resident's personal data (ID number, notes, contacts, address): for an open alarm
    of theirs or a stated reason, a limited number an hour, every attempt recorded."""
    base = _resident(conn, user, resident_id)
    refusal = _reveal_refusal(conn, user, resident_id, body, now, request.app.state.settings)
    with conn.transaction():
        # The record of who looked, and why, commits before the data leaves; a refused
        # attempt is recorded as such.
        reveals_audit.record(
            conn,
            at=now,
            username=user.username,
            resident_id=resident_id,
            reason=body.reason,
            refusal=refusal,
            alarm_id=body.alarm_id,
        )
        if refusal is None and body.alarm_id is not None:
            events.audit(
                conn,
                body.alarm_id,
                now,
                user.username,
                "revealed",
                detail={"resident_id": resident_id, "reason": body.reason},
            )
    if refusal is not None:
        log.warning("reveal of resident %s refused for %s: %s", resident_id, user.username, refusal)
        raise refusal
    extra = db.rows(
        conn,
        "SELECT r.id_number, r.medical_notes, r.allergies, r.contacts,"
        " COALESCE(hb.address, hh.address) AS address, hb.access_notes"
        " FROM residents r LEFT JOIN home_beds hb ON hb.id = r.home_bed_id"
        " LEFT JOIN households hh ON hh.id = r.household_id WHERE r.id = %s",
        (resident_id,),
    )[0]
    return {**base, **extra}


_REVEALS_SQL = (
    "SELECT id, at, username, resident_id, alarm_id, work_order_id::text AS work_order_id,"
    " reason, refused FROM reveals"
)


@router.get("/residents/{resident_id}/reveals", tags=["registry"])
def reveals(resident_id: int, user: User, conn: Conn) -> list[dict[str, Any]]:
    user.require("supervisor", "admin")
    return db.rows(
        conn,
        _REVEALS_SQL + " WHERE resident_id = %s ORDER BY id DESC LIMIT 500",
        (resident_id,),
    )


@router.get("/reveals", tags=["registry"])
def reveal_log(
    user: User, conn: Conn, username: str | None = None, refused: bool | None = None
) -> list[dict[str, Any]]:
    """Reveals across residents, newest first: one user's (``username``), or only the
    refused attempts (``refused=true``), for the supervisor's review (audit M1)."""
    user.require("supervisor", "admin")
    return db.rows(
        conn,
        _REVEALS_SQL + " WHERE (%(u)s::text IS NULL OR username = %(u)s)"
        " AND (%(r)s::boolean IS NULL OR (refused IS NOT NULL) = %(r)s)"
        " ORDER BY id DESC LIMIT 500",
        {"u": username, "r": refused},
    )
