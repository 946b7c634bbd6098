"""The registry management page (/registry) in a real browser (Debian's Chromium driven by
Playwright) against the real API and database: an admin creates districts, a home care bed
and a resident through the forms; bad input is refused with the form kept; what the page
lists carries no addresses or ID numbers."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from eldercare.app import create_app
from eldercare.config import Settings
from eldercare.registry import auth
from eldercare.registry import service as registry
from eldercare.registry.schemas import FacilityCreate
from harness.services import free_port, have_chromium, serve_in_thread
from tests.alarm_support import one_row

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not have_chromium(), reason="needs Debian's chromium"),
]

PASSWORD = "registry-page-password"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def site(settings: Settings) -> Iterator[dict[str, Any]]:
    tag = secrets.token_hex(3)
    with psycopg.connect(settings.database_url) as conn:
        fac = registry.create_facility(
            conn, FacilityCreate(code=f"REG-{tag}", name="登记测试中心", lat=29.59, lon=120.82)
        )
        admin, op = f"adm-{tag}", f"op-{tag}"
        auth.create_user(conn, admin, PASSWORD, "admin")
        auth.create_user(conn, op, PASSWORD, "operator")
        conn.execute(
            "INSERT INTO districts (code, name, level) VALUES ('000000', '全国', 'country')"
            " ON CONFLICT DO NOTHING"
        )
        conn.commit()
    port = free_port()
    app = create_app(settings.model_copy(update={"api_port": port}))
    with serve_in_thread(app, port) as address:
        yield {
            "base": f"http://{address}",
            "admin": admin,
            "operator": op,
            "facility": fac,
            "tag": tag,
            "db": settings.database_url,
        }


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, site: dict[str, Any]) -> Iterator[Any]:
    ctx = browser.new_context(viewport={"width": 1440, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(10_000)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    # Whatever the Content-Security-Policy blocks (inline script or style) fails too.
    pg.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error" and "Content Security Policy" in m.text
            else None
        ),
    )
    pg.goto(site["base"] + "/registry")
    pg.wait_for_selector("body[data-ready=true]")
    yield pg
    missing = pg.evaluate("[...EC.missing]")
    ctx.close()
    assert errors == []
    assert missing == []


def login(page: Any, username: str) -> None:
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("body[data-loaded=true]")


def _unique_code(site: dict[str, Any]) -> str:
    # Districts are global; a 9-digit street code unique to this run.
    return "9" + str(int(site["tag"], 16) % 10**8).zfill(8)


def test_admin_creates_district_bed_and_resident(page: Any, site: dict[str, Any]) -> None:
    login(page, site["admin"])
    db = site["db"]

    # A district: first refused (a street needs its parent), then made with one.
    code = _unique_code(site)
    page.click("[data-tab=districts]")
    form = page.locator("#district-form")
    form.locator("[name=code]").fill(code)
    form.locator("[name=name]").fill("测试街道")
    form.locator("[name=level]").select_option("street")
    form.locator("button[type=submit]").click()
    page.wait_for_selector(".toast.error")
    assert form.locator("[name=name]").input_value() == "测试街道"  # kept for correction
    with psycopg.connect(db) as conn:
        assert (
            one_row(conn.execute("SELECT count(*) FROM districts WHERE code = %s", (code,)))[0] == 0
        )
    form.locator("[name=parent_code]").select_option("000000")
    form.locator("[name=fiscal_region]").select_option("east")
    form.locator("button[type=submit]").click()
    page.wait_for_selector(f'#districts tr[data-code="{code}"]')
    assert "测试街道" in page.locator(f'#districts tr[data-code="{code}"]').inner_text()

    # A home care bed in that district; the list never shows its address.
    page.click("[data-tab=beds]")
    bed = page.locator("#bed-form")
    bed.locator("[name=facility_id]").select_option(str(site["facility"]["id"]))
    address = f"嵊州测试路{site['tag']}号"
    bed.locator("[name=address]").fill(address)
    bed.locator("[name=district_code]").select_option(code)
    bed.locator("[name=lat]").fill("29.588")
    bed.locator("[name=lon]").fill("120.821")
    bed.locator("[name=established_on]").fill("2025-12-01")
    bed.locator("[name=liability_insured]").check()
    bed.locator("button[type=submit]").click()
    with psycopg.connect(db) as conn:

        def made() -> Any:
            return conn.execute(
                "SELECT id, district_code, liability_insured FROM home_beds WHERE address = %s",
                (address,),
            ).fetchone()

        page.wait_for_function("() => document.querySelectorAll('#beds tbody tr').length > 0")
        page.wait_for_selector(".toast.ok")
        bed_row = made()
    assert bed_row is not None and bed_row[1] == code and bed_row[2] is True
    assert address not in page.locator("#beds").inner_text()

    # A resident at that bed; the ID number goes in and never comes back to the list.
    page.click("[data-tab=residents]")
    res = page.locator("#resident-form")
    res.locator("[name=name]").fill("页面测试老人")
    id_number = "33068319450201" + site["tag"][:4].upper()
    res.locator("[name=id_number]").fill(id_number)
    res.locator("[name=birth_date]").fill("1945-02-01")
    res.locator("[name=gender]").select_option("female")
    res.locator("[name=placement]").select_option("home_bed_id")
    res.locator("[name=place]").select_option(str(bed_row[0]))
    res.locator("button[type=submit]").click()
    page.wait_for_selector("#residents tr:has-text('页面测试老人')")
    assert id_number not in page.content()
    with psycopg.connect(db) as conn:
        stored = conn.execute(
            "SELECT home_bed_id, id_number FROM residents WHERE name = '页面测试老人'"
        ).fetchone()
    assert stored == (bed_row[0], id_number)

    # A household in that district, then a resident living there.
    page.click("[data-tab=households]")
    hh = page.locator("#household-form")
    hh_address = f"嵊州测试住户{site['tag']}"
    hh.locator("[name=address]").fill(hh_address)
    hh.locator("[name=district_code]").select_option(code)
    hh.locator("[name=lat]").fill("29.59")
    hh.locator("[name=lon]").fill("120.83")
    hh.locator("button[type=submit]").click()
    page.wait_for_function("() => document.querySelectorAll('#households tbody tr').length > 0")
    with psycopg.connect(db) as conn:
        hh_id = one_row(
            conn.execute("SELECT id FROM households WHERE address = %s", (hh_address,))
        )[0]
    page.wait_for_selector(f'#households tr[data-id="{hh_id}"]')
    assert hh_address not in page.locator("#households").inner_text()
    page.click("[data-tab=residents]")
    res.locator("[name=name]").fill("住户测试老人")
    res.locator("[name=placement]").select_option("household_id")
    res.locator("[name=place]").select_option(str(hh_id))
    res.locator("button[type=submit]").click()
    page.wait_for_selector("#residents tr:has-text('住户测试老人')")
    with psycopg.connect(db) as conn:
        assert conn.execute(
            "SELECT household_id FROM residents WHERE name = '住户测试老人'"
        ).fetchone() == (hh_id,)

    # English on request.
    page.select_option("#app select.lang", "en")
    assert page.locator("[data-tab=beds]").inner_text() == "Home care beds"


def test_an_operator_sees_the_lists_but_no_forms(page: Any, site: dict[str, Any]) -> None:
    login(page, site["operator"])
    assert page.locator("#resident-form").is_hidden()
    page.click("[data-tab=districts]")
    assert page.locator("#district-form").is_hidden()
    page.wait_for_selector('#districts tr[data-code="000000"]')
