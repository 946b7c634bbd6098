"""What the console's work-order tab and call form ask of the server, without a browser:
the order's ``allowed_actions`` per role (the page keeps no state machine), verification
blockers as codes, the named order list, the providers an order may go to, and a resident
lookup that shows no more than the alarm queue does."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from eldercare.app import create_app
from eldercare.config import Settings
from eldercare.platform import lifecycle
from eldercare.registry import auth
from tests.alarm_support import RecordingPublisher

PASSWORD = "console-orders-password"


def test_allowed_actions_follow_the_lifecycle_and_the_role() -> None:
    assert lifecycle.allowed_actions("created", "operator") == ["dispatch", "cancel"]
    assert lifecycle.allowed_actions("dispatched", "operator") == ["dispatch", "cancel"]
    assert lifecycle.allowed_actions("dispatched", "provider_worker") == ["accept", "reject"]
    assert lifecycle.allowed_actions("accepted", "provider_worker") == ["reject", "check-in"]
    assert lifecycle.allowed_actions("checked_out", "operator") == ["revisit"]
    assert lifecycle.allowed_actions("checked_out", "supervisor") == ["verify", "revisit"]
    assert lifecycle.allowed_actions("checked_out", "civil_affairs") == [
        "verify",
        "reject-claim",
        "revisit",
    ]
    assert lifecycle.allowed_actions("cancelled", "admin") == []
    # Every action named is one the API has (or the revisit endpoint).
    for status in lifecycle.STATUSES:
        for role in (*auth.ROLES, lifecycle.SYSTEM_ROLE):
            for a in lifecycle.allowed_actions(status, role):
                assert a == "revisit" or a in lifecycle.ACTIONS, a
    gate = lifecycle.Gate(True, ("worker_overlap",), ((False, None),))
    assert lifecycle.verify_blocker_codes(gate) == ["worker_overlap", "revisit_required"]
    assert lifecycle.verify_blockers(gate) == [
        "open hard anomaly worker_overlap",
        "revisit_required",
    ]


@pytest.fixture(scope="module")
def tag() -> str:
    return secrets.token_hex(3)


@pytest.fixture(scope="module")
def api(settings: Settings, tag: str) -> Iterator[TestClient]:
    app = create_app(settings, publisher=RecordingPublisher(), background=False)
    with TestClient(app) as c:
        yield c


def _h(api: TestClient, username: str) -> dict[str, str]:
    r = api.post("/api/auth/token", data={"username": username, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": "Bearer " + r.json()["access_token"]}


@pytest.fixture(scope="module")
def world(api: TestClient, settings: Settings, tag: str) -> dict[str, Any]:
    """Two facilities in one district, a resident in each (one with a % in the name),
    a contracted provider with a worker, an uncontracted one, and logins."""
    with psycopg.connect(settings.database_url) as conn:
        for name, role in (("adm", "admin"), ("op", "operator"), ("sup", "supervisor")):
            auth.create_user(conn, f"{name}-{tag}", PASSWORD, role)
        conn.commit()
    adm = _h(api, f"adm-{tag}")
    api.post(
        "/api/districts", json={"code": "000000", "name": "全国", "level": "country"}, headers=adm
    )
    code = "6" + str(int(tag, 16) % 10**8).zfill(8)
    r = api.post(
        "/api/districts",
        json={"code": code, "name": "工单台街道", "parent_code": "000000", "level": "street"},
        headers=adm,
    )
    assert r.status_code == 201, r.text
    facs = []
    for n in (1, 2):
        r = api.post(
            "/api/facilities",
            json={
                "code": f"CO{n}-{tag}",
                "name": f"站{n}",
                "lat": 29.5,
                "lon": 120.8,
                "district_code": code,
            },
            headers=adm,
        )
        assert r.status_code == 201, r.text
        facs.append(r.json()["id"])
    residents = []
    for n, fac in enumerate(facs):
        body = {
            "name": f"查{tag}{'%' if n else ''}老人",
            "facility_id": fac,
            "room": "1",
            "id_number": "330683193601010011",
            "birth_date": "1936-01-01",
            "gender": "female",
        }
        r = api.post("/api/residents", json=body, headers=adm)
        assert r.status_code == 201, r.text
        residents.append(r.json()["id"])
    item = "co_" + tag
    r = api.post(
        "/api/service-items",
        json={
            "code": item,
            "name_zh": "测试助洁",
            "category": "cleaning",
            "setting": "home",
            "unit": "visit",
        },
        headers=adm,
    )
    assert r.status_code == 201, r.text
    provs = []
    for n in (1, 2):
        r = api.post(
            "/api/providers", json={"name": f"服务商{n}-{tag}", "kind": "company"}, headers=adm
        )
        assert r.status_code == 201, r.text
        provs.append(r.json()["id"])
    r = api.post(
        f"/api/providers/{provs[0]}/contracts",
        json={"district_code": code, "valid_from": "2020-01-01", "price_list": {item: 4000}},
        headers=adm,
    )
    assert r.status_code == 201, r.text
    r = api.post(f"/api/providers/{provs[0]}/workers", json={"name": f"工{tag}"}, headers=adm)
    assert r.status_code == 201, r.text
    worker = r.json()["id"]
    with psycopg.connect(settings.database_url) as conn:
        auth.create_user(
            conn, f"wk-{tag}", PASSWORD, "provider_worker", provider_id=provs[0], worker_id=worker
        )
        auth.create_user(conn, f"st-{tag}", PASSWORD, "facility_staff", facs[1])
        conn.commit()
    return {
        "district": code,
        "facilities": facs,
        "residents": residents,
        "item": item,
        "providers": provs,
        "worker": worker,
    }


def test_lookup_list_candidates_and_allowed_actions(
    api: TestClient, world: dict[str, Any], tag: str
) -> None:
    op, sup = _h(api, f"op-{tag}"), _h(api, f"sup-{tag}")
    wk, staff = _h(api, f"wk-{tag}"), _h(api, f"st-{tag}")
    r1, r2 = world["residents"]

    meta = api.get("/api/console/orders-meta", headers=op).json()
    assert meta["statuses"] == list(lifecycle.STATUSES)
    assert set(meta["request_types"]) == {"emergency", "consultation", "referral", "complaint"}
    assert meta["satisfaction"] == [1, 2, 3, 4] and meta["may_take_calls"] is True
    assert api.get("/api/console/orders-meta", headers=wk).status_code == 403

    # The lookup: by part of the name or by number, public fields only; % is a character.
    found = api.get(f"/api/console/residents?q=查{tag}", headers=op).json()
    assert {r["id"] for r in found} == {r1, r2}
    assert not {"id_number", "address", "contacts", "medical_notes"} & set(found[0])
    assert found[0]["district_code"] == world["district"]
    assert [
        r["id"]
        for r in api.get("/api/console/residents?q=%25", headers=op).json()
        if r["id"] in (r1, r2)
    ] == [r2]
    assert api.get(f"/api/console/residents?q={r1}", headers=op).json()[0]["id"] == r1
    assert api.get("/api/console/residents?q=%20", headers=op).status_code == 422
    assert api.get("/api/console/residents", headers=op).status_code == 422
    # Facility staff find only their facility's residents.
    mine = api.get(f"/api/console/residents?q=查{tag}", headers=staff).json()
    assert [r["id"] for r in mine] == [r2]

    # An order for r1; the list names what the desk reads.
    r = api.post(
        "/api/work-orders", json={"resident_id": r1, "service_item_code": world["item"]}, headers=op
    )
    assert r.status_code == 201, r.text
    oid = r.json()["id"]
    listed = api.get(f"/api/console/work-orders?item={world['item']}", headers=op).json()
    assert [o["id"] for o in listed["orders"]] == [oid]
    o = listed["orders"][0]
    assert (o["resident_name"], o["item_name"], o["district_name"]) == (
        f"查{tag}老人",
        "测试助洁",
        "工单台街道",
    )
    assert o["provider_name"] is None
    assert api.get("/api/console/work-orders?status=open", headers=op).status_code == 422
    unfinished = api.get("/api/console/work-orders?status=unfinished", headers=op).json()
    assert oid in [x["id"] for x in unfinished["orders"]]
    assert all(x["status"] in lifecycle.UNFINISHED for x in unfinished["orders"])
    assert unfinished["to_dispatch"] >= 1 and listed["to_dispatch"] == unfinished["to_dispatch"]
    assert api.get(f"/api/work-orders?item={world['item']}", headers=op).json()[0]["id"] == oid
    # ids: only the visible ones, unknown and malformed ones simply absent
    got = api.get(
        f"/api/console/work-orders?ids={oid}&ids=nope&ids={'0' * 8}-0000-0000-0000-{'0' * 12}",
        headers=op,
    ).json()
    assert [x["id"] for x in got["orders"]] == [oid]
    assert api.get(f"/api/console/work-orders?ids={oid}", headers=staff).json()["orders"] == []

    # Only the contracted provider is offered, with the price a dispatch copies.
    cands = api.get(f"/api/console/work-orders/{oid}/providers", headers=op).json()
    assert [(c["id"], c["unit_price_fen"]) for c in cands] == [(world["providers"][0], 4000)]

    d = api.get(f"/api/work-orders/{oid}", headers=op).json()
    assert d["allowed_actions"] == ["dispatch", "cancel"] and d["verify_blockers"] == []
    r = api.post(
        f"/api/work-orders/{oid}/dispatch",
        json={"provider_id": world["providers"][0], "worker_id": world["worker"]},
        headers=op,
    )
    assert r.status_code == 200, r.text
    assert api.get(f"/api/work-orders/{oid}", headers=wk).json()["allowed_actions"] == [
        "accept",
        "reject",
    ]
    point = {
        "lat": 29.5,
        "lon": 120.8,
        "accuracy_m": 5,
        "client_time": datetime.now(UTC).isoformat(),
    }
    for action, body in (("accept", {}), ("check-in", point), ("check-out", point)):
        r = api.post(f"/api/work-orders/{oid}/{action}", json=body, headers=wk)
        assert r.status_code == 200, r.text
    # A 0-minute visit of an item with no duration limits: nothing blocks, the supervisor
    # may verify, the operator may only record the revisit.
    assert api.get(f"/api/work-orders/{oid}", headers=op).json()["allowed_actions"] == ["revisit"]
    d = api.get(f"/api/work-orders/{oid}", headers=sup).json()
    assert d["allowed_actions"] == ["verify", "revisit"]
    assert d["verify_blockers"] == ([] if not d["revisit_required"] else ["revisit_required"])
    listed = api.get(f"/api/console/work-orders?ids={oid}", headers=op).json()["orders"][0]
    assert listed["provider_name"] == f"服务商1-{tag}" and listed["worker_name"] == f"工{tag}"
