"""The gateway against real TimescaleDB and Mosquitto: storage, dedup, acks, refusals, ACL."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import paho.mqtt.client as mqtt
import psycopg
import pytest

from eldercare import protocol as p
from eldercare.mqtt import make_client
from harness.services import wait_for


def count(db: psycopg.Connection, sql: str, *args: object) -> int:
    row = db.execute(sql, args).fetchone()
    assert row is not None
    return int(row[0])


def test_sos_is_acked_with_an_alarm_id_and_stored_once(gateway, make_device, db):
    dev = make_device()
    msg_id = dev.raise_alarm("sos", press="single")
    ack = dev.ack_for(msg_id)
    assert ack["v"] == 1 and ack["alarm_id"]
    # A device that missed the ack re-sends the same message: same alarm, stored once.
    dev.send("sos", msg_id=msg_id, press="single")
    again = dev.wait_downlink(lambda d: d.get("ack_id") == msg_id and d is not ack)
    assert again["alarm_id"] == ack["alarm_id"]
    assert (
        count(
            db,
            "SELECT count(*) FROM device_events WHERE device_id=%s AND msg_id=%s",
            dev.device_id,
            msg_id,
        )
        == 1
    )
    assert count(db, "SELECT count(*) FROM alarms WHERE device_id=%s", dev.device_id) == 1
    assert dev.pending_alarms == []


def test_every_event_type_is_stored_with_device_and_receive_time(gateway, make_device, db):
    dev = make_device("home_kit")
    nvr = make_device("video_bridge", cameras=["cam-1"])
    ts = datetime.now(UTC) - timedelta(seconds=3)
    ids = [
        dev.send("heartbeat", ts=ts, battery=80, interval_s=30, rssi=-60),
        dev.send("vitals", heart_rate=72, resp_rate=16),
        dev.send("imu", hz=25, acc=[[0.0, 0.0, 1.0]] * 25),
        nvr.send("camera_status", camera_id="cam-1", status="online", recording=True),
    ]
    for t in ("fall", "smoke", "gas", "water_leak", "bed_exit", "inactivity"):
        fields = {"confidence": 0.9} if t == "fall" else {}
        ids.append(dev.raise_alarm(t, **fields))
    for i in ids[4:]:
        dev.ack_for(i)
    wait_for(
        lambda: (
            count(
                db,
                "SELECT count(*) FROM device_events WHERE device_id = ANY(%s)",
                [dev.device_id, nvr.device_id],
            )
            == len(ids)
        ),
        what="all events",
    )
    row = db.execute(
        "SELECT time, device_ts, received_at, clock_skew, payload->>'battery'"
        " FROM device_events WHERE device_id=%s AND msg_id=%s",
        (dev.device_id, ids[0]),
    ).fetchone()
    assert row[0] == row[1] and abs((row[0] - ts).total_seconds()) < 0.01
    assert row[2] > row[1] and row[3] is False and row[4] == "80"
    wait_for(
        lambda: (
            db.execute(
                "SELECT online FROM camera_status WHERE device_id=%s", (nvr.device_id,)
            ).fetchone()
            == (True,)
        ),
        what="camera online",
    )


def test_absurd_device_clock_is_flagged_and_receive_time_used(gateway, make_device, db):
    dev = make_device()
    future = dev.send("heartbeat", ts=datetime(2099, 1, 1, tzinfo=UTC), battery=50, interval_s=60)
    past = dev.raise_alarm("sos", ts=datetime(1999, 1, 1, tzinfo=UTC))
    dev.ack_for(past)
    wait_for(
        lambda: (
            count(db, "SELECT count(*) FROM device_events WHERE device_id=%s", dev.device_id) == 2
        )
    )
    for msg_id in (future, past):
        skew, time_, received = db.execute(
            "SELECT clock_skew, time, received_at FROM device_events WHERE msg_id=%s", (msg_id,)
        ).fetchone()
        assert skew is True and time_ == received
    alarm = db.execute(
        "SELECT event_time, received_at, clock_skew FROM alarms WHERE device_id=%s",
        (dev.device_id,),
    ).fetchone()
    assert alarm[0] == alarm[1] and alarm[2] is True


def test_repeated_presses_join_one_alarm(gateway, make_device, db):
    dev = make_device()
    acks = [dev.ack_for(dev.raise_alarm("sos")) for _ in range(3)]
    assert len({a["alarm_id"] for a in acks}) == 1
    assert db.execute(
        "SELECT occurrences FROM alarms WHERE device_id=%s", (dev.device_id,)
    ).fetchone() == (3,)


def test_refused_message_is_nacked_and_kept(gateway, make_device, db):
    dev = make_device()
    dev.publish_raw(b'{"v":1,"id":"x1","ts":"2026-01-01T00:00:00Z","type":"teleport"}')
    nack = dev.wait_downlink(lambda d: d.get("type") == "nack")
    assert nack == {**nack, "ack_id": "x1", "reason": "unknown_type"}
    row = db.execute(
        "SELECT reason, msg_id, payload FROM dead_letters WHERE device_id=%s", (dev.device_id,)
    ).fetchone()
    assert row[0] == "unknown_type" and row[1] == "x1" and b"teleport" in bytes(row[2])


def test_bad_state_payload_is_refused_and_kept(gateway, make_device, db):
    dev = make_device()
    dev.publish_raw(b"maybe", channel="state", retain=False)
    nack = dev.wait_downlink(lambda d: d.get("type") == "nack")
    assert nack["reason"] == "schema" and nack["ack_id"] is None
    assert (
        count(
            db,
            "SELECT count(*) FROM dead_letters WHERE device_id=%s AND topic LIKE %s",
            dev.device_id,
            "%/state",
        )
        == 1
    )


def test_unknown_device_gets_nack(gateway, make_device, settings, db):
    dev = make_device()
    # Registered with the broker but no longer active in the registry (revoked while the
    # broker files were stale): the gateway refuses and keeps the message.
    db.execute("UPDATE devices SET status='revoked' WHERE id=%s", (dev.device_id,))
    mid = dev.raise_alarm("sos")
    nack = dev.wait_downlink(lambda d: d.get("type") == "nack")
    assert nack["reason"] == "unknown_device" and nack["ack_id"] == mid
    assert (
        count(
            db,
            "SELECT count(*) FROM dead_letters WHERE device_id=%s AND reason=%s",
            dev.device_id,
            "unknown_device",
        )
        == 1
    )
    assert count(db, "SELECT count(*) FROM alarms WHERE device_id=%s", dev.device_id) == 0


def _client(settings, user: str, password: str) -> tuple[mqtt.Client, mqtt.ReasonCode]:
    c = make_client("acl-" + user + str(time.monotonic_ns()), user, password)
    result: list = []
    c.on_connect = lambda cl, u, f, rc, pr=None: result.append(rc)
    c.connect(settings.mqtt_host, settings.mqtt_port)
    c.loop_start()
    wait_for(lambda: result, timeout=5, what="connack")
    return c, result[0]


def test_broker_refuses_wrong_and_revoked_credentials(settings, make_device):
    from eldercare.registry import service as registry

    dev = make_device(connect=False)
    c, rc = _client(settings, dev.device_id, "wrong-password")
    assert rc.is_failure
    c.loop_stop()
    live = make_device()
    with psycopg.connect(settings.database_url) as conn:
        registry.revoke_device(conn, settings, live.device_id)
    # The connected device is shut out at once, and cannot come back.
    wait_for(lambda: not live.connected, timeout=5, what="revoked device disconnected")
    with pytest.raises(Exception):  # noqa: B017 - refused connect: any error type is fine
        live.reconnect(timeout=2)


def test_device_cannot_act_as_another(gateway, settings, make_device, db):
    a, b = make_device(), make_device()
    # b's downlink is not a's to read. Mosquitto's ACL file is enforced at delivery (its
    # SUBACK grants), so the proof is that the spy receives nothing while b does.
    granted: list = []
    spied: list = []
    spy = make_client("spy-" + a.device_id, a.device_id, a.credentials.password)
    spy.on_subscribe = lambda cl, u, mid, rcs, pr=None: granted.extend(rcs)
    spy.on_message = lambda cl, u, msg: spied.append(msg.topic)
    spy.connect(settings.mqtt_host, settings.mqtt_port)
    spy.loop_start()
    wait_for(spy.is_connected, what="spy connected")
    spy.subscribe(
        [(p.topic(b.device_id, "down"), 1), (p.topic(b.device_id, "state"), 1), ("eldercare/#", 1)]
    )
    wait_for(lambda: granted, what="suback")
    b_ack = b.ack_for(b.raise_alarm("sos"))
    assert b_ack["type"] == "ack"
    # a publishing on b's topic: the broker drops it, nothing is stored under b.
    info = spy.publish(
        p.topic(b.device_id, "up"), p.uplink("forged-1", "sos", datetime.now(UTC)), qos=1
    )
    info.wait_for_publish(5)
    marker = a.raise_alarm("sos")
    a.ack_for(marker)  # a later message from a was processed, so the forged one would be too
    assert count(db, "SELECT count(*) FROM device_events WHERE msg_id='forged-1'") == 0
    assert set(spied) <= {p.topic(a.device_id, "down")}
    assert p.topic(a.device_id, "down") in spied  # the wildcard did deliver what a may read
    spy.loop_stop()
    spy.disconnect()
