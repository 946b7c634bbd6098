"""Acceptance checks of the platform layer (design platform-layer.md §3), over real HTTP.

One ``eldercare serve`` process (uvicorn + gateway) on a fresh database and a private broker,
with ``ELDERCARE_ENVIRONMENT=test`` so requests may carry ``X-Eldercare-Test-Now``, the
auto-verify job off and no random revisit sample. Users and devices are made with the CLI,
as §3.0 says. The checks share state and run in the design's order: one test function per
numbered group. The fixture helpers (F1-F5) and :class:`Platform` are shared by the three
helpers' sections: add sections in the design's order.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from eldercare.registry.schemas import DeviceCredentials
from eldercare.simulators.device import SimDevice
from tests.support import (
    Proc,
    create_database,
    drop_database,
    free_port,
    make_settings,
    running_broker,
    settings_env,
    wait_for,
)

pytestmark = pytest.mark.slow
PASSWORD = "acceptance-password-1"


@dataclass
class Platform:
    """The running platform and everything the checks have created so far, by the design's
    names (``ids["R5"]``, ``ids["WO1"]``...)."""

    base: str
    settings: Any
    tokens: dict[str, str] = field(default_factory=dict)
    ids: dict[str, Any] = field(default_factory=dict)
    client: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=30))

    def cli(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "-m", "eldercare", *args],
            env=settings_env(self.settings),
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def add_user(self, username: str, role: str, *extra: str) -> None:
        self.cli(
            "users", "add", "--username", username, "--password", PASSWORD, "--role", role, *extra
        )

    def login(self, username: str) -> str:
        if username not in self.tokens:
            r = self.client.post(
                self.base + "/api/auth/token", data={"username": username, "password": PASSWORD}
            )
            assert r.status_code == 200, r.text
            self.tokens[username] = r.json()["access_token"]
        return self.tokens[username]

    def call(
        self,
        user: str,
        method: str,
        path: str,
        body: Any = None,
        *,
        at: str | None = None,
        expect: int | None = None,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
    ) -> httpx.Response:
        """One request as ``user``; ``at`` is the design's ``@time`` (X-Eldercare-Test-Now)."""
        h = {"Authorization": "Bearer " + self.login(user), **(headers or {})}
        if at is not None:
            h["X-Eldercare-Test-Now"] = at
        r = self.client.request(method, self.base + path, json=body, headers=h, params=params)
        if expect is not None:
            assert r.status_code == expect, f"{method} {path}: {r.status_code} {r.text}"
        return r

    def post(self, user: str, path: str, body: Any = None, **kw: Any) -> Any:
        kw.setdefault("expect", 201)
        return self.call(user, "POST", path, body, **kw).json()

    def act(self, user: str, order: str, action: str, body: Any = None, **kw: Any) -> Any:
        kw.setdefault("expect", 200)
        return self.call(
            user, "POST", f"/api/work-orders/{self.ids[order]}/{action}", body or {}, **kw
        ).json()

    def get(self, user: str, path: str, **kw: Any) -> Any:
        kw.setdefault("expect", 200)
        return self.call(user, "GET", path, **kw).json()

    def done_order(
        self,
        name: str,
        *,
        resident: str,
        item: str,
        provider: str,
        worker_user: str,
        worker: str,
        start: str,
        end: str,
        at: tuple[float, float],
        quantity: float = 1,
        creator: str = "op",
    ) -> dict[str, Any]:
        """§3.0: "done at times A-B at place X": create, dispatch, accept, check-in, check-out."""
        order = self.post(
            creator,
            "/api/work-orders",
            {
                "resident_id": self.ids[resident],
                "service_item_code": item,
                "quantity": quantity,
                "source": "app",
                "scheduled_start": start,
            },
            at=start,
        )
        self.ids[name] = order["id"]
        self.act("op", name, "dispatch", {"provider_id": self.ids[provider]}, at=start)
        self.act(worker_user, name, "accept", {"worker_id": self.ids[worker]}, at=start)
        lat, lon = at
        point = {"lat": lat, "lon": lon, "accuracy_m": 10}
        self.act(worker_user, name, "check-in", {**point, "client_time": start}, at=start)
        return self.act(
            worker_user, name, "check-out", {**point, "client_time": end, "record": {}}, at=end
        )


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Platform]:
    tmp = tmp_path_factory.mktemp("platform")
    url = create_database()
    try:
        with running_broker(tmp / "mosquitto") as broker:
            port = free_port()
            s = make_settings(
                url,
                broker,
                api_port=port,
                environment="test",
                auto_verify=False,
                revisit_sample_pct=0,
            )
            serve = Proc(["serve"], s, tmp / "serve.log").start()
            try:
                base = f"http://127.0.0.1:{port}"
                wait_for(lambda: _healthy(base), timeout=90, interval=0.2, what="serve up")
                p = Platform(base, s)
                for user, role in (
                    ("adm", "admin"),
                    ("ca", "civil_affairs"),
                    ("op", "operator"),
                    ("as1", "assessor"),
                ):
                    p.add_user(user, role)
                fixture_f1(p)
                fixture_f2(p)
                fixture_f3(p)
                fixture_f5(p)
                yield p
            finally:
                serve.stop()
                if serve.proc is not None and serve.proc.returncode not in (0, -15, None):
                    print(serve.output()[-4000:])
    finally:
        drop_database(url)


def _healthy(base: str) -> bool:
    try:
        return httpx.get(base + "/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


# ---------------------------------------------------------------- §3.0 fixtures

DISTRICTS = [
    ("000000", "全国", None, "country", None),
    ("330000", "浙江省", "000000", "province", "east"),
    ("330600", "绍兴市", "330000", "city", "east"),
    ("330683", "嵊州市", "330600", "county", "east"),
    ("330683001", "测试街道一", "330683", "street", "east"),
    ("330683002", "测试街道二", "330683", "street", "east"),
    ("370000", "山东省", "000000", "province", "east"),
    ("371300", "临沂市", "370000", "city", "east"),
]


def fixture_f1(p: Platform) -> None:
    for code, name, parent, level, region in DISTRICTS:
        p.post(
            "adm",
            "/api/districts",
            {
                "code": code,
                "name": name,
                "parent_code": parent,
                "level": level,
                "fiscal_region": region,
            },
        )


HB1 = (29.58800, 120.82100)
HH1 = (29.59000, 120.83000)
HH2 = (29.66000, 120.82100)
HH4 = (29.58500, 120.81500)


def fixture_f2(p: Platform) -> None:
    ids = p.ids
    ids["F1"] = p.post(
        "adm",
        "/api/facilities",
        {
            "code": "SZ-FLZX",
            "name": "嵊州市社会福利中心",
            "kind": "nursing_home",
            "area": "town",
            "lat": 29.5900,
            "lon": 120.8200,
            "district_code": "330683",
            "tekun_institution": True,
        },
    )["id"]
    ids["LNH"] = p.post(
        "adm",
        "/api/facilities",
        {
            "code": "LY-NH1",
            "name": "临沂测试养老院",
            "kind": "nursing_home",
            "district_code": "371300",
        },
    )["id"]
    ids["LDC"] = p.post(
        "adm",
        "/api/facilities",
        {
            "code": "LY-DC1",
            "name": "临沂测试日间照料中心",
            "kind": "day_care",
            "district_code": "371300",
        },
    )["id"]
    ids["HB1"] = p.post(
        "adm",
        "/api/home-beds",
        {
            "facility_id": ids["F1"],
            "address": "嵊州测试路1号",
            "area": "town",
            "lat": HB1[0],
            "lon": HB1[1],
            "district_code": "330683001",
            "established_on": "2025-12-01",
            "liability_insured": True,
        },
    )["id"]
    for name, address, (lat, lon) in (
        ("HH1", "嵊州测试路2号", HH1),
        ("HH2", "嵊州测试路3号", HH2),
        ("HH4", "嵊州测试路4号", HH4),
    ):
        ids[name] = p.post(
            "adm",
            "/api/households",
            {"address": address, "district_code": "330683001", "lat": lat, "lon": lon},
        )["id"]
    for n in range(1, 6):
        ids[f"HH3{n}"] = p.post(
            "adm",
            "/api/households",
            {
                "address": f"嵊州测试二街{n}号",
                "district_code": "330683002",
                "lat": 29.6 + n / 1000,
                "lon": 120.8,
            },
        )["id"]
    residents = [
        ("R1", "特困甲", "1940-03-01", {"facility_id": ids["F1"]}),
        ("R2", "特困乙", "1942-05-01", {"household_id": ids["HH4"]}),
        ("R3", "补贴丙", "1950-01-01", {"household_id": ids["HH1"]}),
        ("R4", "补贴丁", "1967-06-01", {"household_id": ids["HH1"]}),
        ("R5", "床位戊", "1945-02-01", {"home_bed_id": ids["HB1"]}),
        ("R6", "机构己", "1938-08-01", {"facility_id": ids["F1"]}),
        ("R7", "远程庚", "1948-01-01", {"household_id": ids["HH2"]}),
    ] + [
        (f"CV{n}", f"覆盖{n}", "1945-01-01", {"household_id": ids[f"HH3{n}"]}) for n in range(1, 6)
    ]
    for key, name, born, home in residents:
        ids[key] = p.post("adm", "/api/residents", {"name": name, "birth_date": born, **home})["id"]
    for key, mode in (("R1", "centralised"), ("R2", "dispersed")):
        p.post(
            "adm",
            f"/api/residents/{ids[key]}/categories",
            {
                "category": "tekun",
                "support_mode": mode,
                "valid_from": "2021-01-01",
                "source": "assistance_system",
                "source_ref": "救助一件事-TEST-1",
            },
        )
    for key, kind in (("KIT5", "home_kit"), ("SOS5", "sos_button")):
        out = p.cli("devices", "provision", "--kind", kind, "--resident", str(ids["R5"]), "--json")
        ids[key] = json.loads(out)


F3 = [
    ("R1", 20, "2022-07-01", "initial", None),
    ("R2", 50, "2022-07-01", "initial", None),
    ("R2", 20, "2022-08-15", "change", None),
    ("R3", 50, "2026-01-01", "initial", None),
    ("R4", 50, "2026-01-01", "initial", None),
    ("R5", 35, "2026-01-01", "initial", None),
    ("R6", 20, "2026-01-01", "initial", None),
    ("R7", 50, "2026-01-01", "initial", "2026-01-31"),
] + [(f"CV{n}", 50, "2026-01-01", "initial", None) for n in range(1, 6)]
F3_LEVELS = {20: "complete", 50: "moderate", 35: "severe"}


def fixture_f3(p: Platform) -> None:
    for key, total, effective, reason, until in F3:
        body: dict[str, Any] = {
            "total_score": total,
            "reason": reason,
            "assessed_at": f"{effective}T09:00:00+08:00",
            "effective_from": effective,
            "assessor": "评估员A",
        }
        if until:
            body["valid_until"] = until
        made = p.post("as1", f"/api/residents/{p.ids[key]}/assessments", body)
        assert made["final_level"] == F3_LEVELS[total]


ITEMS = [
    ("bath_home", "助浴", "bath", "home", "visit", 30, 120, True),
    ("meal_delivery", "送餐", "meal", "home", "meal", None, None, False),
    ("visit", "探访", "visit", "home", "visit", 15, 120, True),
    ("home_care_hour", "居家照护", "other", "home", "hour", None, None, True),
    ("post_fall_visit", "跌倒回访上门", "visit", "home", "visit", 15, 120, True),
    ("post_incident_visit", "紧急事件后上门", "visit", "home", "visit", 15, 120, True),
    (
        "device_training_visit",
        "设备使用培训",
        "device_maintenance",
        "home",
        "visit",
        None,
        None,
        True,
    ),
    ("device_maintenance", "设备维护", "device_maintenance", "home", "visit", None, None, True),
    (
        "institutional_care_month",
        "机构照护(月)",
        "institutional",
        "institution",
        "month",
        None,
        None,
        True,
    ),
]
CONTRACTS = {
    "P1": {
        "bath_home": 12000,
        "meal_delivery": 1500,
        "visit": 3000,
        "post_fall_visit": 5000,
        "post_incident_visit": 5000,
        "device_training_visit": 0,
        "device_maintenance": 0,
    },
    "P2": {"home_care_hour": 5000, "bath_home": 12000, "institutional_care_month": 510000},
    "P3": {"meal_delivery": 1500},
}


def fixture_f5(p: Platform) -> None:
    ids = p.ids
    for code, name, cat, setting, unit, lo, hi, presence in ITEMS:
        p.post(
            "adm",
            "/api/service-items",
            {
                "code": code,
                "name_zh": name,
                "category": cat,
                "setting": setting,
                "unit": unit,
                "min_duration_min": lo,
                "max_duration_min": hi,
                "requires_presence": presence,
            },
        )
    ids["P1"] = p.post(
        "adm",
        "/api/providers",
        {
            "name": "嵊州测试居家服务公司",
            "kind": "facility",
            "facility_id": ids["F1"],
            "district_code": "330683",
        },
    )["id"]
    ids["P2"] = p.post("adm", "/api/providers", {"name": "嵊州测试照护中心", "kind": "company"})[
        "id"
    ]
    ids["P3"] = p.post("adm", "/api/providers", {"name": "嵊州测试助餐点", "kind": "company"})["id"]
    for key, prices in CONTRACTS.items():
        p.post(
            "adm",
            f"/api/providers/{ids[key]}/contracts",
            {
                "district_code": "330683",
                "valid_from": "2022-01-01",
                "valid_to": "2027-01-01",
                "price_list": prices,
            },
        )
    # W1 is also a responder, placed deliberately ~12 km away (for §3.7 check 7.10).
    ids["W1"] = p.post(
        "adm",
        f"/api/providers/{ids['P1']}/workers",
        {"name": "服务员一", "responder_lat": 29.70000, "responder_lon": 120.82100},
    )["id"]
    for key, prov in (("W2", "P1"), ("W3", "P2"), ("W4", "P3")):
        ids[key] = p.post("adm", f"/api/providers/{ids[prov]}/workers", {"name": f"服务员{key}"})[
            "id"
        ]
    for user, prov in (("pa1", "P1"), ("pa2", "P2"), ("pa3", "P3")):
        p.add_user(user, "provider_admin", "--provider", str(ids[prov]))
    for user, worker in (("w1", "W1"), ("w2", "W2"), ("w3", "W3"), ("w4", "W4")):
        p.add_user(user, "provider_worker", "--worker", str(ids[worker]))


# ---------------------------------------------------------------- §3.1 ability levels

SCORES = [
    ({"total_score": 90}, 200, "intact", None),
    ({"total_score": 89}, 200, "mild", None),
    ({"total_score": 66}, 200, "mild", None),
    ({"total_score": 65}, 200, "moderate", None),
    ({"total_score": 46}, 200, "moderate", None),
    ({"total_score": 45}, 200, "severe", None),
    ({"total_score": 30}, 200, "severe", None),
    ({"total_score": 29}, 200, "complete", None),
    ({"total_score": 0}, 200, "complete", None),
    ({"total_score": 91}, 422, None, None),
    ({"total_score": -1}, 422, None, None),
    ({"total_score": 70, "adjustments": {"dementia": True}}, 200, "moderate", "mild"),
    ({"total_score": 70, "adjustments": {"risk_events_30d": 2}}, 200, "moderate", "mild"),
    (
        {"total_score": 70, "adjustments": {"dementia": True, "risk_events_30d": 2}},
        200,
        "moderate",
        "mild",
    ),
    ({"total_score": 85, "adjustments": {"coma": True}}, 200, "complete", "mild"),
    ({"total_score": 20, "adjustments": {"dementia": True}}, 200, "complete", "complete"),
]


def test_3_1_ability_levels(platform: Platform) -> None:
    p = platform
    for body, code, final, preliminary in SCORES:
        r = p.call("as1", "POST", "/api/assessments/score", body, expect=code)
        if code == 200:
            assert r.json()["final_level"] == final, body
            if preliminary:
                assert r.json()["preliminary_level"] == preliminary, body
    r2 = p.ids["R2"]
    assert p.get("as1", f"/api/residents/{r2}/ability?on=2022-08-14")["level"] == "moderate"
    assert p.get("as1", f"/api/residents/{r2}/ability?on=2022-08-15")["level"] == "complete"


# ---------------------------------------------------------------- §3.6 work-order lifecycle


def test_3_6_work_order_lifecycle_evv_permissions(platform: Platform) -> None:
    p, ids = platform, platform.ids
    # 1. create
    wo1 = p.post(
        "op",
        "/api/work-orders",
        {
            "resident_id": ids["R5"],
            "service_item_code": "bath_home",
            "source": "app",
            "scheduled_start": "2026-01-06T10:00:00+08:00",
            "scheduled_end": "2026-01-06T11:00:00+08:00",
        },
        at="2026-01-05T09:00:00+08:00",
    )
    assert wo1["status"] == "created"
    assert wo1["district_code"] == "330683001"
    assert re.fullmatch(r"WO-330683-\d{8}-\d{6}", wo1["number"])
    ids["WO1"] = wo1["id"]

    # 2. not contracted -> 409; the scratch order is cancelled
    scratch = p.post(
        "op",
        "/api/work-orders",
        {"resident_id": ids["R5"], "service_item_code": "post_fall_visit", "source": "app"},
        at="2026-01-05T09:00:00+08:00",
    )
    ids["scratch"] = scratch["id"]
    r = p.call(
        "op",
        "POST",
        f"/api/work-orders/{scratch['id']}/dispatch",
        {"provider_id": ids["P2"]},
        at="2026-01-05T09:01:00+08:00",
        expect=409,
    )
    assert "not contracted" in r.json()["detail"]
    assert p.act("op", "scratch", "cancel", {"reason": "测试"})["status"] == "cancelled"
    d = p.act("op", "WO1", "dispatch", {"provider_id": ids["P1"]}, at="2026-01-05T09:02:00+08:00")
    assert (d["status"], d["unit_price_fen"]) == ("dispatched", 12000)

    # 3. visibility and accept
    assert ids["WO1"] in [o["id"] for o in p.get("w1", "/api/work-orders")]
    assert ids["WO1"] in [o["id"] for o in p.get("w2", "/api/work-orders")]  # unassigned
    p.act(
        "w1",
        "WO1",
        "check-in",
        {
            "lat": HB1[0],
            "lon": HB1[1],
            "accuracy_m": 10,
            "client_time": "2026-01-06T10:00:03+08:00",
        },
        at="2026-01-06T10:00:00+08:00",
        expect=409,
    )
    a = p.act("w1", "WO1", "accept", {"worker_id": ids["W1"]}, at="2026-01-05T10:00:00+08:00")
    assert a["status"] == "accepted"
    for outsider in ("w2", "pa2"):
        p.call(outsider, "GET", f"/api/work-orders/{ids['WO1']}", expect=404)
    assert ids["WO1"] not in [o["id"] for o in p.get("w2", "/api/work-orders")]
    p.get("pa1", f"/api/work-orders/{ids['WO1']}")

    # 4. check-in with an idempotency key
    check_in = {
        "lat": HB1[0],
        "lon": HB1[1],
        "accuracy_m": 10,
        "client_time": "2026-01-06T10:00:03+08:00",
    }
    first = p.call(
        "w1",
        "POST",
        f"/api/work-orders/{ids['WO1']}/check-in",
        check_in,
        at="2026-01-06T10:00:00+08:00",
        headers={"Idempotency-Key": "k1"},
        expect=200,
    )
    assert first.json()["status"] == "checked_in"
    assert first.json()["check_in"]["distance_m"] == 0
    again = p.call(
        "w1",
        "POST",
        f"/api/work-orders/{ids['WO1']}/check-in",
        check_in,
        at="2026-01-06T10:00:30+08:00",
        headers={"Idempotency-Key": "k1"},
        expect=200,
    )
    assert again.content == first.content
    timeline = p.get("op", f"/api/work-orders/{ids['WO1']}/events")
    assert [e["to_status"] for e in timeline].count("checked_in") == 1
    p.call(
        "w1",
        "POST",
        f"/api/work-orders/{ids['WO1']}/check-in",
        {**check_in, "accuracy_m": 11},
        at="2026-01-06T10:00:40+08:00",
        headers={"Idempotency-Key": "k1"},
        expect=409,
    )

    # 5. check-out
    out = p.act(
        "w1",
        "WO1",
        "check-out",
        {
            "lat": HB1[0],
            "lon": HB1[1],
            "accuracy_m": 10,
            "client_time": "2026-01-06T10:45:00+08:00",
            "record": {"tasks": ["洗浴", "更衣"]},
        },
        at="2026-01-06T10:45:00+08:00",
    )
    assert (out["status"], out["price_fen"]) == ("checked_out", 12000)
    assert out["new_anomalies"] == []
    assert p.get("op", f"/api/work-orders/{ids['WO1']}")["anomalies"] == []

    # 6. verify; EVV complete; no way back
    v = p.act("ca", "WO1", "verify", {}, at="2026-01-07T09:00:00+08:00")
    assert v["status"] == "verified"
    shown = p.get("op", f"/api/work-orders/{ids['WO1']}")
    assert shown["evv_complete"] is True
    # The payer split (voucher 6000 / copay 6000) is computed by the subsidy module (§3.5);
    # its assertion belongs with that module's verify hook.
    p.act("w1", "WO1", "check-in", check_in, at="2026-01-07T10:00:00+08:00", expect=409)


# ---------------------------------------------------------------- §3.7 anomaly checks


def _visit(
    p: Platform,
    name: str,
    *,
    start: str,
    end: str | None,
    at: tuple[float, float] = HB1,
    resident: str = "R5",
    item: str = "bath_home",
    worker: str = "W1",
    accuracy: float = 10,
    created: str | None = None,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """An order of P1 done by ``worker`` (§3.0 "done at times A-B at place X"); returns the
    check-in and check-out answers (check-out skipped when ``end`` is None)."""
    user = worker.lower()
    when = created or start
    order = p.post(
        "op",
        "/api/work-orders",
        {
            "resident_id": p.ids[resident],
            "service_item_code": item,
            "source": "app",
            "scheduled_start": start,
        },
        at=when,
    )
    p.ids[name] = order["id"]
    p.act("op", name, "dispatch", {"provider_id": p.ids["P1"]}, at=when)
    p.act(user, name, "accept", {"worker_id": p.ids[worker]}, at=when)
    point = {"lat": at[0], "lon": at[1], "accuracy_m": accuracy}
    checked_in = p.act(user, name, "check-in", {**point, "client_time": start}, at=start)
    if end is None:
        return checked_in, None
    out = p.act(user, name, "check-out", {**point, "client_time": end, "record": {}}, at=end)
    return checked_in, out


def _found(p: Platform, name: str) -> dict[str, dict[str, Any]]:
    return {a["rule_code"]: a for a in p.get("op", f"/api/work-orders/{p.ids[name]}")["anomalies"]}


def _iso(t: datetime) -> str:
    return t.isoformat()


def test_3_7_anomaly_checks(platform: Platform) -> None:
    p, ids = platform, platform.ids
    # 7.1 GPS ~1 km away: soft, revisit required, verify blocked until the revisit confirms
    far = (29.59700, 120.82100)
    _, out = _visit(
        p,
        "WO2",
        start="2026-01-06T14:00:00+08:00",
        end="2026-01-06T14:45:00+08:00",
        at=far,
        accuracy=15,
    )
    assert out is not None and out["revisit_required"] is True
    gps = _found(p, "WO2")["gps_far"]
    assert gps["severity"] == "soft"
    assert round(gps["evidence"]["distance_m"]) == 1001
    assert gps["evidence"]["threshold_m"] == 200
    p.act("ca", "WO2", "verify", {}, at="2026-01-07T09:00:00+08:00", expect=409)
    p.post(
        "op",
        f"/api/work-orders/{ids['WO2']}/revisits",
        {"channel": "phone", "reached": True, "service_confirmed": True, "satisfaction": 2},
        at="2026-01-07T09:30:00+08:00",
    )
    assert p.act("ca", "WO2", "verify", {}, at="2026-01-07T10:00:00+08:00")["status"] == "verified"

    # 7.2 189 m: no finding
    _, out = _visit(
        p,
        "WO2b",
        start="2026-01-07T10:00:00+08:00",
        end="2026-01-07T10:40:00+08:00",
        at=(29.58970, 120.82100),
    )
    assert out is not None and round(out["check_out"]["distance_m"]) == 189
    assert "gps_far" not in _found(p, "WO2b")

    # 7.3 W2 in two homes at once: hard on both, 30 min
    _visit(
        p, "WO5", start="2026-01-12T10:00:00+08:00", end="2026-01-12T11:00:00+08:00", worker="W2"
    )
    _visit(
        p,
        "WO6",
        start="2026-01-12T10:30:00+08:00",
        end="2026-01-12T11:30:00+08:00",
        worker="W2",
        resident="R3",
        at=HH1,
    )
    for name, other in (("WO5", "WO6"), ("WO6", "WO5")):
        overlap = _found(p, name)["worker_overlap"]
        assert overlap["severity"] == "hard"
        assert overlap["evidence"]["overlap_min"] == 30
        assert overlap["evidence"]["related"] == ids[other]
    p.act("ca", "WO5", "verify", {}, at="2026-01-13T09:00:00+08:00", expect=409)

    # 7.4 the same household (a couple served together): no overlap
    _visit(
        p,
        "WO_R3",
        start="2026-01-13T09:00:00+08:00",
        end="2026-01-13T10:00:00+08:00",
        worker="W2",
        resident="R3",
        at=HH1,
    )
    _visit(
        p,
        "WO_R4",
        start="2026-01-13T09:10:00+08:00",
        end="2026-01-13T09:20:00+08:00",
        worker="W2",
        resident="R4",
        item="meal_delivery",
        at=HH1,
    )
    assert "worker_overlap" not in _found(p, "WO_R3")
    assert "worker_overlap" not in _found(p, "WO_R4")

    # 7.5 8 km in 5 minutes
    _visit(
        p, "WO7", start="2026-01-14T13:15:00+08:00", end="2026-01-14T14:00:00+08:00", worker="W2"
    )
    _visit(
        p,
        "WO8",
        start="2026-01-14T14:05:00+08:00",
        end="2026-01-14T14:50:00+08:00",
        worker="W2",
        resident="R7",
        at=HH2,
    )
    travel = _found(p, "WO8")["impossible_travel"]
    assert travel["severity"] == "soft"
    assert round(travel["evidence"]["distance_m"]) == 8006
    assert round(travel["evidence"]["speed_kmh"], 1) == 96.1
    assert "impossible_travel" not in _found(p, "WO7")

    # 7.6 a second bath for R5 inside WO1's window
    _visit(
        p, "WO9", start="2026-01-06T10:05:00+08:00", end="2026-01-06T10:40:00+08:00", worker="W2"
    )
    dup = _found(p, "WO9")["dup_claim"]
    assert (dup["severity"], dup["evidence"]["related"]) == ("hard", ids["WO1"])

    # 7.7 ten minutes of a 30-120 minute bath
    _visit(p, "WO10", start="2026-01-15T10:00:00+08:00", end="2026-01-15T10:10:00+08:00")
    short = _found(p, "WO10")["duration_out_of_range"]
    assert (short["severity"], short["evidence"]["duration_min"]) == ("soft", 10)

    # 7.8 in hospital: hard; civil affairs confirms; the claim is rejected
    p.post(
        "op",
        f"/api/residents/{ids['R5']}/status-periods",
        {
            "status": "hospitalised",
            "from": "2026-01-20T08:00:00+08:00",
            "to": "2026-01-25T08:00:00+08:00",
            "source": "medical_insurance",
        },
        at="2026-01-20T09:00:00+08:00",
    )
    checked_in, _ = _visit(
        p, "WO11", start="2026-01-22T10:00:00+08:00", end="2026-01-22T10:40:00+08:00"
    )
    assert "resident_inactive" in [a["rule_code"] for a in checked_in["new_anomalies"]]
    inactive = _found(p, "WO11")["resident_inactive"]
    assert inactive["severity"] == "hard"
    p.act("ca", "WO11", "verify", {}, at="2026-01-23T09:00:00+08:00", expect=409)
    p.call(
        "op",
        "POST",
        f"/api/anomalies/{inactive['id']}/decide",
        {"decision": "confirmed", "note": "住院期间"},
        expect=403,
    )
    p.call(
        "ca",
        "POST",
        f"/api/anomalies/{inactive['id']}/decide",
        {"decision": "maybe", "note": "x"},
        expect=422,
    )
    decided = p.post(
        "ca",
        f"/api/anomalies/{inactive['id']}/decide",
        {"decision": "confirmed", "note": "住院期间"},
        at="2026-01-23T09:00:00+08:00",
        expect=200,
    )
    assert decided["status"] == "confirmed" and decided["decisions"][0]["by_user"] == "ca"
    p.call(
        "ca",
        "POST",
        f"/api/anomalies/{inactive['id']}/decide",
        {"decision": "dismissed", "note": "改判"},
        expect=409,
    )
    rejected = p.act(
        "ca", "WO11", "reject-claim", {"anomaly_id": inactive["id"]}, at="2026-01-23T09:10:00+08:00"
    )
    assert rejected["status"] == "rejected"

    # 7.9 death after acceptance: hard at check-in; no new orders for R7
    order = p.post(
        "op",
        "/api/work-orders",
        {
            "resident_id": ids["R7"],
            "service_item_code": "bath_home",
            "source": "app",
            "scheduled_start": "2026-01-21T10:00:00+08:00",
        },
        at="2026-01-19T09:00:00+08:00",
    )
    ids["WO12"] = order["id"]
    p.act("op", "WO12", "dispatch", {"provider_id": ids["P1"]}, at="2026-01-19T09:00:00+08:00")
    p.act("w1", "WO12", "accept", {"worker_id": ids["W1"]}, at="2026-01-19T09:05:00+08:00")
    p.post(
        "op",
        f"/api/residents/{ids['R7']}/status-periods",
        {"status": "deceased", "from": "2026-01-20T06:00:00+08:00", "source": "funeral_registry"},
        at="2026-01-20T10:00:00+08:00",
    )
    checked_in = p.act(
        "w1",
        "WO12",
        "check-in",
        {
            "lat": HH2[0],
            "lon": HH2[1],
            "accuracy_m": 10,
            "client_time": "2026-01-21T10:00:00+08:00",
        },
        at="2026-01-21T10:00:00+08:00",
    )
    dead = {a["rule_code"]: a for a in checked_in["new_anomalies"]}["resident_inactive"]
    assert (dead["severity"], dead["evidence"]["status"]) == ("hard", "deceased")
    r = p.call(
        "op",
        "POST",
        "/api/work-orders",
        {"resident_id": ids["R7"], "service_item_code": "bath_home", "source": "app"},
        at="2026-01-21T10:00:00+08:00",
        expect=409,
    )
    assert "deceased" in r.json()["detail"]

    # January, P1, district 330683: counts by rule
    report = p.get(
        "ca",
        "/api/reports/anomalies",
        params={"month": "2026-01", "district": "330683", "provider": ids["P1"]},
    )
    for rule, n in {
        "gps_far": 1,
        "worker_overlap": 2,
        "impossible_travel": 1,
        "dup_claim": 1,
        "duration_out_of_range": 1,
        "resident_inactive": 2,
    }.items():
        assert report["by_rule"].get(rule) == n, (rule, report["by_rule"])

    # 7.10 a fall raised before check-in, at the device's time T
    t = (datetime.now(UTC) - timedelta(hours=6)).replace(second=0, microsecond=0)
    kit = _device(p, "KIT5")
    try:
        a1 = _alarm(kit, "fall", t, msg_id="f-1", confidence=0.9)
        shown = p.get("op", f"/api/alarms/{a1}")["alarm"]
        assert datetime.fromisoformat(shown["event_time"]) == t
        checked_in, out = _visit(
            p,
            "WO13",
            start=_iso(t + timedelta(minutes=5)),
            end=None,
            created=_iso(t),
        )
        opened = {a["rule_code"]: a for a in checked_in["new_anomalies"]}
        assert opened["alarm_open_at_check_in"]["severity"] == "soft"
        assert opened["alarm_open_at_check_in"]["evidence"]["alarm_id"] == a1
        timeline = p.get("op", f"/api/alarms/{a1}")["timeline"]
        told = [e for e in timeline if e["action"] == "worker_checked_in"]
        assert len(told) == 1 and told[0]["detail"]["work_order_id"] == ids["WO13"]
        out = p.act(
            "w1",
            "WO13",
            "check-out",
            {
                "lat": HB1[0],
                "lon": HB1[1],
                "accuracy_m": 10,
                "client_time": _iso(t + timedelta(minutes=50)),
                "record": {},
            },
            at=_iso(t + timedelta(minutes=50)),
        )
        assert _found(p, "WO13")["alarm_unanswered_during_visit"]["severity"] == "soft"
        _settle_alarm(p, a1, "test")
        assert _orders_of_alarm(p, a1) == []

        # 7.11 inactivity from T+1h to T+3h covers the whole visit
        quiet = _alarm(kit, "inactivity", t + timedelta(hours=3), msg_id="i-1", duration_s=7200)
        _visit(
            p,
            "WO14",
            start=_iso(t + timedelta(hours=1, minutes=15)),
            end=_iso(t + timedelta(hours=2, minutes=15)),
            created=_iso(t),
        )
        presence = _found(p, "WO14")["no_presence_evidence"]
        assert presence["severity"] == "soft"
        assert presence["evidence"]["coverage"] == 1.0
        assert presence["evidence"]["msg_id"] == "i-1"
        _settle_alarm(p, quiet, "test")
    finally:
        kit.close()

    # the list API: filters, and a provider admin sees only their own provider's findings
    hard_open = p.get("ca", "/api/anomalies", params={"severity": "hard", "status": "open"})
    assert {a["rule_code"] for a in hard_open} >= {"worker_overlap", "dup_claim"}
    assert all(a["severity"] == "hard" and a["status"] == "open" for a in hard_open)
    assert p.get("pa2", "/api/anomalies") == []
    assert len(p.get("pa1", "/api/anomalies")) >= 9
    p.call("w1", "GET", "/api/anomalies", expect=403)


# ---------------------------------------------------------------- §3.9 alarms create orders


def _device(p: Platform, key: str) -> SimDevice:
    dev = SimDevice.from_credentials(DeviceCredentials(**p.ids[key]), retry_s=1.0)
    dev.connect()
    return dev


def _alarm(dev: SimDevice, kind: str, ts: datetime, **fields: Any) -> str:
    return str(dev.ack_for(dev.raise_alarm(kind, ts=ts, **fields), timeout=20)["alarm_id"])


def _close(p: Platform, alarm_id: str, body: dict[str, Any], expect: int = 200) -> Any:
    return p.post("op", f"/api/alarms/{alarm_id}/close", body, expect=expect)


def _settle_alarm(p: Platform, alarm_id: str, disposition: str) -> dict[str, Any]:
    p.post("op", f"/api/alarms/{alarm_id}/acknowledge", {}, expect=200)
    p.post("op", f"/api/alarms/{alarm_id}/resolve", {}, expect=200)
    return dict(_close(p, alarm_id, {"disposition": disposition}))


def _orders_of_alarm(p: Platform, alarm_id: str) -> list[dict[str, Any]]:
    return list(p.get("op", "/api/work-orders", params={"alarm_id": alarm_id}))


def test_3_9_alarms_create_work_orders(platform: Platform) -> None:
    p, ids = platform, platform.ids
    t0 = (datetime.now(UTC) - timedelta(hours=6)).replace(second=0, microsecond=0)
    kit, sos = _device(p, "KIT5"), _device(p, "SOS5")
    try:
        # 1. a fall closed without injury -> post_fall_visit dispatched to P1, due close + 24 h
        a2 = _alarm(kit, "fall", t0 + timedelta(hours=4), confidence=0.9)
        closed = _settle_alarm(p, a2, "fall_without_injury")
        orders = _orders_of_alarm(p, a2)
        assert len(orders) == 1
        o = orders[0]
        assert (o["service_item_code"], o["source"], o["status"], o["provider_id"]) == (
            "post_fall_visit",
            "alarm",
            "dispatched",
            ids["P1"],
        )
        due = datetime.fromisoformat(o["due_by"])
        assert due == datetime.fromisoformat(closed["closed_at"]) + timedelta(hours=24)
        timeline = p.get("op", f"/api/alarms/{a2}")["timeline"]
        assert "work_order_created" in [e["action"] for e in timeline]

        # 2. service_request needs its follow-up; with it, one meal_delivery order
        a3 = _alarm(sos, "sos", t0 + timedelta(hours=4, minutes=20))
        p.post("op", f"/api/alarms/{a3}/acknowledge", {}, expect=200)
        p.post("op", f"/api/alarms/{a3}/resolve", {}, expect=200)
        _close(p, a3, {"disposition": "service_request"}, expect=422)
        assert p.get("op", f"/api/alarms/{a3}")["alarm"]["status"] == "resolved"
        assert _orders_of_alarm(p, a3) == []
        _close(
            p,
            a3,
            {"disposition": "service_request", "follow_up": {"service_item_code": "meal_delivery"}},
        )
        orders = _orders_of_alarm(p, a3)
        assert [(o["service_item_code"], o["source"]) for o in orders] == [
            ("meal_delivery", "alarm")
        ]

        # 3. three accidental presses in 7 days -> one device_training_visit, after the third
        def training() -> list[dict[str, Any]]:
            found = p.get("op", "/api/work-orders", params={"resident": ids["R5"]})
            return [o for o in found if o["service_item_code"] == "device_training_visit"]

        for n in range(3):
            a = _alarm(sos, "sos", t0 + timedelta(hours=4, minutes=30 + 5 * n))
            _settle_alarm(p, a, "accidental_press")
            assert len(training()) == (1 if n == 2 else 0), n
        assert training()[0]["source"] == "alarm"

        # 4. a second fall closed without injury: R5 is due for reassessment
        a4 = _alarm(kit, "fall", t0 + timedelta(hours=4, minutes=50), confidence=0.9)
        _settle_alarm(p, a4, "fall_without_injury")
        report = p.get("ca", "/api/reports/assessments", params={"district": "330683", "due": 1})
        due_r5 = [d for d in report["due"] if d["resident_id"] == ids["R5"]]
        assert len(due_r5) == 1
        assert due_r5[0]["reason"] == "risk_events_30d>=2"
        assert sorted(due_r5[0]["alarm_ids"]) == sorted([a2, a4])

        # 5. a close with disposition test creates no order
        a5 = _alarm(sos, "sos", t0 + timedelta(hours=5))
        _settle_alarm(p, a5, "test")
        assert _orders_of_alarm(p, a5) == []

        # The assessed level drives priority: R5 is severe (F3), so a bed exit ranks 2, not 3.
        a6 = _alarm(kit, "bed_exit", t0 + timedelta(hours=5, minutes=5), duration_s=600)
        assert p.get("op", f"/api/alarms/{a6}")["alarm"]["priority"] == 2
        _settle_alarm(p, a6, "test")
    finally:
        kit.close()
        sos.close()


# ---------------------------------------------------------------- §3.10 hotline, revisits


def test_3_10_hotline_complaints_revisit_satisfaction(platform: Platform) -> None:
    p, ids = platform, platform.ids
    # 1. a referral call becomes a work order
    call = p.post(
        "op",
        "/api/hotline/calls",
        {
            "caller": "13800000000",
            "agent": "op",
            "started_at": "2026-01-20T09:00:00+08:00",
            "request_type": "referral",
            "resident_id": ids["R3"],
        },
        at="2026-01-20T09:05:00+08:00",
    )
    assert "13800000000" not in json.dumps(call)  # the caller's number is shown masked
    order = p.post(
        "op",
        f"/api/hotline/calls/{call['id']}/work-order",
        {"service_item_code": "meal_delivery"},
        at="2026-01-20T09:06:00+08:00",
    )
    assert (order["source"], order["hotline_call_id"]) == ("hotline", call["id"])

    # 2. a complaint's SLA runs from the call's start: red = 3 days
    complaint_call = p.post(
        "op",
        "/api/hotline/calls",
        {
            "caller": "13800000001",
            "agent": "op",
            "started_at": "2026-01-21T09:00:00+08:00",
            "request_type": "complaint",
            "resident_id": ids["R3"],
        },
        at="2026-01-21T09:10:00+08:00",
    )
    complaint = p.post(
        "op",
        "/api/complaints",
        {"hotline_call_id": complaint_call["id"], "provider_id": ids["P2"], "severity": "red"},
        at="2026-01-21T09:12:00+08:00",
    )
    assert datetime.fromisoformat(complaint["due_at"]) == datetime.fromisoformat(
        "2026-01-24T09:00:00+08:00"
    )

    # 3. P3/W4: 12 verified meal deliveries in 2026-03 over CV1..CV5, one revisit each
    answers: list[dict[str, Any]] = [
        {"channel": "phone", "reached": True, "service_confirmed": True, "satisfaction": s}
        for s in (1, 1, 1, 1, 2, 2, 2, 2, 3, 4)
    ] + [{"channel": "phone", "reached": False}] * 2
    for n, answer in enumerate(answers):
        cv = f"CV{n % 5 + 1}"
        day = 2 + n
        start = f"2026-03-{day:02d}T11:00:00+08:00"
        name = f"M{n + 1}"
        p.done_order(
            name,
            resident=cv,
            item="meal_delivery",
            provider="P3",
            worker_user="w4",
            worker="W4",
            start=start,
            end=f"2026-03-{day:02d}T11:10:00+08:00",
            at=(29.6 + (n % 5 + 1) / 1000, 120.8),
        )
        assert p.act("ca", name, "verify", {}, at=f"2026-03-{day:02d}T15:00:00+08:00")[
            "status"
        ] == ("verified")
        p.post(
            "op",
            f"/api/work-orders/{ids[name]}/revisits",
            answer,
            at=f"2026-03-{day:02d}T16:00:00+08:00",
        )
    report = p.get(
        "op",
        "/api/reports/revisits",
        params={"from": "2026-03-01", "to": "2026-04-01", "provider": ids["P3"]},
    )
    assert (report["revisits"], report["reached"]) == (12, 10)
    assert report["reach_rate"] == 0.8333
    assert report["distribution"] == {"1": 4, "2": 4, "3": 1, "4": 1}
    assert report["satisfaction_rate"] == 0.8
    assert report["confirmed_rate"] == 1.0
    # 4. (coverage report, §2.13) belongs with the subsidy module's reports.


# ---------------------------------------------------------------- §3.12 audit


def test_3_12_audit_and_immutability(platform: Platform) -> None:
    p, ids = platform, platform.ids
    events = p.get("op", f"/api/work-orders/{ids['WO1']}/events")
    assert [e["action"] for e in events][:2] == ["created", "dispatch"]
    with psycopg.connect(p.settings.database_url) as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute(
                "UPDATE work_order_events SET actor = 'someone' WHERE work_order_id = %s",
                (ids["WO1"],),
            )
        conn.rollback()
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            conn.execute("DELETE FROM work_order_events WHERE work_order_id = %s", (ids["WO1"],))
    # No personal data in work-order payloads, whoever asks...
    for user in ("op", "pa1", "w1"):
        payload = json.dumps(p.get(user, f"/api/work-orders/{ids['WO1']}"), ensure_ascii=False)
        for secret in ("id_number", "address", "phone", "嵊州测试路1号", "床位戊"):
            assert secret not in payload, (user, secret)
    listing = json.dumps(p.get("op", "/api/work-orders"), ensure_ascii=False)
    assert "嵊州测试路" not in listing
    # ...the address comes only through the audited reveal, which provider users cannot use.
    p.call("w1", "POST", f"/api/residents/{ids['R5']}/reveal", {"reason": "上门服务"}, expect=403)
    p.call("pa1", "GET", "/api/alarms", expect=403)
    shown = p.post(
        "op", f"/api/residents/{ids['R5']}/reveal", {"reason": "回访核实地址"}, expect=200
    )
    assert shown["address"] == "嵊州测试路1号"
    reveals = p.get("adm", f"/api/residents/{ids['R5']}/reveals")
    assert [r["username"] for r in reveals][:1] == ["op"]
