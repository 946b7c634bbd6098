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
from typing import Any

import httpx
import pytest

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
