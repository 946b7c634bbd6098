"""A care worker finds the door: the visit address of an active work order, over HTTP, for
the assigned worker and the provider's admin only, while the order is accepted or checked
in, throttled, and every attempt a row of the reveals audit naming the order."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
from fastapi.testclient import TestClient

from eldercare.app import create_app
from eldercare.config import Settings
from eldercare.platform import people, providers, workorders
from eldercare.platform.schemas import (
    ContractCreate,
    DispatchRequest,
    HouseholdCreate,
    ProviderCreate,
    ServiceItemCreate,
    WorkerCreate,
    WorkOrderCreate,
)
from eldercare.registry import auth
from eldercare.registry import service as registry
from eldercare.registry.auth import Actor
from eldercare.registry.schemas import Contact, ResidentCreate
from tests.alarm_support import RecordingPublisher

PASSWORD = "visit-address-password"
ADDRESS = "上门地址测试路8号"
HOME = {"lat": 29.5, "lon": 120.8, "accuracy_m": 5.0}


@pytest.fixture(scope="module")
def site(settings: Settings) -> Iterator[dict[str, Any]]:
    """An order dispatched to provider P for a resident at home; P's workers w1 and w2,
    P's admin pa, and a supervisor. Two reveals an hour, so the third is throttled."""
    tag = secrets.token_hex(3)
    now = datetime.now(UTC)
    env = workorders.Env(tz=ZoneInfo("Asia/Shanghai"), revisit_sample_pct=0)
    desk = Actor(f"op-{tag}", "operator")
    with psycopg.connect(settings.database_url) as conn:
        conn.execute(
            "INSERT INTO districts (code, name, level) VALUES ('000000', '全国', 'country')"
            " ON CONFLICT DO NOTHING"
        )
        street = "6" + str(int(tag, 16) % 10**8).zfill(8)
        conn.execute(
            "INSERT INTO districts (code, name, parent_code, level) VALUES (%s, '地址测试街道',"
            " '000000', 'street')",
            (street,),
        )
        hh = people.create_household(
            conn, HouseholdCreate(address=ADDRESS, district_code=street, lat=29.5, lon=120.8)
        )
        resident = registry.create_resident(
            conn,
            ResidentCreate(
                name="地址测试老人",
                id_number="330683194001010011",
                household_id=hh["id"],
                contacts=[
                    Contact(name="女儿", relation="daughter", phone="13800000001"),
                    Contact(name="邻居", relation="neighbour", phone="13800000002"),
                ],
            ),
        )
        item = f"va_{tag}"
        providers.create_item(
            conn,
            ServiceItemCreate(
                code=item, name_zh="上门探访", category="visit", setting="home", unit="visit"
            ),
        )
        prov = providers.create_provider(
            conn, ProviderCreate(name=f"地址服务商{tag}", kind="company")
        )
        providers.create_contract(
            conn,
            prov["id"],
            ContractCreate(
                district_code=street, valid_from=date(2025, 1, 1), price_list={item: 3000}
            ),
            desk.username,
            now,
        )
        users = {"sup": ("supervisor", {}), "pa": ("provider_admin", {"provider_id": prov["id"]})}
        for w in ("w1", "w2"):
            made = providers.create_worker(conn, prov["id"], WorkerCreate(name=f"服务员{w}"))
            users[w] = ("provider_worker", {"worker_id": made["id"]})
        for name, (role, scope) in users.items():
            auth.create_user(conn, f"{name}-{tag}", PASSWORD, role, **scope)
        o = workorders.create(
            conn,
            desk,
            WorkOrderCreate(resident_id=resident["id"], service_item_code=item),
            now,
            env,
        )
        workorders.act(
            conn, desk, o["id"], "dispatch", DispatchRequest(provider_id=prov["id"]), now, env
        )
        conn.commit()
    app = create_app(
        settings.model_copy(update={"reveals_per_hour": 2}),
        publisher=RecordingPublisher(),
        background=False,
    )
    with TestClient(app) as api:
        heads = {}
        for name in users:
            r = api.post(
                "/api/auth/token", data={"username": f"{name}-{tag}", "password": PASSWORD}
            )
            assert r.status_code == 200, r.text
            heads[name] = {"Authorization": "Bearer " + r.json()["access_token"]}
        yield {"api": api, "h": heads, "order": o, "tag": tag}


def test_the_assigned_worker_sees_the_address_while_the_visit_is_active(
    site: dict[str, Any],
) -> None:
    api, h, o = site["api"], site["h"], site["order"]
    reveal = f"/api/work-orders/{o['id']}/reveal"
    # Not yet theirs: an offer to the provider shows no address to any worker.
    assert api.post(reveal, headers=h["w1"]).status_code == 403
    assert (
        api.post(f"/api/work-orders/{o['id']}/accept", json={}, headers=h["w1"]).status_code == 200
    )

    shown = api.post(reveal, headers=h["w1"])
    assert shown.status_code == 200, shown.text
    body = shown.json()
    assert body["address"] == ADDRESS and body["number"] == o["number"]
    assert body["contact"] == {"name": "女儿", "relation": "daughter", "phone": "13800000001"}
    assert "330683194001010011" not in shown.text and "13800000002" not in shown.text
    # The order itself still carries none of it.
    assert ADDRESS not in api.get(f"/api/work-orders/{o['id']}", headers=h["w1"]).text

    # A colleague is refused (the order is not theirs), the provider's admin is not.
    other = api.post(reveal, headers=h["w2"])
    assert other.status_code == 403 and ADDRESS not in other.text
    assert "assigned" in other.json()["detail"]
    assert api.post(reveal, headers=h["pa"]).json()["address"] == ADDRESS

    # Two an hour in this app: the third is throttled, with when to try again.
    assert api.post(reveal, headers=h["w1"]).status_code == 200
    third = api.post(reveal, headers=h["w1"])
    assert third.status_code == 429 and int(third.headers["Retry-After"]) > 0

    # After check-out the visit is over: 409, saying why.
    for step, extra in (("check-in", {}), ("check-out", {"record": {"tasks": ["company"]}})):
        point = {**HOME, "client_time": datetime.now(UTC).isoformat(), **extra}
        r = api.post(f"/api/work-orders/{o['id']}/{step}", json=point, headers=h["w1"])
        assert r.status_code == 200, r.text
    done = api.post(reveal, headers=h["w1"])
    assert done.status_code == 409 and "checked_out" in done.json()["detail"]
    assert ADDRESS not in done.text

    # Every attempt is in the reveals audit with the order as the reason.
    tag = site["tag"]
    log = api.get("/api/reveals", params={"username": f"w1-{tag}"}, headers=h["sup"]).json()
    assert [(r["work_order_id"], r["reason"]) for r in log] == [
        (o["id"], f"work order {o['number']}")
    ] * 5
    assert [r["refused"] is None for r in log] == [False, False, True, True, False]
    assert log[0]["refused"].startswith("the visit address is shown only while")
    assert log[1]["refused"] == "throttled"
    refused = api.get("/api/reveals", params={"username": f"w2-{tag}"}, headers=h["sup"]).json()
    assert len(refused) == 1 and refused[0]["refused"].startswith("only the worker assigned")
    # The audit is for supervisors, not for the workers it watches.
    assert api.get("/api/reveals", headers=h["w1"]).status_code == 403
