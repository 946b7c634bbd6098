"""The operator console and the staff page in a real browser (Debian's Chromium driven by
Playwright), on the real broker, gateway, database and alert engine: a simulated device's
SOS reaches the page over MQTT -> gateway -> DB -> engine -> websocket, and every step an
operator or a nurse takes in the page is told back to the device.

Screenshots for the README are written to docs/ only when ELDERCARE_SCREENSHOTS=1, so a
test run never dirties the work tree.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import psycopg
import pytest

from eldercare.alerts import rules
from eldercare.app import create_app
from eldercare.config import Settings
from eldercare.registry import auth
from eldercare.registry import service as registry
from eldercare.registry.schemas import Contact, DeviceCreate, FacilityCreate, ResidentCreate
from harness.services import ROOT, free_port, have_chromium, serve_in_thread

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not have_chromium(), reason="needs Debian's chromium"),
]

PASSWORD = "correct-horse-battery"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--autoplay-policy=user-gesture-required",
]
SHOTS = ROOT / "docs" if os.environ.get("ELDERCARE_SCREENSHOTS") == "1" else None
STATUSES = ("acknowledged", "dispatched", "on_site", "resolved")


@dataclass
class Place:
    """Two facilities with a resident and an SOS button each, a nurse on duty in the
    first, and logins for an operator and that nurse."""

    facility_a: int
    facility_b: int
    resident_a: int
    resident_b: int
    nurse: int
    operator: str
    staff: str
    settings: Settings | None = None
    devices: dict[str, Any] = field(default_factory=dict)

    def resident_device(self, facility: int, name: str, room: str) -> Any:
        """A new resident with a new SOS button: an open alarm of a resident absorbs
        later presses, so each test that needs a new alarm needs a new resident."""
        from eldercare.simulators.device import SimDevice

        assert self.settings is not None
        with psycopg.connect(self.settings.database_url) as conn:
            r = registry.create_resident(
                conn,
                ResidentCreate(
                    name=name,
                    birth_date=date(1940, 1, 1),
                    gender="male",
                    ability_level="自理",
                    facility_id=facility,
                    room=room,
                ),
            )
            cred = registry.provision_device(
                conn, self.settings, DeviceCreate(kind="sos_button", resident_id=r["id"])
            )
            conn.commit()
        dev = SimDevice.from_credentials(cred, retry_s=1.0)
        dev.connect()
        self.devices[f"{name}-{room}"] = dev
        return dev


@pytest.fixture(scope="module")
def place(settings: Settings, gateway: object) -> Iterator[Place]:
    from eldercare.simulators.device import SimDevice

    tag = secrets.token_hex(3)
    with psycopg.connect(settings.database_url) as conn:
        fa = registry.create_facility(
            conn,
            FacilityCreate(
                code=f"SUN-{tag}",
                name="阳光颐养院",
                area="town",
                address="示例区健康路 8 号",
                lat=31.2304,
                lon=121.4737,
                phone="021-55550101",
            ),
        )
        fb = registry.create_facility(
            conn,
            FacilityCreate(
                code=f"PINE-{tag}",
                name="松鹤养老中心",
                area="town",
                lat=31.2650,
                lon=121.5200,
                phone="021-55550202",
            ),
        )
        ra = registry.create_resident(
            conn,
            ResidentCreate(
                name="王秀英",
                birth_date=date(1938, 3, 12),
                gender="female",
                ability_level="半失能",
                medical_notes="高血压，房颤，服用华法林",
                allergies="青霉素",
                facility_id=fa["id"],
                room="203",
                contacts=[Contact(name="李明", relation="儿子", phone="13800000001")],
            ),
        )
        rb = registry.create_resident(
            conn,
            ResidentCreate(
                name="赵德明",
                birth_date=date(1941, 7, 2),
                gender="male",
                ability_level="自理",
                facility_id=fb["id"],
                room="108",
            ),
        )
        row = conn.execute(
            "INSERT INTO responders (kind, name, phone, facility_id) VALUES"
            " ('facility_staff', '护士 陈静', '15100000001', %s) RETURNING id",
            (fa["id"],),
        ).fetchone()
        assert row is not None
        nurse = int(row[0])
        now = datetime.now(UTC)
        conn.execute(
            "INSERT INTO rota (responder_id, facility_id, starts_at, ends_at) VALUES"
            " (%s, %s, %s, %s)",
            (nurse, fa["id"], now - timedelta(hours=1), now + timedelta(hours=8)),
        )
        op, staff = f"op-{tag}", f"nurse-{tag}"
        auth.create_user(conn, op, PASSWORD, "operator")
        auth.create_user(conn, staff, PASSWORD, "facility_staff", fa["id"], nurse)
        conn.commit()
        creds = {
            name: registry.provision_device(
                conn, settings, DeviceCreate(kind="sos_button", resident_id=rid)
            )
            for name, rid in (("a", ra["id"]), ("b", rb["id"]))
        }
        conn.commit()
    p = Place(fa["id"], fb["id"], ra["id"], rb["id"], nurse, op, staff, settings)
    for name, cred in creds.items():
        dev = SimDevice.from_credentials(cred, retry_s=1.0)
        dev.connect()
        p.devices[name] = dev
    yield p
    for dev in p.devices.values():
        dev.close()


@pytest.fixture(scope="module")
def base_url(settings: Settings, place: Place) -> Iterator[str]:
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


def _csp(message: Any) -> bool:
    return message.type == "error" and "Content Security Policy" in message.text


class Pages:
    """Opens pages that record uncaught script errors, so any test fails on one."""

    def __init__(self, browser: Any, base_url: str) -> None:
        self.browser, self.base_url = browser, base_url
        self.errors: list[str] = []
        self.contexts: list[Any] = []

    def open(self, path: str, *, mobile: bool = False, before: Any = None) -> Any:
        if mobile:
            ctx = self.browser.new_context(
                viewport={"width": 390, "height": 844},
                device_scale_factor=2,
                is_mobile=True,
                has_touch=True,
            )
        else:
            ctx = self.browser.new_context(viewport={"width": 1440, "height": 900})
        self.contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(10_000)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        # Whatever the Content-Security-Policy blocks (inline script or style) fails too.
        page.on("console", lambda m: self.errors.append(m.text) if _csp(m) else None)
        if before:
            before(page)
        page.goto(self.base_url + path)
        page.wait_for_selector("body[data-ready=true]")
        return page

    def close(self) -> None:
        for ctx in self.contexts:
            ctx.close()


@pytest.fixture
def pages(browser: Any, base_url: str) -> Iterator[Pages]:
    p = Pages(browser, base_url)
    try:
        yield p
    finally:
        p.close()
    assert p.errors == []


def login(page: Any, username: str) -> None:
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("#app:not([hidden])")
    page.wait_for_selector("body[data-conn=live]")


def press_sos(device: Any) -> tuple[str, float]:
    """Press the button; return the alarm id (from the gateway's ack) and when pressed."""
    pressed = time.monotonic()
    mid = device.raise_alarm("sos", press="single")
    return str(device.ack_for(mid, timeout=10)["alarm_id"]), pressed


def told(device: Any, alarm_id: str) -> list[str]:
    return [
        d["status"]
        for d in device.downlinks
        if d.get("type") == "alarm_status" and d.get("alarm_id") == alarm_id
    ]


def wait_told(device: Any, alarm_id: str, status: str) -> None:
    device.wait_downlink(
        lambda d: (
            d.get("type") == "alarm_status"
            and d.get("alarm_id") == alarm_id
            and d.get("status") == status
        ),
        timeout=10,
    )


def row(page: Any, alarm_id: str) -> Any:
    return page.locator(f'#queue-body tr[data-id="{alarm_id}"]')


def shoot(page: Any, name: str) -> None:
    if SHOTS is not None:
        # The new-alarm flash lasts 3 s; the picture shows the screen at rest.
        page.wait_for_function("() => !document.body.classList.contains('flash')", timeout=5_000)
        page.screenshot(path=str(SHOTS / name))


# ---------------------------------------------------------------- the whole response


def test_operator_and_nurse_handle_an_sos(pages: Pages, place: Place, settings: Settings) -> None:
    op = pages.open("/console")
    login(op, place.operator)
    op.click("#start-shift")
    assert op.get_attribute("body", "data-shift") == "on"
    nurse = pages.open("/staff", mobile=True)
    login(nurse, place.staff)

    dev = place.devices["a"]
    alarm_id, pressed = press_sos(dev)
    row(op, alarm_id).wait_for(timeout=2_000)
    assert time.monotonic() - pressed < 2.0
    # The alert sounds (beeps counted by the page) and repeats until acknowledged.
    beeps = int(op.get_attribute("body", "data-beeps") or 0)
    op.wait_for_selector("body[data-alerting=true]")
    op.wait_for_function(f"() => Number(document.body.dataset.beeps) > {beeps + 1}", timeout=5_000)
    assert int(op.locator("#c-unack").inner_text()) >= 1
    assert "王秀英" in row(op, alarm_id).inner_text()
    assert "阳光颐养院" in row(op, alarm_id).inner_text()

    # A second resident's alarm in another facility, for the queue and the scoping check.
    other_id, _ = press_sos(place.devices["b"])
    row(op, other_id).wait_for(timeout=2_000)

    row(op, alarm_id).click()
    op.wait_for_selector("#detail [data-action=acknowledge]:not([disabled])")
    # The buttons follow the server's allowed_actions for a raised alarm, and the
    # dispositions offered are the server's list (GET /api/console/meta), not a copy.
    enabled = op.eval_on_selector_all(
        "#detail .actions button:not([disabled])", "bs => bs.map(b => b.dataset.action)"
    )
    assert enabled == ["acknowledge"], enabled
    options = op.eval_on_selector_all(
        "#disposition option[value]:not([value=''])", "os => os.map(o => o.value)"
    )
    assert options == list(rules.DISPOSITIONS)
    op.keyboard.press("a")  # the shortcut, as an operator on a long shift would
    wait_told(dev, alarm_id, "acknowledged")
    op.wait_for_selector(f'#queue-body tr[data-id="{alarm_id}"][data-status=acknowledged]')
    op.wait_for_selector("#detail [data-action=dispatch]:not([disabled])")
    enabled = op.eval_on_selector_all(
        "#detail .actions button:not([disabled])", "bs => bs.map(b => b.dataset.action)"
    )
    assert set(enabled) == {"dispatch", "resolve", "emergency-120", "emergency-119"}, enabled

    # Sensitive details only on demand, and the reveal is audited.
    assert "青霉素" not in op.inner_text("#detail")
    op.click("#detail [data-action=reveal]")
    op.wait_for_selector("#detail .revealed")
    assert "青霉素" in op.inner_text("#detail") and "13800000001" in op.inner_text("#detail")
    with psycopg.connect(settings.database_url) as conn:
        n = conn.execute(
            "SELECT count(*) FROM reveals WHERE username = %s AND resident_id = %s"
            " AND alarm_id = %s",
            (place.operator, place.resident_a, alarm_id),
        ).fetchone()
    assert n is not None and n[0] == 1

    op.check(f'#detail input[name=responder][value="{place.nurse}"]')
    op.click("#detail [data-action=dispatch]")
    wait_told(dev, alarm_id, "dispatched")
    op.wait_for_selector("#detail table.offers .o-pending")
    shoot(op, "console.png")

    # The nurse's phone rings and vibrates (where allowed); she accepts and gets there.
    card = nurse.locator(f'#mine article[data-id="{alarm_id}"]')
    card.wait_for()
    nurse.wait_for_function("() => Number(document.body.dataset.dispatches) >= 1")
    assert "王秀英" in card.inner_text()
    # The other facility's alarm is not on her page.
    assert nurse.locator(f'[data-id="{other_id}"]').count() == 0
    shoot(nurse, "staff.png")
    card.locator("[data-action=accept]").click()
    card.locator("[data-action=on-site]").click()
    wait_told(dev, alarm_id, "on_site")

    op.wait_for_selector(f'#queue-body tr[data-id="{alarm_id}"][data-status=on_site]')
    op.wait_for_selector("#detail [data-action=resolve]:not([disabled])")
    op.click("#detail [data-action=resolve]")
    wait_told(dev, alarm_id, "resolved")
    op.wait_for_selector("#detail [data-action=close]:not([disabled])")
    op.select_option("#disposition", "genuine_emergency")
    op.click("#detail [data-action=close]")
    row(op, alarm_id).wait_for(state="detached")
    assert told(dev, alarm_id) == list(STATUSES)
    with psycopg.connect(settings.database_url) as conn:
        r = conn.execute(
            "SELECT status, disposition FROM alarms WHERE id = %s", (alarm_id,)
        ).fetchone()
    assert r == ("closed", "genuine_emergency")
    # The timeline on screen shows the whole story, once the page has reloaded it.
    op.locator("#detail ol.timeline li", has_text="关闭").wait_for()
    timeline = op.inner_text("#detail ol.timeline")
    for word in ("报警", "确认", "派单", "接单", "到场", "解除", "关闭", "查看敏感信息"):
        assert word in timeline, word


# ---------------------------------------------------------------- facility scoping


def test_staff_never_sees_another_facilitys_alarm(pages: Pages, place: Place) -> None:
    op = pages.open("/console")
    login(op, place.operator)
    nurse = pages.open("/staff", mobile=True)
    login(nurse, place.staff)
    theirs, _ = press_sos(place.resident_device(place.facility_b, "孙桂兰", "305"))
    ours, _ = press_sos(place.resident_device(place.facility_a, "周建国", "112"))
    row(op, theirs).wait_for(timeout=2_000)
    nurse.locator(f'article[data-id="{ours}"]').wait_for(timeout=2_000)
    assert nurse.locator(f'[data-id="{theirs}"]').count() == 0
    # A reload resyncs from the API: still only her facility, and still logged in.
    nurse.reload()
    nurse.wait_for_selector("body[data-conn=live]")
    nurse.locator(f'article[data-id="{ours}"]').wait_for()
    assert nurse.locator(f'[data-id="{theirs}"]').count() == 0
    status = nurse.evaluate(
        "id => EC.api('GET', `/api/alarms/${id}`).then(() => 200, e => e.status)", theirs
    )
    assert status == 404


# ---------------------------------------------------------------- sign-in and sign-out


def test_sign_in_throttled_and_sign_out_ends_the_token(pages: Pages, place: Place) -> None:
    """Audit H5/M5 as an operator meets them: repeated failures get "try again in N min",
    not a server error; signing out revokes the token on the server, not just the page."""
    op = pages.open("/console")
    nobody = f"nobody-{secrets.token_hex(3)}"
    texts = []
    for attempt in range(11):  # ten failures per username are allowed (Settings)
        op.fill("#username", nobody)
        op.fill("#password", f"wrong-password-{attempt}")
        op.click("#login-submit")
        op.wait_for_selector(".login-error:not(:empty)")
        texts.append(op.inner_text(".login-error"))
        op.evaluate("() => { document.querySelector('.login-error').textContent = ''; }")
    assert texts[0] == "用户名或密码错误"
    assert re.fullmatch(r"登录失败次数过多，请 \d+ 分钟后再试", texts[-1]), texts[-1]

    login(op, place.operator)
    token = op.evaluate("() => EC.session.token")
    me = "t => fetch('/api/me', {headers: {Authorization: 'Bearer ' + t}}).then(r => r.status)"
    assert op.evaluate(me, token) == 200
    op.click("#logout")
    op.wait_for_selector("#login:not([hidden])")
    op.wait_for_function(f"t => ({me})(t).then(s => s === 401)", arg=token, polling=100)


# ---------------------------------------------------------------- websocket drop and resync


def test_socket_drop_shows_banner_and_resync_catches_up(pages: Pages, place: Place) -> None:
    sockets: list[Any] = []
    blocked = threading.Event()

    def route(ws: Any) -> None:
        if blocked.is_set():
            ws.close(code=1012, reason="test: server going away")
            return
        ws.connect_to_server()
        sockets.append(ws)

    op = pages.open(
        "/console", before=lambda page: page.route_web_socket(re.compile(r".*/api/ws.*"), route)
    )
    login(op, place.operator)
    assert op.is_hidden("#banner")

    blocked.set()
    for ws in sockets:
        ws.close(code=1012, reason="test: server going away")
    op.wait_for_selector("body[data-conn=down]")
    op.wait_for_selector("#banner:not([hidden])")
    missed, _ = press_sos(place.resident_device(place.facility_a, "吴淑珍", "118"))
    # A check that something does NOT happen needs some time to pass; the engine has
    # committed the alarm by now (press_sos waits for it), so 300 ms is generous.
    op.wait_for_timeout(300)
    assert row(op, missed).count() == 0  # nothing carried it: the socket is down

    blocked.clear()
    row(op, missed).wait_for(timeout=15_000)  # backoff is at most a few seconds here
    op.wait_for_selector("body[data-conn=live]")
    assert op.is_hidden("#banner")


# ---------------------------------------------------------------- languages


VISIBLE_TEXT = """() => {
  const where = (el) => {
    const parts = [];
    for (let e = el; e && e !== document.body && parts.length < 4; e = e.parentElement) {
      parts.unshift(e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')
        + (e.className && typeof e.className === 'string' ? '.' + e.className.split(' ')[0] : ''));
    }
    return parts.join(' > ');
  };
  const out = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const docLang = document.documentElement.lang;
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const text = n.nodeValue.trim();
    const el = n.parentElement;
    if (!text || !el || el.closest('script,style,[data-raw],option')) continue;
    const langEl = el.closest('[lang]');
    if (langEl && langEl.getAttribute('lang') !== docLang) continue;
    if (!el.getClientRects().length) continue;
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden' || style.display === 'none') continue;
    out.push([text, where(el)]);
  }
  for (const el of document.querySelectorAll('[placeholder],[title],[aria-label]')) {
    if (el.closest('[data-raw]') || !el.getClientRects().length) continue;
    for (const a of ['placeholder', 'title', 'aria-label']) {
      if (el.getAttribute(a)) out.push([el.getAttribute(a), where(el) + '@' + a]);
    }
  }
  out.push([document.title, 'title']);
  return out;
}"""
CJK = re.compile(r"[\u3400-\u9fff]")
LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


def _untranslated(page: Any, lang: str) -> list[str]:
    """Visible interface text in the wrong script, with where it is on the page. Data
    (names, rooms, ids, notes) is marked data-raw by the pages and not checked."""
    texts = page.evaluate(VISIBLE_TEXT)
    wrong = CJK if lang == "en" else LATIN_WORD
    return [f"{text!r} at {where}" for text, where in texts if wrong.search(text)]


def _visit_everything(page: Any) -> list[str]:
    """Every tab of the console with an alarm open; the untranslated text seen."""
    lang = page.evaluate("EC.lang")
    bad = _untranslated(page, lang)
    for tab in ("map", "health", "handover", "detail"):
        page.click(f"[data-tab={tab}]")
        page.wait_for_selector(f"body[data-tab-shown={tab}]")
        bad += _untranslated(page, lang)
        if lang == "zh-CN" and tab in ("map", "health"):
            shoot(page, f"console-{tab}.png")
        if tab == "health":  # one facility's devices and cameras, and its alarms only
            page.click("#health tr[data-facility]")
            page.click("[data-action=filter-facility]")
            page.wait_for_selector("#queue-filter:not([hidden])")
            bad += _untranslated(page, lang)
            page.click("#queue-filter button")
            page.click("[data-action=health-back]")
        if tab == "handover":
            text = f"{lang}: 203 房家属 20:00 回电"
            page.fill("#handover-text", text)
            page.click("#handover-form button[type=submit]")
            page.locator("#handover-notes .note-text", has_text=text).wait_for()
            bad += _untranslated(page, lang)
    page.keyboard.press("?")
    bad += _untranslated(page, lang)
    page.keyboard.press("Escape")
    return bad


def test_chinese_by_default_and_english_on_request(pages: Pages, place: Place) -> None:
    op = pages.open("/console")
    assert op.evaluate("document.documentElement.lang") == "zh-CN"
    assert op.inner_text("#login-submit") == "登录"
    assert _untranslated(op, "zh-CN") == []
    login(op, place.operator)
    alarm_id, _ = press_sos(place.resident_device(place.facility_a, "郑国强", "221"))
    row(op, alarm_id).click()
    op.wait_for_selector("#detail .dhead")
    assert _visit_everything(op) == []
    assert op.inner_text("#start-shift").startswith("开始值班")

    op.select_option("#app select.lang", "en")
    assert op.evaluate("document.documentElement.lang") == "en"
    assert op.inner_text("#start-shift").startswith("Start shift")
    assert "Alarm queue" in op.inner_text(".queue-pane h2")
    assert _visit_everything(op) == []
    # The choice survives a reload, and so does the login.
    op.reload()
    op.wait_for_selector("body[data-conn=live]")
    assert op.inner_text(".queue-pane h2") == "Alarm queue"
    assert op.evaluate("[...EC.missing]") == []

    nurse = pages.open("/staff", mobile=True)  # same browser? no: a new context, default zh
    assert nurse.evaluate("document.documentElement.lang") == "zh-CN"
    login(nurse, place.staff)
    nurse.locator(f'article[data-id="{alarm_id}"]').wait_for()
    assert _untranslated(nurse, "zh-CN") == []
    nurse.select_option("#app select.lang", "en")
    assert _untranslated(nurse, "en") == []
    assert nurse.evaluate("[...EC.missing]") == []
    op.select_option("#app select.lang", "zh-CN")
