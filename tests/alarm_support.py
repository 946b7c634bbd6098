"""Shared pieces of the alert-engine tests: a frozen clock, a small world of one
facility with residents, devices and responders, and a way to feed device events
through the gateway's real Store (real database, no MQTT needed)."""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import orjson
import psycopg
from psycopg.rows import dict_row

from eldercare.alerts import rules
from eldercare.config import Settings
from eldercare.gateway.store import StateReport, Store
from eldercare.protocol import parse_uplink
from eldercare.registry import service as registry
from eldercare.registry.auth import Actor
from eldercare.registry.schemas import (
    Area,
    Contact,
    DeviceCreate,
    DeviceKind,
    FacilityCreate,
    HomeBedCreate,
    ResidentCreate,
)


class FrozenClock:
    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2030, 1, 1, 8, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self.now += timedelta(seconds=seconds)
            return self.now


class RecordingPublisher:
    """The downlink edge for tests that do not need a broker; the e2e test uses MQTT."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self.fail = False

    def publish(self, device_id: str, payload: dict[str, Any]) -> None:
        if self.fail:
            raise OSError("broker unreachable")
        self.sent.append((device_id, payload))

    def statuses(self, device_id: str) -> list[str]:
        return [p["status"] for d, p in self.sent if d == device_id]


OPERATOR = Actor("op1", "operator")
OPERATOR2 = Actor("op2", "operator")
SUPERVISOR = Actor("sup1", "supervisor")


@dataclass
class World:
    settings: Settings
    clock: FrozenClock
    facility_id: int
    home_facility_id: int
    resident_id: int
    home_resident_id: int
    sos: str
    fall: str
    home_sos: str
    staff: list[int]
    providers: list[int]
    outreach: list[int]
    store: Store
    extra: dict[str, Any] = field(default_factory=dict)

    def send(
        self,
        device_id: str,
        etype: str,
        msg_id: str | None = None,
        ts: datetime | None = None,
        **fields: Any,
    ) -> Any:
        now = self.clock()
        body = {
            "v": 1,
            "id": msg_id or secrets.token_hex(6),
            "ts": (ts or now).isoformat(),
            "type": etype,
            **fields,
        }
        up = parse_uplink(device_id, orjson.dumps(body), now)
        if up.is_alarm or etype == "cancel":
            return self.store.store_alarm(up)
        return self.store.store_batch([up])

    def retire(self) -> None:
        """Close whatever this world left open. escalate_due, supervisor_due and the health
        scan are database-wide, so another module's engine would otherwise act on these
        alarms and its tests would depend on which module ran first."""
        with psycopg.connect(self.settings.database_url, autocommit=True) as conn:
            conn.execute(
                "UPDATE alarms SET status = 'closed', closed_at = COALESCE(closed_at, %s),"
                " disposition = COALESCE(disposition, 'test'), escalation_due_at = NULL"
                " WHERE facility_id = ANY(%s) AND status <> ALL(%s)",
                (self.clock(), [self.facility_id, self.home_facility_id], list(rules.TERMINAL)),
            )

    def state(self, device_id: str, online: bool) -> Any:
        return self.store.store_batch([], [StateReport(device_id, online, self.clock())])

    def device(
        self,
        kind: DeviceKind = "sos_button",
        resident: int | None = None,
        facility: int | None = None,
        cameras: list[str] | None = None,
    ) -> str:
        with psycopg.connect(self.settings.database_url) as conn:
            cred = registry.provision_device(
                conn,
                self.settings,
                DeviceCreate(
                    kind=kind,
                    resident_id=resident,
                    facility_id=None if resident else (facility or self.facility_id),
                    cameras=cameras or [],
                ),
                sync=False,
            )
            conn.commit()
        return cred.device_id


R = TypeVar("R")


def one_row(cur: psycopg.Cursor[R]) -> R:
    """The row a test's query must find (psycopg types ``fetchone()`` as maybe None)."""
    row = cur.fetchone()
    assert row is not None, "the query found no row"
    return row


def rows(conn: psycopg.Connection, sql: str, params: Any = None) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def build_world(settings: Settings, clock: FrozenClock, *, area: Area = "town") -> World:
    tag = secrets.token_hex(3)
    with psycopg.connect(settings.database_url) as conn:
        fac = registry.create_facility(
            conn,
            FacilityCreate(
                code=f"F-{tag}", name=f"Facility {tag}", area=area, lat=31.2300, lon=121.4700
            ),
        )
        home_fac = registry.create_facility(
            conn,
            FacilityCreate(
                code=f"H-{tag}",
                name=f"Home service {tag}",
                kind="community_center",
                area="remote",
                lat=30.0,
                lon=120.0,
            ),
        )
        bed = registry.create_home_bed(
            conn,
            HomeBedCreate(
                facility_id=home_fac["id"],
                address="1 Test Road",
                area="remote",
                lat=30.01,
                lon=120.01,
            ),
        )
        res = registry.create_resident(
            conn,
            ResidentCreate(
                name="Test Resident",
                facility_id=fac["id"],
                room="203",
                contacts=[
                    Contact(name="Daughter", relation="daughter", phone="13800000001"),
                    Contact(name="Son", relation="son", phone="13800000002"),
                ],
            ),
        )
        home_res = registry.create_resident(
            conn,
            ResidentCreate(
                name="Home Resident",
                home_bed_id=bed["id"],
                contacts=[Contact(name="Niece", phone="13900000003")],
            ),
        )
        staff, providers, outreach = [], [], []
        # Providers are city-wide: earlier worlds' providers must not be the nearest here.
        conn.execute("UPDATE responders SET available = false WHERE kind = 'provider'")
        for i in range(3):
            r = conn.execute(
                "INSERT INTO responders (kind, name, phone, facility_id) VALUES"
                " ('facility_staff', %s, %s, %s) RETURNING id",
                (f"Nurse {i}", f"1500000000{i}", fac["id"]),
            ).fetchone()
            assert r is not None
            staff.append(r[0])
        # Nurses 0 and 1 are on duty now; nurse 2 is off.
        for rid in staff[:2]:
            conn.execute(
                "INSERT INTO rota (responder_id, facility_id, starts_at, ends_at)"
                " VALUES (%s, %s, %s, %s)",
                (rid, fac["id"], clock() - timedelta(hours=4), clock() + timedelta(hours=8)),
            )
        # Providers at increasing distance from the home bed (30.01, 120.01).
        for i, (lat, lon) in enumerate([(30.20, 120.20), (30.02, 120.02), (30.05, 120.05)]):
            r = conn.execute(
                "INSERT INTO responders (kind, name, phone, lat, lon) VALUES"
                " ('provider', %s, %s, %s, %s) RETURNING id",
                (f"Provider {tag}-{i}", f"1600000000{i}", lat, lon),
            ).fetchone()
            assert r is not None
            providers.append(r[0])
        r = conn.execute(
            "INSERT INTO responders (kind, name, phone, facility_id) VALUES"
            " ('outreach', 'Outreach A', '17000000000', %s) RETURNING id",
            (home_fac["id"],),
        ).fetchone()
        assert r is not None
        outreach.append(r[0])
        conn.commit()
    w = World(
        settings=settings,
        clock=clock,
        facility_id=fac["id"],
        home_facility_id=home_fac["id"],
        resident_id=res["id"],
        home_resident_id=home_res["id"],
        sos="",  # the devices are provisioned below, through the world itself
        fall="",
        home_sos="",
        staff=staff,
        providers=providers,
        outreach=outreach,
        store=Store(settings.database_url, clock),
    )
    w.sos = w.device("sos_button", resident=res["id"])
    w.fall = w.device("fall_sensor", resident=res["id"])
    w.home_sos = w.device("home_kit", resident=home_res["id"])
    return w
