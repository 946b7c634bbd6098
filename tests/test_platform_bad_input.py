"""Bad input to the platform layer's write endpoints: a clear 4xx and nothing half-written.

One table of cases over every write endpoint of issue 8 (registry, assessments, catalogue
and providers, work orders, hotline, anomalies, policies, settlement, awards): bad ids,
wrong types, out-of-range values, conflicting states and unknown foreign keys. Each case
asserts the status, that the ``detail`` names what was wrong, and that no platform table
changed at all (row count and a digest of every row, so an UPDATE left behind by a
refused request is caught too, not only an INSERT).

In process (FastAPI's TestClient, no background jobs), so the only writer is the request.
"""

from __future__ import annotations

import csv
import io
import json
import secrets
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from psycopg import sql

from eldercare.app import create_app
from eldercare.config import Settings
from eldercare.http.routes import (
    anomalies,
    hotline,
    people,
    providers,
    registry,
    settlement,
    subsidies,
    work_orders,
)
from eldercare.platform import reports
from eldercare.registry import auth
from tests.alarm_support import RecordingPublisher, one_row

PASSWORD = "bad-input-password-1"
TAG = secrets.token_hex(3)
# Every table a platform write may touch (migrations 0040-0054, and the registry tables the
# platform endpoints write).
TABLES = [
    "districts",
    "facilities",
    "home_beds",
    "households",
    "residents",
    "reveals",
    "responders",
    "resident_categories",
    "resident_status_periods",
    "assessments",
    "service_items",
    "providers",
    "provider_contracts",
    "workers",
    "care_agreements",
    "hotline_calls",
    "work_orders",
    "work_order_events",
    "revisits",
    "complaints",
    "anomalies",
    "anomaly_decisions",
    "idempotency_keys",
    "programmes",
    "policy_versions",
    "entitlement_runs",
    "entitlements",
    "subsidy_ledger",
    "settlement_batches",
    "settlement_lines",
    "facility_ratings",
    "facility_awards",
    "alarm_events",
]
NOWHERE = 10**9  # an id no row has
NO_UUID = str(uuid.UUID(int=0))


def snapshot(conn: psycopg.Connection) -> dict[str, tuple[int, str]]:
    parts = [
        sql.SQL(
            "SELECT {name}, count(*), md5(coalesce(string_agg(t::text, '|' ORDER BY t::text),"
            " '')) FROM {table} t"
        ).format(name=sql.Literal(t), table=sql.Identifier(t))
        for t in TABLES
    ]
    query = sql.SQL(" UNION ALL ").join(parts)
    return {r[0]: (r[1], r[2]) for r in conn.execute(query).fetchall()}


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[TestClient]:
    with psycopg.connect(settings.database_url) as conn:
        for name, role in (("adm", "admin"), ("ca", "civil_affairs"), ("op", "operator")):
            auth.create_user(conn, f"{name}-{TAG}", PASSWORD, role)
        auth.create_user(conn, f"as-{TAG}", PASSWORD, "assessor")
        conn.commit()
    app = create_app(
        settings.model_copy(update={"environment": "test", "revisit_sample_pct": 0}),
        publisher=RecordingPublisher(),
        background=False,
    )
    with TestClient(app) as client:
        yield client


class Caller:
    def __init__(self, api: TestClient) -> None:
        self.api = api
        self.tokens: dict[str, str] = {}

    def headers(self, user: str) -> dict[str, str]:
        if user not in self.tokens:
            r = self.api.post(
                "/api/auth/token", data={"username": f"{user}-{TAG}", "password": PASSWORD}
            )
            assert r.status_code == 200, r.text
            self.tokens[user] = r.json()["access_token"]
        return {"Authorization": "Bearer " + self.tokens[user]}

    def __call__(
        self,
        user: str,
        method: str,
        path: str,
        body: Any = None,
        at: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> Any:
        h = {**self.headers(user), **(extra or {})}
        if at:
            h["X-Eldercare-Test-Now"] = at
        return self.api.request(method, path, json=body, headers=h)

    def made(self, user: str, path: str, body: Any, at: str | None = None) -> dict[str, Any]:
        r = self(user, "POST", path, body, at)
        assert r.status_code in (200, 201), (path, r.status_code, r.text)
        return dict(r.json())


@pytest.fixture(scope="module")
def caller(api: TestClient) -> Caller:
    return Caller(api)


@pytest.fixture(scope="module")
def world(caller: Caller, settings: Settings) -> dict[str, Any]:
    """A district with a facility, a household, a resident, a provider with a worker and a
    contract, a second provider without one, a draft policy, an order in each early state,
    a draft settlement batch and a closed complaint: the targets of the bad requests."""
    c = caller
    ids: dict[str, Any] = {"tag": TAG}
    root = c(
        "adm", "POST", "/api/districts", {"code": "000000", "name": "全国", "level": "country"}
    )
    assert root.status_code in (201, 409)
    ids["D"] = code = "8" + str(int(TAG, 16) % 10**8).zfill(8)
    c.made(
        "adm",
        "/api/districts",
        {"code": code, "name": "坏输入街道", "parent_code": "000000", "level": "street"},
    )
    ids["F"] = c.made(
        "adm",
        "/api/facilities",
        {"code": f"BAD-{TAG}", "name": "坏输入中心", "district_code": code},
    )["id"]
    ids["HB"] = c.made(
        "adm",
        "/api/home-beds",
        {"facility_id": ids["F"], "address": "坏输入路1号", "district_code": code},
    )["id"]
    ids["HH"] = c.made(
        "adm",
        "/api/households",
        {"address": "坏输入路2号", "district_code": code, "lat": 29.5, "lon": 120.8},
    )["id"]
    ids["R"] = c.made(
        "adm",
        "/api/residents",
        {"name": "坏输入老人", "birth_date": "1945-01-01", "household_id": ids["HH"]},
    )["id"]
    c.made(
        "adm",
        f"/api/residents/{ids['R']}/categories",
        {"category": "dibao", "valid_from": "2024-01-01", "source": "staff"},
    )
    assessment = {
        "total_score": 50,
        "reason": "initial",
        "assessed_at": "2026-01-01T09:00:00+08:00",
        "effective_from": "2026-01-01",
        "assessor": "评估员",
    }
    ids["AS"] = c.made("as", f"/api/residents/{ids['R']}/assessments", assessment)["id"]
    c.made("as", f"/api/assessments/{ids['AS']}/revoke", {"reason": "录入错误"})
    ids["ITEM"] = item = f"bad_{TAG}"
    c.made(
        "adm",
        "/api/service-items",
        {
            "code": item,
            "name_zh": "坏输入助浴",
            "category": "bath",
            "setting": "home",
            "unit": "visit",
            "min_duration_min": 30,
            "max_duration_min": 120,
        },
    )
    ids["P"] = c.made("adm", "/api/providers", {"name": f"坏输入服务商{TAG}", "kind": "company"})[
        "id"
    ]
    ids["P_NO_CONTRACT"] = c.made(
        "adm", "/api/providers", {"name": f"无合同服务商{TAG}", "kind": "company"}
    )["id"]
    ids["W"] = c.made("adm", f"/api/providers/{ids['P']}/workers", {"name": "服务员"})["id"]
    ids["W_OTHER"] = c.made(
        "adm", f"/api/providers/{ids['P_NO_CONTRACT']}/workers", {"name": "别家服务员"}
    )["id"]
    c.made(
        "adm",
        f"/api/providers/{ids['P']}/contracts",
        {"district_code": code, "valid_from": "2022-01-01", "price_list": {item: 12000}},
    )
    with psycopg.connect(settings.database_url) as conn:
        auth.create_user(conn, f"w-{TAG}", PASSWORD, "provider_worker", worker_id=ids["W"])
        auth.create_user(conn, f"pa-{TAG}", PASSWORD, "provider_admin", provider_id=ids["P"])
        conn.commit()
    at = "2026-01-05T09:00:00+08:00"
    order = {"resident_id": ids["R"], "service_item_code": item, "source": "app"}
    ids["WO_CREATED"] = c.made("op", "/api/work-orders", order, at)["id"]
    ids["WO_DISPATCHED"] = c.made("op", "/api/work-orders", order, at)["id"]
    c.made("op", f"/api/work-orders/{ids['WO_DISPATCHED']}/dispatch", {"provider_id": ids["P"]}, at)
    # accepted, then checked in under an idempotency key
    ids["WO_CHECKED_IN"] = c.made("op", "/api/work-orders", order, at)["id"]
    checked_in = f"/api/work-orders/{ids['WO_CHECKED_IN']}"
    c.made("op", checked_in + "/dispatch", {"provider_id": ids["P"]}, at)
    c.made("w", checked_in + "/accept", {}, at)
    r = c("w", "POST", checked_in + "/check-in", POINT, NOW, {"Idempotency-Key": f"k-{TAG}"})
    assert r.status_code == 200, r.text
    ids["PROG"] = prog = f"bad_{TAG}"
    c.made(
        "adm",
        "/api/programmes",
        {
            "code": prog,
            "name_zh": "坏输入补贴",
            "kind": "cash_allowance",
            "payee": "resident",
            "period": "month",
        },
    )
    ids["PV"] = c.made(
        "adm",
        "/api/policy-versions",
        {
            "programme_code": prog,
            "district_code": code,
            "effective_from": "2026-01-01",
            "rules": [{"code": "x", "formula": {"type": "fixed", "amount_fen": 100}}],
            "source_doc": "test",
        },
    )["id"]
    ids["PV_WITHDRAWN"] = c.made(
        "adm",
        "/api/policy-versions",
        {
            "programme_code": prog,
            "district_code": code,
            "effective_from": "2027-01-01",
            "rules": [{"code": "x", "formula": {"type": "fixed", "amount_fen": 100}}],
            "source_doc": "test",
        },
    )["id"]
    c.made("ca", f"/api/policy-versions/{ids['PV_WITHDRAWN']}/withdraw", {})
    ids["BATCH"] = c.made(
        "pa", "/api/settlement-batches", {"provider_id": ids["P"], "month": "2020-01"}
    )["id"]
    call = c.made(
        "op",
        "/api/hotline/calls",
        {"started_at": at, "request_type": "complaint", "resident_id": ids["R"]},
        at,
    )
    ids["CALL"] = call["id"]
    ids["CALL_REF"] = c.made(
        "op",
        "/api/hotline/calls",
        {"started_at": at, "request_type": "referral", "resident_id": ids["R"]},
        at,
    )["id"]
    ids["COMPLAINT"] = c.made(
        "op", "/api/complaints", {"hotline_call_id": call["id"], "severity": "red"}, at
    )["id"]
    c.made("op", f"/api/complaints/{ids['COMPLAINT']}/close", {"resolution": "已处理"}, at)
    return ids


def fill(value: Any, ids: dict[str, Any]) -> Any:
    """``"{R}"`` becomes the id itself (an int stays an int); other strings are formatted."""
    if isinstance(value, str):
        if value.startswith("{") and value.endswith("}") and value[1:-1] in ids:
            return ids[value[1:-1]]
        return value.format(**ids) if "{" in value else value
    if isinstance(value, dict):
        return {fill(k, ids): fill(v, ids) for k, v in value.items()}
    if isinstance(value, list):
        return [fill(v, ids) for v in value]
    return value


NOW = "2026-01-06T10:00:00+08:00"
POINT = {"lat": 29.5, "lon": 120.8, "accuracy_m": 10, "client_time": NOW}
WO = "/api/work-orders/{WO_CREATED}"
WO_D = "/api/work-orders/{WO_DISPATCHED}"
ASSESS = {
    "total_score": 50,
    "reason": "initial",
    "assessed_at": NOW,
    "effective_from": "2026-01-01",
    "assessor": "评估员",
}
ITEM = {"code": "x_{tag}", "name_zh": "项", "category": "bath", "setting": "home", "unit": "visit"}
POLICY = {
    "programme_code": "{PROG}",
    "district_code": "{D}",
    "effective_from": "2027-01-01",
    "rules": [{"code": "x", "formula": {"type": "fixed", "amount_fen": 100}}],
    "source_doc": "test",
}
CALL = {"started_at": NOW, "request_type": "referral", "resident_id": "{R}"}

# (case id, user, method, path, body, status, a word the detail must contain)
CASES: list[tuple[str, str, str, str, Any, int, str]] = [
    # ---- districts, facilities, home beds, households, residents
    ("district code too short", "adm", "POST", "/api/districts",
     {"code": "12345", "name": "短", "parent_code": "000000", "level": "county"}, 422, "code"),
    ("district unknown parent", "adm", "POST", "/api/districts",
     {"code": "123456", "name": "孤", "parent_code": "654321", "level": "county"}, 404, "parent"),
    ("district duplicate", "adm", "POST", "/api/districts",
     {"code": "{D}", "name": "重", "parent_code": "000000", "level": "street"}, 409, "already"),
    ("district country with parent", "adm", "POST", "/api/districts",
     {"code": "000001", "name": "国", "parent_code": "000000", "level": "country"}, 422, "parent"),
    ("district by operator", "op", "POST", "/api/districts",
     {"code": "123457", "name": "x", "parent_code": "000000", "level": "county"}, 403, "operator"),
    ("facility unknown district", "adm", "POST", "/api/facilities",
     {"code": "BAD2-{tag}", "name": "x", "district_code": "999999999"}, 404, "district"),
    ("facility lat out of range", "adm", "POST", "/api/facilities",
     {"code": "BAD3-{tag}", "name": "x", "lat": 91, "lon": 120}, 422, "lat"),
    ("facility lat wrong type", "adm", "POST", "/api/facilities",
     {"code": "BAD4-{tag}", "name": "x", "lat": "north", "lon": 120}, 422, "lat"),
    ("facility duplicate code", "adm", "POST", "/api/facilities",
     {"code": "BAD-{tag}", "name": "x"}, 409, "already"),
    ("facility patch unknown", "adm", "PATCH", f"/api/facilities/{NOWHERE}",
     {"tekun_institution": True}, 404, "facility"),
    ("facility patch unknown district", "adm", "PATCH", "/api/facilities/{F}",
     {"district_code": "999999999"}, 404, "district"),
    ("facility patch latitude 91", "adm", "PATCH", "/api/facilities/{F}", {"lat": 91}, 422,
     "lat"),
    ("facility patch name to null", "adm", "PATCH", "/api/facilities/{F}", {"name": None}, 422,
     "name"),
    ("facility patch its code", "adm", "PATCH", "/api/facilities/{F}", {"code": "NEW"}, 422,
     "code"),
    ("facility patch by operator", "op", "PATCH", "/api/facilities/{F}",
     {"tekun_institution": True}, 403, "operator"),
    ("home bed unknown facility", "adm", "POST", "/api/home-beds",
     {"facility_id": NOWHERE, "address": "x"}, 404, "facilit"),
    ("home bed closed before established", "adm", "POST", "/api/home-beds",
     {"facility_id": "{F}", "address": "x", "established_on": "2026-01-02",
      "closed_on": "2026-01-01"}, 422, "closed_on"),
    ("home bed patch unknown", "adm", "PATCH", f"/api/home-beds/{NOWHERE}",
     {"liability_insured": True}, 404, "home bed"),
    ("home bed patch closed before established", "adm", "PATCH", "/api/home-beds/{HB}",
     {"established_on": "2026-01-02", "closed_on": "2026-01-01"}, 422, "closed_on"),
    ("home bed patch unknown district", "adm", "PATCH", "/api/home-beds/{HB}",
     {"district_code": "999999999"}, 404, "district"),
    ("home bed id not a number", "adm", "PATCH", "/api/home-beds/abc", {}, 422, "home_bed_id"),
    ("household half a point", "adm", "POST", "/api/households",
     {"address": "x", "district_code": "{D}", "lat": 29.5}, 422, "lon"),
    ("household unknown district", "adm", "POST", "/api/households",
     {"address": "x", "district_code": "999999999"}, 404, "district"),
    ("resident nowhere", "adm", "POST", "/api/residents", {"name": "x"}, 422, "household_id"),
    ("resident unknown household", "adm", "POST", "/api/residents",
     {"name": "x", "household_id": NOWHERE}, 404, "household"),
    ("resident bad birth date", "adm", "POST", "/api/residents",
     {"name": "x", "household_id": "{HH}", "birth_date": "1945-13-01"}, 422, "birth_date"),
    ("resident unknown field", "adm", "POST", "/api/residents",
     {"name": "x", "household_id": "{HH}", "shoe_size": 40}, 422, "shoe_size"),
    ("reveal unknown resident", "op", "POST", f"/api/residents/{NOWHERE}/reveal",
     {"reason": "核实地址"}, 404, "resident"),
    ("category unknown resident", "adm", "POST", f"/api/residents/{NOWHERE}/categories",
     {"category": "dibao", "valid_from": "2024-01-01", "source": "staff"}, 404, "resident"),
    ("category tekun without mode", "adm", "POST", "/api/residents/{R}/categories",
     {"category": "tekun", "valid_from": "2024-01-01", "source": "staff"}, 422, "support_mode"),
    ("category overlaps", "adm", "POST", "/api/residents/{R}/categories",
     {"category": "dibao", "valid_from": "2025-01-01", "source": "staff"}, 409, "already"),
    ("category ends before it starts", "adm", "POST", "/api/residents/{R}/categories",
     {"category": "dibian", "valid_from": "2024-01-01", "valid_to": "2023-01-01",
      "source": "staff"}, 422, "valid_to"),
    ("category unknown kind", "adm", "POST", "/api/residents/{R}/categories",
     {"category": "rich", "valid_from": "2024-01-01", "source": "staff"}, 422, "category"),
    ("status period death with an end", "adm", "POST", "/api/residents/{R}/status-periods",
     {"status": "deceased", "from": NOW, "to": "2026-02-01T00:00:00+08:00", "source": "staff"},
     422, "death"),
    ("status period naive time", "adm", "POST", "/api/residents/{R}/status-periods",
     {"status": "away", "from": "2026-01-01T08:00:00", "source": "staff"}, 422, "from"),
    ("status period unknown resident", "adm", "POST",
     f"/api/residents/{NOWHERE}/status-periods",
     {"status": "away", "from": NOW, "source": "staff"}, 404, "resident"),
    ("death batch with one unknown resident", "ca", "POST", "/api/integrations/death-records",
     {"records": [{"resident_id": "{R}", "died_at": NOW, "source_ref": "a"},
                  {"resident_id": NOWHERE, "died_at": NOW, "source_ref": "b"}]}, 404, "resident"),
    ("death batch empty", "ca", "POST", "/api/integrations/death-records", {"records": []},
     422, "records"),
    # ---- assessments
    ("assessment score 91", "as", "POST", "/api/residents/{R}/assessments",
     {**ASSESS, "total_score": 91}, 422, "total_score"),
    ("assessment score as text", "as", "POST", "/api/residents/{R}/assessments",
     {**ASSESS, "total_score": "fifty"}, 422, "total_score"),
    ("assessment unknown resident", "as", "POST", f"/api/residents/{NOWHERE}/assessments",
     ASSESS, 404, "resident"),
    ("assessment valid_until before effective_from", "as", "POST",
     "/api/residents/{R}/assessments", {**ASSESS, "valid_until": "2025-12-31"}, 422,
     "valid_until"),
    ("assessment by operator", "op", "POST", "/api/residents/{R}/assessments", ASSESS, 403,
     "operator"),
    ("revoke unknown assessment", "as", "POST", f"/api/assessments/{NOWHERE}/revoke",
     {"reason": "x"}, 404, "assessment"),
    ("revoke twice", "as", "POST", "/api/assessments/{AS}/revoke", {"reason": "x"}, 409,
     "revoked"),
    # ---- catalogue, providers, workers, contracts, agreements
    ("service item bad code", "adm", "POST", "/api/service-items", {**ITEM, "code": "Bath!"},
     422, "code"),
    ("service item duplicate", "adm", "POST", "/api/service-items", {**ITEM, "code": "{ITEM}"},
     409, "already"),
    ("service item max below min", "adm", "POST", "/api/service-items",
     {**ITEM, "min_duration_min": 60, "max_duration_min": 30}, 422, "max_duration_min"),
    ("service item patch unknown", "adm", "PATCH", "/api/service-items/nope_{tag}",
     {"active": False}, 404, "nope_"),
    ("service item patch min above max", "adm", "PATCH", "/api/service-items/{ITEM}",
     {"min_duration_min": 200}, 422, "duration"),
    ("provider of kind facility without one", "adm", "POST", "/api/providers",
     {"name": "x", "kind": "facility"}, 422, "facility_id"),
    ("provider unknown facility", "adm", "POST", "/api/providers",
     {"name": "x", "kind": "facility", "facility_id": NOWHERE}, 404, "facilit"),
    ("provider bad credit code", "adm", "POST", "/api/providers",
     {"name": "x", "kind": "company", "credit_code": "123"}, 422, "credit_code"),
    ("provider status unknown provider", "ca", "POST", f"/api/providers/{NOWHERE}/status",
     {"status": "suspended", "reason": "x"}, 404, "provider"),
    ("provider status unknown value", "ca", "POST", "/api/providers/{P}/status",
     {"status": "vanished", "reason": "x"}, 422, "status"),
    ("worker unknown provider", "adm", "POST", f"/api/providers/{NOWHERE}/workers",
     {"name": "x"}, 404, "provider"),
    ("worker half a responder position", "adm", "POST", "/api/providers/{P}/workers",
     {"name": "x", "responder_lat": 29.5}, 422, "responder_lon"),
    ("worker unknown responder", "adm", "POST", "/api/providers/{P}/workers",
     {"name": "x", "responder_id": NOWHERE}, 404, "responder"),
    ("contract negative price", "adm", "POST", "/api/providers/{P}/contracts",
     {"district_code": "{D}", "valid_from": "2022-01-01", "price_list": {"{ITEM}": -1}}, 422,
     "negative"),
    ("contract unknown district", "adm", "POST", "/api/providers/{P}/contracts",
     {"district_code": "999999999", "valid_from": "2022-01-01", "price_list": {"{ITEM}": 1}},
     404, "district"),
    ("contract unknown provider", "adm", "POST", f"/api/providers/{NOWHERE}/contracts",
     {"district_code": "{D}", "valid_from": "2022-01-01", "price_list": {"{ITEM}": 1}}, 404,
     "provider"),
    ("contract prices an unknown item", "adm", "POST", "/api/providers/{P}/contracts",
     {"district_code": "{D}", "valid_from": "2022-01-01", "price_list": {"nope_{tag}": 1}},
     404, "nope_"),
    ("contract price as text", "adm", "POST", "/api/providers/{P}/contracts",
     {"district_code": "{D}", "valid_from": "2022-01-01", "price_list": {"{ITEM}": "many"}},
     422, "price_list"),
    ("agreement unknown resident", "ca", "POST", "/api/care-agreements",
     {"resident_id": NOWHERE, "provider_id": "{P}", "kind": "private",
      "valid_from": "2026-01-01", "signed_on": "2026-01-01"}, 404, "resident"),
    ("agreement unknown provider", "ca", "POST", "/api/care-agreements",
     {"resident_id": "{R}", "provider_id": NOWHERE, "kind": "private",
      "valid_from": "2026-01-01", "signed_on": "2026-01-01"}, 404, "provider"),
    ("agreement ends before it starts", "ca", "POST", "/api/care-agreements",
     {"resident_id": "{R}", "provider_id": "{P}", "kind": "private", "valid_from": "2026-01-01",
      "valid_to": "2025-01-01", "signed_on": "2026-01-01"}, 422, "valid_to"),
    # ---- work orders
    ("order unknown resident", "op", "POST", "/api/work-orders",
     {"resident_id": NOWHERE, "service_item_code": "{ITEM}"}, 404, "resident"),
    ("order unknown item", "op", "POST", "/api/work-orders",
     {"resident_id": "{R}", "service_item_code": "nope_{tag}"}, 404, "nope_"),
    ("order zero quantity", "op", "POST", "/api/work-orders",
     {"resident_id": "{R}", "service_item_code": "{ITEM}", "quantity": 0}, 422, "quantity"),
    ("order quantity as text", "op", "POST", "/api/work-orders",
     {"resident_id": "{R}", "service_item_code": "{ITEM}", "quantity": "two"}, 422, "quantity"),
    ("order ends before it starts", "op", "POST", "/api/work-orders",
     {"resident_id": "{R}", "service_item_code": "{ITEM}", "scheduled_start": NOW,
      "scheduled_end": "2026-01-06T09:00:00+08:00"}, 422, "scheduled_end"),
    ("order negative insurance share", "op", "POST", "/api/work-orders",
     {"resident_id": "{R}", "service_item_code": "{ITEM}", "ltc_fen": -1}, 422, "ltc_fen"),
    ("order insurance share beyond bigint", "op", "POST", "/api/work-orders",
     {"resident_id": "{R}", "service_item_code": "{ITEM}", "ltc_fen": 10**30}, 422, "ltc_fen"),
    ("order unknown agreement", "op", "POST", "/api/work-orders",
     {"resident_id": "{R}", "service_item_code": "{ITEM}", "care_agreement_id": NOWHERE}, 404,
     "agreement"),
    ("order id not a uuid", "op", "POST", "/api/work-orders/not-a-uuid/dispatch",
     {"provider_id": "{P}"}, 404, "not-a-uuid"),
    ("order unknown id", "op", "POST", f"/api/work-orders/{NO_UUID}/dispatch",
     {"provider_id": "{P}"}, 404, NO_UUID),
    ("dispatch unknown provider", "op", "POST", WO + "/dispatch", {"provider_id": NOWHERE},
     404, "provider"),
    ("dispatch provider without contract", "op", "POST", WO + "/dispatch",
     {"provider_id": "{P_NO_CONTRACT}"}, 409, "not contracted"),
    ("dispatch unknown worker", "op", "POST", WO + "/dispatch",
     {"provider_id": "{P}", "worker_id": NOWHERE}, 404, "worker"),
    ("dispatch another provider's worker", "op", "POST", WO + "/dispatch",
     {"provider_id": "{P}", "worker_id": "{W_OTHER}"}, 409, "does not work for"),
    ("dispatch provider id as text", "op", "POST", WO + "/dispatch", {"provider_id": "P1"},
     422, "provider_id"),
    # a created order is not yet any provider's: to a provider worker it does not exist
    ("accept an order not dispatched", "w", "POST", WO + "/accept", {}, 404, "not found"),
    ("provider rejects an order not given to it", "pa", "POST", WO + "/reject",
     {"reason": "x"}, 404, "not found"),
    ("provider rejects without a reason", "pa", "POST", WO_D + "/reject", {}, 422, "reason"),
    ("check in twice", "w", "POST", "/api/work-orders/{WO_CHECKED_IN}/check-in", POINT, 409,
     "checked_in"),
    ("check in before accepting", "w", "POST", WO_D + "/check-in", POINT, 409, "dispatched"),
    ("check in latitude 91", "w", "POST", WO_D + "/check-in", {**POINT, "lat": 91}, 422, "lat"),
    ("check in without a clock offset", "w", "POST", WO_D + "/check-in",
     {**POINT, "client_time": "2026-01-06T10:00:00"}, 422, "client_time"),
    ("check out before checking in", "w", "POST", WO_D + "/check-out", {**POINT, "record": {}},
     409, "dispatched"),
    ("verify an order never done", "ca", "POST", WO + "/verify", {}, 409, "created"),
    ("verify by a provider worker", "w", "POST", WO_D + "/verify", {}, 403, "provider_worker"),
    ("cancel without a reason", "op", "POST", WO + "/cancel", {}, 422, "reason"),
    ("reject a claim with an unknown finding", "ca", "POST", WO + "/reject-claim",
     {"anomaly_id": NOWHERE}, 409, "created"),
    ("revisit unreached with satisfaction", "op", "POST", WO + "/revisits",
     {"channel": "phone", "reached": False, "satisfaction": 2}, 422, "unreached"),
    ("revisit satisfaction 5", "op", "POST", WO + "/revisits",
     {"channel": "phone", "reached": True, "satisfaction": 5}, 422, "satisfaction"),
    ("revisit of an order never done", "op", "POST", WO + "/revisits",
     {"channel": "phone", "reached": True, "satisfaction": 1}, 409, "created"),
    # ---- hotline and complaints
    ("emergency call without its alarm", "op", "POST", "/api/hotline/calls",
     {**CALL, "request_type": "emergency"}, 422, "alarm_id"),
    ("call ended before it started", "op", "POST", "/api/hotline/calls",
     {**CALL, "ended_at": "2026-01-06T09:00:00+08:00"}, 422, "ended_at"),
    ("call unknown resident", "op", "POST", "/api/hotline/calls",
     {**CALL, "resident_id": NOWHERE}, 404, "resident"),
    ("call unknown alarm", "op", "POST", "/api/hotline/calls",
     {**CALL, "request_type": "emergency", "alarm_id": NO_UUID}, 404, "alarm"),
    ("call alarm id not a uuid", "op", "POST", "/api/hotline/calls",
     {**CALL, "request_type": "emergency", "alarm_id": "abc"}, 422, "alarm_id"),
    ("order from an unknown call", "op", "POST", f"/api/hotline/calls/{NOWHERE}/work-order",
     {"service_item_code": "{ITEM}"}, 404, "call"),
    ("order of an unknown item from a call", "op", "POST",
     "/api/hotline/calls/{CALL_REF}/work-order", {"service_item_code": "nope_{tag}"}, 404,
     "nope_"),
    ("order from a complaint call", "op", "POST", "/api/hotline/calls/{CALL}/work-order",
     {"service_item_code": "{ITEM}"}, 409, "referral"),
    ("complaint unknown provider", "op", "POST", "/api/complaints",
     {"hotline_call_id": "{CALL}", "provider_id": NOWHERE, "severity": "red"}, 404, "provider"),
    ("complaint unknown severity", "op", "POST", "/api/complaints",
     {"hotline_call_id": "{CALL}", "severity": "purple"}, 422, "severity"),
    ("complaint unknown work order", "op", "POST", "/api/complaints",
     {"work_order_id": NO_UUID, "severity": "red"}, 404, "work_order"),
    ("complaint work order id not a uuid", "op", "POST", "/api/complaints",
     {"work_order_id": "WO-1", "severity": "red"}, 422, "work_order_id"),
    ("close an unknown complaint", "op", "POST", f"/api/complaints/{NOWHERE}/close",
     {"resolution": "x"}, 404, "complaint"),
    ("close a closed complaint", "op", "POST", "/api/complaints/{COMPLAINT}/close",
     {"resolution": "x"}, 409, "closed"),
    # ---- anomalies
    ("decide an unknown finding", "ca", "POST", f"/api/anomalies/{NOWHERE}/decide",
     {"decision": "confirmed", "note": "x"}, 404, "anomaly"),
    ("decide with an unknown decision", "ca", "POST", f"/api/anomalies/{NOWHERE}/decide",
     {"decision": "maybe", "note": "x"}, 422, "decision"),
    # ---- programmes and policies
    ("programme unknown kind", "adm", "POST", "/api/programmes",
     {"code": "x_{tag}", "name_zh": "x", "kind": "lottery", "payee": "resident",
      "period": "month"}, 422, "kind"),
    ("programme duplicate", "adm", "POST", "/api/programmes",
     {"code": "{PROG}", "name_zh": "x", "kind": "voucher", "payee": "provider",
      "period": "month"}, 409, "already"),
    ("policy unknown programme", "adm", "POST", "/api/policy-versions",
     {**POLICY, "programme_code": "nope_{tag}"}, 404, "nope_"),
    ("policy unknown district", "adm", "POST", "/api/policy-versions",
     {**POLICY, "district_code": "999999999"}, 404, "999999999"),
    ("policy rules the interpreter cannot read", "adm", "POST", "/api/policy-versions",
     {**POLICY, "rules": [{"code": "x", "formula": {"type": "magic"}}]}, 422, "formula.type"),
    ("policy ends before it starts", "adm", "POST", "/api/policy-versions",
     {**POLICY, "effective_to": "2026-01-01"}, 422, "effective_to"),
    ("policy patch unknown", "adm", "PATCH", f"/api/policy-versions/{NOWHERE}",
     {"source_doc": "x"}, 404, "policy"),
    ("policy patch bad rules", "adm", "PATCH", "/api/policy-versions/{PV}",
     {"rules": [{"code": "x", "formula": {"type": "magic"}}]}, 422, "formula.type"),
    ("publish unknown policy", "ca", "POST", f"/api/policy-versions/{NOWHERE}/publish", {},
     404, "policy"),
    ("publish by admin", "adm", "POST", "/api/policy-versions/{PV}/publish", {}, 403, "admin"),
    ("withdraw twice", "ca", "POST", "/api/policy-versions/{PV_WITHDRAWN}/withdraw", {}, 409,
     "withdrawn"),
    ("patch a withdrawn version", "adm", "PATCH", "/api/policy-versions/{PV_WITHDRAWN}",
     {"source_doc": "x"}, 409, "withdrawn"),
    ("entitlement run bad month", "ca", "POST", "/api/entitlement-runs",
     {"month": "2026-13", "district_code": "{D}"}, 422, "month"),
    ("entitlement run unknown district", "ca", "POST", "/api/entitlement-runs",
     {"month": "2026-01", "district_code": "999999999"}, 404, "999999999"),
    # ---- settlement and awards
    ("batch unknown provider", "ca", "POST", "/api/settlement-batches",
     {"provider_id": NOWHERE, "month": "2026-01"}, 404, "provider"),
    ("batch bad month", "ca", "POST", "/api/settlement-batches",
     {"provider_id": "{P}", "month": "January"}, 422, "month"),
    ("batch twice for a month", "ca", "POST", "/api/settlement-batches",
     {"provider_id": "{P}", "month": "2020-01"}, 409, "2020-01"),
    ("submit an unknown batch", "pa", "POST", f"/api/settlement-batches/{NOWHERE}/submit", {},
     404, "batch"),
    ("approve a draft batch", "ca", "POST", "/api/settlement-batches/{BATCH}/approve", {},
     409, "draft"),
    ("pay a draft batch", "ca", "POST", "/api/settlement-batches/{BATCH}/mark-paid",
     {"payment_ref": "x"}, 409, "draft"),
    ("reject a batch without a reason", "ca", "POST", "/api/settlement-batches/{BATCH}/reject",
     {}, 422, "reason"),
    ("rating unknown facility", "ca", "POST", f"/api/facilities/{NOWHERE}/ratings",
     {"scheme": "x", "level": 3, "rated_on": "2021-03-01", "valid_from": "2021-01-01"}, 404,
     "facilit"),
    ("rating level 6", "ca", "POST", "/api/facilities/{F}/ratings",
     {"scheme": "x", "level": 6, "rated_on": "2021-03-01", "valid_from": "2021-01-01"}, 422,
     "level"),
    ("award run unknown programme", "ca", "POST", "/api/facility-awards/run",
     {"programme_code": "nope_{tag}", "year": 2021, "district_code": "{D}"}, 404, "nope_"),
    ("award run year 1900", "ca", "POST", "/api/facility-awards/run",
     {"programme_code": "{PROG}", "year": 1900, "district_code": "{D}"}, 422, "year"),
]  # fmt: skip


@pytest.mark.parametrize(
    "user,method,path,body,status,needle", [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_input_is_refused_and_nothing_is_written(
    caller: Caller,
    settings: Settings,
    world: dict[str, Any],
    user: str,
    method: str,
    path: str,
    body: Any,
    status: int,
    needle: str,
) -> None:
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        before = snapshot(conn)
        r = caller(user, method, fill(path, world), fill(body, world), NOW)
        after = snapshot(conn)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    text = detail if isinstance(detail, str) else json.dumps(detail, ensure_ascii=False)
    assert fill(needle, world).lower() in text.lower(), text
    changed = sorted(t for t in TABLES if before[t] != after[t])
    assert changed == [], f"{changed} changed by a refused request"


def test_a_reused_idempotency_key_with_another_body_changes_nothing(
    caller: Caller, settings: Settings, world: dict[str, Any]
) -> None:
    path = f"/api/work-orders/{world['WO_CHECKED_IN']}/check-in"
    key = {"Idempotency-Key": f"k-{TAG}"}
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        before = snapshot(conn)
        replay = caller("w", "POST", path, POINT, NOW, key)
        other = caller("w", "POST", path, {**POINT, "accuracy_m": 11}, NOW, key)
        after = snapshot(conn)
    assert replay.status_code == 200 and replay.json()["status"] == "checked_in"
    assert other.status_code == 409, other.text
    assert "different request" in other.json()["detail"]
    assert [t for t in TABLES if before[t] != after[t]] == []


# Not ``{}``: an empty body is a valid no-op PATCH or action for several routes.
JUNK: list[Any] = [None, [], "x", 10**30, {"unexpected": 1}]


def _write_routes() -> list[tuple[str, str]]:
    """Every write route of the platform layer's routers (and the registry's, which it uses)."""
    found = []
    for module in (people, providers, work_orders, hotline, subsidies, settlement, anomalies):
        found += [
            (m, r.path)
            for r in module.router.routes
            if isinstance(r, APIRoute)
            for m in sorted(r.methods or ())
            if m != "GET"
        ]
    found += [
        (m, r.path)
        for r in registry.router.routes
        if isinstance(r, APIRoute)
        for m in sorted(r.methods or ())
        if m != "GET"
        and ("home-beds" in r.path or r.path in ("/api/residents", "/api/facilities/{facility_id}"))
    ]
    return found


def test_junk_bodies_and_ids_never_reach_a_500(
    caller: Caller, settings: Settings, world: dict[str, Any]
) -> None:
    """Every platform write route, with ids that exist, do not exist or are not ids, and
    bodies of the wrong shape: always a 4xx, and nothing written."""
    routes = _write_routes()
    assert len(routes) >= 40, routes
    ids_for = {
        "order_id": ["not-a-uuid", NO_UUID, world["WO_DISPATCHED"]],
        "code": ["Nope!", world["ITEM"]],
    }
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        before = snapshot(conn)
        last_reveal = one_row(conn.execute("SELECT coalesce(max(id), 0) FROM reveals"))[0]
        for method, path in routes:
            params = [p.strip("{}") for p in path.split("/") if p.startswith("{")]
            # Integer ids only of no row: a real one could be another table's row of a
            # body-less action (publish, approve), which junk in the body would not stop.
            choices = [ids_for.get(p, [NOWHERE, "abc"]) for p in params]
            for value in (c for c in zip(*choices, strict=False)) if params else [()]:
                concrete = path
                for name, v in zip(params, value, strict=True):
                    concrete = concrete.replace("{" + name + "}", str(v))
                for body in JUNK:
                    r = caller("adm", method, concrete, body, NOW)
                    assert 400 <= r.status_code < 500, (method, concrete, body, r.text)
                    assert r.json()["detail"], (method, concrete, body)
        after = snapshot(conn)
        # A refused visit-address reveal is itself recorded (audit M1: every refusal kept
        # where a supervisor looks): the one write a refused request may leave.
        granted = one_row(
            conn.execute(
                "SELECT count(*) FROM reveals WHERE id > %s AND refused IS NULL", (last_reveal,)
            )
        )[0]
    assert granted == 0
    assert [t for t in TABLES if t != "reveals" and before[t] != after[t]] == []


def test_of_concurrent_verifications_exactly_one_wins(
    caller: Caller, settings: Settings, world: dict[str, Any]
) -> None:
    """Four supervisors verify one checked-out order at the same moment: one 200, three 409,
    one ``verify`` event (design §2.4: of two concurrent actors only one wins)."""
    # The day before the world's checked-in order, which is still open (no duplicate claim).
    at = "2026-01-05T09:00:00+08:00"
    order = caller.made(
        "op",
        "/api/work-orders",
        {"resident_id": world["R"], "service_item_code": world["ITEM"], "source": "app"},
        at,
    )["id"]
    path = f"/api/work-orders/{order}"
    caller.made("op", path + "/dispatch", {"provider_id": world["P"]}, at)
    caller.made("w", path + "/accept", {}, at)
    caller.made("w", path + "/check-in", {**POINT, "client_time": at}, at)
    out = {**POINT, "client_time": "2026-01-05T09:45:00+08:00", "record": {}}
    caller.made("w", path + "/check-out", out, "2026-01-05T09:45:00+08:00")
    caller.headers("ca")  # the token first, so the threads only verify
    barrier = threading.Barrier(4)

    def verify(_: int) -> int:
        barrier.wait()
        return int(
            caller("ca", "POST", path + "/verify", {}, "2026-01-07T10:00:00+08:00").status_code
        )

    with ThreadPoolExecutor(4) as pool:
        codes = sorted(pool.map(verify, range(4)))
    assert codes == [200, 409, 409, 409]
    events = caller("op", "GET", path + "/events").json()
    assert [e["action"] for e in events].count("verify") == 1


READS: list[tuple[str, dict[str, Any], int]] = [
    ("/api/reports/subsidy-spend", {"month": "2026-13", "district": "{D}"}, 422),
    ("/api/reports/subsidy-spend", {"month": "2026-01", "district": "999999999"}, 404),
    ("/api/reports/subsidy-spend", {"month": "2026-01", "district": "{D}", "group_by": "x"}, 422),
    ("/api/reports/coverage", {"programme": "nope", "month": "2026-01", "district": "{D}"}, 404),
    ("/api/reports/tekun", {"on": "2026-02-30", "district": "{D}"}, 422),
    ("/api/reports/tekun", {"on": "2026-01-01", "district": "{D}", "unable_self_care_levels": "x"},
     422),
    ("/api/reports/anomalies", {"month": "2026-01", "district": "{D}", "provider": "x"}, 422),
    ("/api/reports/providers", {"month": "January", "district": "{D}"}, 422),
    ("/api/reports/visits", {"month": "2026-01", "district": "{D}", "groups": ""}, 422),
    ("/api/reports/revisits", {"from": "2026-02-01", "to": "2026-01-01"}, 422),
    ("/api/reports/revisits", {"from": "2026-01-01", "to": "2026-02-01", "district": "1"}, 422),
    ("/api/reports/assessments", {"district": "{D}", "due": "maybe"}, 422),
    ("/api/work-orders", {"alarm_id": "not-a-uuid"}, 404),
    ("/api/work-orders", {"status": "lost"}, 422),
    ("/api/work-orders", {"from": "yesterday"}, 422),
    ("/api/anomalies", {"severity": "huge"}, 422),
    ("/api/residents/{R}/ability", {"on": "2026-13-01"}, 422),
    ("/api/residents/{R}/subsidy-account", {"programme": "nope", "month": "2026-01"}, 404),
    ("/api/residents/{R}/entitlements", {"month": "26-01"}, 422),
    ("/api/policy-versions", {"on": "someday"}, 422),
    ("/api/settlement-batches", {"month": "2026-1"}, 422),
    ("/api/facility-awards", {"year": "MMXXI", "district": "{D}"}, 422),
]  # fmt: skip


@pytest.mark.parametrize("path,params,status", READS, ids=[f"{p} {q}" for p, q, _ in READS])
def test_bad_queries_get_a_clear_4xx(
    caller: Caller, world: dict[str, Any], path: str, params: dict[str, Any], status: int
) -> None:
    h = caller.headers("ca")
    r = caller.api.get(fill(path, world), params=fill(params, world), headers=h)
    assert r.status_code == status, r.text
    assert r.json()["detail"]


def test_csv_exports_defuse_spreadsheet_formulas() -> None:
    """A provider named like a formula is exported as text; numbers, negative ones too, stay
    numbers (a clawback is -6000)."""
    report = {
        "rows": [
            {"provider_id": 1, "name": '=HYPERLINK("http://x")', "dispatched": -6000},
            {"provider_id": 2, "name": "@SUM(A1)", "dispatched": 3},
            {"provider_id": 3, "name": "嵊州测试助餐点", "dispatched": 0},
        ]
    }
    lines = list(csv.DictReader(io.StringIO(reports.to_csv(report, "providers"))))
    assert [x["name"] for x in lines] == ['\'=HYPERLINK("http://x")', "'@SUM(A1)", "嵊州测试助餐点"]
    assert [x["dispatched"] for x in lines] == ["-6000", "3", "0"]
