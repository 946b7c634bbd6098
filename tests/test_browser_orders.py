"""The console's work-order tab and 12349 call intake in a real browser (Debian's Chromium
driven by Playwright) on the real database, broker, gateway and alert engine.

A call taken on the console becomes an order in the tab; the operator dispatches it; the
worker's own API calls (accept, check in, check out) reach the open page over the websocket
without a reload; the operator records the revisit (回访) with its satisfaction. An SOS closed
as a service request gets its follow-up order, linked both ways with its alarm; an emergency
call links the open alarm. Both languages are checked on the new tabs.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from eldercare.app import create_app
from eldercare.config import Settings
from eldercare.platform import providers
from eldercare.platform.schemas import (
    ContractCreate,
    ProviderCreate,
    ServiceItemCreate,
    WorkerCreate,
)
from eldercare.registry import auth
from eldercare.registry import service as registry
from eldercare.registry.schemas import DeviceCreate, FacilityCreate, ResidentCreate
from harness.services import free_port, have_chromium, serve_in_thread
from tests.test_browser_console import (
    CHROMIUM_ARGS,
    PASSWORD,
    Pages,
    _untranslated,
    login,
    press_sos,
    shoot,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not have_chromium(), reason="needs Debian's chromium"),
]


@dataclass
class Desk:
    """A district with a facility and two residents, a service item, a provider contracted
    for it with one worker, and logins for an operator and that worker."""

    district: str
    facility: int
    resident: int
    resident_name: str
    sos_resident: int
    item: str
    provider: int
    provider_name: str
    worker: int
    operator: str
    worker_login: str
    lat: float
    lon: float


@pytest.fixture(scope="module")
def desk(settings: Settings) -> Desk:
    tag = secrets.token_hex(3)
    lat, lon = 29.5880, 120.8210
    with psycopg.connect(settings.database_url) as conn:
        conn.execute(
            "INSERT INTO districts (code, name, level) VALUES ('000000', '全国', 'country')"
            " ON CONFLICT DO NOTHING"
        )
        district = "7" + str(secrets.randbelow(10**8)).zfill(8)
        conn.execute(
            "INSERT INTO districts (code, name, parent_code, level) VALUES (%s, '和平街道',"
            " '000000', 'street')",
            (district,),
        )
        fac = registry.create_facility(
            conn,
            FacilityCreate(
                code=f"WO-{tag}",
                name="和平居家服务站",
                lat=lat,
                lon=lon,
                district_code=district,
            ),
        )
        name = f"钱{tag}"  # unique, so the lookup finds exactly this resident
        res = registry.create_resident(
            conn,
            ResidentCreate(
                name=name,
                birth_date=date(1936, 5, 1),
                gender="female",
                facility_id=fac["id"],
                room="3-1",
            ),
        )
        sos_res = registry.create_resident(
            conn,
            ResidentCreate(
                name=f"孙{tag}", birth_date=date(1940, 2, 2), facility_id=fac["id"], room="3-2"
            ),
        )
        item = "meal_" + tag
        providers.create_item(
            conn,
            ServiceItemCreate(
                code=item, name_zh=f"助餐送餐{tag}", category="meal", setting="home", unit="meal"
            ),
        )
        prov_name = f"和平助餐{tag}"
        prov = providers.create_provider(conn, ProviderCreate(name=prov_name, kind="company"))
        providers.create_contract(
            conn,
            prov["id"],
            ContractCreate(
                district_code=district, valid_from=date(2020, 1, 1), price_list={item: 1500}
            ),
            "test",
            datetime.now(UTC),
        )
        worker = providers.create_worker(conn, prov["id"], WorkerCreate(name=f"周师傅{tag}"))
        op, wk = f"op-wo-{tag}", f"wk-{tag}"
        auth.create_user(conn, op, PASSWORD, "operator")
        auth.create_user(
            conn, wk, PASSWORD, "provider_worker", provider_id=prov["id"], worker_id=worker["id"]
        )
        conn.commit()
    return Desk(
        district,
        fac["id"],
        res["id"],
        name,
        sos_res["id"],
        item,
        prov["id"],
        prov_name,
        worker["id"],
        op,
        wk,
        lat,
        lon,
    )


@pytest.fixture(scope="module")
def base_url(settings: Settings, desk: Desk) -> Iterator[str]:
    port = free_port()
    app = create_app(settings.model_copy(update={"api_port": port}))
    with serve_in_thread(app, port) as address:
        yield f"http://{address}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def pages(browser: Any, base_url: str) -> Iterator[Pages]:
    p = Pages(browser, base_url)
    try:
        yield p
    finally:
        p.close()
    assert p.errors == []


def _api(base_url: str, username: str) -> httpx.Client:
    """The API as another actor would use it (the worker's phone)."""
    token = httpx.post(
        f"{base_url}/api/auth/token", data={"username": username, "password": PASSWORD}
    ).json()["access_token"]
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {token}"})


def _tab(page: Any, name: str) -> None:
    page.click(f"[data-tab={name}]")
    page.wait_for_selector(f"body[data-tab-shown={name}]")


# ---------------------------------------------------------------- call → order → revisit


def test_call_intake_dispatch_live_worker_and_revisit(
    pages: Pages, desk: Desk, base_url: str, settings: Settings
) -> None:
    op = pages.open("/console")
    login(op, desk.operator)
    _tab(op, "call")

    # An incoming call: the caller's number, the resident found by name, a service request.
    op.fill("#call-caller", "13900001234")
    op.fill("#call-q", desk.resident_name)
    op.click("[data-action=call-find]")
    op.click(f'#call-results li[data-resident="{desk.resident}"]')
    assert desk.resident_name in op.inner_text("#call-resident")
    # What the lookup shows is what the alarm queue shows: no phone, ID number or address.
    assert "13900001234" not in op.inner_text("#call-resident")
    op.check("#call-type-referral")
    op.select_option("#call-item", desk.item)
    op.fill("#call-note", "老人腿脚不便，希望每天中午送餐")
    op.click("[data-action=call-submit]")

    # The new order opens in the work-order tab, whose badge counts it as waiting.
    op.wait_for_selector("body[data-tab-shown=orders]")
    op.wait_for_selector("#orders .wo-head .wo-created")
    op.wait_for_selector("#wo-badge")
    number = op.inner_text("#orders .wo-head .mono")
    with psycopg.connect(settings.database_url) as conn:
        row = conn.execute(
            "SELECT w.id::text, w.source, c.request_type, c.caller, c.resident_id"
            " FROM work_orders w JOIN hotline_calls c ON c.id = w.hotline_call_id"
            " WHERE w.number = %s",
            (number,),
        ).fetchone()
    assert row is not None
    order_id, source, request_type, caller, resident = row
    assert (source, request_type, caller, resident) == (
        "hotline",
        "referral",
        "13900001234",
        desk.resident,
    )
    # Only what the server allows a desk operator now: dispatch and cancel.
    assert op.locator("#orders [data-action=wo-dispatch]").is_visible()
    assert op.locator("#orders [data-action=wo-cancel]").is_visible()
    assert op.locator("#orders [data-action=wo-verify]").count() == 0

    # Back in the list, filtered to this district and provider-less: the order is there.
    op.click("[data-action=orders-back]")
    op.select_option("#wo-f-district", desk.district)
    op.wait_for_selector(f'#orders-body tr[data-id="{order_id}"][data-status=created]')
    assert desk.resident_name in op.inner_text(f'#orders-body tr[data-id="{order_id}"]')
    op.click(f'#orders-body tr[data-id="{order_id}"]')

    # Dispatch to the contracted provider (its price shown) and its worker.
    op.wait_for_selector("#wo-provider")
    assert desk.provider_name in op.inner_text("#wo-provider")
    assert "15.00" in op.inner_text("#wo-provider")
    op.wait_for_selector(f'#wo-worker option[value="{desk.worker}"]', state="attached")
    op.select_option("#wo-worker", str(desk.worker))
    waiting = int(op.inner_text("#wo-badge"))
    op.click("[data-action=wo-dispatch]")
    op.wait_for_selector("#orders .wo-head .wo-dispatched")
    # One fewer waits (or none, and the badge is gone).
    if waiting == 1:
        op.wait_for_selector("#wo-badge", state="detached")
    else:
        op.locator(f"#wo-badge:text-is('{waiting - 1}')").wait_for()

    # The worker's phone accepts, checks in and out through the API: each change reaches
    # the open page over the websocket, with no reload (the marker survives).
    # First on the list, then on the order's detail.
    op.evaluate("window.__sameDocument = true")
    op.click("[data-action=orders-back]")
    op.wait_for_selector(f'#orders-body tr[data-id="{order_id}"][data-status=dispatched]')
    assert desk.provider_name in op.inner_text(f'#orders-body tr[data-id="{order_id}"]')
    worker = _api(base_url, desk.worker_login)
    point = {"lat": desk.lat, "lon": desk.lon, "accuracy_m": 8}
    r = worker.post(f"/api/work-orders/{order_id}/accept", json={})
    assert r.status_code == 200, r.text
    op.wait_for_selector(f'#orders-body tr[data-id="{order_id}"][data-status=accepted]')
    op.click(f'#orders-body tr[data-id="{order_id}"]')
    op.wait_for_selector("#orders .wo-head .wo-accepted")
    now = datetime.now(UTC).isoformat()
    r = worker.post(f"/api/work-orders/{order_id}/check-in", json={**point, "client_time": now})
    assert r.status_code == 200, r.text
    op.wait_for_selector("#orders .wo-head .wo-checked_in")
    r = worker.post(
        f"/api/work-orders/{order_id}/check-out",
        json={**point, "client_time": now, "record": {"tasks": ["送餐"]}},
    )
    assert r.status_code == 200, r.text
    worker.close()
    op.wait_for_selector("#orders .wo-head .wo-checked_out")
    assert op.evaluate("window.__sameDocument") is True
    timeline = op.inner_text("#orders ol.timeline")
    for word in ("创建", "派单", "接单", "签到", "签退"):
        assert word in timeline, word

    # The revisit (回访): reached, service confirmed, satisfaction 2 (满意).
    op.select_option("#rv-channel", "phone")
    op.select_option("#rv-reached", "yes")
    op.select_option("#rv-confirmed", "yes")
    op.check("#rv-sat-2")
    op.fill("#rv-comment", "送餐准时，饭菜温热")
    op.click("[data-action=wo-revisit]")
    op.locator("#orders table.revisits td.rv-sat", has_text="满意").wait_for()
    assert "饭菜温热" in op.inner_text("#orders table.revisits")
    op.evaluate("document.getElementById('toasts').replaceChildren()")
    shoot(op, "console-orders.png")
    with psycopg.connect(settings.database_url) as conn:
        rv = conn.execute(
            "SELECT channel, reached, service_confirmed, satisfaction, by_user FROM revisits"
            " WHERE work_order_id = %s AND done_at IS NOT NULL",
            (order_id,),
        ).fetchall()
    assert rv == [("phone", True, True, 2, desk.operator)]
    assert "回访" in op.inner_text("#orders ol.timeline")


# ---------------------------------------------------------------- alarm ↔ order, emergency call


def test_alarm_follow_up_and_emergency_call_in_both_languages(
    pages: Pages, desk: Desk, settings: Settings, gateway: object
) -> None:
    from eldercare.simulators.device import SimDevice

    with psycopg.connect(settings.database_url) as conn:
        cred = registry.provision_device(
            conn, settings, DeviceCreate(kind="sos_button", resident_id=desk.sos_resident)
        )
        conn.commit()
    dev = SimDevice.from_credentials(cred, retry_s=1.0)
    dev.connect()
    try:
        op = pages.open("/console#call")  # the demo's printout links the tabs like this
        login(op, desk.operator)
        op.wait_for_selector("body[data-tab-shown=call]")
        alarm_id, _ = press_sos(dev)
        op.wait_for_selector(f'#queue-body tr[data-id="{alarm_id}"]')

        # An emergency call about that resident links the open alarm.
        op.check("#call-type-emergency")
        op.fill("#call-q", str(desk.sos_resident))
        op.keyboard.press("Enter")
        op.click(f'#call-results li[data-resident="{desk.sos_resident}"]')
        op.wait_for_selector(f'#call-alarm option[value="{alarm_id}"]', state="attached")
        op.click("[data-action=call-submit]")
        op.locator("#call ul.calls li", has_text="紧急求助").first.wait_for()
        with psycopg.connect(settings.database_url) as conn:
            linked = conn.execute(
                "SELECT request_type FROM hotline_calls WHERE alarm_id = %s", (alarm_id,)
            ).fetchall()
        assert linked == [("emergency",)]
        for lang in ("zh-CN", "en"):
            if lang == "en":
                op.select_option("#app select.lang", "en")
            assert _untranslated(op, lang) == []
        op.select_option("#app select.lang", "zh-CN")

        # A complaint about the provider: recorded with its SLA (red: 3 days).
        op.check("#call-type-complaint")
        op.fill("#call-q", str(desk.sos_resident))
        op.click("[data-action=call-find]")
        op.click(f'#call-results li[data-resident="{desk.sos_resident}"]')
        op.select_option("#call-severity", "red")
        op.select_option("#call-provider", str(desk.provider))
        op.click("[data-action=call-submit]")
        op.locator("#call ul.calls li", has_text="投诉").first.wait_for()
        with psycopg.connect(settings.database_url) as conn:
            complaint = conn.execute(
                "SELECT p.severity, p.resident_id, p.due_at - c.started_at FROM complaints p"
                " JOIN hotline_calls c ON c.id = p.hotline_call_id WHERE p.provider_id = %s",
                (desk.provider,),
            ).fetchall()
        assert complaint == [("red", desk.sos_resident, timedelta(days=3))]

        # Acknowledge, resolve, close as a service request with the service to arrange.
        op.click(f'#queue-body tr[data-id="{alarm_id}"]')
        op.wait_for_selector("#detail [data-action=acknowledge]:not([disabled])")
        op.click("#detail [data-action=acknowledge]")
        op.wait_for_selector("#detail [data-action=resolve]:not([disabled])")
        op.click("#detail [data-action=resolve]")
        op.wait_for_selector("#detail [data-action=close]:not([disabled])")
        op.select_option("#disposition", "service_request")
        assert op.locator("#follow-up-item").is_visible()
        op.select_option("#follow-up-item", desk.item)
        op.click("#detail [data-action=close]")

        # The alarm's detail lists its follow-up order; the order links back to the alarm.
        link = op.locator("#detail ul.alarm-orders li")
        link.wait_for()
        with psycopg.connect(settings.database_url) as conn:
            found = conn.execute(
                "SELECT id::text, source, service_item_code FROM work_orders WHERE alarm_id = %s",
                (alarm_id,),
            ).fetchall()
        assert len(found) == 1 and found[0][1:] == ("alarm", desk.item)
        assert link.get_attribute("data-order") == found[0][0]
        link.click()
        op.wait_for_selector("body[data-tab-shown=orders]")
        op.wait_for_selector("#orders [data-action=open-alarm]")
        for lang in ("zh-CN", "en"):
            if lang == "en":
                op.select_option("#app select.lang", "en")
            assert _untranslated(op, lang) == []
        op.click("[data-action=orders-back]")
        op.wait_for_selector(f'#orders-body tr[data-id="{found[0][0]}"]')
        assert _untranslated(op, "en") == []
        op.select_option("#app select.lang", "zh-CN")
        op.click(f'#orders-body tr[data-id="{found[0][0]}"] [data-action=open-alarm]')
        op.wait_for_selector("body[data-tab-shown=detail]")
        op.wait_for_selector(f'#detail[data-alarm="{alarm_id}"]')
        assert op.evaluate("[...EC.missing]") == []
    finally:
        dev.close()
