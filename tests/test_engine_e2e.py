"""End to end over the real broker and database: a simulated device's genuine SOS goes
through the gateway, appears on an operator's websocket, and is acknowledged,
dispatched, accepted, attended and resolved over HTTP, the device told at each step."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest
from websockets.sync.client import connect as ws_connect

from eldercare.app import create_app
from eldercare.config import Settings
from eldercare.registry import auth
from harness.services import free_port, serve_in_thread

PASSWORD = "correct-horse-battery"


@pytest.fixture
def api(settings: Settings) -> Iterator[str]:
    port = free_port()
    app = create_app(settings.model_copy(update={"api_port": port}))
    with serve_in_thread(app, port) as address:
        yield address


def _login(base: str, username: str) -> str:
    r = httpx.post(
        f"http://{base}/api/auth/token", data={"username": username, "password": PASSWORD}
    )
    r.raise_for_status()
    return str(r.json()["access_token"])


def test_genuine_sos_end_to_end(
    settings: Settings, facility_id: int, gateway: object, make_device, api: str
) -> None:
    tag = secrets.token_hex(3)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO responders (kind, name, phone, facility_id) VALUES"
            " ('facility_staff', 'Nurse E2E', '15100000000', %s) RETURNING id",
            (facility_id,),
        ).fetchone()
        assert row is not None
        nurse_id = row[0]
        now = datetime.now(UTC)
        conn.execute(
            "INSERT INTO rota (responder_id, facility_id, starts_at, ends_at) VALUES"
            " (%s, %s, %s, %s)",
            (nurse_id, facility_id, now - timedelta(hours=1), now + timedelta(hours=1)),
        )
        auth.create_user(conn, f"op-{tag}", PASSWORD, "operator")
        auth.create_user(conn, f"nurse-{tag}", PASSWORD, "facility_staff", facility_id, nurse_id)
    op = {"Authorization": f"Bearer {_login(api, f'op-{tag}')}"}
    nurse = {"Authorization": f"Bearer {_login(api, f'nurse-{tag}')}"}
    http = httpx.Client(base_url=f"http://{api}", timeout=10)

    device = make_device("sos_button")
    with ws_connect(f"ws://{api}/api/ws") as ws:
        # The token in the first message, not the URL (audit M5).
        ws.send(json.dumps({"type": "auth", "token": op["Authorization"].split()[1]}))
        assert json.loads(ws.recv(timeout=5))["type"] == "hello"
        sent = time.monotonic()
        mid = device.raise_alarm("sos", press="long")
        alarm_id = device.ack_for(mid, timeout=10)["alarm_id"]
        while True:
            msg = json.loads(ws.recv(timeout=10))
            if msg["type"] == "alarm" and msg["alarm"]["id"] == alarm_id:
                break
        latency_ms = (time.monotonic() - sent) * 1000
        assert msg["event"] == "raised" and msg["alarm"]["kind"] == "sos"
        assert latency_ms < 2000, latency_ms  # the benchmark holds the real bar (p99 100 ms)

        def step(path: str, headers: dict[str, str], expect: str, told: str | None) -> None:
            r = http.post(f"/api/alarms/{alarm_id}/{path}", headers=headers)
            assert r.status_code == 200, r.text
            assert r.json()["status"] == expect
            if told:
                device.wait_downlink(
                    lambda d: (
                        d.get("type") == "alarm_status"
                        and d.get("alarm_id") == alarm_id
                        and d.get("status") == told
                    ),
                    timeout=10,
                )

        step("acknowledge", op, "acknowledged", "acknowledged")
        step("dispatch", op, "dispatched", "dispatched")
        step("accept", nurse, "accepted", None)
        step("on-site", nurse, "on_site", "on_site")
        step("resolve", nurse, "resolved", "resolved")
        # The console saw every step too.
        events = set()
        deadline = time.monotonic() + 10
        while "resolved" not in events and time.monotonic() < deadline:
            m = json.loads(ws.recv(timeout=10))
            if m.get("alarm", {}).get("id") == alarm_id and m["type"] == "alarm":
                events.add(m["event"])
        assert {"acknowledged", "dispatched", "accepted", "on_site", "resolved"} <= events
    told = [
        d["status"]
        for d in device.downlinks
        if d.get("type") == "alarm_status" and d.get("alarm_id") == alarm_id
    ]
    assert told == ["acknowledged", "dispatched", "on_site", "resolved"]
    r = http.post(
        f"/api/alarms/{alarm_id}/close", json={"disposition": "genuine_emergency"}, headers=op
    )
    assert r.status_code == 200 and r.json()["closed_at"] is not None
