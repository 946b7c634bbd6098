"""The demo fleet and logins, provisioned idempotently; device credentials kept in the
state directory (mode 0600) so a re-run does not touch the registry."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import psycopg

from eldercare.config import Settings
from eldercare.simulators import scenario as sc
from eldercare.simulators.scenario import DevicePlan

log = logging.getLogger("eldercare.demo")

DEMO_TAG: Final = "demo"  # facility codes SIMdemo-NN, device ids simdemo-<kind>-NNNN
FACILITY_PATTERN: Final = f"SIM{DEMO_TAG}-%"
DEVICE_PATTERN: Final = f"sim{DEMO_TAG}-%"
# Published on purpose: they are printed in the terminal for whoever watches the demo.
OPERATOR: Final = ("operator", "demo-operator", "operator")
SUPERVISOR: Final = ("supervisor", "demo-supervisor", "supervisor")
STAFF_PASSWORD: Final = "demo-staff"
_ADVISORY_LOCK: Final = 4242077  # serialises two demos provisioning into one database


@dataclass(frozen=True, slots=True)
class DemoFleet:
    facilities: tuple[tuple[int, str], ...]  # (id, code)
    devices: tuple[DevicePlan, ...]
    home_beds: int
    cameras: int
    reused: bool

    @property
    def facility_ids(self) -> list[int]:
        return [f[0] for f in self.facilities]


@dataclass(frozen=True, slots=True)
class Login:
    username: str
    password: str | None  # None: the account existed with another password; left alone
    role: str
    facility_code: str | None = None


def _plan_path(state_dir: Path) -> Path:
    return state_dir / "fleet.json"


def _load_saved(state_dir: Path) -> dict[str, DevicePlan]:
    path = _plan_path(state_dir)
    try:
        raw = json.loads(path.read_text("utf-8"))
        return {
            d["device_id"]: DevicePlan(
                d["device_id"],
                d["kind"],
                d["password"],
                d["facility_code"],
                d.get("room"),
                tuple(d.get("cameras", ())),
            )
            for d in raw["devices"]
        }
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring unreadable %s; device passwords will be rotated", path)
        return {}


def _save(state_dir: Path, devices: Sequence[DevicePlan]) -> None:
    path = _plan_path(state_dir)
    tmp = path.with_suffix(".tmp")
    body = {
        "tag": DEMO_TAG,
        "devices": [
            {
                "device_id": d.device_id,
                "kind": d.kind,
                "password": d.password,
                "facility_code": d.facility_code,
                "room": d.room,
                "cameras": list(d.cameras),
            }
            for d in devices
        ],
    }
    # Device passwords: readable by this user only, like an SSH key.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(body, fh)
    os.replace(tmp, path)


def _from_registry(conn: psycopg.Connection) -> list[tuple[DevicePlan, str]]:
    """The demo devices the registry has, with each stored password hash (no password)."""
    rows = conn.execute(
        "SELECT d.id, d.kind, f.code, d.room, d.password_hash,"
        " coalesce(array_agg(c.camera_id ORDER BY c.camera_id)"
        "          FILTER (WHERE c.camera_id IS NOT NULL), '{}')"
        " FROM devices d JOIN facilities f ON f.id = d.facility_id"
        " LEFT JOIN cameras c ON c.device_id = d.id"
        " WHERE f.code LIKE %s AND d.id LIKE %s AND d.status = 'active'"
        " GROUP BY d.id, d.kind, f.code, d.room, d.password_hash ORDER BY d.id",
        (FACILITY_PATTERN, DEVICE_PATTERN),
    ).fetchall()
    return [(DevicePlan(r[0], r[1], "", r[2], r[3], tuple(r[5])), r[4]) for r in rows]


def provision_fleet(
    conn: psycopg.Connection, settings: Settings, seed: int, state_dir: Path
) -> DemoFleet:
    """Reuse the demo fleet in this database, or create it once (tag ``demo``).

    Saved credentials are checked against the registry's hashes, so a plan file from
    another database (or a re-created one) is never trusted blindly: devices whose
    saved password does not match get a fresh one, and the broker is re-synced.
    """
    from eldercare.registry import broker_files as broker
    from eldercare.registry import service as registry
    from eldercare.simulators.fleet import Fleet

    conn.execute("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK,))
    conn.commit()
    try:
        found = _from_registry(conn)
        reused = bool(found)
        if not found:
            plan = Fleet.provision(conn, settings, seed, tag=DEMO_TAG)
            devices = list(plan.devices)
        else:
            saved = _load_saved(state_dir)
            devices, stale = [], []
            for dev, stored_hash in found:
                old = saved.get(dev.device_id)
                if old is not None and broker.verify_password(old.password, stored_hash):
                    devices.append(dataclasses.replace(dev, password=old.password))
                else:
                    stale.append(dev)
            if stale:
                # No saved password for these (state directory wiped, or another
                # database): rotate, since the registry keeps only hashes.
                log.info("rotating %d demo device passwords", len(stale))
                for dev in stale:
                    password = broker.new_password()
                    conn.execute(
                        "UPDATE devices SET password_hash = %s WHERE id = %s",
                        (broker.hash_password(password), dev.device_id),
                    )
                    devices.append(dataclasses.replace(dev, password=password))
                registry.sync_broker(conn, settings)  # commits, then waits for the reload
            devices.sort(key=lambda d: d.device_id)
        conn.commit()
        _save(state_dir, devices)
        facilities = conn.execute(
            "SELECT id, code FROM facilities WHERE code LIKE %s ORDER BY code", (FACILITY_PATTERN,)
        ).fetchall()
        ids = [f[0] for f in facilities]
        home_beds = conn.execute(
            "SELECT count(*) FROM home_beds WHERE facility_id = ANY(%s)", (ids,)
        ).fetchone()
        conn.commit()
    finally:
        # After a failure the transaction is aborted: roll back before unlocking, and
        # never let the unlock hide the original error (closing the session unlocks too).
        with contextlib.suppress(psycopg.Error):
            conn.rollback()
            conn.execute("SELECT pg_advisory_unlock(%s)", (_ADVISORY_LOCK,))
            conn.commit()
    return DemoFleet(
        tuple((int(i), str(c)) for i, c in facilities),
        tuple(devices),
        int(home_beds[0]) if home_beds else 0,
        sum(len(d.cameras) for d in devices),
        reused,
    )


def ensure_logins(conn: psycopg.Connection, fleet: DemoFleet) -> list[Login]:
    """Demo logins, plus one on-duty responder per facility linked to its staff login so
    dispatch offers reach the staff page. An existing account with another password or
    role is left untouched (and its password is not printed)."""
    import bcrypt

    from eldercare.registry import auth

    logins: list[Login] = []

    def ensure(
        username: str,
        password: str,
        role: str,
        facility: tuple[int, str] | None = None,
        responder_id: int | None = None,
    ) -> None:
        fac_id, code = facility if facility else (None, None)
        row = conn.execute(
            "SELECT password_hash, role, facility_id FROM users WHERE username = %s", (username,)
        ).fetchone()
        if row is None:
            auth.create_user(conn, username, password, role, fac_id, responder_id)
            logins.append(Login(username, password, role, code))
        elif (
            row[1] == role
            and row[2] == fac_id
            and bcrypt.checkpw(password.encode(), row[0].encode())
        ):
            logins.append(Login(username, password, role, code))
        else:
            log.info("login %s exists with another role or password; left unchanged", username)
            logins.append(Login(username, None, row[1], code))

    ensure(*OPERATOR)
    ensure(*SUPERVISOR)
    for n, (fac_id, code) in enumerate(fleet.facilities, 1):
        name = f"演示值班员 {n:02d}"  # a role, not a person
        row = conn.execute(
            "SELECT id FROM responders WHERE facility_id = %s"
            " AND kind = 'facility_staff' AND name = %s",
            (fac_id, name),
        ).fetchone()
        if row is None:
            row = conn.execute(
                "INSERT INTO responders (kind, name, phone, facility_id, lat, lon)"
                " SELECT 'facility_staff', %s, %s, id, lat, lon FROM facilities WHERE id = %s"
                " RETURNING id",
                # 028-0...: no local number starts with 0, so this cannot ring anyone.
                (name, f"028-0100-{n:04d}", fac_id),
            ).fetchone()
        assert row is not None
        responder_id = int(row[0])
        # On duty now and for the next month: a rota shift that outlives any demo session.
        conn.execute(
            "INSERT INTO rota (responder_id, facility_id, starts_at, ends_at)"
            " SELECT %s, %s, now() - interval '1 hour', now() + interval '30 days'"
            " WHERE NOT EXISTS (SELECT 1 FROM rota WHERE responder_id = %s AND facility_id = %s"
            "   AND starts_at <= now() AND ends_at > now() + interval '1 day')",
            (responder_id, fac_id, responder_id, fac_id),
        )
        ensure(f"staff-{n:02d}", STAFF_PASSWORD, "facility_staff", (fac_id, code), responder_id)
    conn.commit()
    return logins


def alarms_per_second(devices: Sequence[DevicePlan]) -> float:
    """Expected resident alarms per second at incident_rate 1, from the scenario's means
    (device-health alarms such as drops and camera faults are extra)."""
    home = (
        1 / (3 * sc.SOS_MEAN_S)
        + 1 / sc.FALL_MEAN_S
        + 1 / (2 * sc.BED_EXIT_MEAN_S)
        + sum(1 / m for m in sc.HOME_ALARM_MEAN_S.values())
    )
    per_kind = {
        "sos_button": 1 / sc.SOS_MEAN_S,
        "fall_sensor": 1 / sc.FALL_MEAN_S + 1 / sc.BED_EXIT_MEAN_S,
        "home_kit": home,
        "wearable": 1 / (4 * sc.FALL_MEAN_S),
    }
    return sum(per_kind.get(d.kind, 0.0) for d in devices)


# The visits an alarm's close plans by itself (design §2.9), for the demo's catalogue.
FOLLOW_UP_ITEMS: Final = (
    ("post_fall_visit", "跌倒后上门探视", "visit"),
    ("post_incident_visit", "紧急事件后回访探视", "visit"),
    ("device_training_visit", "设备使用指导上门", "device_maintenance"),
)


def link_fleet_to_services(conn: psycopg.Connection, district: str) -> int:
    """Put the demo fleet's facilities (and so their home care beds) in the demo's service
    district and the follow-up visits in the catalogue, so an alarm closed on the console as
    ``fall_without_injury`` or ``service_request`` shows its follow-up order in the
    work-order tab. Idempotent; returns the facilities placed now."""
    from eldercare.platform import providers
    from eldercare.platform.schemas import ServiceItemCreate

    for code, name, category in FOLLOW_UP_ITEMS:
        if conn.execute("SELECT 1 FROM service_items WHERE code = %s", (code,)).fetchone():
            continue
        item = {"code": code, "name_zh": name, "category": category}
        providers.create_item(
            conn, ServiceItemCreate.model_validate({**item, "setting": "home", "unit": "visit"})
        )
    placed = conn.execute(
        "UPDATE facilities SET district_code = %s WHERE code LIKE %s AND district_code IS NULL",
        (district, FACILITY_PATTERN),
    ).rowcount
    return placed
