"""Issue 7, device/broker/gateway half: each audit finding (docs: README "Security")
reproduced against the real broker and database, then shown fixed.

Every test here drives the gateway the way an attacker or a buggy device would: over
MQTT with a provisioned device's own credentials.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from eldercare import protocol as p
from eldercare.app import create_app
from eldercare.config import Settings
from eldercare.gateway.store import Refusal, Store
from eldercare.mqtt import make_client
from eldercare.registry import auth
from harness.services import wait_for
from tests.alarm_support import one_row


def _now() -> str:
    return datetime.now(UTC).isoformat()


def _nack_for(dev, msg_id: str | None, timeout: float = 5.0) -> dict:
    return dev.wait_downlink(
        lambda d: d.get("type") == "nack" and d.get("ack_id") == msg_id, timeout
    )


def _dead_letters(db: psycopg.Connection, device_id: str, reason: str) -> int:
    row = db.execute(
        "SELECT count(*) FROM dead_letters WHERE device_id=%s AND reason=%s", (device_id, reason)
    ).fetchone()
    assert row is not None
    return int(row[0])


# ---------------------------------------------------------------- C1: poison pills


def test_c1_unstorable_number_in_an_alarm_is_refused_and_the_lane_moves_on(
    gateway, make_device, db
):
    attacker, victim = make_device(), make_device()
    poison = f'{{"v":1,"id":"p1","ts":"{_now()}","type":"water_leak","x":1e-20000}}'.encode()
    attacker.publish_raw(poison)
    nack = _nack_for(attacker, "p1")
    assert nack["reason"] == "schema"
    assert _dead_letters(db, attacker.device_id, "schema") == 1
    # Every other device's SOS is still committed and acked.
    assert victim.ack_for(victim.raise_alarm("sos"))["alarm_id"]


def test_c1_unstorable_number_in_telemetry_does_not_stop_the_batch_lane(gateway, make_device, db):
    dev = make_device()
    poison = (
        f'{{"v":1,"id":"hb-p","ts":"{_now()}","type":"heartbeat","battery":80,'
        f'"interval_s":30,"x":-0.5e-99999}}'
    ).encode()
    dev.publish_raw(poison)
    assert _nack_for(dev, "hb-p")["reason"] == "schema"
    good = dev.send("heartbeat", battery=81, interval_s=30)
    wait_for(
        lambda: db.execute(
            "SELECT 1 FROM device_events WHERE device_id=%s AND msg_id=%s",
            (dev.device_id, good),
        ).fetchone(),
        what="the next heartbeat stored",
    )


def test_c1_a_row_the_database_refuses_is_dead_lettered_not_retried(
    settings: Settings, make_device, db
):
    """Defence in depth below the parser: whatever PostgreSQL refuses deterministically
    (DataError) is dead-lettered as `schema`; the rest of the batch is stored."""
    dev = make_device(connect=False)
    rx = datetime.now(UTC)
    good = p.parse_uplink(dev.device_id, p.uplink("ok-1", "vitals", rx, heart_rate=70), rx)
    # A NUL in a string: the parser refuses it, so build the event past the parser.
    bad = good._replace(msg_id="bad-1", body={**good.body, "id": "bad-1", "note": "a\x00b"})
    store = Store(settings.database_url, lambda: datetime.now(UTC))
    try:
        res = store.store_batch([good, bad])
        assert res.stored == 1
        assert [(r.msg_id, r.reason) for r in res.refused] == [("bad-1", "schema")]
        alarm = bad._replace(type="sos", cls=p.EventClass.ALARM, msg_id="bad-2")
        refused = store.store_alarm(alarm)
        assert isinstance(refused, Refusal) and refused.reason == "schema"
    finally:
        store.close()
    assert _dead_letters(db, dev.device_id, "schema") == 2
    stored = db.execute(
        "SELECT msg_id FROM device_events WHERE device_id=%s", (dev.device_id,)
    ).fetchall()
    assert stored == [("ok-1",)]


# ---------------------------------------------------------------- C2: device fields


PASSWORD = "correct-horse-battery"


@pytest.fixture(scope="module")
def api(settings: Settings) -> Iterator[tuple[TestClient, dict[str, str]]]:
    name = "sec-op-" + secrets.token_hex(3)
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        auth.create_user(conn, name, PASSWORD, "operator")
    app = create_app(settings, background=False)
    with TestClient(app) as client:
        r = client.post("/api/auth/token", data={"username": name, "password": PASSWORD})
        assert r.status_code == 200, r.text
        yield client, {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_c2_device_fields_cannot_break_or_forge_the_alarm_list(gateway, make_device, api, db):
    client, headers = api
    dev = make_device()
    bad = dev.raise_alarm("gas", cancel_requested_at="garbage", priority=0, status="closed")
    forged = make_device()
    forged_id = forged.raise_alarm("smoke", cancel_requested_at="2020-01-01T00:00:00Z")
    alarm_id = dev.ack_for(bad)["alarm_id"]
    forged_alarm = forged.ack_for(forged_id)["alarm_id"]
    r = client.get("/api/alarms", params={"status": "open"}, headers=headers)
    assert r.status_code == 200, r.text
    listed = {a["id"]: a for a in r.json()}
    assert alarm_id in listed and forged_alarm in listed
    # Device data is kept, nested under `device`, apart from platform state.
    assert listed[forged_alarm]["cancel_requested_at"] is None
    detail = client.get(f"/api/alarms/{alarm_id}", headers=headers)
    assert detail.status_code == 200, detail.text
    body = detail.json()["alarm"]
    assert body["details"]["device"] == {
        "cancel_requested_at": "garbage",
        "priority": 0,
        "status": "closed",
    }
    assert body["cancel_requested_at"] is None and body["status"] == "raised"
    assert body["priority"] != 0


def test_c2_a_real_cancel_still_marks_the_alarm(gateway, make_device, api):
    client, headers = api
    dev = make_device()
    mid = dev.raise_alarm("sos")
    alarm_id = dev.ack_for(mid)["alarm_id"]
    dev.send("cancel", ref=mid)

    def marked() -> bool:
        r = client.get(f"/api/alarms/{alarm_id}", headers=headers)
        return r.status_code == 200 and r.json()["alarm"]["cancel_requested_at"] is not None

    wait_for(marked, what="cancel recorded")


# ---------------------------------------------------------------- H6: liveness clock


def _status(db: psycopg.Connection, device_id: str) -> tuple | None:
    return db.execute(
        "SELECT online, last_seen_at FROM device_status WHERE device_id=%s", (device_id,)
    ).fetchone()


def test_h6_a_device_clock_hours_ahead_does_not_keep_a_dead_device_online(gateway, make_device, db):
    dev = make_device()
    ahead = datetime.now(UTC) + timedelta(hours=20)  # inside the skew window: not flagged
    mid = dev.send("heartbeat", ts=ahead, battery=90, interval_s=1)
    wait_for(lambda: (s := _status(db, dev.device_id)) and s[0], what="online after heartbeat")
    # It then goes silent: 2.5 x 1 s later the sweeper must see it as gone.
    wait_for(
        lambda: (s := _status(db, dev.device_id)) and not s[0],
        timeout=10,
        what="offline by timeout",
    )
    row = db.execute(
        "SELECT device_ts, clock_skew FROM device_events WHERE device_id=%s AND msg_id=%s",
        (dev.device_id, mid),
    ).fetchone()
    assert row == (ahead.replace(microsecond=ahead.microsecond // 1000 * 1000), False)


def test_h6_a_device_clock_hours_behind_is_online_while_it_talks(gateway, make_device, db):
    dev = make_device()
    behind = datetime.now(UTC) - timedelta(hours=6)
    mid = dev.send("heartbeat", ts=behind, battery=90, interval_s=60)
    wait_for(
        lambda: db.execute(
            "SELECT 1 FROM device_events WHERE device_id=%s AND msg_id=%s", (dev.device_id, mid)
        ).fetchone(),
        what="heartbeat stored",
    )
    status = _status(db, dev.device_id)
    assert status is not None, "the heartbeat is stored with the device's status"
    online, last_seen = status
    assert online is True
    assert last_seen > datetime.now(UTC) - timedelta(minutes=1)


# ---------------------------------------------------------------- H7: id reuse


def test_h7_a_reused_message_id_with_a_new_body_raises_a_new_alarm(gateway, make_device, db):
    dev = make_device()
    first = dev.ack_for(dev.raise_alarm("sos", msg_id="1", press="single"))["alarm_id"]
    db.execute("UPDATE alarms SET status='closed', closed_at=now() WHERE id=%s", (first,))
    # The device rebooted, its counter restarted: a new press with the same id.
    later = datetime.now(UTC) + timedelta(seconds=1)
    payload = p.uplink("1", "sos", later, press="long")
    dev.publish_raw(payload)
    second = dev.wait_downlink(
        lambda d: d.get("type") == "ack" and d.get("ack_id") == "1" and d["alarm_id"] != first
    )
    assert second["alarm_id"] != first
    # The same new message re-sent (a retry) is still recognised as a duplicate.
    dev.publish_raw(payload)
    again = dev.wait_downlink(
        lambda d: (
            d.get("type") == "ack"
            and d.get("ack_id") == "1"
            and d is not second
            and d["alarm_id"] == second["alarm_id"]
        )
    )
    assert again["alarm_id"] == second["alarm_id"]
    n = db.execute(
        "SELECT count(*) FROM device_events WHERE device_id=%s AND type='sos'", (dev.device_id,)
    ).fetchone()
    assert n == (2,)


def test_h7_a_reused_id_in_telemetry_is_stored_as_new(gateway, make_device, db):
    dev = make_device()
    ts = datetime.now(UTC)
    dev.send("vitals", msg_id="v1", ts=ts, heart_rate=70)
    dev.send("vitals", msg_id="v1", ts=ts, heart_rate=70)  # a plain retry: stored once
    dev.send("vitals", msg_id="v1", ts=ts + timedelta(seconds=5), heart_rate=99)
    marker = dev.ack_for(dev.raise_alarm("sos"))  # the batch lane is ahead of this
    assert marker

    def rates() -> list:
        return sorted(
            r[0]
            for r in db.execute(
                "SELECT (payload->>'heart_rate')::int FROM device_events"
                " WHERE device_id=%s AND type='vitals'",
                (dev.device_id,),
            ).fetchall()
        )

    wait_for(lambda: rates() == [70, 99], what="both bodies stored once each")


# ---------------------------------------------------------------- M6: retained uplinks


def test_m6_a_retained_uplink_is_never_replayed_as_a_new_alarm(gateway, make_device, settings, db):
    from eldercare.gateway.worker import GatewayWorker

    dev = make_device()
    payload = p.uplink("ret-1", "sos", datetime.now(UTC))
    dev.publish_raw(payload, retain=True)
    # Live delivery carries no retain flag (MQTT 3.1.1): processed like any SOS.
    first = dev.ack_for("ret-1")["alarm_id"]
    # Later the dedup row is pruned (retention) and a gateway (re)subscribes: the broker
    # replays the retained copy, flagged retained.
    db.execute("DELETE FROM message_ids WHERE device_id=%s", (dev.device_id,))
    fast = settings.model_copy(update={"batch_max_ms": 5, "mqtt_client_prefix": "m6-gw"})
    other = GatewayWorker(fast, 1, sweep=False)
    other.start()
    try:
        assert other.wait_connected(10)
        nack = _nack_for(dev, None)
        assert nack["reason"] == "schema" and "retain" in nack["detail"]
    finally:
        other.stop()
    assert _dead_letters(db, dev.device_id, "schema") == 1
    assert db.execute(
        "SELECT array_agg(id::text) FROM alarms WHERE device_id=%s", (dev.device_id,)
    ).fetchone() == ([first],)
    # And the broker no longer holds it: a fresh subscriber gets no retained copy.
    got: list = []
    sub = make_client("m6-" + secrets.token_hex(3), settings.mqtt_username, settings.mqtt_password)
    sub.on_message = lambda c, u, msg: got.append(msg.retain)
    sub.on_subscribe = lambda c, u, mid_, rcs, pr=None: got.append("suback")
    sub.connect(settings.mqtt_host, settings.mqtt_port)
    sub.loop_start()
    try:
        sub.subscribe(p.topic(dev.device_id, "up"), 1)
        wait_for(lambda: "suback" in got, what="suback")
        # Mosquitto sends retained messages before the SUBACK.
        assert True not in got
    finally:
        sub.loop_stop()
        sub.disconnect()


# ---------------------------------------------------------------- M12: device ids


def test_m12_a_trailing_newline_is_not_a_device_id(db):
    from eldercare.registry.schemas import DeviceCreate

    assert not p.DEVICE_ID_RE.match("sos-x\n")
    with pytest.raises(ValidationError):
        DeviceCreate(kind="sos_button", facility_id=1, device_id="sos-x\n")
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(
            "INSERT INTO devices (id, kind, facility_id, password_hash) SELECT %s,"
            " 'sos_button', id, 'x' FROM facilities LIMIT 1",
            ("sos-y\n",),
        )
    with pytest.raises(ValueError):
        p.parse_topic("eldercare/v1/dev/sos-x\n/up")


# ---------------------------------------------------------------- H3: per-device budget


def test_h3_a_flooding_device_is_rate_limited_and_others_are_not(gateway, make_device, db):
    flood, victim = make_device(), make_device()
    burst = gateway.settings.device_burst
    n = burst * 3
    ts = datetime.now(UTC)
    for i in range(n):
        flood.send("vitals", msg_id=f"f{i}", ts=ts, heart_rate=70)
    # Another device is served as usual while the flood is being received.
    assert victim.ack_for(victim.raise_alarm("sos"), timeout=10)["alarm_id"]
    marker = flood.raise_alarm("sos")  # re-sent every second until its budget refills
    flood.ack_for(marker, timeout=15)

    def stored() -> int:
        row = db.execute(
            "SELECT count(*) FROM device_events WHERE device_id=%s AND type='vitals'",
            (flood.device_id,),
        ).fetchone()
        return int(row[0])

    wait_for(lambda: stored() >= burst, what="the budgeted part stored")
    # Kept where someone can look, once a minute, not once per message (no disk flood),
    # and never nacked (no downlink amplification).
    assert _dead_letters(db, flood.device_id, "rate_limited") == 1
    assert not [d for d in flood.downlinks if d.get("reason") == "rate_limited"]


# ---------------------------------------------------------------- H1/H10: the broker


def _connack(host: str, port: int, client_id: str, user: str, password: str, tls=None):
    """Connect once; return (client, reason code). The caller stops the client."""
    c = make_client(client_id, user, password, reconnect=False)
    if tls is not None:
        c.tls_set_context(tls)
    result: list = []
    c.on_connect = lambda cl, u, f, rc, pr=None: result.append(rc)
    c.connect(host, port)
    c.loop_start()
    wait_for(lambda: result, timeout=5, what="connack")
    return c, result[0]


def test_h1_a_device_cannot_take_over_the_gateway_session(gateway, make_device, settings):
    from eldercare.gateway import metrics as gm

    dev, victim = make_device(), make_device()
    before = gm.BROKER_RECONNECTS._value.get()
    # The gateway's client id is documented and guessable.
    c, rc = _connack(
        settings.device_mqtt_host,
        settings.device_mqtt_port,
        gateway.client_id,
        dev.device_id,
        dev.credentials.password,
    )
    try:
        assert not rc.is_failure  # the device is let in, under its own name
        # A full round trip through the gateway after the attacker's CONNACK ...
        assert victim.ack_for(victim.raise_alarm("sos"))["alarm_id"]
        # ... and the gateway was never disconnected.
        assert gm.BROKER_RECONNECTS._value.get() == before
        assert gateway.client.is_connected()
    finally:
        c.loop_stop()
        c.disconnect()


def _openssl(*args: str) -> None:
    import subprocess

    subprocess.run(["openssl", *args], check=True, capture_output=True)


def test_h10_production_broker_config_serves_devices_over_tls_only(tmp_path, settings):
    """docker/mosquitto/mosquitto.conf, with a CA generated here, on this machine's
    Mosquitto: devices get TLS with a verified certificate, and plain MQTT is refused."""
    import re
    import ssl
    import subprocess
    from pathlib import Path

    from harness.services import free_port, wait_port

    certs = tmp_path / "certs"
    certs.mkdir()
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
        "-keyout", str(certs / "ca.key"), "-out", str(certs / "ca.crt"),
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", str(certs / "server.key"), "-out", str(certs / "server.csr"),
    )  # fmt: skip
    (certs / "ext.cnf").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl(
        "x509", "-req", "-in", str(certs / "server.csr"), "-CA", str(certs / "ca.crt"),
        "-CAkey", str(certs / "ca.key"), "-CAcreateserial", "-days", "2",
        "-extfile", str(certs / "ext.cnf"), "-out", str(certs / "server.crt"),
    )  # fmt: skip
    service_port, device_port = free_port(), free_port()
    conf = Path(__file__).parents[1].joinpath("docker/mosquitto/mosquitto.conf").read_text()
    conf = re.sub(r"^user .*$", "user root", conf, flags=re.M)
    conf = re.sub(r"^log_dest .*$", f"log_dest file {tmp_path}/mosquitto.log", conf, flags=re.M)
    conf = conf.replace("/mosquitto/certs", str(certs))
    conf = conf.replace("/mosquitto/broker", str(settings.broker_dir))  # real credentials
    conf = conf.replace("/mosquitto/data/", f"{tmp_path}/data/")
    conf = conf.replace("mosquitto.pid", "tls-test.pid")
    conf = conf.replace("listener 1883", f"listener {service_port} 127.0.0.1")
    conf = conf.replace("listener 8883", f"listener {device_port} 127.0.0.1")
    (tmp_path / "data").mkdir()
    (tmp_path / "m.conf").write_text(conf)
    from eldercare.registry import service as registry
    from eldercare.registry.schemas import DeviceCreate

    # Provisioned first: this broker reads the shared password file when it starts.
    with psycopg.connect(settings.database_url) as conn:
        fac = one_row(conn.execute("SELECT id FROM facilities LIMIT 1"))
        cred = registry.provision_device(
            conn, settings, DeviceCreate(kind="sos_button", facility_id=fac[0])
        )
    proc = subprocess.Popen(["mosquitto", "-c", str(tmp_path / "m.conf")])
    try:
        wait_port(device_port)
        ctx = ssl.create_default_context(cafile=str(certs / "ca.crt"))
        ok, rc = _connack("localhost", device_port, "x", cred.device_id, cred.password, ctx)
        ok.loop_stop()
        ok.disconnect()
        assert not rc.is_failure
        # Plain MQTT on the device port: no CONNACK, the TLS listener drops it.
        plain = make_client("plain", cred.device_id, cred.password, reconnect=False)
        with pytest.raises(Exception):  # noqa: B017 - refused in any way is fine
            plain.connect("127.0.0.1", device_port)
            plain.loop_start()
            wait_for(plain.is_connected, timeout=2, what="plain connect")
        plain.loop_stop()
        # A CA the broker's certificate does not chain to is refused by the client.
        other = tmp_path / "other"
        other.mkdir()
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=x",
            "-keyout", str(other / "k"), "-out", str(other / "c"),
        )  # fmt: skip
        bad = ssl.create_default_context(cafile=str(other / "c"))
        with pytest.raises(ssl.SSLError):
            _connack("localhost", device_port, "y", cred.device_id, cred.password, bad)
    finally:
        proc.terminate()
        proc.wait(10)


def test_h3_camera_status_only_from_a_bridge_for_its_own_cameras(gateway, make_device, db):
    button = make_device()
    nvr = make_device("video_bridge", cameras=["cam-1"])
    fake = button.send("camera_status", camera_id="fake-1", status="offline")
    assert _nack_for(button, fake)["reason"] == "schema"
    invented = nvr.send("camera_status", camera_id="cam-9", status="offline")
    assert _nack_for(nvr, invented)["reason"] == "schema"
    nvr.send("camera_status", camera_id="cam-1", status="online")
    wait_for(
        lambda: db.execute(
            "SELECT 1 FROM camera_status WHERE device_id=%s AND camera_id='cam-1'",
            (nvr.device_id,),
        ).fetchone(),
        what="the registered camera's status",
    )
    rows = db.execute(
        "SELECT device_id, camera_id FROM camera_status WHERE device_id = ANY(%s)",
        ([button.device_id, nvr.device_id],),
    ).fetchall()
    assert rows == [(nvr.device_id, "cam-1")]


# ---------------------------------------------------------------- H2: shared subscriptions


def test_h2_a_device_joining_the_share_group_steals_no_uplinks(gateway, make_device, settings, db):
    """Mosquitto's ACL file grants every SUBSCRIBE, so a device can *join*
    ``$share/<group>/…``; what it must not do is take deliveries from the gateway."""
    spy, victim = make_device(), make_device()
    got: list[str] = []
    c, rc = _connack(
        settings.device_mqtt_host,
        settings.device_mqtt_port,
        spy.device_id,
        spy.device_id,
        spy.credentials.password,
    )
    try:
        assert not rc.is_failure
        c.on_message = lambda cl, u, m: got.append(m.topic)
        subscribed: list[int] = []
        c.on_subscribe = lambda cl, u, mid, granted, pr=None: subscribed.append(mid)
        up = f"{p.TOPIC_ROOT}/+/up"
        c.subscribe([(f"$share/{settings.mqtt_share_group}/{up}", 1), (up, 1)])
        wait_for(lambda: subscribed, timeout=5, what="suback")
        ids = [victim.send("vitals", heart_rate=70 + i) for i in range(40)]

        def stored() -> int:
            row = db.execute(
                "SELECT count(*) FROM device_events WHERE device_id=%s AND msg_id = ANY(%s)",
                (victim.device_id, ids),
            ).fetchone()
            return int(row[0])

        # The lone gateway worker holds a plain subscription: every message reaches it.
        wait_for(lambda: stored() == len(ids), timeout=15, what="all 40 stored")
        assert got == []  # the ACL filters every delivery to the spy
    finally:
        c.loop_stop()
        c.disconnect()


def test_h2_several_workers_refuse_the_documented_share_group_outside_development():
    """With workers > 1 the group name is what keeps devices out of the gateway's
    share: the documented default is refused like a default password."""
    from eldercare.config import load_settings
    from eldercare.errors import ConfigError

    secrets_ok = {
        "environment": "production",
        "database_url": "postgresql://app:" + "p" * 24 + "@db/eldercare",
        "mqtt_password": "m" * 24,
        "secret_key": "s" * 40,
    }
    assert load_settings(**secrets_ok, gateway_workers=1).mqtt_share_group == "eldercare"
    with pytest.raises(ConfigError, match="ELDERCARE_MQTT_SHARE_GROUP"):
        load_settings(**secrets_ok, gateway_workers=2)
    with pytest.raises(ConfigError, match="ELDERCARE_MQTT_SHARE_GROUP"):
        load_settings(**secrets_ok, gateway_workers=2, mqtt_share_group="short")
    ok = load_settings(**secrets_ok, gateway_workers=2, mqtt_share_group=secrets.token_hex(12))
    assert ok.gateway_workers == 2
