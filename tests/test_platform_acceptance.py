"""Acceptance checks of the platform layer (design platform-layer.md §3), over real HTTP.

One ``eldercare serve`` process (uvicorn + gateway) on a fresh database and a private broker,
with ``ELDERCARE_ENVIRONMENT=test`` so requests may carry ``X-Eldercare-Test-Now``, the
auto-verify job off and no random revisit sample. Users and devices are made with the CLI,
as §3.0 says. The checks share state and run in the design's order: one test function per
numbered group. The fixture helpers (F1-F5) and :class:`Platform` are shared by the three
helpers' sections: add sections in the design's order.

Coverage of design §3 (every numbered check, with the design's figures):

====== ============================================== ==========================================
§3     check                                          test (all over HTTP)
====== ============================================== ==========================================
3.0    F1 districts, F2 facilities/beds/households/   ``platform`` fixture: fixture_f1 .. f5
       residents/categories/devices, F3 assessments,  (users and devices through the CLI)
       F4 programmes + PV-a..e, F5 catalogue/P1-3/W1-4
3.1    score table 0..91, adjustments, ability on     test_3_1_ability_levels
       2022-08-14 / 08-15
3.2    care-fee table x mode, 138300, 3039/2211,      test_3_2_shengzhou_tekun_fees
       street inherits, no_policy, not_eligible
3.3    1-6 (117900/138300, no_policy, 409 overlap,    test_3_3_policy_versions_dated_and_immutable
       409 PATCH, 82800 street copy, withdraw)
3.4    1-5 (runs Aug/Sep/Oct, death, void+supersede,  test_3_4_entitlement_runs_level_changes_death
       spend 276600/207000/483600..., tekun KPIs);
       §2.6 追回 of a late-reported death
3.5    Q1-Q6, orders A-E cap, F, no carry-over,       test_3_5_voucher_ratio_cap_insurance_expiry_
       next-month stop                                eligibility
3.6    1-6 (WO1 number, 409 not contracted, scopes,   test_3_6_work_order_lifecycle_evv_permissions
       idempotency k1, check-out 12000, EVV, payer)
3.7    7.1-7.11 + anomalies report counts; 7.9's      test_3_7_anomaly_checks
       R7 account (deceased, January unchanged);
       7.10's on-site W1 proposed first at 0 m
3.8    1-5 (24000/12000/10200/1800, excluded reasons, test_3_8_settlement_funding_split_clawback
       Feb 15000/7500/6375/1125, clawback -6000,
       spend 107000/92000/15000/90950/16050)
3.9    1-5 (post_fall_visit due +24 h, 422 without    test_3_9_alarms_create_work_orders
       follow_up, 3rd accidental press, risk events)
3.10   1-3 (hotline order, SLA red/orange/yellow,     test_3_10_hotline_complaints_revisit_
       revisits 12/10/0.8333/0.8/1.0)                 satisfaction
3.10.4 coverage 5/3/0.6                               test_3_10_4_voucher_coverage
3.11   1-3 (422 naming band + quote, ratings,         test_3_11_facility_awards_linyi_bands
       5000000/3000000, unrated facility gets none)
3.12   append-only events, no PII, audited reveal,    test_3_12_audit_and_immutability,
       403 for w1 / pa1                               test_3_12_policy_and_settlement_permissions
issue  home bed with contract, provider facility and  test_home_bed_detail_contract_provider_
8.1    installed devices                              devices
issue  CSV export of spend, findings, revisits,       csv_rows() in 3.4, 3.7, 3.10, 3.10.4
8.6    coverage (exact figures)
§2.13  provider KPIs (EVV 90 %), 探访 coverage         test_provider_and_visit_coverage_reports
§4 Q20 provider evidence before the decision          test_provider_appeal_evidence_before_the_
                                                      decision
====== ============================================== ==========================================

Bad input on every platform write endpoint (4xx, clear detail, no row written), junk bodies
on every write route, bad report queries and concurrent verification are checked in
tests/test_platform_bad_input.py; the Grafana panels (as the read-only role, against the
API's numbers) in tests/test_dashboards.py.
"""

from __future__ import annotations

import csv
import io
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
from websockets.sync.client import connect as ws_connect

from eldercare.registry.schemas import DeviceCredentials
from eldercare.simulators.device import SimDevice
from harness.services import (
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
                fixture_f4(p)
                fixture_f5(p)
                yield p
            finally:
                serve.stop()
                if serve.proc is not None and serve.proc.returncode not in (0, -15, None):
                    print(serve.output()[-4000:])
    finally:
        drop_database(url)


def csv_rows(p: Platform, path: str, params: dict[str, Any]) -> list[dict[str, str]]:
    """A report's ``?format=csv`` export (issue 8 item 6), parsed."""
    r = p.call("ca", "GET", path, params={**params, "format": "csv"}, expect=200)
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    return list(csv.DictReader(io.StringIO(r.text)))


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


# F4: every amount and band below is quoted from its seed (design §1, §3.0 F4).
SEED_001 = "001_43bd6416e6636711.txt"
SEED_000 = "000_5d9c6e2a74078aa4.txt"
CARE_TABLE = {
    "complete": 165600,
    "severe": 165600,
    "moderate": 82800,
    "mild": 41400,
    "intact": 20700,
}


def care_rules(table: dict[str, int]) -> list[dict[str, Any]]:
    return [
        {
            "code": "care_by_level",
            "when": {"category": "tekun"},
            "formula": {"type": "table", "key": "ability_level", "table_fen": table},
            "modifiers": [{"when": {"support_mode": "dispersed"}, "multiply": 0.5}],
        }
    ]


def living_rules(amount: int) -> list[dict[str, Any]]:
    return [
        {
            "code": "living",
            "when": {"category": "tekun"},
            "formula": {"type": "fixed", "amount_fen": amount},
        }
    ]


VOUCHER_RULES = [
    {
        "code": "voucher",
        "when": {"age_min": 60, "ability_level_in": ["moderate", "severe", "complete"]},
        "formula": {
            "type": "voucher",
            "ratio_by_setting": {"home": 0.5, "community": 0.5, "institution": 0.4},
            "monthly_cap_fen": 80000,
            "after": "ltc",
            "first_month": "full",
            "stop": "next_month",
        },
    }
]


def award_rules(day_care_5: int = 3000000) -> list[dict[str, Any]]:
    return [
        {
            "code": "grade_award",
            "formula": {
                "type": "band_table",
                "bands": {
                    "nursing_home": {
                        "band": [3000000, 8000000],
                        "levels": {
                            "1": 3000000,
                            "2": 4000000,
                            "3": 5000000,
                            "4": 6500000,
                            "5": 8000000,
                        },
                        "source_quote": "给予养老机构每年3-8万元",
                    },
                    "day_care": {
                        "band": [1000000, 3000000],
                        "levels": {
                            "1": 1000000,
                            "2": 1500000,
                            "3": 2000000,
                            "4": 2500000,
                            "5": day_care_5,
                        },
                        "source_quote": "日间照料中心和农村幸福院每年1-3万元的差异化奖补",
                    },
                },
            },
        }
    ]


def draft(p: Platform, programme: str, district: str, start: str, rules: Any, **kw: Any) -> Any:
    body = {
        "programme_code": programme,
        "district_code": district,
        "effective_from": start,
        "rules": rules,
        **kw,
    }
    body.setdefault("source_doc", SEED_001)
    return p.post("adm", "/api/policy-versions", body)["id"]


def publish(p: Platform, version_id: int, expect: int = 200) -> Any:
    return p.call(
        "ca", "POST", f"/api/policy-versions/{version_id}/publish", {}, expect=expect
    ).json()


def fixture_f4(p: Platform) -> None:
    for code, name, kind, payee, period in (
        ("tekun_living", "特困供养生活费", "cash_allowance", "resident", "month"),
        ("tekun_care", "特困人员照料护理补贴", "care_fee", "resident", "month"),
        ("elderly_care_voucher", "养老服务消费补贴", "voucher", "provider", "month"),
        ("facility_grade_award", "养老服务设施等级评定奖补", "facility_award", "facility", "year"),
    ):
        p.post(
            "adm",
            "/api/programmes",
            {"code": code, "name_zh": name, "kind": kind, "payee": payee, "period": period},
        )
    ids = p.ids
    ids["PV-a"] = draft(
        p,
        "tekun_living",
        "330683",
        "2021-01-01",
        living_rules(117900),
        effective_to="2022-07-01",
        source_quote="特困供养标准为每人每月1179元",
    )
    ids["PV-b"] = draft(
        p,
        "tekun_living",
        "330683",
        "2022-07-01",
        living_rules(138300),
        source_quote="特困供养生活费1383元/月",
    )
    ids["PV-c"] = draft(
        p,
        "tekun_care",
        "330683",
        "2022-07-01",
        care_rules(CARE_TABLE),
        source_quote="护理费标准:完全丧失自理能力1656元,中度828元,轻度414元,完全具备自理能力207元。"
        "(分散供养护理费是集中供养的50%)",
    )
    ids["PV-d"] = draft(
        p,
        "elderly_care_voucher",
        "000000",
        "2026-01-01",
        VOUCHER_RULES,
        funding={"by_fiscal_region": {"east": {"central": 0.85, "local": 0.15}}},
        source_doc="民政部 财政部 养老服务消费补贴 (test parameters, design §1b)",
    )
    ids["PV-e"] = draft(
        p,
        "facility_grade_award",
        "371300",
        "2020-01-01",
        award_rules(),
        source_doc=SEED_000,
    )
    for key in ("PV-a", "PV-b", "PV-c", "PV-d", "PV-e"):
        assert publish(p, ids[key])["status"] == "published"


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


# ---------------------------------------------------------------- §3.2 Shengzhou 特困 fees


def preview(p: Platform, programme: str, month: str, district: str = "330683", **facts: Any) -> Any:
    body = {
        "district_code": district,
        "month": month,
        "programme_code": programme,
        "facts": {"categories": ["tekun"], "age": 80, **facts},
    }
    return p.post("ca", "/api/entitlements/preview", body, expect=200)


FEES = [
    ("complete", 165600, 82800),
    ("severe", 165600, 82800),
    ("moderate", 82800, 41400),
    ("mild", 41400, 20700),
    ("intact", 20700, 10350),
]


def test_3_2_shengzhou_tekun_fees(platform: Platform) -> None:
    p = platform
    for level, centralised, dispersed in FEES:
        for mode, expected in (("centralised", centralised), ("dispersed", dispersed)):
            got = preview(p, "tekun_care", "2022-08", support_mode=mode, ability_level=level)
            assert got["amount_fen"] == expected, (level, mode, got)
            assert got["policy_version_id"] == p.ids["PV-c"]
            living = preview(p, "tekun_living", "2022-08", support_mode=mode, ability_level=level)
            assert living["amount_fen"] == 138300
            # the street inherits the county's policy
            street = preview(
                p, "tekun_care", "2022-08", "330683001", support_mode=mode, ability_level=level
            )
            assert street["amount_fen"] == expected
    # 1383 + 1656 = 3039.00 yuan centralised, 1383 + 828 = 2211.00 dispersed
    full = [
        preview(p, code, "2022-08", support_mode=mode, ability_level="complete")["amount_fen"]
        for mode in ("centralised", "dispersed")
        for code in ("tekun_living", "tekun_care")
    ]
    assert (full[0] + full[1], full[2] + full[3]) == (303900, 221100)
    assert (
        preview(
            p,
            "tekun_care",
            "2022-08",
            "330600",
            support_mode="centralised",
            ability_level="complete",
        )["status"]
        == "no_policy"
    )
    none = p.post(
        "ca",
        "/api/entitlements/preview",
        {
            "district_code": "330683",
            "month": "2022-08",
            "programme_code": "tekun_care",
            "facts": {"categories": [], "ability_level": "complete", "age": 80},
        },
        expect=200,
    )
    assert (none["amount_fen"], none["reason"]) == (0, "not_eligible")
    # bad input: a clear 422, nothing stored
    p.call(
        "ca",
        "POST",
        "/api/entitlements/preview",
        {
            "district_code": "330683",
            "month": "2022-13",
            "programme_code": "tekun_care",
            "facts": {},
        },
        expect=422,
    )


# ---------------------------------------------------------------- §3.3 policy versions


def test_3_3_policy_versions_dated_and_immutable(platform: Platform) -> None:
    p, ids = platform, platform.ids
    # 1. the version in force on the month's first day decides
    june = preview(p, "tekun_living", "2022-06", support_mode="centralised")
    assert (june["amount_fen"], june["policy_version_id"]) == (117900, ids["PV-a"])
    july = preview(p, "tekun_living", "2022-07", support_mode="centralised")
    assert (july["amount_fen"], july["policy_version_id"]) == (138300, ids["PV-b"])
    assert "1383" in july["source_quote"]
    # 2. no care-fee figures before 2022-07
    early = preview(p, "tekun_care", "2022-06", support_mode="centralised", ability_level="mild")
    assert early["status"] == "no_policy"
    # 3. an overlapping version cannot be published
    overlap = draft(p, "tekun_living", "330683", "2022-01-01", living_rules(120000))
    assert "overlaps" in publish(p, overlap, expect=409)["detail"]
    # 4. a published version is immutable
    r = p.call(
        "adm",
        "PATCH",
        f"/api/policy-versions/{ids['PV-b']}",
        {"rules": living_rules(1)},
        expect=409,
    )
    assert "immutable" in r.json()["detail"]
    assert p.get("ca", f"/api/policy-versions/{ids['PV-b']}")["rules"] == living_rules(138300)
    # a draft may still change
    patched = p.call(
        "adm",
        "PATCH",
        f"/api/policy-versions/{overlap}",
        {"effective_to": "2022-02-01"},
        expect=200,
    ).json()
    assert patched["effective_to"] == "2022-02-01"
    # 5. the level mapping is data: a street's copy maps severe to 中度
    copy = draft(
        p,
        "tekun_care",
        "330683001",
        "2022-07-01",
        care_rules({**CARE_TABLE, "severe": 82800}),
        source_quote="测试: severe -> 中度",
    )
    publish(p, copy)
    street = preview(
        p, "tekun_care", "2022-08", "330683001", support_mode="centralised", ability_level="severe"
    )
    county = preview(
        p, "tekun_care", "2022-08", "330683", support_mode="centralised", ability_level="severe"
    )
    assert (street["amount_fen"], county["amount_fen"]) == (82800, 165600)
    # 6. withdraw it; the street inherits the county's version again
    withdrawn = p.post("ca", f"/api/policy-versions/{copy}/withdraw", {}, expect=200)
    assert withdrawn["status"] == "withdrawn"
    again = preview(
        p, "tekun_care", "2022-08", "330683001", support_mode="centralised", ability_level="severe"
    )
    assert again["amount_fen"] == 165600
    # bad input: rules the interpreter cannot read are refused at draft time, nothing stored
    before = len(p.get("ca", "/api/policy-versions"))
    bad = {
        "programme_code": "tekun_care",
        "district_code": "330683",
        "effective_from": "2030-01-01",
        "source_doc": SEED_001,
        "rules": [
            {
                "code": "x",
                "formula": {"type": "table", "key": "ability_level", "table_fen": {"mild": 1}},
            }
        ],
    }
    assert (
        "table_fen"
        in p.call("adm", "POST", "/api/policy-versions", bad, expect=422).json()["detail"]
    )
    assert len(p.get("ca", "/api/policy-versions")) == before


# ---------------------------------------------------------------- §3.4 entitlement runs


def entitled(p: Platform, resident: str, month: str) -> dict[str, Any]:
    rows = p.get("ca", f"/api/residents/{p.ids[resident]}/entitlements", params={"month": month})
    return {r["programme_code"]: r for r in rows}


def amounts(p: Platform, resident: str, month: str) -> dict[str, int]:
    return {k: v["amount_fen"] for k, v in entitled(p, resident, month).items()}


def spend(p: Platform, month: str, group_by: str = "programme") -> dict[str, Any]:
    return p.get(
        "ca",
        "/api/reports/subsidy-spend",
        params={"month": month, "district": "330683", "group_by": group_by},
    )


def test_3_4_entitlement_runs_level_changes_death(platform: Platform) -> None:
    p, ids = platform, platform.ids
    run = {"month": "2022-08", "district_code": "330683"}
    # 1. August: R2 is dispersed and moderate on the 1st ('complete' starts 2022-08-15)
    p.post("ca", "/api/entitlement-runs", run, at="2022-09-01T09:00:00+08:00")
    assert amounts(p, "R1", "2022-08") == {"tekun_living": 138300, "tekun_care": 165600}
    assert amounts(p, "R2", "2022-08") == {"tekun_living": 138300, "tekun_care": 41400}
    basis = entitled(p, "R2", "2022-08")["tekun_care"]["basis"]
    assert (basis["level"], basis["support_mode"]) == ("moderate", "dispersed")
    # 2. September: the new level counts
    p.post(
        "ca", "/api/entitlement-runs", {**run, "month": "2022-09"}, at="2022-10-01T09:00:00+08:00"
    )
    assert amounts(p, "R2", "2022-09") == {"tekun_living": 138300, "tekun_care": 82800}
    # 3. death on 2022-09-10 stops entitlements from October
    p.post(
        "adm",
        f"/api/residents/{ids['R2']}/status-periods",
        {
            "status": "deceased",
            "from": "2022-09-10T08:00:00+08:00",
            "source": "funeral_registry",
            "source_ref": "殡葬-TEST-1",
        },
    )
    rerun = p.post(
        "ca", "/api/entitlement-runs", {**run, "month": "2022-09"}, at="2022-10-02T09:00:00+08:00"
    )
    assert rerun["stats"]["voided"] >= 4
    assert p.get("ca", f"/api/entitlement-runs/{rerun['id']}")["stats"] == rerun["stats"]
    assert amounts(p, "R2", "2022-09") == {"tekun_living": 138300, "tekun_care": 82800}
    for resident in ("R1", "R2"):
        every = p.get(
            "ca",
            f"/api/residents/{ids[resident]}/entitlements",
            params={"month": "2022-09", "include_void": 1},
        )
        for code in ("tekun_living", "tekun_care"):
            mine = [r["status"] for r in every if r["programme_code"] == code]
            assert (mine.count("computed"), "void" in mine) == (1, True), (resident, code, mine)
    p.post(
        "ca", "/api/entitlement-runs", {**run, "month": "2022-10"}, at="2022-11-01T09:00:00+08:00"
    )
    october = entitled(p, "R2", "2022-10")
    assert {k: (v["amount_fen"], v["basis"]["reason"]) for k, v in october.items()} == {
        "tekun_living": (0, "deceased"),
        "tekun_care": (0, "deceased"),
    }
    assert amounts(p, "R1", "2022-10") == {"tekun_living": 138300, "tekun_care": 165600}
    # 4. spend per programme
    for month, living, care in (
        ("2022-08", 276600, 207000),
        ("2022-09", 276600, 248400),
        ("2022-10", 138300, 165600),
    ):
        got = spend(p, month)
        assert got["programmes"] == {"tekun_living": living, "tekun_care": care}, month
        assert got["total_fen"] == living + care
    assert spend(p, "2022-08")["total_fen"] == 483600
    lines = csv_rows(p, "/api/reports/subsidy-spend", {"month": "2022-08", "district": "330683"})
    by_programme: dict[str, int] = {}
    for line in lines:
        code = line["programme_code"]
        by_programme[code] = by_programme.get(code, 0) + int(line["amount_fen"])
    assert by_programme == {"tekun_living": 276600, "tekun_care": 207000}
    # an empty month still exports its header
    empty = p.call(
        "ca",
        "GET",
        "/api/reports/subsidy-spend",
        params={"month": "2019-01", "district": "330683", "format": "csv"},
        expect=200,
    ).text
    assert empty == "district_code,programme_code,amount_fen,central_fen,local_fen\n"
    # 5. 特困 KPIs
    kpi = p.get("ca", "/api/reports/tekun", params={"on": "2022-08-31", "district": "330683"})
    assert {
        k: kpi[k]
        for k in (
            "tekun",
            "centralised",
            "dispersed",
            "unable_self_care",
            "centralised_rate_unable",
            "agreement_rate_dispersed",
        )
    } == {
        "tekun": 2,
        "centralised": 1,
        "dispersed": 1,
        "unable_self_care": 2,
        "centralised_rate_unable": 0.5,
        "agreement_rate_dispersed": 0.0,
    }
    p.post(
        "ca",
        "/api/care-agreements",
        {
            "resident_id": ids["R2"],
            "provider_id": ids["P1"],
            "kind": "tekun_dispersed_care",
            "valid_from": "2022-01-01",
            "signed_on": "2022-01-01",
        },
    )
    kpi = p.get("ca", "/api/reports/tekun", params={"on": "2022-08-31", "district": "330683"})
    assert kpi["agreement_rate_dispersed"] == 1.0
    # design §2.6: a death reported late makes a re-run recover (追回) what a run already gave.
    # November 2022 is run with R1 alive; the funeral registry then reports R1's death on
    # 2022-10-05, so November is re-run at zero and the run says how much to recover.
    nov = {**run, "month": "2022-11"}
    first_nov = p.post("ca", "/api/entitlement-runs", nov, at="2022-11-01T09:00:00+08:00")
    assert first_nov["stats"]["adjustments_fen"] == {}
    assert amounts(p, "R1", "2022-11") == {"tekun_living": 138300, "tekun_care": 165600}
    p.post(
        "ca",
        "/api/integrations/death-records",
        {
            "records": [
                {
                    "resident_id": ids["R1"],
                    "died_at": "2022-10-05T08:00:00+08:00",
                    "source_ref": "殡葬-TEST-2",
                }
            ]
        },
        at="2022-11-20T09:00:00+08:00",
        expect=200,
    )
    again = p.post("ca", "/api/entitlement-runs", nov, at="2022-11-21T09:00:00+08:00")
    assert again["stats"]["adjustments_fen"] == {"tekun_living": -138300, "tekun_care": -165600}
    late = entitled(p, "R1", "2022-11")
    assert {k: (v["amount_fen"], v["adjustment_fen"]) for k, v in late.items()} == {
        "tekun_living": (0, -138300),
        "tekun_care": (0, -165600),
    }
    # bad input: a month that is not one
    p.call(
        "ca",
        "POST",
        "/api/entitlement-runs",
        {"month": "2022-8", "district_code": "330683"},
        expect=422,
    )
    p.call(
        "ca",
        "POST",
        "/api/entitlement-runs",
        {"month": "2022-08", "district_code": "999999"},
        expect=404,
    )


# ---------------------------------------------------------------- §3.5 voucher


def quote(p: Platform, resident: str, item: str, price: int, at: str, ltc: int = 0) -> Any:
    return p.post(
        "op",
        "/api/quote",
        {
            "resident_id": p.ids[resident],
            "service_item_code": item,
            "price_fen": price,
            "ltc_fen": ltc,
            "at": at,
        },
        expect=200,
    )


def account(p: Platform, resident: str, month: str) -> Any:
    return p.get(
        "op",
        f"/api/residents/{p.ids[resident]}/subsidy-account",
        params={"programme": "elderly_care_voucher", "month": month},
    )


def test_3_5_voucher_ratio_cap_insurance_expiry_eligibility(platform: Platform) -> None:
    p, ids = platform, platform.ids
    jan5 = "2026-01-05T10:00:00+08:00"
    q1 = quote(p, "R3", "bath_home", 12000, jan5)
    assert {
        k: q1[k] for k in ("ltc_fen", "voucher_fen", "copay_fen", "ratio", "cap_remaining_fen")
    } == {
        "ltc_fen": 0,
        "voucher_fen": 6000,
        "copay_fen": 6000,
        "ratio": 0.5,
        "cap_remaining_fen": 80000,
    }
    q2 = quote(p, "R3", "bath_home", 9999, jan5)
    assert (q2["voucher_fen"], q2["copay_fen"]) == (4999, 5000)
    q3 = quote(p, "R3", "bath_home", 100000, jan5, ltc=60000)
    assert (q3["voucher_fen"], q3["copay_fen"]) == (20000, 20000)
    q4 = quote(p, "R6", "institutional_care_month", 510000, "2026-01-31T10:00:00+08:00")
    assert (q4["voucher_fen"], q4["copay_fen"]) == (80000, 430000)
    q5 = quote(p, "R4", "bath_home", 12000, jan5)
    assert (q5["voucher_fen"], q5["reason"]) == (0, "age_below_min")
    q6 = quote(p, "R7", "bath_home", 12000, "2026-02-05T10:00:00+08:00")
    assert (q6["voucher_fen"], q6["reason"]) == (0, "assessment_expired")
    p.call(
        "op",
        "POST",
        "/api/quote",
        {
            "resident_id": ids["R3"],
            "service_item_code": "bath_home",
            "price_fen": 100,
            "ltc_fen": 200,
            "at": jan5,
        },
        expect=422,
    )

    # cap accumulation over real, verified orders A-E (R3, P2, W3, home_care_hour, HH1)
    plan = [
        ("A", 5, 17, 8, 20000),
        ("B", 6, 17, 8, 20000),
        ("C", 7, 17, 8, 20000),
        ("D", 8, 19, 10, 20000),
        ("E", 9, 11, 2, 0),
    ]
    for name, day, end_h, qty, voucher in plan:
        p.done_order(
            name,
            resident="R3",
            item="home_care_hour",
            provider="P2",
            worker_user="w3",
            worker="W3",
            start=f"2026-01-{day:02d}T09:00:00+08:00",
            end=f"2026-01-{day:02d}T{end_h}:00:00+08:00",
            at=HH1,
            quantity=qty,
        )
        p.act("ca", name, "verify", {}, at=f"2026-01-{day:02d}T20:00:00+08:00")
        shown = p.get("op", f"/api/work-orders/{ids[name]}")
        payer = shown["payer"]
        assert shown["price_fen"] == 5000 * qty, name  # 40000, 40000, 40000, 50000, 10000
        assert (payer["voucher_fen"], payer["copay_fen"]) == (voucher, 5000 * qty - voucher), name
    jan = account(p, "R3", "2026-01")
    assert (jan["credit_fen"], jan["used_fen"], jan["balance_fen"]) == (80000, 80000, 0)
    p.done_order(
        "F",
        resident="R3",
        item="home_care_hour",
        provider="P2",
        worker_user="w3",
        worker="W3",
        start="2026-02-02T09:00:00+08:00",
        end="2026-02-02T11:00:00+08:00",
        at=HH1,
        quantity=2,
    )
    p.act("ca", "F", "verify", {}, at="2026-02-02T20:00:00+08:00")
    assert p.get("op", f"/api/work-orders/{ids['F']}")["payer"]["voucher_fen"] == 5000
    feb = account(p, "R3", "2026-02")
    assert (feb["credit_fen"], feb["used_fen"], feb["balance_fen"]) == (80000, 5000, 75000)
    # no carry-over: March starts from the cap again
    assert account(p, "R3", "2026-03")["credit_fen"] == 80000
    # next-month stop: mild from 2026-03-10 keeps March, stops April
    p.post(
        "as1",
        f"/api/residents/{ids['R3']}/assessments",
        {
            "total_score": 70,
            "reason": "change",
            "assessed_at": "2026-03-10T09:00:00+08:00",
            "effective_from": "2026-03-10",
            "assessor": "评估员A",
        },
    )
    assert account(p, "R3", "2026-03")["credit_fen"] == 80000
    april = account(p, "R3", "2026-04")
    assert (april["credit_fen"], april["reason"]) == (0, "ability_level")
    assert quote(p, "R3", "bath_home", 12000, "2026-04-02T10:00:00+08:00")["voucher_fen"] == 0


# ---------------------------------------------------------------- §3.6 work-order lifecycle


def test_3_6_work_order_lifecycle_evv_permissions(platform: Platform) -> None:
    p, ids = platform, platform.ids
    # 1. create; the consoles hear of it on the websocket (§2.11), without personal data
    with ws_connect(p.base.replace("http", "ws", 1) + "/api/ws") as live:
        live.send(json.dumps({"type": "auth", "token": p.login("op")}))
        assert json.loads(live.recv(timeout=10))["type"] == "hello"
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
        while True:
            message = json.loads(live.recv(timeout=10))
            if message.get("type") == "work_order" and message["work_order"]["id"] == wo1["id"]:
                break
    assert (message["event"], message["work_order"]["number"]) == ("created", wo1["number"])
    assert "床位戊" not in json.dumps(message, ensure_ascii=False)
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
    # the voucher allocated at verification (subsidy's on_verified hook, §2.6)
    assert (shown["payer"]["voucher_fen"], shown["payer"]["copay_fen"]) == (6000, 6000)
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
    p.act(
        "w1",
        "WO12",
        "check-out",
        {
            "lat": HH2[0],
            "lon": HH2[1],
            "accuracy_m": 10,
            "client_time": "2026-01-21T10:40:00+08:00",
            "record": {},
        },
        at="2026-01-21T10:40:00+08:00",
    )
    assert _found(p, "WO12")["resident_inactive"]["severity"] == "hard"
    r = p.call(
        "op",
        "POST",
        "/api/work-orders",
        {"resident_id": ids["R7"], "service_item_code": "bath_home", "source": "app"},
        at="2026-01-21T10:00:00+08:00",
        expect=409,
    )
    assert "deceased" in r.json()["detail"]
    # R7's voucher account: death (2026-01-20) outranks the lapsed assessment in February;
    # January, decided on its 1st, is unchanged.
    feb = account(p, "R7", "2026-02")
    assert (feb["credit_fen"], feb["reason"]) == (0, "deceased")
    assert account(p, "R7", "2026-01")["credit_fen"] == 80000

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
    exported: dict[str, int] = {}
    for line in csv_rows(
        p,
        "/api/reports/anomalies",
        {"month": "2026-01", "district": "330683", "provider": ids["P1"]},
    ):
        exported[line["rule_code"]] = exported.get(line["rule_code"], 0) + int(line["n"])
    assert exported == report["by_rule"]

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
        # After acknowledge, the worker in the room is proposed first, at 0 m, although W1's
        # registered position is ~12 km away.
        p.post("op", f"/api/alarms/{a1}/acknowledge", {}, expect=200)
        w1 = next(
            w for w in p.get("op", f"/api/providers/{ids['P1']}/workers") if w["id"] == ids["W1"]
        )
        first = p.get("op", f"/api/alarms/{a1}")["proposal"]["responders"][0]
        assert (first["responder_id"], first["on_site_worker"], first["distance_m"]) == (
            w1["responder_id"],
            True,
            0.0,
        )
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
        p.post("op", f"/api/alarms/{a1}/resolve", {}, expect=200)
        _close(p, a1, {"disposition": "test"})
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


# ---------------------------------------------------------------- §3.8 settlement


def batch(p: Platform, user: str, provider: str, month: str, expect: int = 201) -> Any:
    return p.post(
        user,
        "/api/settlement-batches",
        {"provider_id": p.ids[provider], "month": month},
        expect=expect,
    )


def batch_act(p: Platform, user: str, batch_id: int, action: str, expect: int = 200) -> Any:
    return p.call(
        user, "POST", f"/api/settlement-batches/{batch_id}/{action}", {}, expect=expect
    ).json()


def test_3_8_settlement_funding_split_clawback(platform: Platform) -> None:
    p, ids = platform, platform.ids
    # 1. P1's January batch: WO1 and WO2
    jan = batch(p, "pa1", "P1", "2026-01")
    assert [line["kind"] for line in jan["lines"]] == ["service", "service"]
    t = jan["totals"]
    assert (
        t["gross_fen"],
        t["subsidy_fen"],
        t["copay_fen"],
        t["payable_fen"],
        t["funding_fen"],
    ) == (24000, {"elderly_care_voucher": 12000}, 12000, 12000, {"central": 10200, "local": 1800})
    reasons = {x["work_order_id"]: x["reason"] for x in jan["excluded"]}
    expected = {
        "WO5": "worker_overlap",
        "WO6": "worker_overlap",
        "WO9": "dup_claim",
        "WO12": "resident_inactive",
        "WO11": "rejected",
        "WO8": "revisit_required",
        "WO10": "revisit_required",
        "WO2b": "not_verified",
        "WO7": "not_verified",
    }
    for name, reason in expected.items():
        assert reasons.get(ids[name]) == reason, (name, reasons.get(ids[name]))
    # 2. submit, approve: the orders are settled; one batch per provider and month
    batch_act(p, "pa1", jan["id"], "submit")
    batch_act(p, "pa1", jan["id"], "approve", expect=403)
    assert batch_act(p, "ca", jan["id"], "approve")["status"] == "approved"
    for name in ("WO1", "WO2"):
        assert p.get("op", f"/api/work-orders/{ids[name]}")["status"] == "settled"
    batch(p, "pa1", "P1", "2026-01", expect=409)
    batch(p, "pa2", "P1", "2026-02", expect=404)  # another provider's admin
    # 3. February: S1 + S2 verified, S3/S4 (W2, overlapping) not
    for name, item, start, end in (
        ("S1", "bath_home", "10:00", "10:45"),
        ("S2", "visit", "11:00", "11:20"),
    ):
        p.done_order(
            name,
            resident="R5",
            item=item,
            provider="P1",
            worker_user="w1",
            worker="W1",
            start=f"2026-02-03T{start}:00+08:00",
            end=f"2026-02-03T{end}:00+08:00",
            at=HB1,
        )
        p.act("ca", name, "verify", {}, at="2026-02-04T09:00:00+08:00")
    p.done_order(
        "S3",
        resident="R5",
        item="bath_home",
        provider="P1",
        worker_user="w2",
        worker="W2",
        start="2026-02-04T10:00:00+08:00",
        end="2026-02-04T11:00:00+08:00",
        at=HB1,
    )
    p.done_order(
        "S4",
        resident="R3",
        item="bath_home",
        provider="P1",
        worker_user="w2",
        worker="W2",
        start="2026-02-04T10:30:00+08:00",
        end="2026-02-04T11:30:00+08:00",
        at=HH1,
    )
    feb = batch(p, "pa1", "P1", "2026-02")
    t = feb["totals"]
    assert (t["gross_fen"], t["subsidy_fen"], t["copay_fen"], t["funding_fen"]) == (
        15000,
        {"elderly_care_voucher": 7500},
        7500,
        {"central": 6375, "local": 1125},
    )
    excluded = {x["work_order_id"]: x["reason"] for x in feb["excluded"]}
    assert (excluded.get(ids["S3"]), excluded.get(ids["S4"])) == ("worker_overlap",) * 2
    # 5. (before 4, which needs the anomaly decisions of §3.7) the spend report for January
    for n in (1, 2, 3):
        name = f"CVJ{n}"
        p.done_order(
            name,
            resident=f"CV{n}",
            item="home_care_hour",
            provider="P2",
            worker_user="w3",
            worker="W3",
            start=f"2026-01-2{n}T09:00:00+08:00",
            end=f"2026-01-2{n}T11:00:00+08:00",
            at=(29.6 + n / 1000, 120.8),
            quantity=2,
        )
        p.act("ca", name, "verify", {}, at=f"2026-01-2{n}T20:00:00+08:00")
    p2 = batch(p, "ca", "P2", "2026-01")
    assert p2["totals"]["subsidy_fen"] == {"elderly_care_voucher": 95000}
    batch_act(p, "pa2", p2["id"], "submit")
    batch_act(p, "ca", p2["id"], "approve")
    report = spend(p, "2026-01", "district,programme,funding")
    assert report["programmes"] == {"elderly_care_voucher": 107000}
    assert report["districts"] == {"330683001": 92000, "330683002": 15000}
    assert report["funding"] == {"central": 90950, "local": 16050}
    # 4. clawback: a denied revisit, confirmed, rejects the settled claim
    revisit = p.post(
        "op",
        f"/api/work-orders/{ids['WO1']}/revisits",
        {"channel": "phone", "reached": True, "service_confirmed": False},
        at="2026-02-10T10:00:00+08:00",
    )
    assert revisit["reached"] is True
    denied = [
        a
        for a in p.get("op", f"/api/work-orders/{ids['WO1']}")["anomalies"]
        if a["rule_code"] == "revisit_denied"
    ]
    assert [a["severity"] for a in denied] == ["hard"]
    decided = p.call(
        "ca",
        "POST",
        f"/api/anomalies/{denied[0]['id']}/decide",
        {"decision": "confirmed", "note": "回访否认"},
        at="2026-02-10T11:00:00+08:00",
    )
    assert decided.status_code == 200, decided.text
    p.act(
        "ca", "WO1", "reject-claim", {"anomaly_id": denied[0]["id"]}, at="2026-02-10T11:05:00+08:00"
    )
    march = batch(p, "pa1", "P1", "2026-03")
    claws = [line for line in march["lines"] if line["kind"] == "clawback"]
    assert len(claws) == 1
    c = claws[0]
    assert (c["work_order_id"], c["price_fen"], c["subsidy"], c["funding"]) == (
        ids["WO1"],
        -12000,
        {"elderly_care_voucher": -6000},
        {"central": -5100, "local": -900},
    )
    assert march["totals"]["payable_fen"] == -6000


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
    for severity, due in (("orange", "2026-01-28"), ("yellow", "2026-02-05")):
        other = p.post(
            "op",
            "/api/complaints",
            {
                "hotline_call_id": complaint_call["id"],
                "provider_id": ids["P2"],
                "severity": severity,
            },
            at="2026-01-21T09:13:00+08:00",
        )
        assert datetime.fromisoformat(other["due_at"]) == datetime.fromisoformat(
            f"{due}T09:00:00+08:00"
        ), severity

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
    (line,) = csv_rows(
        p,
        "/api/reports/revisits",
        {"from": "2026-03-01", "to": "2026-04-01", "provider": ids["P3"]},
    )
    assert {k: line[k] for k in ("provider_id", "revisits", "reached", "n1", "n2", "n3", "n4")} == {
        "provider_id": str(ids["P3"]),
        "revisits": "12",
        "reached": "10",
        "n1": "4",
        "n2": "4",
        "n3": "1",
        "n4": "1",
    }
    assert (line["reach_rate"], line["satisfaction_rate"]) == ("0.8333", "0.8")
    # 4. (coverage report, §2.13) belongs with the subsidy module's reports.


# ---------------------------------------------------------------- §3.10.4 coverage


def test_3_10_4_voucher_coverage(platform: Platform) -> None:
    p = platform
    got = p.get(
        "ca",
        "/api/reports/coverage",
        params={"programme": "elderly_care_voucher", "month": "2026-01", "district": "330683002"},
    )
    assert (got["eligible"], got["served"], got["rate"]) == (5, 3, 0.6)
    served = {r["resident_id"] for r in got["rows"] if r["served"]}
    assert served == {p.ids[f"CV{n}"] for n in (1, 2, 3)}
    lines = csv_rows(
        p,
        "/api/reports/coverage",
        {"programme": "elderly_care_voucher", "month": "2026-01", "district": "330683002"},
    )
    assert sorted((int(x["resident_id"]), x["served"]) for x in lines) == sorted(
        (p.ids[f"CV{n}"], str(n <= 3)) for n in range(1, 6)
    )


# ---------------------------------------------------------------- §3.11 facility awards


def test_3_11_facility_awards_linyi_bands(platform: Platform) -> None:
    p, ids = platform, platform.ids
    # 1. an amount outside the seed's band is refused at publication, naming band and quote
    over = draft(
        p, "facility_grade_award", "371300", "2020-01-01", award_rules(3500000), source_doc=SEED_000
    )
    detail = publish(p, over, expect=422)["detail"]
    assert "1000000-3000000" in detail
    assert "日间照料中心和农村幸福院每年1-3万元的差异化奖补" in detail
    # 2. ratings
    for key, level in (("LNH", 3), ("LDC", 5)):
        p.post(
            "ca",
            f"/api/facilities/{ids[key]}/ratings",
            {
                "scheme": "养老服务设施等级评定",
                "level": level,
                "rated_on": "2021-03-01",
                "valid_from": "2021-01-01",
                "valid_to": "2022-01-01",
            },
        )
    p.call(
        "ca",
        "POST",
        f"/api/facilities/{ids['LNH']}/ratings",
        {
            "scheme": "养老服务设施等级评定",
            "level": 6,
            "rated_on": "2021-03-01",
            "valid_from": "2021-01-01",
        },
        expect=422,
    )
    # 3. the year's run: LNH grade 3 -> 50000 yuan, LDC grade 5 -> 30000 yuan; a facility of
    # the district without a rating gets none
    ids["LNH2"] = p.post(
        "adm",
        "/api/facilities",
        {
            "code": "LY-NH2",
            "name": "临沂未评级养老院",
            "kind": "nursing_home",
            "district_code": "371300",
        },
    )["id"]
    body = {"programme_code": "facility_grade_award", "year": 2021, "district_code": "371300"}
    run = p.post("ca", "/api/facility-awards/run", body, expect=200)
    got = {a["facility_id"]: a["amount_fen"] for a in run["awards"]}
    assert got == {ids["LNH"]: 5000000, ids["LDC"]: 3000000}
    listed = p.get("ca", "/api/facility-awards", params={"year": 2021, "district": "371300"})
    assert {a["facility_id"]: a["amount_fen"] for a in listed} == got
    # running again changes nothing
    again = p.post("ca", "/api/facility-awards/run", body, expect=200)
    assert {a["facility_id"]: a["amount_fen"] for a in again["awards"]} == got


# ---------------------------------------------------------------- §3.12 audit


def test_3_12_audit_and_immutability(platform: Platform) -> None:
    p, ids = platform, platform.ids
    events = p.get("op", f"/api/work-orders/{ids['WO1']}/events")
    assert [e["action"] for e in events][:2] == ["created", "dispatch"]
    # Even the owner cannot rewrite it (the app's role may not even try: test_db_roles.py).
    with psycopg.connect(p.settings.migration_url) as conn:
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
        # as keys: a revisit's channel may be the value "phone" (§3.8 step 4 adds one)
        for secret in ('"id_number":', '"address":', '"phone":', "嵊州测试路1号", "床位戊"):
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


def test_3_12_policy_and_settlement_permissions(platform: Platform) -> None:
    p = platform
    body = {
        "programme_code": "tekun_care",
        "district_code": "330683",
        "effective_from": "2030-01-01",
        "source_doc": SEED_001,
        "rules": care_rules(CARE_TABLE),
    }
    p.call("w1", "POST", "/api/policy-versions", body, expect=403)
    p.call("adm", "POST", "/api/policy-versions/1/publish", {}, expect=403)  # ca publishes
    batches = p.get("ca", "/api/settlement-batches", params={"provider": p.ids["P1"]})
    draft_batch = next(b for b in batches if b["status"] in ("draft", "submitted"))
    p.call("pa1", "POST", f"/api/settlement-batches/{draft_batch['id']}/approve", {}, expect=403)
    # a published version cannot be altered even with database access
    with psycopg.connect(p.settings.database_url) as conn, pytest.raises(psycopg.Error):
        conn.execute("UPDATE policy_versions SET rules = '[]' WHERE id = %s", (p.ids["PV-b"],))
    with psycopg.connect(p.settings.database_url) as conn, pytest.raises(psycopg.Error):
        conn.execute("DELETE FROM subsidy_ledger")


# ---------------------------------------------------------------- issue 8 item 1: home beds


def test_home_bed_detail_contract_provider_devices(platform: Platform) -> None:
    """A home care bed shows its facility and provider, its residents' home-bed agreement
    (the contract and package) and the devices installed there; never its address."""
    p, ids = platform, platform.ids
    agreement = p.post(
        "ca",
        "/api/care-agreements",
        {
            "resident_id": ids["R5"],
            "provider_id": ids["P1"],
            "kind": "home_bed",
            "package": {"visit": {"per": "month", "count": 4}},
            "valid_from": "2025-12-01",
            "signed_on": "2025-11-28",
            "doc_ref": "床位协议-TEST-1",
        },
    )
    bed = p.get("op", f"/api/home-beds/{ids['HB1']}")
    assert (bed["facility"]["id"], bed["district_code"], bed["liability_insured"]) == (
        ids["F1"],
        "330683001",
        True,
    )
    assert [x["id"] for x in bed["providers"]] == [ids["P1"]]
    assert bed["residents"] == [ids["R5"]]
    (contract,) = bed["agreements"]
    assert (contract["id"], contract["provider_id"], contract["package"]) == (
        agreement["id"],
        ids["P1"],
        {"visit": {"per": "month", "count": 4}},
    )
    assert contract["valid_from"] == "2025-12-01" and contract["valid_to"] is None
    installed = {d["id"]: d["kind"] for d in bed["devices"]}
    assert installed == {
        ids["KIT5"]["device_id"]: "home_kit",
        ids["SOS5"]["device_id"]: "sos_button",
    }
    assert "嵊州测试路1号" not in json.dumps(bed, ensure_ascii=False)
    p.call("op", "GET", "/api/home-beds/999999999", expect=404)
    p.call("w1", "GET", f"/api/home-beds/{ids['HB1']}", expect=403)


# ---------------------------------------------------------------- §2.13 provider and 探访 reports


def test_provider_and_visit_coverage_reports(platform: Platform) -> None:
    """The supervisor's provider KPIs (§2.13: on time, rejects, findings, EVV against 90 %,
    satisfaction, complaints) and 探访 coverage (seed rows E6-E7), on the data above."""
    p, ids = platform, platform.ids
    march = p.get(
        "ca",
        "/api/reports/providers",
        params={"month": "2026-03", "district": "330683", "provider": ids["P3"]},
    )
    (p3,) = march["providers"]
    assert {k: v for k, v in p3.items() if k != "name"} == {
        "provider_id": ids["P3"],
        "dispatched": 12,
        "rejected": 0,
        "reject_rate": 0.0,
        "visits": 12,
        "on_time": 12,
        "on_time_rate": 1.0,
        "flagged": 0,
        "anomaly_rate": 0.0,
        "verified": 12,
        "evv_complete": 12,
        "evv_rate": 1.0,
        "evv_target_met": True,
        "revisits_reached": 10,
        "satisfaction_rate": 0.8,
        "complaints": 0,
    }
    january = p.get(
        "ca", "/api/reports/providers", params={"month": "2026-01", "district": "330683"}
    )
    by_id = {x["provider_id"]: x for x in january["providers"]}
    assert by_id[ids["P2"]]["complaints"] == 3  # §3.10 step 2: red, orange, yellow
    (line,) = csv_rows(
        p,
        "/api/reports/providers",
        {"month": "2026-03", "district": "330683", "provider": ids["P3"]},
    )
    assert (line["visits"], line["evv_rate"], line["evv_target_met"]) == ("12", "1.0", "True")

    # 探访: R5 and CV4 live alone from 2026; R5's verified `visit` on 2026-02-03 (S2, §3.8)
    for key in ("R5", "CV4"):
        p.post(
            "ca",
            f"/api/residents/{ids[key]}/categories",
            {"category": "living_alone", "valid_from": "2026-01-01", "source": "staff"},
        )
    feb = p.get("ca", "/api/reports/visits", params={"month": "2026-02", "district": "330683"})
    assert (feb["targets"], feb["visited"], feb["rate"]) == (2, 1, 0.5)
    assert feb["by_group"]["living_alone"] == {"targets": 2, "visited": 1, "rate": 0.5}
    visited = {r["resident_id"]: r["visited"] for r in feb["rows"]}
    assert visited == {ids["R5"]: True, ids["CV4"]: False}
    # R2, dispersed 特困, counts in September 2022 and not after her death on 2022-09-10
    for month, targets in (("2022-09", 1), ("2022-10", 0)):
        got = p.get(
            "ca",
            "/api/reports/visits",
            params={"month": month, "district": "330683", "groups": "tekun_dispersed"},
        )
        assert (got["targets"], got["visited"]) == (targets, 0), month
    r = p.call(
        "ca",
        "GET",
        "/api/reports/visits",
        params={"month": "2026-02", "district": "330683", "groups": "rich"},
        expect=422,
    )
    assert "rich" in r.json()["detail"]


# ---------------------------------------------------------------- §4 Q20 provider appeal


def test_provider_appeal_evidence_before_the_decision(platform: Platform) -> None:
    """A provider admin attaches evidence to an open finding of its own order; civil_affairs
    sees it with the finding; after the decision no more evidence is taken."""
    p, ids = platform, platform.ids
    overlap = next(
        a
        for a in p.get("pa1", f"/api/work-orders/{ids['WO5']}")["anomalies"]
        if a["rule_code"] == "worker_overlap"
    )
    body = {
        "note": "两单为同一楼内相邻住户",
        "files": [{"name": "排班表.pdf", "sha256": "ab" * 32}],
    }
    path = f"/api/anomalies/{overlap['id']}/evidence"
    p.call("pa2", "POST", path, body, expect=404)  # another provider's finding
    p.call("w2", "POST", path, body, expect=403)
    p.call("pa1", "POST", path, {**body, "files": [{"name": "x", "sha256": "nope"}]}, expect=422)
    added = p.post("pa1", path, body, at="2026-01-13T10:00:00+08:00")
    (submitted,) = added["evidence_submitted"]
    assert (submitted["by_user"], submitted["files"]) == ("pa1", body["files"])
    shown = p.get("ca", f"/api/anomalies/{overlap['id']}")
    assert shown["evidence_submitted"][0]["note"] == body["note"]
    p.call("pa2", "GET", f"/api/anomalies/{overlap['id']}", expect=404)
    p.post(
        "ca",
        f"/api/anomalies/{overlap['id']}/decide",
        {"decision": "dismissed", "note": "相邻住户，核实无误"},
        expect=200,
    )
    late = p.call("pa1", "POST", path, body, expect=409)
    assert "dismissed" in late.json()["detail"]
