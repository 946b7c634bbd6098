"""The registry: facilities, home care beds, residents, devices and their broker credentials."""

from __future__ import annotations

import secrets
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from eldercare.config import Settings
from eldercare.errors import InvalidInput
from eldercare.registry import broker_files as broker
from eldercare.registry.schemas import (
    DeviceCreate,
    DeviceCredentials,
    FacilityCreate,
    HomeBedCreate,
    ResidentCreate,
)
from eldercare.storage import db

_KIND_PREFIX = {
    "sos_button": "sos",
    "fall_sensor": "fall",
    "video_bridge": "nvr",
    "home_kit": "kit",
    "wearable": "wear",
}
_BROKER_LOCK = 4242002


def create_facility(conn: psycopg.Connection, f: FacilityCreate) -> dict[str, Any]:
    return db.one(
        conn,
        "INSERT INTO facilities (code, name, kind, area, address, lat, lon, phone, district_code,"
        " tekun_institution) VALUES (%(code)s, %(name)s, %(kind)s, %(area)s, %(address)s,"
        " %(lat)s, %(lon)s, %(phone)s, %(district_code)s, %(tekun_institution)s) RETURNING *",
        f.model_dump(),
    )


def create_home_bed(conn: psycopg.Connection, b: HomeBedCreate) -> dict[str, Any]:
    return db.one(
        conn,
        "INSERT INTO home_beds (facility_id, address, access_notes, area, lat, lon, district_code,"
        " established_on, closed_on, liability_insured, package_code) VALUES (%(facility_id)s,"
        " %(address)s, %(access_notes)s, %(area)s, %(lat)s, %(lon)s, %(district_code)s,"
        " %(established_on)s, %(closed_on)s, %(liability_insured)s, %(package_code)s)"
        " RETURNING *",
        b.model_dump(),
    )


def create_resident(conn: psycopg.Connection, r: ResidentCreate) -> dict[str, Any]:
    data = r.model_dump()
    data["contacts"] = Jsonb(data["contacts"])
    return db.one(
        conn,
        "INSERT INTO residents (name, id_number, birth_date, gender, ability_level, medical_notes,"
        " allergies, contacts, facility_id, room, home_bed_id, household_id) VALUES (%(name)s,"
        " %(id_number)s, %(birth_date)s, %(gender)s, %(ability_level)s, %(medical_notes)s,"
        " %(allergies)s, %(contacts)s, %(facility_id)s, %(room)s, %(home_bed_id)s,"
        " %(household_id)s) RETURNING *",
        data,
    )


def provision_device(
    conn: psycopg.Connection, settings: Settings, d: DeviceCreate, *, sync: bool = True
) -> DeviceCredentials:
    """Create a device with fresh credentials; the broker accepts it when this returns.

    The device inherits its resident's facility, home care bed and room unless given.
    ``sync=False`` lets bulk provisioning write the broker files once at the end.
    """
    facility_id, home_bed_id, room = d.facility_id, None, d.room
    if d.resident_id is not None:
        res = db.one(
            conn,
            "SELECT facility_id, home_bed_id, room FROM residents WHERE id = %s",
            (d.resident_id,),
        )
        home_bed_id = res["home_bed_id"]
        room = room or res["room"]
        if facility_id is None:
            facility_id = res["facility_id"]
        if facility_id is None and home_bed_id is not None:
            facility_id = db.one(
                conn, "SELECT facility_id FROM home_beds WHERE id = %s", (home_bed_id,)
            )["facility_id"]
    if facility_id is None:
        raise InvalidInput("a device needs a facility or a resident placed somewhere")
    device_id = d.device_id or f"{_KIND_PREFIX[d.kind]}-{secrets.token_hex(6)}"
    password = broker.new_password()
    with conn.transaction():
        db.one(
            conn,
            "INSERT INTO devices (id, kind, resident_id, facility_id, home_bed_id, room,"
            " password_hash) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (
                device_id,
                d.kind,
                d.resident_id,
                facility_id,
                home_bed_id,
                room,
                broker.hash_password(password),
            ),
        )
        for cam in d.cameras:
            conn.execute(
                "INSERT INTO cameras (device_id, camera_id) VALUES (%s, %s)", (device_id, cam)
            )
    if sync:
        sync_broker(conn, settings)
    return DeviceCredentials(
        device_id=device_id,
        mqtt_host=settings.device_mqtt_host,
        mqtt_port=settings.device_mqtt_port,
        username=device_id,
        password=password,
    )


def revoke_device(conn: psycopg.Connection, settings: Settings, device_id: str) -> None:
    row = db.one(
        conn,
        "UPDATE devices SET status = 'revoked', revoked_at = now() WHERE id = %s RETURNING status",
        (device_id,),
    )
    conn.commit()
    del row
    # The broker disconnects a connected revoked device when it reloads.
    sync_broker(conn, settings)


def sync_broker(conn: psycopg.Connection, settings: Settings, *, wait: bool = True) -> None:
    """Rewrite the broker's password file and ACL from the registry, then reload it.

    An advisory lock serialises concurrent provisioning so the last writer sees
    every committed device. Mosquitto applies SIGHUP asynchronously, so each
    version of the files carries a canary user with a fresh password; once the
    broker accepts the canary, this version is live and the call returns.
    """
    conn.commit()
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_BROKER_LOCK,))
        rows = conn.execute(
            "SELECT id, password_hash FROM devices WHERE status = 'active' ORDER BY id"
        ).fetchall()
        files = broker.BrokerFiles(settings.broker_dir)
        canary_password = broker.new_password()
        broker.write_files(
            files,
            [(r[0], r[1]) for r in rows],
            {
                settings.mqtt_username: broker.hash_password(settings.mqtt_password),
                broker.CANARY_USER: broker.hash_password(canary_password),
            },
        )
        reloaded = broker.reload(files)
        if wait and reloaded:
            broker.wait_until(
                settings.mqtt_host,
                settings.mqtt_port,
                broker.CANARY_USER,
                canary_password,
                accepted=True,
            )
