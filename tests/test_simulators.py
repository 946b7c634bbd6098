"""Device simulators against a real broker and database (no mocks), plus pure scenario replay."""

from __future__ import annotations

import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from eldercare import protocol
from eldercare.config import Settings
from eldercare.errors import BrokerError
from eldercare.mqtt import set_nodelay
from eldercare.registry.schemas import DeviceCreate, FacilityCreate, ResidentCreate
from eldercare.registry.service import (
    create_facility,
    create_resident,
    provision_device,
)
from eldercare.simulators.device import SimDevice
from eldercare.simulators.fleet import (
    Fleet,
    FleetPlan,
    FleetRunner,
    FleetStats,
    run_fleet_process,
)
from eldercare.simulators.scenario import Action, DevicePlan, Op, Scenario
from harness.services import Broker, make_settings, settings_env, wait_for


@pytest.fixture(scope="module")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """This module plays the platform itself, so it gets a broker of its own: a session
    gateway started by another module would otherwise answer the simulated devices first."""
    broker = Broker(tmp_path_factory.mktemp("sim-mosquitto"))
    broker.start()
    s = make_settings(database_url, broker)
    from eldercare.registry.service import sync_broker

    with psycopg.connect(s.database_url) as conn:
        sync_broker(conn, s)
    yield s
    broker.stop()


class Platform:
    """The test acting as the platform: the service user, subscribed to every device topic."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.messages: list[tuple[str, bytes, bool, float]] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id="test-platform-" + secrets.token_hex(4),
            protocol=MQTTProtocolVersion.MQTTv311,
        )
        self.client.username_pw_set(settings.mqtt_username, settings.mqtt_password)
        self.client.on_socket_open = set_nodelay
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        client.subscribe(
            [(f"{protocol.TOPIC_ROOT}/+/up", 1), (f"{protocol.TOPIC_ROOT}/+/state", 1)]
        )

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(
                (msg.topic, bytes(msg.payload), bool(msg.retain), time.monotonic())
            )

    def start(self) -> Platform:
        self.client.connect(self.settings.mqtt_host, self.settings.mqtt_port, 30)
        self.client.loop_start()
        assert self._subscribed.wait(5), "the platform's subscription was not granted"
        return self

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def on(self, device_id: str, channel: str) -> list[tuple[bytes, bool]]:
        t = protocol.topic(device_id, channel)
        with self._lock:
            return [(p, r) for (tp, p, r, _) in self.messages if tp == t]

    def uplinks(self, device_id: str) -> list[protocol.Uplink]:
        now = datetime.now(UTC)
        return [protocol.parse_uplink(device_id, p, now) for p, _ in self.on(device_id, "up")]

    def send_ack(self, device_id: str, msg_id: str, alarm_id: str = "a-1") -> None:
        info = self.client.publish(
            protocol.topic(device_id, "down"), protocol.ack(msg_id, alarm_id), qos=1
        )
        info.wait_for_publish(5)


@pytest.fixture
def platform(settings: Settings) -> Iterator[Platform]:
    p = Platform(settings).start()
    yield p
    p.stop()


def _facility(db: psycopg.Connection) -> dict[str, Any]:
    code = "T" + secrets.token_hex(4)
    return create_facility(db, FacilityCreate(code=code, name="测试颐养院", lat=30.6, lon=104.0))


@pytest.fixture
def sos_device(db: psycopg.Connection, settings: Settings) -> Iterator[SimDevice]:
    fac = _facility(db)
    res = create_resident(db, ResidentCreate(name="测试长者", facility_id=fac["id"], room="101"))
    creds = provision_device(db, settings, DeviceCreate(kind="sos_button", resident_id=res["id"]))
    dev = SimDevice.from_credentials(creds, retry_s=0.2)
    yield dev
    dev.close()


def test_uplinks_arrive_as_valid_protocol_messages(
    sos_device: SimDevice, platform: Platform
) -> None:
    sos_device.connect()
    did = sos_device.device_id
    hb = sos_device.send("heartbeat", battery=87, interval_s=60, rssi=-61)
    fall = sos_device.send("fall", confidence=0.91, room="101")
    wait_for(lambda: len(platform.on(did, "up")) >= 2, what="two uplinks")
    ups = platform.uplinks(did)
    assert [(u.msg_id, u.type) for u in ups] == [(hb, "heartbeat"), (fall, "fall")]
    assert ups[0].body["battery"] == 87 and not ups[0].clock_skew
    assert ups[1].is_alarm and ups[1].body["confidence"] == 0.91
    # The retained online state is published on connect.
    wait_for(lambda: (b"online", False) in platform.on(did, "state"), what="online state")
    # PUBACK comes from the broker here (no gateway): the QoS 1 flow works end to end.
    sos_device.wait_puback(hb)


def test_explicit_id_and_ts_are_sent_verbatim(sos_device: SimDevice, platform: Platform) -> None:
    sos_device.connect()
    ts = datetime(2026, 1, 31, 8, 0, 0, 123000, tzinfo=UTC)
    sos_device.send("vitals", msg_id="fixed-1", ts=ts, heart_rate=71, resp_rate=15.5)
    wait_for(lambda: platform.on(sos_device.device_id, "up"), what="the vitals uplink")
    (u,) = platform.uplinks(sos_device.device_id)
    assert u.msg_id == "fixed-1" and u.device_ts == ts and u.body["resp_rate"] == 15.5


def test_raise_alarm_resends_same_message_until_acked(
    sos_device: SimDevice, platform: Platform
) -> None:
    sos_device.connect()
    did = sos_device.device_id
    msg_id = sos_device.raise_alarm("sos", press="long")
    # 0.2 s retries: at least three identical copies (same id, same ts, same bytes).
    wait_for(lambda: len(platform.on(did, "up")) >= 3, what="three copies of the alarm")
    copies = {p for p, _ in platform.on(did, "up")}
    assert len(copies) == 1
    (u,) = {(x.msg_id, x.device_ts) for x in platform.uplinks(did)}
    assert u[0] == msg_id
    assert msg_id in sos_device.pending_alarms

    platform.send_ack(did, msg_id, alarm_id="alarm-42")
    ack = sos_device.ack_for(msg_id, timeout=5)
    assert ack["alarm_id"] == "alarm-42" and isinstance(ack["_rx"], float)
    wait_for(lambda: msg_id not in sos_device.pending_alarms, what="the alarm to stop pending")
    time.sleep(0.1)  # a copy already in flight when the ack landed may still arrive
    settled = len(platform.on(did, "up"))
    time.sleep(5 * sos_device.retry_s)
    assert len(platform.on(did, "up")) == settled, "re-sends continued after the ack"
    assert sos_device.attempts(msg_id) == settled


def test_alarm_raised_while_dropped_is_sent_after_reconnect(
    sos_device: SimDevice, platform: Platform
) -> None:
    sos_device.connect()
    sos_device.drop()
    msg_id = sos_device.raise_alarm("fall", confidence=0.8)
    time.sleep(0.5)
    assert platform.uplinks(sos_device.device_id) == []
    sos_device.reconnect()
    wait_for(
        lambda: any(u.msg_id == msg_id for u in platform.uplinks(sos_device.device_id)),
        what="the alarm after reconnect",
    )
    platform.send_ack(sos_device.device_id, msg_id)
    sos_device.ack_for(msg_id)


def test_drop_fires_retained_offline_last_will(
    sos_device: SimDevice, settings: Settings, platform: Platform
) -> None:
    sos_device.connect()
    did = sos_device.device_id
    wait_for(lambda: platform.on(did, "state") == [(b"online", False)], what="online")
    sos_device.drop()
    wait_for(lambda: len(platform.on(did, "state")) == 2, what="the Last Will")
    assert platform.on(did, "state")[-1][0] == b"offline"
    # It is retained: a platform that starts now still learns the device is offline.
    late = Platform(settings).start()
    try:
        wait_for(lambda: late.on(did, "state"), what="the retained state")
        assert late.on(did, "state") == [(b"offline", True)]
    finally:
        late.stop()

    sos_device.reconnect()
    wait_for(lambda: platform.on(did, "state")[-1][0] == b"online", what="online again")
    sos_device.close()
    wait_for(lambda: platform.on(did, "state")[-1][0] == b"offline", what="clean offline")
    assert not sos_device.connected


def test_publish_raw_reaches_broker_untouched(sos_device: SimDevice, platform: Platform) -> None:
    sos_device.connect()
    sos_device.publish_raw(b"{not json")
    wait_for(lambda: platform.on(sos_device.device_id, "up"), what="the raw payload")
    assert platform.on(sos_device.device_id, "up") == [(b"{not json", False)]


def test_wrong_password_is_refused(sos_device: SimDevice, settings: Settings) -> None:
    bad = SimDevice(
        sos_device.device_id,
        "wrong-" + secrets.token_hex(8),
        settings.mqtt_host,
        settings.mqtt_port,
    )
    try:
        with pytest.raises(BrokerError, match="refused"):
            bad.connect(timeout=5)
    finally:
        bad.close()


def test_downlinks_are_recorded_in_order(sos_device: SimDevice, platform: Platform) -> None:
    sos_device.connect()
    did = sos_device.device_id
    for status in ("acknowledged", "dispatched"):
        platform.client.publish(
            protocol.topic(did, "down"), protocol.alarm_status("al-1", status), qos=1
        )
    platform.client.publish(protocol.topic(did, "down"), b"\xff garbage", qos=1)
    got = sos_device.wait_downlink(lambda d: "_raw" in d)
    assert got["_raw"].endswith("garbage")
    seen = [d.get("status") for d in sos_device.downlinks if d.get("type") == "alarm_status"]
    assert seen == ["acknowledged", "dispatched"]
    assert orjson.loads(protocol.alarm_status("al-1", "dispatched"))["status"] == "dispatched"


# ---------------------------------------------------------------- pure scenario logic

START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
KINDS = ("sos_button", "fall_sensor", "home_kit", "video_bridge", "wearable")


def _plans(n_each: int = 4) -> list[DevicePlan]:
    out = []
    for i in range(n_each):
        for kind in KINDS:
            cams = tuple(f"cam-{c}" for c in range(3)) if kind == "video_bridge" else ()
            out.append(
                DevicePlan(
                    f"{kind}-{i}",
                    kind,
                    "pw",
                    "F1",
                    room=f"1{i:02d}" if kind == "fall_sensor" else None,
                    cameras=cams,
                )
            )
    return out


def _play(
    seed: int,
    *,
    seconds: float,
    incident_rate: float,
    ack_after: float | None = 1.0,
    step: float = 0.25,
    **kw: Any,
) -> list[Action]:
    """Drive a scenario on a fake clock, acking every alarm ``ack_after`` s after its first send."""
    sc = Scenario(_plans(), seed, incident_rate=incident_rate, start=START, run_id="t", **kw)
    acks: list[tuple[float, str, str]] = []
    out: list[Action] = []
    t = 0.0
    while t <= seconds:
        for due in [a for a in acks if a[0] <= t]:
            acks.remove(due)
            sc.acked(due[1], due[2])
        for a in sc.advance(t):
            out.append(a)
            if ack_after is not None and a.is_alarm and a.attempt == 1:
                assert a.msg_id is not None
                acks.append((t + ack_after, a.device_id, a.msg_id))
        t += step
    return out


def test_seeded_scenario_replays_identically() -> None:
    a = _play(7, seconds=1800, incident_rate=30)
    b = _play(7, seconds=1800, incident_rate=30)
    assert len(a) > 1000
    assert a == b
    c = _play(8, seconds=1800, incident_rate=30)
    assert [x.payload for x in a] != [x.payload for x in c]


def test_scenario_messages_follow_the_protocol() -> None:
    acts = _play(3, seconds=2 * 3600, incident_rate=30)
    sends = [a for a in acts if a.op is Op.SEND]
    types = {a.event_type for a in sends}
    assert {
        "heartbeat",
        "imu",
        "vitals",
        "camera_status",
        "sos",
        "cancel",
        "fall",
        "bed_exit",
    } <= types
    assert any(a.op is Op.DROP for a in acts) and any(a.op is Op.RECONNECT for a in acts)

    sos_ids: dict[str, set[str]] = {}
    online: dict[str, bool] = {}
    last_hb: dict[str, tuple[float, int]] = {}
    last_cam: dict[tuple[str, str], float] = {}
    for a in acts:
        if a.op is not Op.SEND:
            online[a.device_id] = a.op is Op.RECONNECT
            # Periods restart after an outage (the device reports again on reconnect).
            last_hb.pop(a.device_id, None)
            for key in [k for k in last_cam if k[0] == a.device_id]:
                del last_cam[key]
            continue
        assert online.get(a.device_id, True), f"{a.device_id} sent while its network was down"
        assert a.payload is not None
        u = protocol.parse_uplink(a.device_id, a.payload, START)  # raises if invalid
        assert u.msg_id == a.msg_id and u.type == a.event_type
        event_at = (u.device_ts - START).total_seconds()
        if u.is_alarm:  # an alarm keeps the time it happened, even when sent after an outage
            assert event_at <= a.at + 0.001
        else:
            assert abs(event_at - a.at) < 0.001
        if u.type == "sos":
            sos_ids.setdefault(a.device_id, set()).add(u.msg_id)
        if u.type == "cancel":
            assert u.body["ref"] in sos_ids.get(a.device_id, set()), "cancel of an unknown sos"
        if u.type == "imu":
            # 1 s of background, or the 4 s a wearable streams before its fall.
            assert u.body["hz"] == 25 and len(u.body["acc"]) in (25, 100)
        if u.type == "heartbeat":
            prev = last_hb.get(a.device_id)
            if prev is not None:
                # Never later than declared (liveness would flap), never a gain in battery
                # except a wearable's recharge.
                assert a.at - prev[0] <= u.body["interval_s"] + 1e-6
                assert u.body["battery"] <= prev[1] or a.device_id.startswith("wearable")
            last_hb[a.device_id] = (a.at, u.body["battery"])
        if u.type == "camera_status":
            key = (a.device_id, u.body["camera_id"])
            if key in last_cam:
                assert a.at - last_cam[key] <= 300, "a camera went unreported for 5 minutes"
            last_cam[key] = a.at
    cams = {
        (a.device_id, orjson.loads(a.payload or b"{}")["camera_id"])
        for a in sends
        if a.event_type == "camera_status"
    }
    assert len(cams) == 4 * 3  # every camera of every bridge reported


def test_alarm_resends_same_bytes_until_acked_then_stops() -> None:
    acts = _play(5, seconds=1800, incident_rate=40, ack_after=5.0, retry_s=2.0)
    by_id: dict[tuple[str, str | None], list[Action]] = {}
    for a in acts:
        if a.op is Op.SEND and a.is_alarm:
            by_id.setdefault((a.device_id, a.msg_id), []).append(a)
    assert by_id
    retried = 0
    for sends in by_id.values():
        assert len({s.payload for s in sends}) == 1, "a re-send changed the message"
        assert [s.attempt for s in sends] == list(
            range(sends[0].attempt, sends[0].attempt + len(sends))
        )
        first = sends[0].at
        # Acked 5 s after the first send: re-sends at +2 and +4 s, then silence.
        assert all(s.at < first + 5.0 for s in sends)
        retried += len(sends) > 1
    assert retried > 0

    unacked = _play(5, seconds=60, incident_rate=400, ack_after=None, retry_s=2.0)
    alarms = [a for a in unacked if a.op is Op.SEND and a.is_alarm]
    assert max(a.attempt for a in alarms) >= 15  # nobody acks: every 2 s, they never give up


def test_rare_alarms_and_camera_faults_happen() -> None:
    acts = _play(11, seconds=3600, incident_rate=200, step=1.0)
    types = {a.event_type for a in acts if a.op is Op.SEND}
    assert {"smoke", "water_leak", "gas", "inactivity"} <= types
    statuses = {
        orjson.loads(a.payload)["status"]
        for a in acts
        if a.event_type == "camera_status" and a.payload
    }
    assert "online" in statuses and len(statuses) >= 3


def test_rate_multiplies_background_traffic_only() -> None:
    def count(rate: float) -> tuple[int, int]:
        sc = Scenario(_plans(), 1, rate=rate, incident_rate=0, start=START)
        acts = sc.advance(600.0)
        return (
            sum(a.event_type in ("heartbeat", "imu", "vitals") for a in acts),
            sum(a.is_alarm for a in acts),
        )

    slow, fast = count(1.0), count(10.0)
    assert slow[1] == fast[1] == 0
    assert 8 * slow[0] < fast[0] < 12 * slow[0]


# ---------------------------------------------------------------- fleet: registry + runner


class AckingPlatform(Platform):
    """Acks every alarm it receives, as the gateway will (here without a database)."""

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        super()._on_message(client, userdata, msg)
        device_id, channel = protocol.parse_topic(msg.topic)
        if channel is protocol.Channel.UP:
            u = protocol.parse_uplink(device_id, bytes(msg.payload), datetime.now(UTC))
            if u.is_alarm:
                client.publish(
                    protocol.topic(device_id, "down"),
                    protocol.ack(u.msg_id, "al-" + u.msg_id),
                    qos=1,
                )


@pytest.fixture(scope="module")
def fleet_plan(settings: Settings) -> FleetPlan:
    with psycopg.connect(settings.database_url) as conn:
        return Fleet.provision(
            conn,
            settings,
            seed=42,
            facilities=2,
            rooms_per_facility=3,
            home_beds=3,
            wearable_share=0.5,
        )


def test_fleet_provision_is_seeded_and_complete(
    fleet_plan: FleetPlan, db: psycopg.Connection, settings: Settings
) -> None:
    kinds = fleet_plan.kinds()
    assert kinds["video_bridge"] == 2 and kinds["home_kit"] == 3
    assert kinds["sos_button"] == kinds["fall_sensor"] >= 6 and kinds.get("wearable", 0) > 0
    ids = [d.device_id for d in fleet_plan.devices]
    rows = db.execute(
        "SELECT id, kind, resident_id IS NOT NULL FROM devices WHERE id = ANY(%s)", (ids,)
    ).fetchall()
    assert {r[0]: r[1] for r in rows} == {d.device_id: d.kind for d in fleet_plan.devices}
    assert all(has_resident == (kind != "video_bridge") for _, kind, has_resident in rows)
    cams = db.execute("SELECT count(*) FROM cameras WHERE device_id = ANY(%s)", (ids,)).fetchone()
    assert cams is not None
    assert cams[0] == sum(len(d.cameras) for d in fleet_plan.devices) >= 8
    assert "password" not in repr(fleet_plan.devices[0]) and fleet_plan.devices[0].password
    # The same seed lays out the same fleet (names, rooms, cameras); only the tag differs.
    with psycopg.connect(settings.database_url) as conn:
        again = Fleet.provision(
            conn,
            settings,
            seed=42,
            facilities=2,
            rooms_per_facility=3,
            home_beds=3,
            wearable_share=0.5,
        )
    assert [f.name for f in again.facilities] == [f.name for f in fleet_plan.facilities]
    assert [(d.kind, d.room, d.cameras) for d in again.devices] == [
        (d.kind, d.room, d.cameras) for d in fleet_plan.devices
    ]
    assert again.tag != fleet_plan.tag


def test_fleet_runs_on_one_loop_and_gets_its_alarms_acked(
    fleet_plan: FleetPlan, settings: Settings
) -> None:
    platform = AckingPlatform(settings).start()
    try:
        stats = run_fleet_process(
            fleet_plan.devices,
            settings.model_dump(),
            rate=20,
            duration=4.0,
            seed=1,
            incident_rate=600,
            drain_s=3.0,
        )
        n = len(fleet_plan.devices)

        mine = {d.device_id for d in fleet_plan.devices}

        def arrived() -> bool:
            """Every uplink the fleet counted, and one offline per connection, are here."""
            ups = offs = 0
            for t, payload, retained, _ in list(platform.messages):
                if retained or not t.startswith(protocol.TOPIC_ROOT):
                    continue
                did, channel = protocol.parse_topic(t)
                if did in mine:
                    ups += channel == "up"
                    offs += channel == "state" and payload == b"offline"
            return ups >= stats.sent and offs >= n + stats.reconnects

        # The last messages may still be on their way from the broker to the platform.
        wait_for(arrived, what="the fleet's last uplinks and offline states")
    finally:
        platform.stop()
    n = len(fleet_plan.devices)
    assert stats.devices == stats.connected == n, stats.summary()
    assert stats.alarms_raised > 0 and stats.acks_received > 0, stats.summary()
    assert stats.by_type["heartbeat"] >= n and stats.by_type["imu"] > 0
    p99 = stats.latency(0.99)
    assert p99 is not None and p99 < 1.0, stats.summary()
    # Everything the fleet sent reached the broker as a valid message from its own device.
    mine = {d.device_id for d in fleet_plan.devices}
    ups = [
        (m[0], m[1])
        for m in platform.messages
        if m[0].endswith("/up") and protocol.parse_topic(m[0])[0] in mine
    ]
    assert len(ups) == stats.sent
    for t, payload in ups:
        protocol.parse_uplink(protocol.parse_topic(t)[0], payload, datetime.now(UTC))
    # Every device said online at start; those still connected said offline at the end.
    states: dict[str, list[bytes]] = {}
    for t, payload, retained, _ in platform.messages:
        # Retained copies are other runs' history, replayed to us on subscribe.
        if t.endswith("/state") and not retained and protocol.parse_topic(t)[0] in mine:
            states.setdefault(protocol.parse_topic(t)[0], []).append(payload)
    assert set(states) == mine
    assert all(s[0] == b"online" and s[-1] == b"offline" for s in states.values())
    # Each connection ends in exactly one offline: the clean close's or, after a drop, the
    # broker's Last Will (the runner cannot publish on a dropped link).
    online = sum(s.count(b"online") for s in states.values())
    offline = sum(s.count(b"offline") for s in states.values())
    assert stats.drops > 0, stats.summary()
    assert online == offline == n + stats.reconnects


def test_fleet_run_in_spawned_processes(fleet_plan: FleetPlan, settings: Settings) -> None:
    stats = Fleet.run(
        fleet_plan, settings, rate=10, duration=2.0, processes=2, seed=3, incident_rate=0, drain_s=0
    )
    assert isinstance(stats, FleetStats)
    assert stats.devices == stats.connected == len(fleet_plan.devices), stats.summary()
    assert stats.sent >= len(fleet_plan.devices) and stats.alarms_raised == 0


def test_simulate_command_provisions_runs_and_summarises(
    settings: Settings, db: psycopg.Connection
) -> None:
    before = db.execute("SELECT count(*) FROM devices").fetchone()
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "eldercare",
            "simulate",
            "--facilities",
            "1",
            "--rooms",
            "2",
            "--home-beds",
            "1",
            "--seed",
            "9",
            "--rate",
            "5",
            "--duration",
            "1",
        ],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("simulate ") and " sent " in lines[0]
    after = db.execute("SELECT count(*) FROM devices").fetchone()
    assert before is not None and after is not None and after[0] > before[0]
    assert "password" not in out.stdout + out.stderr


def _nodelay(sock: Any) -> bool:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_every_device_socket_disables_nagle(
    sos_device: SimDevice, settings: Settings, fleet_plan: FleetPlan
) -> None:
    # Nagle plus delayed ACK costs ~88 ms per small-packet round trip here; 0.5 ms without.
    sos_device.connect()
    assert _nodelay(sos_device._client.socket())
    plan = fleet_plan.devices[0]
    runner = FleetRunner(
        [plan], Scenario([plan], 0, incident_rate=0), settings.mqtt_host, settings.mqtt_port
    )
    try:
        runner.connect_all(timeout=5)
        assert runner.stats.connected == 1
        assert _nodelay(runner.links[plan.device_id].sock)
    finally:
        runner.close()


def test_close_is_safe_before_connect_and_twice(sos_device: SimDevice) -> None:
    sos_device.close()
    sos_device.close()
    with pytest.raises(BrokerError):
        sos_device.connect(timeout=1)
