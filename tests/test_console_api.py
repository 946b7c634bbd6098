"""The console's server side without a browser: pages and assets served from package
data, the handover notes and open-alarm extras of the web router, and the translation
dictionaries (same keys in both languages, every key the pages use, every value the API
can send)."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from datetime import timedelta
from importlib import resources
from typing import Any, get_args

import psycopg
import pytest
from fastapi.testclient import TestClient

from eldercare.alerts import rules
from eldercare.app import create_app
from eldercare.config import Settings
from eldercare.platform import lifecycle
from eldercare.platform.schemas import HotlineCallCreate, RevisitCreate, WorkOrderCreate
from eldercare.protocol import EVENT_TYPES
from eldercare.registry import auth
from tests.alarm_support import FrozenClock, RecordingPublisher, World

PASSWORD = "correct-horse-battery"
STATIC = resources.files("eldercare.web").joinpath("static")
# Every rule code of the visit checks (design §2.8), as the anomalies table stores them.
WORKER_RULES = (
    "dup_claim",
    "resident_inactive",
    "no_presence_evidence",
    "alarm_unanswered_during_visit",
    "alarm_open_at_check_in",
    "gps_far",
    "worker_overlap",
    "impossible_travel",
    "duration_out_of_range",
    "clock_skew",
    "unverifiable",
    "not_contracted",
    "unqualified",
    "assessment_lapsed",
    "revisit_denied",
    "photo_reuse",
    "long_absence_claims",
    "off_schedule",
)


def _dict(lang: str) -> dict[str, str]:
    return json.loads(STATIC.joinpath("i18n", f"{lang}.json").read_text("utf-8"))


# ---------------------------------------------------------------- translations


def test_both_languages_have_the_same_keys_and_no_empty_text() -> None:
    zh, en = _dict("zh-CN"), _dict("en")
    assert set(zh) == set(en)
    assert all(v.strip() for v in zh.values()) and all(v.strip() for v in en.values())
    # Placeholders must match, or a translation would drop a number.
    for key in zh:
        assert set(re.findall(r"\{(\w+)\}", zh[key])) == set(re.findall(r"\{(\w+)\}", en[key])), key
    # The Chinese text is Chinese and the English is not (identical only for symbols).
    cjk = re.compile(r"[\u3400-\u9fff]")
    assert not [k for k, v in en.items() if cjk.search(v)]
    assert not [k for k, v in zh.items() if re.search(r"[A-Za-z]{2,}", re.sub(r"\{\w+\}", "", v))]


def test_every_key_the_pages_use_is_translated() -> None:
    zh = _dict("zh-CN")
    used: set[str] = set()
    for name in (
        "console.html",
        "staff.html",
        "console.js",
        *sorted(f"console/{p.name}" for p in STATIC.joinpath("console").iterdir()),
        "orders.js",
        "staff.js",
        "common.js",
        "worker.html",
        "worker.js",
    ):
        text = STATIC.joinpath(name).read_text("utf-8")
        used |= set(re.findall(r"\bt\(\s*\"([a-z_.0-9]+)\"", text))
        used |= set(re.findall(r"data-i18n(?:-[a-z-]+)?=\"([a-z_.0-9]+)\"", text))
        used |= set(re.findall(r"\[\"[^\"]*\", \"([a-z_]+\.[a-z_0-9]+)\"\]", text))  # key tables
    assert used and used - set(zh) == set()


def test_every_value_the_api_sends_is_translated() -> None:
    zh = _dict("zh-CN")
    enums: dict[str, set[str]] = {
        "kind": {*rules.ALARM_KINDS, *rules.HEALTH_KINDS, *rules.PRIORITY},
        "status": {*rules.ACTIVE, *rules.TERMINAL},
        "disp": set(rules.DISPOSITIONS),
        "role": set(auth.ROLES),
        "prio": {"1", "2", "3", "4"},
        "gender": {"female", "male", "other"},
        "devkind": {"sos_button", "fall_sensor", "video_bridge", "home_kit", "wearable"},
        "offer": {"pending", "accepted", "declined", "expired", "withdrawn", "called"},
        "rkind": {"facility_staff", "outreach", "provider", "family", "emergency"},
        "evt": set(EVENT_TYPES),
        "action": {
            "raised",
            "acknowledged",
            "dispatched",
            "accepted",
            "declined",
            "escalated",
            "escalation_stalled",
            "on_site",
            "resolved",
            "closed",
            "note",
            "emergency",
            "revealed",
            "merged",
            "cleared",
            "cancel_requested",
            "supervisor_notified",
            "joined",
            "correlated",
            "work_order_created",
            "work_order_not_created",
        },
    }
    # The work-order tab and the call form (eldercare.platform): statuses, timeline actions,
    # sources, call types, revisit channels and the satisfaction scale.
    enums["wostatus"] = set(lifecycle.STATUSES)
    enums["woaction"] = {*lifecycle.MOVES, "created", "revisit"}
    enums["source"] = {*get_args(WorkOrderCreate.model_fields["source"].annotation), "alarm"}
    enums["reqtype"] = set(get_args(HotlineCallCreate.model_fields["request_type"].annotation))
    enums["channel"] = set(get_args(RevisitCreate.model_fields["channel"].annotation))
    enums["sat"] = {"1", "2", "3", "4"}
    # The worker page's: work-order statuses, the visit checks' rules (design §2.8 R01-R16)
    # and the decisions on their findings.
    enums["wstatus"] = set(lifecycle.STATUSES)
    enums["wrule"] = set(WORKER_RULES)
    enums["wdecision"] = {"open", "confirmed", "dismissed"}
    missing = [f"{p}.{v}" for p, values in enums.items() for v in values if f"{p}.{v}" not in zh]
    assert missing == []


# ---------------------------------------------------------------- served pages and router


@pytest.fixture(scope="module")
def client(settings: Settings, clock: FrozenClock) -> Iterator[TestClient]:
    app = create_app(settings, clock=clock, publisher=RecordingPublisher(), background=False)
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def headers(client: TestClient, settings: Settings, world: World) -> dict[str, dict[str, str]]:
    tag = secrets.token_hex(3)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        auth.create_user(conn, f"op-{tag}", PASSWORD, "operator")
        auth.create_user(
            conn, f"st-{tag}", PASSWORD, "facility_staff", world.facility_id, world.staff[0]
        )
        auth.create_user(conn, f"ho-{tag}", PASSWORD, "facility_staff", world.home_facility_id)
    out = {}
    for role, name in (("op", f"op-{tag}"), ("staff", f"st-{tag}"), ("home", f"ho-{tag}")):
        r = client.post("/api/auth/token", data={"username": name, "password": PASSWORD})
        out[role] = {"Authorization": f"Bearer {r.json()['access_token']}"}
    return out


def test_pages_and_assets_are_served_from_the_package(client: TestClient) -> None:
    for path in ("/console", "/staff", "/worker"):
        r = client.get(path)
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
        # Nothing from outside: every script and stylesheet is ours, every link one of ours.
        for ref in re.findall(r'(?:src|href)="([^"]+)"', r.text):
            assert ref.startswith("/static/") or ref in ("/console", "/staff"), ref
            assert client.get(ref).status_code == 200, ref
    r = client.get("/static/console.js")
    assert r.headers["content-type"].startswith("text/javascript")
    assert client.get("/static/app.css").headers["content-type"].startswith("text/css")
    assert client.get("/static/i18n/en.json").json()["tab.map"] == "Map"
    for bad in (
        "/static/../__init__.py",
        "/static/%2e%2e/__init__.py",
        "/static/.hidden",
        "/static/nope.js",
        "/static/i18n",
    ):
        assert client.get(bad).status_code == 404, bad


def test_handover_notes(
    client: TestClient,
    headers: dict[str, Any],
    world: World,
    clock: FrozenClock,
    settings: Settings,
) -> None:
    op, staff = headers["op"], headers["staff"]
    aid = str(world.send(world.sos, "sos").alarm_id)
    assert client.get("/api/console/handover").status_code == 401
    assert client.get("/api/console/handover", headers=staff).status_code == 403
    assert (
        client.post("/api/console/handover", json={"text": "x"}, headers=staff).status_code == 403
    )
    assert client.post("/api/console/handover", json={"text": ""}, headers=op).status_code == 422
    assert (
        client.post("/api/console/handover", json={"text": "x", "extra": 1}, headers=op).status_code
        == 422
    )
    r = client.post("/api/console/handover", json={"text": "203 房家属 20:00 回电"}, headers=op)
    assert r.status_code == 201, r.text
    note = r.json()
    assert note["author"].startswith("op-") and note["text"] == "203 房家属 20:00 回电"
    snap = {a["id"]: a for a in note["open_alarms"]}
    assert snap[aid]["status"] == "raised" and snap[aid]["kind"] == "sos"
    assert set(snap[aid]) == {"id", "kind", "status", "priority", "acknowledged_by"}
    listed = client.get("/api/console/handover", headers=op).json()
    assert listed[0]["id"] == note["id"]
    # Older than the window (a day by default): not shown unless asked for.
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO handover_notes (at, author, text) VALUES (%s, 'op0', 'old') RETURNING id",
            (clock() - timedelta(hours=30),),
        ).fetchone()
    assert row is not None
    ids = [n["id"] for n in client.get("/api/console/handover", headers=op).json()]
    assert note["id"] in ids and row[0] not in ids
    ids = [
        n["id"]
        for n in client.get("/api/console/handover", params={"hours": 48}, headers=op).json()
    ]
    assert row[0] in ids


def test_open_extras_place_holder_and_scope(
    client: TestClient, headers: dict[str, Any], world: World
) -> None:
    op = headers["op"]
    home_aid = str(world.send(world.home_sos, "sos").alarm_id)
    aid = str(world.send(world.fall, "fall", confidence=0.93).alarm_id)
    for path in ("acknowledge", "dispatch"):
        assert client.post(f"/api/alarms/{aid}/{path}", headers=op).status_code == 200
    assert client.post(f"/api/alarms/{aid}/accept", headers=headers["staff"]).status_code == 200
    body = client.get("/api/console/open", headers=op).json()
    assert body["now"] and body["low_battery_pct"] > 0
    extras = {a["id"]: a for a in body["alarms"]}
    # A home care bed is drawn at the home, not at its serving facility.
    assert (extras[home_aid]["lat"], extras[home_aid]["lon"]) == (30.01, 120.01)
    assert (extras[aid]["lat"], extras[aid]["lon"]) == (31.23, 121.47)
    assert extras[aid]["holder"] == "Nurse 0" and extras[aid]["holder_kind"] == "facility_staff"
    # Facility staff see only their own facility's alarms here too.
    mine = {
        a["id"] for a in client.get("/api/console/open", headers=headers["staff"]).json()["alarms"]
    }
    assert aid in mine and home_aid not in mine
    theirs = {
        a["id"] for a in client.get("/api/console/open", headers=headers["home"]).json()["alarms"]
    }
    assert home_aid in theirs and aid not in theirs


def test_a_planned_follow_up_that_cannot_be_made_never_blocks_the_close(
    client: TestClient, headers: dict[str, Any], world: World, settings: Settings
) -> None:
    """The home-bed resident lives where no district is set (and the catalogue may lack the
    visit): closing a fall as fall_without_injury still closes the alarm, and the timeline
    says which order was not created and why. Asking for a service the platform cannot
    order (service_request) is refused, and the alarm stays open."""
    op = headers["op"]
    aid = str(world.send(world.home_sos, "sos").alarm_id)
    for action in ("acknowledge", "resolve"):
        assert client.post(f"/api/alarms/{aid}/{action}", json={}, headers=op).status_code == 200
    r = client.post(
        f"/api/alarms/{aid}/close",
        json={"disposition": "service_request", "follow_up": {"service_item_code": "meal"}},
        headers=op,
    )
    assert r.status_code in (404, 409), r.text
    assert client.get(f"/api/alarms/{aid}", headers=op).json()["alarm"]["status"] == "resolved"
    r = client.post(
        f"/api/alarms/{aid}/close", json={"disposition": "fall_without_injury"}, headers=op
    )
    assert r.status_code == 200, r.text
    d = client.get(f"/api/alarms/{aid}", headers=op).json()
    assert d["alarm"]["status"] == "closed"
    missed = [e for e in d["timeline"] if e["action"] == "work_order_not_created"]
    assert len(missed) == 1 and missed[0]["detail"]["service_item_code"] == "post_fall_visit"
    assert missed[0]["detail"]["reason"]
    with psycopg.connect(settings.database_url) as conn:
        n = conn.execute("SELECT count(*) FROM work_orders WHERE alarm_id = %s", (aid,)).fetchone()
    assert n is not None and n[0] == 0
