"""The work-order service on the real database with a frozen clock: the auto-verify job, and
that a blocked order waits while a clean one is verified 24 h after check-out."""

from __future__ import annotations

import secrets
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest

from eldercare.errors import ConflictError, NotFoundError
from eldercare.platform import people, providers, workorders
from eldercare.platform.schemas import (
    AcceptRequest,
    CheckOut,
    ContractCreate,
    DispatchRequest,
    GeoPoint,
    HouseholdCreate,
    ProviderCreate,
    ReasonRequest,
    ServiceItemCreate,
    ServiceRecord,
    WorkerCreate,
    WorkOrderCreate,
)
from eldercare.registry import service as registry
from eldercare.registry.auth import Actor
from eldercare.registry.schemas import ResidentCreate

T0 = datetime(2026, 1, 6, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
ENV = workorders.Env(tz=ZoneInfo("Asia/Shanghai"), revisit_sample_pct=0)
OP = Actor("op-wo", "operator")


@pytest.fixture
def world(settings):
    """A district, a household with a resident, a contracted provider and its worker."""
    with psycopg.connect(settings.database_url) as conn:
        conn.execute(
            "INSERT INTO districts (code, name, level) VALUES ('000000', '全国', 'country')"
            " ON CONFLICT DO NOTHING"
        )
        code = "8" + str(secrets.randbelow(10**8)).zfill(8)
        conn.execute(
            "INSERT INTO districts (code, name, parent_code, level) VALUES (%s, 'x', '000000',"
            " 'street')",
            (code,),
        )
        hh = people.create_household(
            conn, HouseholdCreate(address="测试", district_code=code, lat=29.5, lon=120.8)
        )
        r = registry.create_resident(conn, ResidentCreate(name="工单测试", household_id=hh["id"]))
        item = "t_" + secrets.token_hex(4)
        providers.create_item(
            conn,
            ServiceItemCreate(
                code=item, name_zh="测试", category="visit", setting="home", unit="visit"
            ),
        )
        p = providers.create_provider(conn, ProviderCreate(name="测试服务商", kind="company"))
        providers.create_contract(
            conn,
            p["id"],
            ContractCreate(
                district_code=code, valid_from=date(2025, 1, 1), price_list={item: 3000}
            ),
            "adm",
            T0,
        )
        w = providers.create_worker(conn, p["id"], WorkerCreate(name="服务员"))
        conn.commit()
        yield {
            "conn": conn,
            "resident": r["id"],
            "item": item,
            "provider": p["id"],
            "worker": w["id"],
            "district": code,
        }


def _checked_out(world, at: datetime) -> dict:
    conn = world["conn"]
    worker = Actor(
        "w-wo", "provider_worker", provider_id=world["provider"], worker_id=world["worker"]
    )
    with conn.transaction():
        o = workorders.create(
            conn,
            OP,
            WorkOrderCreate(resident_id=world["resident"], service_item_code=world["item"]),
            at,
            ENV,
        )
        workorders.act(
            conn, OP, o["id"], "dispatch", DispatchRequest(provider_id=world["provider"]), at, ENV
        )
        workorders.act(conn, worker, o["id"], "accept", AcceptRequest(), at, ENV)
        point: dict[str, Any] = {"lat": 29.5, "lon": 120.8, "accuracy_m": 5, "client_time": at}
        workorders.act(conn, worker, o["id"], "check_in", GeoPoint(**point), at, ENV)
        out = workorders.act(
            conn,
            worker,
            o["id"],
            "check_out",
            CheckOut(**point, record=ServiceRecord()),
            at + timedelta(minutes=30),
            ENV,
        )
    assert out["status"] == "checked_out" and out["price_fen"] == 3000
    assert out["number"].startswith(f"WO-{world['district'][:6]}-20260106-")
    return out


def test_auto_verify_waits_24_hours_and_for_blockers(world) -> None:
    conn = world["conn"]
    clean = _checked_out(world, T0)
    blocked = _checked_out(world, T0 + timedelta(hours=1))
    conn.execute("UPDATE work_orders SET revisit_required = true WHERE id = %s", (blocked["id"],))
    out_at = T0 + timedelta(minutes=30)
    assert workorders.auto_verify_due(conn, out_at + timedelta(hours=23, minutes=59), ENV) == 0
    assert workorders.auto_verify_due(conn, out_at + timedelta(hours=26), ENV) == 1
    admin = Actor("adm", "admin")
    shown = workorders.get(conn, admin, clean["id"])
    assert (shown["status"], shown["verification"]) == ("verified", "auto")
    assert workorders.get(conn, admin, blocked["id"])["status"] == "checked_out"
    events = workorders.events(conn, admin, clean["id"])
    assert events[-1]["actor"] == "system" and events[-1]["to_status"] == "verified"


def test_a_worker_of_another_provider_cannot_take_the_order(world) -> None:
    conn = world["conn"]
    other = providers.create_provider(conn, ProviderCreate(name="别家", kind="company"))
    intruder = Actor("w-x", "provider_worker", provider_id=other["id"], worker_id=10**9)
    with conn.transaction():
        o = workorders.create(
            conn,
            OP,
            WorkOrderCreate(resident_id=world["resident"], service_item_code=world["item"]),
            T0,
            ENV,
        )
        workorders.act(
            conn, OP, o["id"], "dispatch", DispatchRequest(provider_id=world["provider"]), T0, ENV
        )
    with pytest.raises(NotFoundError), conn.transaction():
        workorders.act(conn, intruder, o["id"], "accept", AcceptRequest(), T0, ENV)
    # Of two concurrent accepts only one wins: the second finds the order accepted.
    mine = Actor(
        "w-wo", "provider_worker", provider_id=world["provider"], worker_id=world["worker"]
    )
    with conn.transaction():
        workorders.act(conn, mine, o["id"], "accept", AcceptRequest(), T0, ENV)
    with pytest.raises(ConflictError), conn.transaction():
        workorders.act(conn, mine, o["id"], "accept", AcceptRequest(), T0, ENV)


def test_a_home_bed_device_offline_for_a_day_gets_maintenance(world) -> None:
    from eldercare.platform import followups
    from eldercare.registry.schemas import FacilityCreate, HomeBedCreate

    conn = world["conn"]
    tag = secrets.token_hex(3)
    fac = registry.create_facility(
        conn, FacilityCreate(code=f"MT-{tag}", name="维护测试中心", district_code=world["district"])
    )
    bed = registry.create_home_bed(
        conn, HomeBedCreate(facility_id=fac["id"], address="维护测试路", lat=29.5, lon=120.8)
    )
    r = registry.create_resident(conn, ResidentCreate(name="维护测试", home_bed_id=bed["id"]))
    prov = providers.create_provider(
        conn, ProviderCreate(name="维护服务商", kind="facility", facility_id=fac["id"])
    )
    if not conn.execute("SELECT 1 FROM service_items WHERE code = 'device_maintenance'").fetchone():
        providers.create_item(
            conn,
            ServiceItemCreate(
                code="device_maintenance",
                name_zh="设备维护",
                category="device_maintenance",
                setting="home",
                unit="visit",
            ),
        )
    providers.create_contract(
        conn,
        prov["id"],
        ContractCreate(
            district_code=world["district"],
            valid_from=date(2025, 1, 1),
            price_list={"device_maintenance": 0},
        ),
        "adm",
        T0,
    )

    def offline(hours_ago: float) -> str:
        at = T0 - timedelta(hours=hours_ago)
        return str(
            conn.execute(
                "INSERT INTO alarms (kind, kinds, devices, priority, resident_id, facility_id,"
                " home_bed_id, event_time, received_at, last_occurrence_at) VALUES"
                " ('device_offline', '{device_offline}', '{}', 4, %s, %s, %s, %s, %s, %s)"
                " RETURNING id",
                (r["id"], fac["id"], bed["id"], at, at, at),
            ).fetchone()[0]
        )

    old, fresh = offline(25), offline(23)
    conn.commit()
    assert followups.device_maintenance_due(conn, T0, ENV) == 1
    assert followups.device_maintenance_due(conn, T0, ENV) == 0  # one order per alarm
    admin = Actor("adm", "admin")
    orders = workorders.search(conn, admin, alarm_id=old)
    assert [(o["service_item_code"], o["status"], o["provider_id"]) for o in orders] == [
        ("device_maintenance", "dispatched", prov["id"])
    ]
    assert workorders.search(conn, admin, alarm_id=fresh) == []
    actions = [
        a[0]
        for a in conn.execute(
            "SELECT action FROM alarm_events WHERE alarm_id = %s ORDER BY id", (old,)
        ).fetchall()
    ]
    assert "work_order_created" in actions


def test_a_providers_own_order_goes_to_that_provider(world) -> None:
    conn = world["conn"]
    pa = Actor("pa-wo", "provider_admin", provider_id=world["provider"])
    with conn.transaction():
        o = workorders.create(
            conn,
            pa,
            WorkOrderCreate(resident_id=world["resident"], service_item_code=world["item"]),
            T0,
            ENV,
        )
    assert (o["status"], o["provider_id"], o["unit_price_fen"]) == (
        "dispatched",
        world["provider"],
        3000,
    )
    other = providers.create_provider(conn, ProviderCreate(name="无合同", kind="company"))
    before = conn.execute("SELECT count(*) FROM work_orders").fetchone()[0]
    with pytest.raises(ConflictError, match="not contracted"), conn.transaction():
        workorders.create(
            conn,
            Actor("pa-x", "provider_admin", provider_id=other["id"]),
            WorkOrderCreate(resident_id=world["resident"], service_item_code=world["item"]),
            T0,
            ENV,
        )
    assert conn.execute("SELECT count(*) FROM work_orders").fetchone()[0] == before


def test_a_worker_on_site_during_an_open_sos_is_proposed_first(world) -> None:
    from eldercare.alerts import lifecycle as alarms
    from eldercare.registry.schemas import FacilityCreate

    conn = world["conn"]
    tag = secrets.token_hex(3)
    # The resident's household has no facility: give the alarm one, as a device would.
    fac = registry.create_facility(conn, FacilityCreate(code=f"OS-{tag}", name="在场测试"))
    near = providers.create_worker(
        conn,
        world["provider"],
        WorkerCreate(name="在场服务员", responder_lat=30.5, responder_lon=121.9),  # far away
    )
    at = T0
    alarm_id = str(
        conn.execute(
            "INSERT INTO alarms (kind, kinds, devices, priority, resident_id, facility_id,"
            " event_time, received_at, last_occurrence_at) VALUES ('sos', '{sos}', '{}', 1,"
            " %s, %s, %s, %s, %s) RETURNING id",
            (world["resident"], fac["id"], at, at, at),
        ).fetchone()[0]
    )
    conn.commit()
    worker = Actor("w-os", "provider_worker", provider_id=world["provider"], worker_id=near["id"])
    with conn.transaction():
        o = workorders.create(
            conn,
            OP,
            WorkOrderCreate(resident_id=world["resident"], service_item_code=world["item"]),
            at,
            ENV,
        )
        workorders.act(
            conn, OP, o["id"], "dispatch", DispatchRequest(provider_id=world["provider"]), at, ENV
        )
        workorders.act(conn, worker, o["id"], "accept", AcceptRequest(), at, ENV)
        point: dict[str, Any] = {"lat": 29.5, "lon": 120.8, "accuracy_m": 5, "client_time": at}
        workorders.act(conn, worker, o["id"], "check_in", GeoPoint(**point), at, ENV)
    admin = Actor("adm", "admin")
    shown = alarms.detail(conn, alarm_id, admin, at + timedelta(minutes=1))
    first = shown["proposal"]["responders"][0]
    assert (first["responder_id"], first["on_site_worker"], first["distance_m"]) == (
        near["responder_id"],
        True,
        0.0,
    )


def test_a_provider_gives_an_order_back(world) -> None:
    """reject (待改派) by the worker who accepted it, and by the provider's admin: the order
    is back to created for the desk, though neither may see it any more."""
    conn = world["conn"]
    worker = Actor(
        "w-wo", "provider_worker", provider_id=world["provider"], worker_id=world["worker"]
    )
    admin = Actor("pa-wo", "provider_admin", provider_id=world["provider"])
    for who in (worker, admin):
        with conn.transaction():
            o = workorders.create(
                conn,
                OP,
                WorkOrderCreate(resident_id=world["resident"], service_item_code=world["item"]),
                T0,
                ENV,
            )
            workorders.act(
                conn,
                OP,
                o["id"],
                "dispatch",
                DispatchRequest(provider_id=world["provider"]),
                T0,
                ENV,
            )
            workorders.act(conn, worker, o["id"], "accept", AcceptRequest(), T0, ENV)
            back = workorders.act(
                conn, who, o["id"], "reject", ReasonRequest(reason="时间冲突"), T0, ENV
            )
        assert (back["status"], back["provider_id"], back["worker_id"]) == ("created", None, None)
        with pytest.raises(NotFoundError):
            workorders.get(conn, who, o["id"])
        last = workorders.events(conn, OP, o["id"])[-1]
        assert (last["action"], last["actor"], last["detail"]["reason"]) == (
            "reject",
            who.username,
            "时间冲突",
        )
