"""Audit issue 7, the HTTP side (../shared/design/security.md): H5 sign-in flood, H9 the
published development key, M1 the reveal as a control, M2 family contacts, M5 the token
lifecycle (revocation, websocket) and M9 browser headers. Real database, real app."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import httpx
import jwt
import psycopg
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect as ws_connect

from eldercare.app import create_app
from eldercare.config import DEFAULT_SECRET_KEY, Settings, load_settings
from eldercare.errors import ConfigError, InvalidInput
from eldercare.registry import auth
from harness.services import (
    Proc,
    free_port,
    make_settings,
    running_broker,
    serve_in_thread,
    settings_env,
    wait_for,
)
from tests.alarm_support import FrozenClock, RecordingPublisher, World, one_row

PASSWORD = "correct-horse-battery"


@pytest.fixture(scope="module")
def sec_settings(settings: Settings) -> Settings:
    # Small limits so the tests reach them with a handful of requests.
    return settings.model_copy(
        update={
            "login_failures_per_user": 3,
            "login_failures_per_user_total": 10,
            "login_failures_per_address": 6,
            "ws_recheck_s": 0.05,
            "reveals_per_hour": 4,
        }
    )


@pytest.fixture(scope="module")
def tag() -> str:
    return secrets.token_hex(3)


def _user(settings: Settings, name: str, role: str = "operator", **kw: Any) -> str:
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        auth.create_user(conn, name, PASSWORD, role, **kw)
    return name


@pytest.fixture(scope="module")
def client(sec_settings: Settings, clock: FrozenClock) -> Iterator[TestClient]:
    app = create_app(sec_settings, clock=clock, publisher=RecordingPublisher(), background=False)
    with TestClient(app) as c:
        yield c


def _login(client: TestClient, name: str, password: str = PASSWORD) -> httpx.Response:
    return client.post("/api/auth/token", data={"username": name, "password": password})


def _app(client: TestClient) -> FastAPI:
    """The app under test (TestClient types it as any ASGI callable)."""
    assert isinstance(client.app, FastAPI)
    return client.app


def _bearer(client: TestClient, name: str) -> dict[str, str]:
    r = _login(client, name)
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


# ---------------------------------------------------------------- M9 headers


def test_m9_pages_and_api_carry_security_headers(client: TestClient, tag: str, sec_settings):
    op = _bearer(client, _user(sec_settings, f"m9-{tag}"))
    for path, headers in (
        ("/console", {}),
        ("/staff", {}),
        ("/registry", {}),
        ("/static/common.js", {}),
        ("/api/me", op),
        ("/api/alarms", {}),  # a 401 too
    ):
        r = client.get(path, headers=headers)
        csp = r.headers.get("content-security-policy", "")
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp, (path, csp)
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert r.headers.get("x-content-type-options") == "nosniff"
        assert r.headers.get("x-frame-options") == "DENY"
        assert r.headers.get("referrer-policy") == "no-referrer"
    # Personal data in API answers is not kept by browsers or proxies.
    assert client.get("/api/me", headers=op).headers["cache-control"] == "no-store"


# ---------------------------------------------------------------- H9 development key


def test_h9_default_key_only_on_loopback() -> None:
    with pytest.raises(ConfigError, match="ELDERCARE_SECRET_KEY"):
        load_settings(api_host="0.0.0.0", secret_key=DEFAULT_SECRET_KEY)
    with pytest.raises(ConfigError, match="ELDERCARE_SECRET_KEY"):
        load_settings(api_host="10.1.2.3", secret_key=DEFAULT_SECRET_KEY, environment="test")
    for host in ("127.0.0.1", "localhost", "::1"):
        assert load_settings(api_host=host, secret_key=DEFAULT_SECRET_KEY).api_host == host
    assert load_settings(api_host="0.0.0.0", secret_key="x" * 40).api_host == "0.0.0.0"


def test_h9_serve_refuses_public_bind_with_default_key(sec_settings: Settings) -> None:
    env = settings_env(sec_settings)
    env.pop("ELDERCARE_SECRET_KEY", None)
    env.update(ELDERCARE_API_HOST="0.0.0.0", ELDERCARE_API_PORT=str(free_port()))
    done = subprocess.run(
        [sys.executable, "-m", "eldercare", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0
    assert "ELDERCARE_SECRET_KEY" in done.stderr and "loopback" in done.stderr


def test_h9_forged_and_overlong_tokens_are_refused(
    client: TestClient, sec_settings: Settings, clock: FrozenClock, tag: str
) -> None:
    now = int(clock().timestamp())
    ghost = jwt.encode(
        {"sub": f"ghost-{tag}", "role": "admin", "iat": now, "exp": now + 3600, "jti": "x"},
        sec_settings.secret_key,
        algorithm="HS256",
    )
    r = client.get("/api/webhooks", headers={"Authorization": f"Bearer {ghost}"})
    assert r.status_code == 401
    # A real user, but a lifetime beyond token_minutes: not one the API issued.
    name = _user(sec_settings, f"long-{tag}", "admin")
    long = jwt.encode(
        {"sub": name, "role": "admin", "iat": now, "exp": now + 10**7, "jti": "y"},
        sec_settings.secret_key,
        algorithm="HS256",
    )
    assert client.get("/api/me", headers={"Authorization": f"Bearer {long}"}).status_code == 401


# ---------------------------------------------------------------- H5 sign-in


def test_h5_passwords_over_72_bytes_are_422(client: TestClient, sec_settings, tag: str) -> None:
    with (
        psycopg.connect(sec_settings.database_url, autocommit=True) as conn,
        pytest.raises(InvalidInput, match="72 bytes"),
    ):
        # 37 characters, 74 bytes: bcrypt would have cut (or refused) it.
        auth.create_user(conn, f"long-pw-{tag}", "é" * 37, "operator")
    name = _user(sec_settings, f"h5len-{tag}")
    r = _login(client, name, "a" * 73)
    assert r.status_code == 422 and "72 bytes" in r.json()["detail"]


def test_h5_login_rate_limited_per_user(client: TestClient, sec_settings, tag: str) -> None:
    name = _user(sec_settings, f"h5u-{tag}")
    other = _user(sec_settings, f"h5o-{tag}")
    for _ in range(3):
        assert _login(client, name, "wrong-password").status_code == 401
    for password in ("wrong-password", PASSWORD):  # even the right one, for now
        r = _login(client, name, password)
        assert r.status_code == 429, r.text
        assert 0 < int(r.headers["retry-after"]) <= 15 * 60
        assert "too many failed sign-ins" in r.json()["detail"]
    # Another user from the same address is not locked out.
    assert _login(client, other).status_code == 200
    # Nor is this user at another workstation: someone guessing from one address cannot
    # lock an operator out of the desk ...
    desk = TestClient(client.app, client=("198.51.100.7", 40000))
    assert desk.post("/api/auth/token", data={"username": name, "password": PASSWORD}).is_success
    # ... but guessing spread over many addresses still meets a limit for the user.
    for i in range(3):
        there = TestClient(client.app, client=(f"198.51.100.{20 + i}", 40000))
        for _ in range(3):
            there.post("/api/auth/token", data={"username": name, "password": "wrong-pw"})
    r = desk.post("/api/auth/token", data={"username": name, "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0


def test_h5_login_rate_limited_per_address(client: TestClient, sec_settings, tag: str) -> None:
    name = _user(sec_settings, f"h5a-{tag}")
    # Requests from another address, on the same running app.
    elsewhere = TestClient(client.app, client=("203.0.113.9", 40000))
    for i in range(6):
        r = elsewhere.post(
            "/api/auth/token", data={"username": f"nobody-{i}-{tag}", "password": "x" * 9}
        )
        assert r.status_code == 401
    r = elsewhere.post("/api/auth/token", data={"username": name, "password": PASSWORD})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    # The address is refused, not the user: from here the same login works.
    assert _login(client, name).status_code == 200


@pytest.mark.slow
def test_h5_bcrypt_does_not_hold_a_database_connection(
    settings: Settings, clock: FrozenClock, tag: str
) -> None:
    """A pool of 2 and four slow sign-ins in flight: an operator's request still gets a
    connection at once (before, every sign-in held one through bcrypt)."""
    small = settings.model_copy(update={"db_pool_max": 2, "login_concurrency": 2})
    slow = _user(small, f"h5slow-{tag}")
    with psycopg.connect(small.database_url, autocommit=True) as conn:
        # Cost 13: about half a second per check, long enough to overlap.
        conn.execute(
            "UPDATE users SET password_hash = %s WHERE username = %s",
            (bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(13)).decode(), slow),
        )
    op = _user(small, f"h5op-{tag}")
    app = create_app(small, clock=clock, publisher=RecordingPublisher(), background=False)
    port = free_port()
    with serve_in_thread(app, port) as host:
        base = f"http://{host}"
        tok = httpx.post(f"{base}/api/auth/token", data={"username": op, "password": PASSWORD})
        headers = {"Authorization": f"Bearer {tok.json()['access_token']}"}
        finished: list[float] = []

        def attempt() -> None:
            httpx.post(
                f"{base}/api/auth/token",
                data={"username": slow, "password": "wrong-password"},
                timeout=60,
            )
            finished.append(time.monotonic())

        pool = app.state.pool

        def asked() -> int:
            return int(pool.get_stats().get("requests_num", 0))

        before = asked()
        threads = [threading.Thread(target=attempt) for _ in range(4)]
        for t in threads:
            t.start()
        # All four sign-ins have asked the pool for a connection (to hold it through bcrypt
        # before the fix, to read the hash and give it back after).
        wait_for(lambda: asked() >= before + 4, timeout=10, what="sign-ins at the pool")
        r = httpx.get(f"{base}/api/facilities", headers=headers, timeout=30)
        served = time.monotonic()
        for t in threads:
            t.join(60)
        assert r.status_code == 200
        assert len(finished) == 4 and served < min(finished)


# ---------------------------------------------------------------- M5 token lifecycle


def _ws_auth(ws: Any, token_header: dict[str, str]) -> dict[str, Any]:
    ws.send_json({"type": "auth", "token": token_header["Authorization"].split()[1]})
    return ws.receive_json()


def _closed_with(ws: Any) -> int | None:
    """Read until the server closes the socket; its close code."""
    while True:
        try:
            ws.receive_json()
        except WebSocketDisconnect as exc:
            return exc.code


def test_m5_websocket_token_not_in_url(client: TestClient, sec_settings, tag: str) -> None:
    op = _bearer(client, _user(sec_settings, f"ws-{tag}"))
    token = op["Authorization"].split()[1]
    with (
        pytest.raises(WebSocketDisconnect) as refused,
        client.websocket_connect(f"/api/ws?token={token}") as ws,
    ):
        ws.receive_json()
    assert refused.value.code == 4400
    with client.websocket_connect("/api/ws") as ws:
        ws.send_json({"type": "auth", "token": "not-a-token"})
        assert _closed_with(ws) == 4401
    with client.websocket_connect("/api/ws") as ws:
        hello = _ws_auth(ws, op)
        assert hello["type"] == "hello" and hello["username"] == f"ws-{tag}"
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}


def test_m5_logout_revokes_the_token_and_its_socket(
    client: TestClient, sec_settings, tag: str
) -> None:
    name = _user(sec_settings, f"out-{tag}")
    op, second = _bearer(client, name), _bearer(client, name)
    with client.websocket_connect("/api/ws") as ws:
        assert _ws_auth(ws, op)["type"] == "hello"
        assert client.post("/api/auth/logout", headers=op).status_code == 204
        assert _closed_with(ws) == 4401
    assert client.get("/api/me", headers=op).status_code == 401
    # Only that sign-in ended: the same user's other session still works.
    assert client.get("/api/me", headers=second).status_code == 200


def test_m5_disabled_user_and_changed_role_stop_at_once(
    client: TestClient, sec_settings, tag: str
) -> None:
    gone = _user(sec_settings, f"gone-{tag}")
    moved = _user(sec_settings, f"moved-{tag}")
    g, m = _bearer(client, gone), _bearer(client, moved)
    with psycopg.connect(sec_settings.database_url, autocommit=True) as conn:
        with client.websocket_connect("/api/ws") as ws:
            assert _ws_auth(ws, g)["type"] == "hello"
            conn.execute("UPDATE users SET active = false WHERE username = %s", (gone,))
            # The open socket is closed by the recheck, the next request refused.
            assert _closed_with(ws) == 4401
        assert client.get("/api/me", headers=g).status_code == 401
        conn.execute("UPDATE users SET role = 'supervisor' WHERE username = %s", (moved,))
    assert client.get("/api/me", headers=m).status_code == 401
    assert client.get("/api/me", headers=_bearer(client, moved)).json()["role"] == "supervisor"


def test_m5_websocket_closed_when_the_token_expires(
    client: TestClient, sec_settings, clock: FrozenClock, tag: str
) -> None:
    op = _bearer(client, _user(sec_settings, f"exp-{tag}"))
    saved = clock.now
    try:
        with client.websocket_connect("/api/ws") as ws:
            assert _ws_auth(ws, op)["type"] == "hello"
            clock.advance(sec_settings.token_minutes * 60 + 1)
            assert _closed_with(ws) == 4401
    finally:
        clock.now = saved


# ---------------------------------------------------------------- M1 reveal, M2 contacts


@pytest.fixture(scope="module")
def desk(client: TestClient, sec_settings: Settings, tag: str) -> dict[str, dict[str, str]]:
    return {
        "op": _bearer(client, _user(sec_settings, f"rop-{tag}")),
        "op2": _bearer(client, _user(sec_settings, f"rop2-{tag}")),
        "sup": _bearer(client, _user(sec_settings, f"rsup-{tag}", "supervisor")),
    }


def _reveal(client: TestClient, who: dict[str, str], resident: int, **body: Any):
    return client.post(f"/api/residents/{resident}/reveal", json=body, headers=who)


def test_m1_reveal_needs_a_live_alarm_or_a_stated_reason(
    client: TestClient, world: World, desk: dict[str, Any], db: psycopg.Connection, tag: str
) -> None:
    op, sup = desk["op"], desk["sup"]
    rid = world.resident_id
    live = str(world.send(world.sos, "sos").alarm_id)
    other = str(world.send(world.home_sos, "sos").alarm_id)  # another resident's alarm
    bogus = "00000000-0000-0000-0000-000000000001"

    def granted() -> int:
        return one_row(
            db.execute(
                "SELECT count(*) FROM reveals WHERE resident_id = %s AND refused IS NULL", (rid,)
            )
        )[0]

    before = granted()
    for alarm_id in (bogus, other):
        r = _reveal(client, op, rid, reason="calling family", alarm_id=alarm_id)
        assert r.status_code == 422 and "not an open alarm of resident" in r.json()["detail"]
    r = _reveal(client, op, rid, reason="look")  # no alarm, no real reason
    assert r.status_code == 422 and "reason" in r.json()["detail"]
    assert granted() == before
    # Refusals are kept where a supervisor can see them, the bogus alarm id marked refused.
    log = client.get("/api/reveals", params={"username": f"rop-{tag}"}, headers=sup).json()
    assert [x["refused"] is not None for x in log[:3]] == [True, True, True]

    r = _reveal(client, op, rid, reason="calling family", alarm_id=live)
    assert r.status_code == 200 and r.json()["contacts"][0]["phone"] == "13800000001"
    r = _reveal(client, op, rid, reason="family asked to update the address")
    assert r.status_code == 200
    assert granted() == before + 2
    timeline = client.get(f"/api/alarms/{live}", headers=op).json()["timeline"]
    assert "revealed" in [e["action"] for e in timeline]
    assert client.get("/api/reveals", headers=op).status_code == 403
    db.execute(
        "UPDATE alarms SET status = 'closed', closed_at = now(), disposition = 'test'"
        " WHERE id = ANY(%s::uuid[])",
        ([live, other],),
    )
    r = _reveal(client, op, rid, reason="calling family", alarm_id=live)
    assert r.status_code == 422  # closed: no longer a reason by itself


def test_m1_reveals_are_throttled_per_user(
    client: TestClient, world: World, desk: dict[str, Any]
) -> None:
    op2 = desk["op2"]
    live = str(world.send(world.sos, "sos").alarm_id)
    for _ in range(4):
        r = _reveal(client, op2, world.resident_id, reason="calling family", alarm_id=live)
        assert r.status_code == 200
    r = _reveal(client, op2, world.resident_id, reason="calling family", alarm_id=live)
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    # Another operator is not affected.
    r = _reveal(client, desk["op"], world.resident_id, reason="calling family", alarm_id=live)
    assert r.status_code == 200


def test_m2_family_contacts_only_through_the_reveal(
    client: TestClient, world: World, desk: dict[str, Any], clock: FrozenClock
) -> None:
    op = desk["op"]
    # A home-bed resident whose first dispatch step (outreach) is taken: family comes next.
    aid = str(world.send(world.home_sos, "sos").alarm_id)
    assert client.post(f"/api/alarms/{aid}/acknowledge", headers=op).status_code == 200
    assert client.post(f"/api/alarms/{aid}/dispatch", headers=op).status_code == 200
    d = client.get(f"/api/alarms/{aid}", headers=op).json()
    assert d["proposal"]["kind"] == "family"
    (fam,) = d["proposal"]["responders"]
    assert fam["phone"] == "139****0003" and fam["name"] != "Niece"
    with client.websocket_connect("/api/ws") as ws:
        assert _ws_auth(ws, op)["type"] == "hello"
        clock.advance(181)
        _app(client).state.engine.tick()
        while True:
            msg = ws.receive_json()
            ours = msg["type"] == "offer" and msg["alarm"]["id"] == aid
            if ours and msg["offer"]["responder_kind"] == "family":
                break
    assert msg["offer"]["phone"] == "139****0003" and "Niece" not in str(msg)
    offers = client.get(f"/api/alarms/{aid}", headers=op).json()["offers"]
    family = [o for o in offers if o["responder_kind"] == "family"]
    assert family and all(o["phone"] == "139****0003" for o in family)
    assert "Niece" not in str(offers)
    # The reveal is where the number is, and it is recorded.
    r = _reveal(client, op, world.home_resident_id, reason="calling family", alarm_id=aid)
    assert r.json()["contacts"] == [{"name": "Niece", "relation": "", "phone": "13900000003"}]


# ---------------------------------------------------------------- M7 facility staff


def test_m7_staff_answer_only_their_own_offers_and_resolve_what_they_hold(
    client: TestClient, world: World, desk: dict[str, Any], clock: FrozenClock, tag: str
) -> None:
    op = desk["op"]
    s = _app(client).state.settings
    unlinked = _bearer(
        client, _user(s, f"nolink-{tag}", "facility_staff", facility_id=world.facility_id)
    )
    nurse = _bearer(
        client,
        _user(
            s,
            f"nurse-{tag}",
            "facility_staff",
            facility_id=world.facility_id,
            responder_id=world.staff[0],
        ),
    )
    # Escalated to the family: a member of staff who is no responder may not answer it.
    aid = str(world.send(world.sos, "sos").alarm_id)
    client.post(f"/api/alarms/{aid}/acknowledge", headers=op)
    client.post(f"/api/alarms/{aid}/dispatch", headers=op)
    clock.advance(121)
    _app(client).state.engine.tick()
    offers = client.get(f"/api/alarms/{aid}", headers=op).json()["offers"]
    (family,) = [o for o in offers if o["responder_kind"] == "family"]

    def acts(alarm_id: str, who: dict[str, str]) -> list[str]:
        """What the staff page offers: the detail's allowed_actions, for this user."""
        shown = client.get(f"/api/alarms/{alarm_id}", headers=who).json()["alarm"]
        listed = {a["id"]: a for a in client.get("/api/alarms", headers=who).json()}
        assert listed[alarm_id]["allowed_actions"] == shown["allowed_actions"]
        return shown["allowed_actions"]

    assert {"accept", "decline"}.isdisjoint(acts(aid, unlinked))
    for action in ("accept", "decline"):
        r = client.post(
            f"/api/alarms/{aid}/{action}", json={"offer_id": family["id"]}, headers=unlinked
        )
        assert r.status_code == 403, r.text
    # Dispatched to the nurses, accepted by nobody: staff may not resolve it (that would
    # stop the escalation of an alarm nobody attends) ...
    bid = str(world.send(world.sos, "gas").alarm_id)
    client.post(f"/api/alarms/{bid}/acknowledge", headers=op)
    client.post(f"/api/alarms/{bid}/dispatch", headers=op)
    for who in (unlinked, nurse):
        assert "resolve" not in acts(bid, who)
        assert client.post(f"/api/alarms/{bid}/resolve", headers=who).status_code == 403
    assert {"accept", "decline"} <= set(acts(bid, nurse)) and "resolve" in acts(bid, op)
    # ... until it is theirs.
    taken = client.post(f"/api/alarms/{bid}/accept", headers=nurse)
    assert taken.status_code == 200 and "resolve" in taken.json()["allowed_actions"]
    assert "resolve" in acts(bid, nurse) and "resolve" not in acts(bid, unlinked)
    assert client.post(f"/api/alarms/{bid}/resolve", headers=unlinked).status_code == 403
    r = client.post(f"/api/alarms/{bid}/resolve", headers=nurse)
    assert r.status_code == 200 and r.json()["status"] == "resolved"
    # An alarm a member of staff acknowledged and attends in person stays theirs to resolve.
    cid = str(world.send(world.device("sos_button"), "sos").alarm_id)
    assert client.post(f"/api/alarms/{cid}/acknowledge", headers=unlinked).status_code == 200
    assert "resolve" in acts(cid, unlinked) and "resolve" not in acts(cid, nurse)
    assert client.post(f"/api/alarms/{cid}/resolve", headers=nurse).status_code == 403
    assert client.post(f"/api/alarms/{cid}/resolve", headers=unlinked).status_code == 200


# ---------------------------------------------------------------- the real server


@pytest.mark.slow
def test_m5_serve_never_logs_a_token(settings: Settings, tmp_path: Path, tag: str) -> None:
    """``eldercare serve`` as deployed: a client still putting its token in the websocket
    URL is refused, and the access log keeps no token; the first-message auth works."""
    with running_broker(tmp_path / "mosquitto") as broker:
        port = free_port()
        s = make_settings(settings.database_url, broker, api_port=port)
        name = _user(s, f"srv-{tag}")
        serve = Proc(["serve", "--workers", "1"], s, tmp_path / "serve.log").start()
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: _up(base), timeout=60, interval=0.2, what="serve up")
            assert (
                "frame-ancestors 'none'"
                in httpx.get(f"{base}/console").headers["content-security-policy"]
            )
            tok = httpx.post(
                f"{base}/api/auth/token", data={"username": name, "password": PASSWORD}
            ).json()["access_token"]
            with pytest.raises(InvalidStatus):
                ws_connect(f"ws://127.0.0.1:{port}/api/ws?token={tok}").close()
            with ws_connect(f"ws://127.0.0.1:{port}/api/ws") as ws:
                ws.send(json.dumps({"type": "auth", "token": tok}))
                assert json.loads(ws.recv(timeout=10))["type"] == "hello"
            wait_for(lambda: "WebSocket /api/ws" in serve.output(), what="the access log")
            log = serve.output()
            assert tok not in log and tok.split(".")[1] not in log
            assert "token=[redacted]" in log
        finally:
            serve.stop()


def _up(base: str) -> bool:
    try:
        return httpx.get(f"{base}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
