"""The care worker's page (/worker) in a real browser (Debian's Chromium driven by Playwright,
at a phone's 390 x 844) against the real API, database and visit checks. The browser's
position is Playwright's: granted at the home, then a kilometre away, then refused.

One worker makes three visits: accept, check in at the door, record the service, check out;
a check-in a kilometre from the home, which the GPS rule flags on the page; and a check-in
with location refused, which the page explains and then makes without a point. What the page
did is read back through the API: the order's state, the stored point and the findings.
Screenshots for the README are written to docs/ only when ELDERCARE_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

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
from eldercare.registry.schemas import ResidentCreate
from harness.services import ROOT, free_port, have_chromium, serve_in_thread

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not have_chromium(), reason="needs Debian's chromium"),
]

PASSWORD = "worker-page-password"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
SHOTS = ROOT / "docs" if os.environ.get("ELDERCARE_SCREENSHOTS") == "1" else None
TZ = ZoneInfo("Asia/Shanghai")
HOME = (29.588, 120.821)
FAR = (29.597, 120.821)  # 1000.75 m north of the home (design §3.7 check 7.1)


@pytest.fixture(scope="module")
def site(settings: Settings) -> Iterator[dict[str, Any]]:
    """A household with a resident, a provider contracted for one item, its worker with a
    login, an operator, and five orders dispatched to the provider: one for tomorrow."""
    tag = secrets.token_hex(3)
    now = datetime.now(UTC)
    env = workorders.Env(tz=TZ, revisit_sample_pct=0)
    desk = Actor(f"op-{tag}", "operator")
    with psycopg.connect(settings.database_url) as conn:
        conn.execute(
            "INSERT INTO districts (code, name, level) VALUES ('000000', '全国', 'country')"
            " ON CONFLICT DO NOTHING"
        )
        street = "7" + str(int(tag, 16) % 10**8).zfill(8)
        conn.execute(
            "INSERT INTO districts (code, name, parent_code, level) VALUES (%s, '页面测试街道',"
            " '000000', 'street')",
            (street,),
        )
        hh = people.create_household(
            conn,
            HouseholdCreate(
                address="页面测试路1号", district_code=street, area="town", lat=HOME[0], lon=HOME[1]
            ),
        )
        resident = registry.create_resident(
            conn, ResidentCreate(name="服务页面测试老人", household_id=hh["id"])
        )
        item = f"wk_{tag}"
        providers.create_item(
            conn,
            ServiceItemCreate(
                code=item, name_zh="上门探访", category="visit", setting="home", unit="visit"
            ),
        )
        prov = providers.create_provider(
            conn, ProviderCreate(name=f"页面测试服务商{tag}", kind="company")
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
        worker = providers.create_worker(conn, prov["id"], WorkerCreate(name="页面测试服务员"))
        username = f"wk-{tag}"
        auth.create_user(conn, desk.username, PASSWORD, "operator")
        auth.create_user(
            conn,
            username,
            PASSWORD,
            "provider_worker",
            provider_id=prov["id"],
            worker_id=worker["id"],
        )
        tomorrow = (now.astimezone(TZ) + timedelta(days=1)).replace(
            hour=10, minute=0, second=0, microsecond=0
        )
        orders = []
        starts = (now + timedelta(minutes=10), now + timedelta(minutes=40), tomorrow)
        for start in (*starts, now + timedelta(minutes=90), now + timedelta(minutes=120)):
            o = workorders.create(
                conn,
                desk,
                WorkOrderCreate(
                    resident_id=resident["id"], service_item_code=item, scheduled_start=start
                ),
                now,
                env,
            )
            workorders.act(
                conn, desk, o["id"], "dispatch", DispatchRequest(provider_id=prov["id"]), now, env
            )
            orders.append(o["id"])
        conn.commit()
    port = free_port()
    app = create_app(settings.model_copy(update={"api_port": port}))
    with serve_in_thread(app, port) as address:
        base = f"http://{address}"
        with httpx.Client(base_url=base, timeout=10) as client:
            tok = client.post("/api/auth/token", data={"username": username, "password": PASSWORD})
            client.headers["Authorization"] = f"Bearer {tok.json()['access_token']}"
            yield {
                "base": base,
                "api": client,
                "user": username,
                "operator": desk.username,
                "worker": worker["id"],
                "orders": orders,
            }


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


def order(site: dict[str, Any], order_id: str) -> dict[str, Any]:
    r = site["api"].get(f"/api/work-orders/{order_id}")
    assert r.status_code == 200, r.text
    return r.json()


def test_a_worker_makes_visits_from_the_phone(
    browser: Any, site: dict[str, Any], settings: Settings
) -> None:
    ctx = browser.new_context(
        viewport={"width": 390, "height": 844},
        is_mobile=True,
        has_touch=True,
        timezone_id="Asia/Shanghai",
        geolocation={"latitude": HOME[0], "longitude": HOME[1], "accuracy": 8},
        permissions=["geolocation"],
    )
    page = ctx.new_page()
    page.set_default_timeout(10_000)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # Whatever a Content-Security-Policy blocks (inline script or style) fails the test too.
    page.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and "Content Security Policy" in m.text
            else None
        ),
    )
    page.goto(site["base"] + "/worker")
    page.wait_for_selector("body[data-ready=true]")
    page.fill("#username", site["user"])
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("body[data-loaded=true]")
    a, b, c, d, e = site["orders"]

    def card(order_id: str, status: str | None = None) -> str:
        return f'.wcard[data-id="{order_id}"]' + (f'[data-status="{status}"]' if status else "")

    # All are offers to my provider, tomorrow's too.
    for o in (a, b, c, d, e):
        page.wait_for_selector(f"#group-offers {card(o, 'dispatched')}")

    # Visit A: accept, check in at the door, record what was done, check out.
    page.click(f"{card(a)} [data-act=accept]")
    page.wait_for_selector(card(a, "accepted"))
    assert order(site, a)["worker_id"] == site["worker"]
    sent: dict[str, Any] = {}

    def keep(route: Any) -> None:  # the check-in as it went to the server, and its answer
        answer = route.fetch()
        sent.update(
            key=route.request.headers.get("idempotency-key"),
            body=route.request.post_data_json,
            answer=answer.json(),
        )
        route.fulfill(response=answer)

    page.route("**/check-in", keep)
    page.click(f"{card(a)} [data-act=check-in]")
    page.wait_for_selector(f"#group-now {card(a, 'checked_in')}")
    page.unroute("**/check-in")
    # A repeat of that request (the page's retry after a lost answer) gets the same answer
    # and makes no second check-in.
    assert sent["key"] and sent["body"]["client_time"]
    again = site["api"].post(
        f"/api/work-orders/{a}/check-in",
        json=sent["body"],
        headers={"Idempotency-Key": sent["key"]},
    )
    assert again.status_code == 200 and again.json() == sent["answer"]
    # At the door: the address, on a tap, recorded against the order and kept nowhere in
    # the browser's storage (a reload forgets it).
    page.click(f"{card(a)} [data-act=show-address]")
    shown = page.locator(f'{card(a)} .address[data-address="{a}"]')
    assert "页面测试路1号" in shown.inner_text()
    stored = "() => JSON.stringify([{ ...localStorage }, { ...sessionStorage }])"
    assert "页面测试路1号" not in page.evaluate(stored)
    with psycopg.connect(settings.database_url) as conn:
        seen = conn.execute(
            "SELECT reason FROM reveals WHERE username = %s AND work_order_id = %s"
            " AND refused IS NULL",
            (site["user"], a),
        ).fetchall()
    assert seen == [(f"work order {order(site, a)['number']}",)]
    form = page.locator(f'form[data-record="{a}"]')
    form.locator("input[value=bathing]").check()
    form.locator("input[value=company]").check()
    form.locator("textarea[name=notes]").fill("精神好，已提醒多喝水")
    # The phone drops the tab meanwhile: the record being written is still there.
    page.reload()
    page.wait_for_selector("body[data-loaded=true]")
    form = page.locator(f'form[data-record="{a}"]')
    page.wait_for_selector(f"{card(a)} [data-act=show-address]")
    assert form.locator("input[value=bathing]").is_checked()
    assert form.locator("textarea[name=notes]").input_value() == "精神好，已提醒多喝水"
    form.locator("[data-act=check-out]").click()
    page.wait_for_selector(f"#group-done {card(a, 'checked_out')}")
    done = order(site, a)
    assert done["status"] == "checked_out" and done["price_fen"] == 3000
    assert (done["check_in"]["lat"], done["check_in"]["lon"]) == HOME
    assert done["check_in"]["accuracy_m"] == 8 and done["check_in"]["distance_m"] == 0
    assert (done["check_out"]["lat"], done["check_out"]["lon"]) == HOME
    assert done["record"] == {"tasks": ["bathing", "company"], "notes": "精神好，已提醒多喝水"}
    assert [x["rule_code"] for x in done["anomalies"]] == []
    assert done["evv_complete"] is True
    assert [e["action"] for e in done["timeline"]].count("check_in") == 1

    # Visit B from a kilometre away: the GPS rule flags it, and the page says so.
    ctx.set_geolocation({"latitude": FAR[0], "longitude": FAR[1], "accuracy": 12})
    page.click(f"{card(b)} [data-act=accept]")
    page.click(f"{card(b, 'accepted')} [data-act=check-in]")
    finding = page.locator(f"{card(b, 'checked_in')} .finding[data-rule=gps_far]")
    finding.wait_for()
    assert "1001" in finding.inner_text()
    far = order(site, b)
    assert far["status"] == "checked_in"
    assert (far["check_in"]["lat"], far["check_in"]["lon"]) == FAR
    assert far["check_in"]["distance_m"] == pytest.approx(1000.75, abs=0.5)
    gps = [x for x in far["anomalies"] if x["rule_code"] == "gps_far"]
    assert len(gps) == 1 and gps[0]["severity"] == "soft"
    assert gps[0]["evidence"]["distance_m"] == pytest.approx(1000.75, abs=0.5)
    assert gps[0]["evidence"]["threshold_m"] == 200
    # The page fits the phone: nothing wider than the screen.
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    if SHOTS is not None:
        page.evaluate("document.getElementById('toasts').replaceChildren()")
        page.screenshot(path=str(SHOTS / "worker.png"), full_page=True)

    # Visit C (tomorrow's) with location refused: the page explains, nothing is sent, and
    # the worker may still check in without a point, which the GPS rule flags.
    ctx.clear_permissions()
    page.click(f"{card(c)} [data-act=accept]")
    page.click(f"#group-upcoming {card(c, 'accepted')} [data-act=check-in]")
    page.wait_for_selector(f"{card(c, 'accepted')} .nofix[data-nofix=denied]")
    assert order(site, c)["status"] == "accepted"
    page.click(f"{card(c)} [data-act=without-gps]")
    page.wait_for_selector(f"{card(c, 'checked_in')} .finding[data-rule=gps_far]")
    blind = order(site, c)
    assert blind["check_in"]["lat"] is None and blind["check_in"]["no_fix"] == "denied"
    gps = [x for x in blind["anomalies"] if x["rule_code"] == "gps_far"]
    assert gps[0]["evidence"]["reason"] == "no_point"

    # Visit D accepted, then given back with a reason: it leaves my list for the desk.
    page.click(f"{card(d)} [data-act=accept]")
    page.click(f"{card(d, 'accepted')} [data-act=decline]")
    give_back = page.locator(f'form[data-decline="{d}"]')
    give_back.locator("select[name=why]").select_option("clash")
    give_back.locator("input[name=note]").fill("下午另有一单")
    give_back.locator("[data-act=decline-confirm]").click()
    page.wait_for_selector(card(d), state="detached")
    with httpx.Client(base_url=site["base"], timeout=10) as desk:
        tok = desk.post(
            "/api/auth/token", data={"username": site["operator"], "password": PASSWORD}
        )
        desk.headers["Authorization"] = f"Bearer {tok.json()['access_token']}"
        back = desk.get(f"/api/work-orders/{d}").json()
        assert (back["status"], back["provider_id"], back["worker_id"]) == ("created", None, None)
        assert back["timeline"][-1]["action"] == "reject"
        assert back["timeline"][-1]["detail"]["reason"] == "时间冲突: 下午另有一单"
        # Visit E is cancelled by the desk while the page still offers it: accepting it
        # says so, and the card goes.
        gone = desk.post(f"/api/work-orders/{e}/cancel", json={"reason": "家属取消"})
        assert gone.status_code == 200
    page.click(f"{card(e)} [data-act=accept]")
    assert "已不在您的列表中" in page.locator(".toast.error").inner_text()
    page.wait_for_selector(card(e), state="detached")

    # English on request, every text translated.
    page.select_option("#app select.lang", "en")
    assert page.locator("[data-group=done] h2").inner_text() == "Done today"
    missing = page.evaluate("[...EC.missing]")

    # Signing out leaves nothing of the visits in the tab (a half-written record included).
    page.locator(f'form[data-record="{b}"] input[value=meal]').check()
    kept = "() => Object.keys(sessionStorage).filter(k => k.startsWith('eldercare.worker.')).length"
    assert page.evaluate(kept) == 1
    page.click("#logout")
    assert page.evaluate(kept) == 0

    # Anyone else is sent to the console: this page offers them nothing to act on.
    page.fill("#username", site["operator"])
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("#not-worker:visible")
    assert page.locator(".worker-main").is_hidden()
    ctx.close()
    assert errors == []
    assert missing == []
