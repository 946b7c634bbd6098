"""Device simulators against a real broker and database (no mocks), plus pure scenario replay."""

from __future__ import annotations

import secrets
import socket
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

from eldercare.config import Settings
from eldercare.errors import BrokerError
from eldercare.models import protocol
from eldercare.models.registry import DeviceCreate, FacilityCreate, ResidentCreate
from eldercare.platform.registry import (
    create_facility,
    create_resident,
    provision_device,
    sync_broker,
)
from eldercare.simulators.device import SimDevice
from tests.support import wait_for


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
        self.client.on_socket_open = lambda c, u, s: s.setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_message = self._on_message

    def _on_connect(self, client: mqtt.Client, *args: Any) -> None:
        client.subscribe(
            [(f"{protocol.TOPIC_ROOT}/+/up", 1), (f"{protocol.TOPIC_ROOT}/+/state", 1)]
        )

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((msg.topic, bytes(msg.payload), bool(msg.retain),
                                  time.monotonic()))

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
        info = self.client.publish(protocol.topic(device_id, "down"),
                                   protocol.ack(msg_id, alarm_id), qos=1)
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


def test_uplinks_arrive_as_valid_protocol_messages(sos_device: SimDevice,
                                                  platform: Platform) -> None:
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


def test_raise_alarm_resends_same_message_until_acked(sos_device: SimDevice,
                                                     platform: Platform) -> None:
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


def test_alarm_raised_while_dropped_is_sent_after_reconnect(sos_device: SimDevice,
                                                            platform: Platform) -> None:
    sos_device.connect()
    sos_device.drop()
    msg_id = sos_device.raise_alarm("fall", confidence=0.8)
    time.sleep(0.5)
    assert platform.uplinks(sos_device.device_id) == []
    sos_device.reconnect()
    wait_for(lambda: any(u.msg_id == msg_id for u in platform.uplinks(sos_device.device_id)),
             what="the alarm after reconnect")
    platform.send_ack(sos_device.device_id, msg_id)
    sos_device.ack_for(msg_id)


def test_drop_fires_retained_offline_last_will(sos_device: SimDevice, settings: Settings,
                                               platform: Platform) -> None:
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
    bad = SimDevice(sos_device.device_id, "wrong-" + secrets.token_hex(8), settings.mqtt_host,
                    settings.mqtt_port)
    try:
        with pytest.raises(BrokerError, match="refused"):
            bad.connect(timeout=5)
    finally:
        bad.close()


def test_downlinks_are_recorded_in_order(sos_device: SimDevice, platform: Platform) -> None:
    sos_device.connect()
    did = sos_device.device_id
    for status in ("acknowledged", "dispatched"):
        platform.client.publish(protocol.topic(did, "down"),
                                protocol.alarm_status("al-1", status), qos=1)
    platform.client.publish(protocol.topic(did, "down"), b"\xff garbage", qos=1)
    got = sos_device.wait_downlink(lambda d: "_raw" in d)
    assert got["_raw"].endswith("garbage")
    seen = [d.get("status") for d in sos_device.downlinks if d.get("type") == "alarm_status"]
    assert seen == ["acknowledged", "dispatched"]
    assert orjson.loads(protocol.alarm_status("al-1", "dispatched"))["status"] == "dispatched"
