"""Bad input to the platform layer's API gets a clear 4xx and leaves nothing half-written;
the test-time header is honoured only in environment ``test``; provider users stay inside
their provider."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from eldercare.app import create_app
from eldercare.config import Settings
from eldercare.registry import auth
from tests.alarm_support import RecordingPublisher, one_row

PASSWORD = "platform-api-password"


def _count(settings: Settings, sql: str, *params: Any) -> int:
    with psycopg.connect(settings.database_url) as conn:
        return int(one_row(conn.execute(sql, params))[0])


@pytest.fixture(scope="module")
def tag() -> str:
    return secrets.token_hex(3)


def _client(settings: Settings, **overrides: Any) -> TestClient:
    app = create_app(
        settings.model_copy(update=overrides), publisher=RecordingPublisher(), background=False
    )
    return TestClient(app)


@pytest.fixture(scope="module")
def api(settings: Settings, tag: str) -> Iterator[TestClient]:
    with psycopg.connect(settings.database_url) as conn:
        for name, role in (("adm", "admin"), ("op", "operator"), ("as", "assessor")):
            auth.create_user(conn, f"{name}-{tag}", PASSWORD, role)
        conn.commit()
    with _client(settings, environment="test") as c:
        yield c


def _h(api: TestClient, user: str, tag: str, **extra: str) -> dict[str, str]:
    r = api.post("/api/auth/token", data={"username": f"{user}-{tag}", "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": "Bearer " + r.json()["access_token"], **extra}


@pytest.fixture(scope="module")
def place(api: TestClient, settings: Settings, tag: str) -> dict[str, Any]:
    adm = _h(api, "adm", tag)
    root = api.post(
        "/api/districts", json={"code": "000000", "name": "全国", "level": "country"}, headers=adm
    )
    assert root.status_code in (201, 409)
    code = "7" + str(int(tag, 16) % 10**8).zfill(8)
    assert (
        api.post(
            "/api/districts",
            json={"code": code, "name": "接口测试街道", "parent_code": "000000", "level": "street"},
            headers=adm,
        ).status_code
        == 201
    )
    hh = api.post(
        "/api/households",
        json={"address": "接口测试路1号", "district_code": code, "lat": 29.5, "lon": 120.8},
        headers=adm,
    ).json()
    r = api.post(
        "/api/residents", json={"name": "接口测试老人", "household_id": hh["id"]}, headers=adm
    ).json()
    return {"district": code, "household": hh["id"], "resident": r["id"]}


def test_bad_registry_input_is_refused_and_nothing_is_written(
    api: TestClient, settings: Settings, tag: str, place: dict[str, Any]
) -> None:
    adm = _h(api, "adm", tag)
    before = _count(settings, "SELECT count(*) FROM residents")
    # 422: nowhere to live; a household that does not exist is a 404
    r = api.post("/api/residents", json={"name": "无处"}, headers=adm)
    assert r.status_code == 422
    r = api.post("/api/residents", json={"name": "无处", "household_id": 10**9}, headers=adm)
    assert r.status_code == 404
    assert _count(settings, "SELECT count(*) FROM residents") == before
    # 409: a duplicate district; 404: an unknown parent; 422: a bad code
    dup = {"code": place["district"], "name": "重复", "parent_code": "000000", "level": "street"}
    assert api.post("/api/districts", json=dup, headers=adm).status_code == 409
    orphan = {"code": "123456", "name": "孤儿", "parent_code": "654321", "level": "county"}
    assert api.post("/api/districts", json=orphan, headers=adm).status_code == 404
    bad = {"code": "12345", "name": "短", "parent_code": "000000", "level": "county"}
    assert api.post("/api/districts", json=bad, headers=adm).status_code == 422
    # categories: tekun without a mode is 422; an overlapping period is 409 and not stored
    rid = place["resident"]
    cat = {"category": "dibao", "valid_from": "2024-01-01", "source": "staff"}
    assert api.post(f"/api/residents/{rid}/categories", json=cat, headers=adm).status_code == 201
    assert api.post(f"/api/residents/{rid}/categories", json=cat, headers=adm).status_code == 409
    tekun = {"category": "tekun", "valid_from": "2024-01-01", "source": "staff"}
    assert api.post(f"/api/residents/{rid}/categories", json=tekun, headers=adm).status_code == 422
    assert len(api.get(f"/api/residents/{rid}/categories", headers=adm).json()) == 1
    # status periods: a death has no end; a second death is 409
    died = {"status": "deceased", "from": "2030-01-01T08:00:00+08:00", "source": "staff"}
    ended = {**died, "to": "2030-02-01T08:00:00+08:00"}
    sp = f"/api/residents/{rid}/status-periods"
    assert api.post(sp, json=ended, headers=adm).status_code == 422
    assert api.post(sp, json=died, headers=adm).status_code == 201
    assert api.post(sp, json=died, headers=adm).status_code == 409
    assert len(api.get(sp, headers=adm).json()) == 1


def test_assessments_refuse_bad_scores_and_roles(
    api: TestClient, tag: str, place: dict[str, Any]
) -> None:
    rid = place["resident"]
    body = {
        "total_score": 50,
        "reason": "initial",
        "assessed_at": "2026-01-01T09:00:00+08:00",
        "effective_from": "2026-01-01",
        "assessor": "评估员",
    }
    path = f"/api/residents/{rid}/assessments"
    assert api.post(path, json=body, headers=_h(api, "op", tag)).status_code == 403
    ass = _h(api, "as", tag)
    assert api.post(path, json={**body, "total_score": 91}, headers=ass).status_code == 422
    assert (
        api.post(path, json={**body, "valid_until": "2025-12-31"}, headers=ass).status_code == 422
    )
    assert (
        api.post(path, json={**body, "assessed_at": "2026-01-01T09:00"}, headers=ass).status_code
        == 422
    )
    made = api.post(path, json=body, headers=ass)
    assert made.status_code == 201 and made.json()["final_level"] == "moderate"
    aid = made.json()["id"]
    assert (
        api.post(
            f"/api/assessments/{aid}/revoke", json={"reason": "录入错误"}, headers=ass
        ).status_code
        == 200
    )
    assert (
        api.post(
            f"/api/assessments/{aid}/revoke", json={"reason": "again"}, headers=ass
        ).status_code
        == 409
    )
    ability = api.get(f"/api/residents/{rid}/ability?on=2026-02-01", headers=ass).json()
    assert ability["level"] is None


def test_test_now_header_only_in_environment_test(
    api: TestClient, settings: Settings, tag: str, caplog: pytest.LogCaptureFixture
) -> None:
    h = _h(api, "op", tag, **{"X-Eldercare-Test-Now": "2026-01-06T10:00:00+08:00"})
    now = datetime.fromisoformat(api.get("/api/console/open", headers=h).json()["now"])
    assert now == datetime(2026, 1, 6, 2, 0, tzinfo=UTC)
    bad = _h(api, "op", tag, **{"X-Eldercare-Test-Now": "2026-01-06T10:00:00"})
    assert api.get("/api/console/open", headers=bad).status_code == 422
    with _client(settings, environment="development") as dev:
        r = dev.post("/api/auth/token", data={"username": f"op-{tag}", "password": PASSWORD})
        hdr = {
            "Authorization": "Bearer " + r.json()["access_token"],
            "X-Eldercare-Test-Now": "2026-01-06T10:00:00+08:00",
        }
        with caplog.at_level(logging.WARNING, logger="eldercare.http.deps"):
            real = datetime.fromisoformat(dev.get("/api/console/open", headers=hdr).json()["now"])
        assert real > datetime(2026, 1, 7, tzinfo=UTC)  # the clock, not the header
        assert any("X-Eldercare-Test-Now" in rec.getMessage() for rec in caplog.records)


def test_provider_users_cannot_reach_the_monitoring_desk(
    api: TestClient, settings: Settings, tag: str, place: dict[str, Any]
) -> None:
    adm = _h(api, "adm", tag)
    prov = api.post("/api/providers", json={"name": "接口服务商", "kind": "company"}, headers=adm)
    assert prov.status_code == 201
    worker = api.post(
        f"/api/providers/{prov.json()['id']}/workers", json={"name": "服务员"}, headers=adm
    ).json()
    with psycopg.connect(settings.database_url) as conn:
        auth.create_user(conn, f"w-{tag}", PASSWORD, "provider_worker", worker_id=worker["id"])
        conn.commit()
    w = _h(api, "w", tag)
    for path in ("/api/alarms", "/api/residents", f"/api/residents/{place['resident']}"):
        assert api.get(path, headers=w).status_code == 403, path
    assert api.get("/api/providers", headers=w).json() == [prov.json()]
    assert api.get("/api/work-orders", headers=w).json() == []
    with (
        pytest.raises(WebSocketDisconnect),
        api.websocket_connect("/api/ws") as ws,
    ):
        ws.send_json({"type": "auth", "token": w["Authorization"][7:]})
        ws.receive_json()


def test_funeral_registry_batches_are_all_or_nothing(
    api: TestClient, tag: str, place: dict[str, Any]
) -> None:
    """POST /api/integrations/death-records (design §4 Q21): new deaths recorded, a re-sent
    one skipped, and a batch contradicting a recorded death refused whole."""
    adm = _h(api, "adm", tag)
    a, b, c = (
        api.post(
            "/api/residents",
            json={"name": f"殡葬{n}", "household_id": place["household"]},
            headers=adm,
        ).json()["id"]
        for n in range(3)
    )
    t1, t2 = "2031-01-01T08:00:00+08:00", "2031-01-02T08:00:00+08:00"
    path = "/api/integrations/death-records"

    def batch(*records: tuple[int, str]) -> Any:
        body = {
            "records": [{"resident_id": r, "died_at": t, "source_ref": "殡葬"} for r, t in records]
        }
        return api.post(path, json=body, headers=adm)

    first = batch((a, t1), (b, t2))
    assert first.status_code == 200, first.text
    assert first.json() == {"recorded": [a, b], "already_recorded": []}
    assert batch((a, t1)).json() == {"recorded": [], "already_recorded": [a]}
    refused = batch((c, t1), (b, t1))  # b died at t2, not t1
    assert refused.status_code == 409 and "another time" in refused.json()["detail"]
    periods = api.get(f"/api/residents/{c}/status-periods", headers=adm).json()
    assert periods == []  # c's death, earlier in the refused batch, was not kept
    (death,) = api.get(f"/api/residents/{a}/status-periods", headers=adm).json()
    assert (death["status"], death["source"]) == ("deceased", "funeral_registry")


def test_a_facility_made_before_the_platform_gets_its_district(
    api: TestClient, tag: str, place: dict[str, Any]
) -> None:
    """PATCH /api/facilities/{id}: a facility without a district (made before issue 8) is
    placed in one, and its residents then count in that district's reports."""
    adm = _h(api, "adm", tag)
    fac = api.post("/api/facilities", json={"code": f"OLD-{tag}", "name": "老院"}, headers=adm)
    assert fac.status_code == 201 and fac.json()["district_code"] is None
    fid = fac.json()["id"]
    rid = api.post(
        "/api/residents", json={"name": "老院住户", "facility_id": fid}, headers=adm
    ).json()["id"]
    cat = {"category": "tekun", "support_mode": "centralised", "valid_from": "2024-01-01",
           "source": "staff"}  # fmt: skip
    assert api.post(f"/api/residents/{rid}/categories", json=cat, headers=adm).status_code == 201

    def tekun() -> int:
        q = {"on": "2026-01-01", "district": place["district"]}
        return int(api.get("/api/reports/tekun", params=q, headers=adm).json()["tekun"])

    assert tekun() == 0
    r = api.patch(
        f"/api/facilities/{fid}",
        json={"district_code": place["district"], "tekun_institution": True},
        headers=adm,
    )
    assert r.status_code == 200, r.text
    got = r.json()
    assert (got["district_code"], got["tekun_institution"], got["name"]) == (
        place["district"],
        True,
        "老院",
    )
    assert (
        api.get(f"/api/facilities/{fid}", headers=adm).json()["district_code"]
        == (place["district"])
    )
    assert tekun() == 1
