"""The HTTP API and websocket over the real database, with a frozen clock."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from fastapi.testclient import TestClient

from eldercare.app import create_app
from eldercare.config import Settings
from eldercare.http import deps
from eldercare.registry import auth
from tests.alarm_support import FrozenClock, RecordingPublisher, World, build_world, rows

PASSWORD = "correct-horse-battery"


def test_a_fault_in_our_sql_is_500_not_database_unavailable(
    settings: Settings, clock: FrozenClock, publisher: RecordingPublisher
) -> None:
    """A programming error or a missing grant is a bug to fix, not an outage: it must not
    answer 503 "database unavailable" (which sends people to look at the database), nor
    leak the statement's message; the request connection's translate() is the boundary."""
    from eldercare.errors import DatabaseFault, StorageError
    from eldercare.storage import db

    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        with pytest.raises(DatabaseFault) as info, db.translate():
            conn.execute("SELECT no_such_column FROM facilities")
        assert info.value.sqlstate == "42703" and "no_such_column" not in str(info.value)
        with pytest.raises(DatabaseFault), db.translate():  # as the app role: no grant
            conn.execute("CREATE TABLE eldercare_app_may_not (x int)")
    # Still a StorageError, so the gateway's retry-on-storage-error paths keep working.
    assert issubclass(DatabaseFault, StorageError)

    app = create_app(settings, clock=clock, publisher=publisher, background=False)

    @app.get("/test-fault")
    def fault(conn: deps.Conn) -> None:  # module-level name: annotations are strings
        conn.execute("SELECT no_such_column FROM facilities")

    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/test-fault")
    assert r.status_code == 500, r.text
    assert r.json() == {"detail": "internal error (42703)"}


def test_a_database_fault_logs_where_and_what_but_not_the_rows_values(
    settings: Settings,
    clock: FrozenClock,
    publisher: RecordingPublisher,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The server's DETAIL line quotes a row's values; the 500's log line keeps the primary
    message and the frames, never the detail (personal data stays out of logs)."""
    app = create_app(settings, clock=clock, publisher=publisher, background=False)

    @app.get("/test-fault-detail")
    def fault(conn: deps.Conn) -> None:
        conn.execute(
            "DO $$ BEGIN RAISE EXCEPTION 'fault-primary'"
            " USING DETAIL = 'Key (id_number)=(110101194001010011)'; END $$"
        )

    with (
        caplog.at_level("ERROR", logger="eldercare.http.app"),
        TestClient(app, raise_server_exceptions=False) as c,
    ):
        r = c.get("/test-fault-detail")
    assert r.status_code == 500, r.text
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "fault-primary" in logged and "test_api.py" in logged
    assert "110101194001010011" not in logged
    assert all(rec.exc_info is None for rec in caplog.records)


@pytest.fixture(scope="module")
def users(settings: Settings, world: World) -> dict[str, str]:
    tag = secrets.token_hex(3)
    names = {
        "operator": f"op-{tag}",
        "supervisor": f"sup-{tag}",
        "admin": f"adm-{tag}",
        "staff": f"staff-{tag}",
        "other_staff": f"ostaff-{tag}",
    }
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        auth.create_user(conn, names["operator"], PASSWORD, "operator")
        auth.create_user(conn, names["supervisor"], PASSWORD, "supervisor")
        auth.create_user(conn, names["admin"], PASSWORD, "admin")
        auth.create_user(
            conn, names["staff"], PASSWORD, "facility_staff", world.facility_id, world.staff[0]
        )
        auth.create_user(
            conn, names["other_staff"], PASSWORD, "facility_staff", world.home_facility_id
        )
    return names


@pytest.fixture(scope="module")
def publisher() -> RecordingPublisher:
    return RecordingPublisher()


@pytest.fixture(scope="module")
def client(
    settings: Settings, clock: FrozenClock, publisher: RecordingPublisher
) -> Iterator[TestClient]:
    app = create_app(settings, clock=clock, publisher=publisher, background=False)
    with TestClient(app) as c:
        yield c


@pytest.fixture(scope="module")
def tokens(client: TestClient, users: dict[str, str]) -> dict[str, dict[str, str]]:
    out = {}
    for role, name in users.items():
        r = client.post("/api/auth/token", data={"username": name, "password": PASSWORD})
        assert r.status_code == 200, r.text
        out[role] = {"Authorization": f"Bearer {r.json()['access_token']}"}
    return out


def test_anonymous_and_bad_credentials_get_401(client: TestClient, users: dict[str, str]) -> None:
    for path in ("/api/alarms", "/api/facilities", "/api/residents", "/api/metrics/response"):
        r = client.get(path)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert client.get("/api/alarms", headers={"Authorization": "Bearer nope"}).status_code == 401
    r = client.post("/api/auth/token", data={"username": users["operator"], "password": "wrong"})
    assert r.status_code == 401 and r.json() == {"detail": "incorrect username or password"}
    r = client.post("/api/auth/token", data={"username": "nobody", "password": "x"})
    assert r.status_code == 401
    assert client.get("/openapi.json").status_code == 200


def test_token_expires_on_the_engine_clock(
    client: TestClient, clock: FrozenClock, tokens: dict[str, Any], settings: Settings
) -> None:
    r = client.get("/api/me", headers=tokens["operator"])
    assert r.status_code == 200 and r.json()["role"] == "operator"
    saved = clock.now
    clock.advance(settings.token_minutes * 60 + 1)
    try:
        assert client.get("/api/me", headers=tokens["operator"]).status_code == 401
    finally:
        clock.now = saved


def test_alarm_flow_over_http(
    client: TestClient, world: World, tokens: dict[str, Any], publisher: RecordingPublisher
) -> None:
    op, staff = tokens["operator"], tokens["staff"]
    aid = str(world.send(world.sos, "sos").alarm_id)
    listed = client.get("/api/alarms", params={"facility": world.facility_id}, headers=op).json()
    assert aid in [a["id"] for a in listed]
    d = client.get(f"/api/alarms/{aid}", headers=op).json()
    assert d["alarm"]["resident_name"] == "Test Resident" and d["alarm"]["room"] == "203"
    assert d["resident"]["id"] == world.resident_id and "medical_notes" not in d["resident"]
    assert d["device"]["id"] == world.sos and d["timeline"][0]["action"] == "raised"
    assert d["proposal"]["kind"] == "facility_staff" and len(d["proposal"]["responders"]) == 2
    assert d["events"] and d["events"][0]["type"] == "sos"

    r = client.post(f"/api/alarms/{aid}/acknowledge", json={"note": "on the phone"}, headers=op)
    assert r.status_code == 200 and r.json()["status"] == "acknowledged"
    r = client.post(f"/api/alarms/{aid}/acknowledge", headers=op)
    assert r.status_code == 409 and "alarm is acknowledged" in r.json()["detail"]
    # Facility staff may not dispatch (403), and bodies are validated (422).
    assert client.post(f"/api/alarms/{aid}/dispatch", headers=staff).status_code == 403
    r = client.post(f"/api/alarms/{aid}/dispatch", json={"responder_ids": "x"}, headers=op)
    assert r.status_code == 422
    r = client.post(f"/api/alarms/{aid}/dispatch", headers=op)
    assert r.status_code == 200 and r.json()["status"] == "dispatched"
    r = client.post(f"/api/alarms/{aid}/accept", headers=staff)  # the nurse's own offer
    assert r.status_code == 200 and r.json()["status"] == "accepted"
    assert client.post(f"/api/alarms/{aid}/on-site", headers=staff).json()["status"] == "on_site"
    r = client.post(f"/api/alarms/{aid}/note", json={"text": "resident is fine"}, headers=staff)
    assert r.status_code == 200
    assert client.post(f"/api/alarms/{aid}/note", json={}, headers=staff).status_code == 422
    assert client.post(f"/api/alarms/{aid}/resolve", headers=staff).json()["status"] == "resolved"
    r = client.post(f"/api/alarms/{aid}/close", json={"disposition": "bogus"}, headers=op)
    assert r.status_code == 422
    r = client.post(
        f"/api/alarms/{aid}/close", json={"disposition": "fall_without_injury"}, headers=op
    )
    assert r.status_code == 200 and r.json()["status"] == "closed"
    timeline = client.get(f"/api/alarms/{aid}", headers=op).json()["timeline"]
    assert [e["action"] for e in timeline] == [
        "raised",
        "acknowledged",
        "dispatched",
        "accepted",
        "on_site",
        "note",
        "resolved",
        "closed",
    ]
    client.app.state.engine.tick()  # type: ignore[attr-defined]
    assert publisher.statuses(world.sos) == ["acknowledged", "dispatched", "on_site", "resolved"]


def test_unknown_ids_and_bad_filters(client: TestClient, tokens: dict[str, Any]) -> None:
    op = tokens["operator"]
    missing = "00000000-0000-0000-0000-000000000000"
    assert client.get(f"/api/alarms/{missing}", headers=op).status_code == 404
    assert client.post(f"/api/alarms/{missing}/acknowledge", headers=op).status_code == 404
    assert client.get("/api/alarms/not-a-uuid", headers=op).status_code == 422
    assert client.get("/api/alarms", params={"status": "weird"}, headers=op).status_code == 422
    assert client.get("/api/alarms", params={"priority": 9}, headers=op).status_code == 422


def test_facility_staff_never_see_another_facility(
    client: TestClient, world: World, tokens: dict[str, Any]
) -> None:
    other = tokens["other_staff"]
    aid = str(world.send(world.sos, "bed_exit").alarm_id)
    assert client.get(f"/api/alarms/{aid}", headers=other).status_code == 404
    assert client.post(f"/api/alarms/{aid}/acknowledge", headers=other).status_code == 404
    assert aid not in [a["id"] for a in client.get("/api/alarms", headers=other).json()]
    assert all(
        a["facility_id"] == world.home_facility_id
        for a in client.get("/api/alarms", headers=other).json()
    )
    ids = [r["id"] for r in client.get("/api/residents", headers=other).json()]
    assert world.resident_id not in ids and world.home_resident_id in ids
    assert client.get(f"/api/residents/{world.resident_id}", headers=other).status_code == 404
    r = client.post(
        f"/api/residents/{world.resident_id}/reveal", json={"reason": "curious"}, headers=other
    )
    assert r.status_code == 404
    r = client.get("/api/devices", params={"facility": world.facility_id}, headers=other)
    assert r.status_code == 404
    mine = client.get(f"/api/alarms/{aid}", headers=tokens["staff"])
    assert mine.status_code == 200


def test_reveal_is_audited(
    client: TestClient, world: World, tokens: dict[str, Any], settings: Settings
) -> None:
    op = tokens["operator"]
    pub = client.get(f"/api/residents/{world.resident_id}", headers=op).json()
    assert "contacts" not in pub and "id_number" not in pub
    r = client.post(
        f"/api/residents/{world.resident_id}/reveal",
        json={"reason": "calling family during alarm"},
        headers=op,
    )
    assert r.status_code == 200 and r.json()["contacts"][0]["phone"] == "13800000001"
    assert (
        client.post(
            f"/api/residents/{world.resident_id}/reveal", json={"reason": ""}, headers=op
        ).status_code
        == 422
    )
    log = client.get(
        f"/api/residents/{world.resident_id}/reveals", headers=tokens["supervisor"]
    ).json()
    assert log[0]["reason"] == "calling family during alarm"
    assert client.get(f"/api/residents/{world.resident_id}/reveals", headers=op).status_code == 403


def test_response_metrics(
    client: TestClient, settings: Settings, clock: FrozenClock, tokens: dict[str, Any]
) -> None:
    w = build_world(settings, clock)
    start = clock()
    op = tokens["operator"]
    # Ten alarms acknowledged after 10, 20, ... 100 s: 6 within 60 s, all within 180 s.
    for i in range(10):
        dev = w.device("sos_button")
        aid = str(w.send(dev, "sos").alarm_id)
        clock.advance(10 * (i + 1))
        assert client.post(f"/api/alarms/{aid}/acknowledge", headers=op).status_code == 200
        clock.advance(-10 * (i + 1))
    clock.advance(1)
    m = client.get(
        "/api/metrics/response",
        headers=op,
        params={"from": start.isoformat(), "to": clock().isoformat(), "facility": w.facility_id},
    ).json()
    assert m["counts"]["total"] == 10 and m["counts"]["acknowledged"] == 10
    ack = m["intervals"]["ack"]
    assert ack["n"] == 10 and ack["p50_s"] == 55.0 and ack["p90_s"] == 91.0
    t60 = next(t for t in m["targets"] if t["name"] == "ack_60s")
    assert t60["within"] == 6 and t60["share"] == 0.6 and t60["met"] is False
    t180 = next(t for t in m["targets"] if t["name"] == "ack_180s")
    assert t180["share"] == 1.0 and t180["met"] is True
    assert client.get("/api/metrics/response", headers=tokens["staff"]).status_code == 403


def test_registry_reads_for_the_console(
    client: TestClient, world: World, tokens: dict[str, Any], settings: Settings
) -> None:
    op = tokens["operator"]
    facs = client.get("/api/facilities", headers=op).json()
    mine = next(f for f in facs if f["id"] == world.facility_id)
    assert mine["lat"] == 31.23 and "open_alarms" in mine
    assert client.get("/api/health/summary", headers=op).json()["devices"]["total"] >= 3
    assert (
        client.get("/api/devices", params={"facility": world.facility_id}, headers=op).status_code
        == 200
    )
    assert client.get("/api/cameras", headers=op).status_code == 200
    assert client.get("/api/policies", headers=op).json()[0]["steps"]
    # The remote-area policy and the clinic are database-wide: other modules' escalation
    # tests must not meet them, so both go again at the end.
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        had_remote = conn.execute(
            "SELECT 1 FROM response_policies WHERE facility_id IS NULL AND area = 'remote'"
        ).fetchone()
    try:
        r = client.put(
            "/api/policies",
            headers=tokens["supervisor"],
            json={
                "area": "remote",
                "name": "remote",
                "on_site_target_s": 1800,
                "steps": [
                    {"kind": "outreach", "count": 1, "timeout_s": 120},
                    {"kind": "emergency", "number": "120"},
                ],
            },
        )
        assert r.status_code == 200 and r.json()["on_site_target_s"] == 1800
        assert client.put("/api/policies", headers=op, json={}).status_code in (403, 422)
        r = client.post(
            "/api/responders",
            headers=tokens["admin"],
            json={"kind": "provider", "name": "Clinic", "lat": 31.0, "lon": 121.0},
        )
        assert r.status_code == 201
    finally:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            if not had_remote:
                conn.execute(
                    "DELETE FROM response_policies WHERE facility_id IS NULL AND area = 'remote'"
                )
            conn.execute("UPDATE responders SET available = false WHERE name = 'Clinic'")
    assert client.get("/healthz").json()["status"] == "ok"
    assert client.get("/metrics").status_code == 200


def test_websocket_pushes_alarm_events(
    client: TestClient, world: World, tokens: dict[str, Any], users: dict[str, str]
) -> None:
    token = tokens["staff"]["Authorization"].split()[1]
    with client.websocket_connect("/api/ws") as ws:
        ws.send_json({"type": "auth", "token": token})
        hello = ws.receive_json()
        assert hello["type"] == "hello" and hello["role"] == "facility_staff"
        # Another facility's alarm is not pushed to this staff member; ours is.
        world.send(world.home_sos, "sos")
        aid = str(world.send(world.sos, "gas").alarm_id)
        msg = ws.receive_json()
        assert msg["type"] == "alarm" and msg["event"] == "raised"
        assert msg["alarm"]["id"] == aid and msg["alarm"]["kind"] == "gas"
        ws.send_json({"type": "ping"})
        assert ws.receive_json() == {"type": "pong"}
    from starlette.websockets import WebSocketDisconnect

    with (
        pytest.raises(WebSocketDisconnect) as closed,
        client.websocket_connect("/api/ws") as ws,
    ):
        ws.send_json({"type": "auth", "token": "bad"})
        ws.receive_json()
    assert closed.value.code == 4401


def test_open_alarms_and_escalations_survive_an_app_restart(
    settings: Settings,
    world: World,
    clock: FrozenClock,
    users: dict[str, str],
    db: psycopg.Connection,
) -> None:
    first = create_app(settings, clock=clock, publisher=RecordingPublisher(), background=False)
    with TestClient(first) as c:
        h = {
            "Authorization": "Bearer "
            + c.post(
                "/api/auth/token", data={"username": users["operator"], "password": PASSWORD}
            ).json()["access_token"]
        }
        aid = str(world.send(world.fall, "fall", confidence=0.9).alarm_id)
        c.post(f"/api/alarms/{aid}/acknowledge", headers=h)
        assert c.post(f"/api/alarms/{aid}/dispatch", headers=h).status_code == 200
    clock.advance(121)
    second = create_app(settings, clock=clock, publisher=RecordingPublisher(), background=True)
    with TestClient(second) as c:
        h = {
            "Authorization": "Bearer "
            + c.post(
                "/api/auth/token", data={"username": users["operator"], "password": PASSWORD}
            ).json()["access_token"]
        }
        assert aid in [a["id"] for a in c.get("/api/alarms", headers=h).json()]
        # The background timer thread of the new app escalates on its own.
        from harness.services import wait_for

        wait_for(
            lambda: (
                rows(db, "SELECT escalation_step FROM alarms WHERE id = %s", (aid,))[0][
                    "escalation_step"
                ]
                == 2
            ),
            timeout=10,
            what="escalation after restart",
        )
        acts = [e["action"] for e in c.get(f"/api/alarms/{aid}", headers=h).json()["timeline"]]
        assert acts[-1] == "escalated"


def test_database_constraints_are_4xx_not_500(
    client: TestClient, world: World, tokens: dict[str, Any], settings: Settings
) -> None:
    """What only the database checks still reaches the client as 404/409/422."""
    admin = tokens["admin"]
    code = f"DUP-{secrets.token_hex(3)}"
    body = {"code": code, "name": "Duplicate", "area": "town", "lat": 31.0, "lon": 121.0}
    assert client.post("/api/facilities", headers=admin, json=body).status_code == 201
    r = client.post("/api/facilities", headers=admin, json=body)  # UNIQUE (code)
    assert r.status_code == 409 and r.json()["detail"].startswith("already exists")
    r = client.post(  # FOREIGN KEY (responder_id)
        "/api/rota",
        headers=admin,
        json={
            "responder_id": 2**40,
            "facility_id": world.facility_id,
            "starts_at": "2026-01-01T00:00:00Z",
            "ends_at": "2026-01-01T08:00:00Z",
        },
    )
    assert r.status_code == 404 and "missing" in r.json()["detail"]
    r = client.post(  # bigint out of range: a DataError
        "/api/responders",
        headers=admin,
        json={"kind": "provider", "name": "Far", "facility_id": 2**63},
    )
    assert r.status_code == 422 and "refused by the database" in r.json()["detail"]


def test_translate_maps_check_and_in_use_violations(settings: Settings, world: World) -> None:
    from eldercare.errors import ConflictError, InvalidInput
    from eldercare.storage import db

    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        with pytest.raises(InvalidInput), db.translate():
            conn.execute(  # CHECK (ends_at > starts_at)
                "INSERT INTO rota (responder_id, facility_id, starts_at, ends_at)"
                " VALUES (%s, %s, now(), now() - interval '1 hour')",
                (world.staff[0], world.facility_id),
            )
        # A facility a responder still belongs to cannot go: a conflict, not a 404.
        fac = db.one(
            conn,
            "INSERT INTO facilities (code, name) VALUES (%s, 'In use') RETURNING id",
            (f"USE-{secrets.token_hex(3)}",),
        )["id"]
        conn.execute(
            "INSERT INTO responders (kind, name, facility_id) VALUES ('provider', 'R', %s)", (fac,)
        )
        with pytest.raises(ConflictError, match="still in use"), db.translate():
            conn.execute("DELETE FROM facilities WHERE id = %s", (fac,))


def test_alarms_carry_allowed_actions_and_the_console_gets_the_rules(
    client: TestClient, world: World, tokens: dict[str, Any], settings: Settings
) -> None:
    from eldercare.alerts import rules

    op = tokens["operator"]
    aid = str(world.send(world.sos, "smoke").alarm_id)  # no other test raises smoke
    a = client.get(f"/api/alarms/{aid}", headers=op).json()["alarm"]
    assert a["status"] == "raised" and a["allowed_actions"] == ["acknowledge", "note"]
    a = client.post(f"/api/alarms/{aid}/acknowledge", headers=op).json()
    assert a["allowed_actions"] == rules.allowed_actions(a["status"], a["kind"])
    assert "dispatch" in a["allowed_actions"] and "acknowledge" not in a["allowed_actions"]
    listed = {x["id"]: x for x in client.get("/api/alarms", headers=op).json()}
    assert listed[aid]["allowed_actions"] == a["allowed_actions"]

    meta = client.get("/api/console/meta", headers=op).json()
    assert meta["open_statuses"] == list(rules.ACTIVE)
    assert meta["dispositions"] == list(rules.DISPOSITIONS)
    assert meta["actions"] == list(rules.MOVES)
    assert meta["ack_target_s"]["default"] == 60
    assert set(meta["ack_target_s"]["area"]) == {"town", "remote"}
    # A facility's own policy is what its alarms are measured against. (Removed again at
    # the end: other modules' engines share the database.)
    r = client.put(
        "/api/policies",
        headers=tokens["supervisor"],
        json={
            "facility_id": world.facility_id,
            "name": "fast",
            "ack_target_s": 30,
            "steps": [{"kind": "facility_staff", "count": 1, "timeout_s": 60}],
        },
    )
    try:
        assert r.status_code == 200, r.text
        meta = client.get("/api/console/meta", headers=op).json()
        assert meta["ack_target_s"]["facility"][str(world.facility_id)] == 30
    finally:
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute(
                "DELETE FROM response_policies WHERE facility_id = %s", (world.facility_id,)
            )
            conn.execute(
                "UPDATE alarms SET status = 'closed', closed_at = now(),"
                " disposition = 'test' WHERE id = %s",
                (aid,),
            )
    assert client.get("/api/console/meta").status_code == 401


def test_rota_and_policies_answer_in_their_documented_shapes(
    client: TestClient, world: World, tokens: dict[str, Any], clock: FrozenClock
) -> None:
    admin = tokens["admin"]
    start = clock()
    r = client.post(
        "/api/rota",
        headers=admin,
        json={
            "responder_id": world.staff[2],
            "facility_id": world.facility_id,
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=8)).isoformat(),
        },
    )
    assert r.status_code == 201, r.text
    assert set(r.json()) == {"id", "responder_id", "facility_id", "starts_at", "ends_at"}
    on_duty = client.get(
        "/api/rota", params={"facility": world.facility_id}, headers=tokens["operator"]
    ).json()
    mine = [x for x in on_duty if x["id"] == r.json()["id"]]
    assert len(mine) == 1 and mine[0]["name"] == "Nurse 2"
    policies = client.get("/api/policies", headers=tokens["operator"]).json()
    assert {"town", "remote"} <= {p["area"] for p in policies if p["facility_id"] is None}
    assert all(p["steps"] and "kind" in p["steps"][0] for p in policies)


def test_an_alarms_notifications_are_listed_with_their_attempts(
    client: TestClient, world: World, tokens: dict[str, Any]
) -> None:
    op = tokens["operator"]
    aid = str(world.send(world.sos, "water_leak").alarm_id)  # no other test raises one
    assert client.post(f"/api/alarms/{aid}/acknowledge", headers=op).status_code == 200
    client.app.state.engine.tick()  # type: ignore[attr-defined]
    sent = client.get(f"/api/alarms/{aid}/notifications", headers=op).json()
    to_device = [n for n in sent if n["channel"] == "device"]
    assert to_device and to_device[0]["target"] == world.sos
    assert to_device[0]["status"] == "delivered" and to_device[0]["attempt_log"][0]["ok"]
    other = tokens["other_staff"]  # another facility's staff: the alarm does not exist
    assert client.get(f"/api/alarms/{aid}/notifications", headers=other).status_code == 404
