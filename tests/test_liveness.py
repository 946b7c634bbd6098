"""Liveness over the real broker: heartbeat clocks, Last Will, coming back, cameras."""

from __future__ import annotations

import time

from harness.services import wait_for


def status(db, device_id: str):
    return db.execute(
        "SELECT online, state_online FROM device_status WHERE device_id=%s", (device_id,)
    ).fetchone()


def changes(db, device_id: str, camera: bool = False) -> list[tuple[bool, str]]:
    return [
        tuple(r)
        for r in db.execute(
            "SELECT online, cause FROM state_changes"
            " WHERE device_id=%s AND (camera_id IS NOT NULL)=%s ORDER BY time",
            (device_id, camera),
        ).fetchall()
    ]


def test_silent_device_goes_offline_after_two_and_a_half_intervals(gateway, make_device, db):
    dev = make_device()
    wait_for(lambda: status(db, dev.device_id) == (True, True), what="online from state")
    dev.send("heartbeat", battery=90, interval_s=1)
    wait_for(
        lambda: (
            db.execute(
                "SELECT interval_s FROM device_status WHERE device_id=%s", (dev.device_id,)
            ).fetchone()
            == (1,)
        ),
        what="interval",
    )
    last = time.monotonic()
    wait_for(lambda: status(db, dev.device_id)[0] is False, timeout=6, what="timeout offline")
    silent = time.monotonic() - last
    assert 2.0 <= silent <= 4.0, silent  # 2.5 s, give or take the sweep and the batch
    assert changes(db, dev.device_id)[-1] == (False, "heartbeat_timeout")
    dev.send("heartbeat", battery=89, interval_s=1)
    wait_for(lambda: status(db, dev.device_id)[0] is True, what="back online")
    assert changes(db, dev.device_id)[-1] == (True, "message")


def test_last_will_marks_offline_at_once_and_reconnect_online(gateway, make_device, db):
    dev = make_device()
    dev.send("heartbeat", battery=90, interval_s=60)
    wait_for(lambda: status(db, dev.device_id) == (True, True), what="online")
    t0 = time.monotonic()
    dev.drop()
    wait_for(lambda: status(db, dev.device_id) == (False, False), timeout=5, what="last will")
    assert time.monotonic() - t0 < 2.0
    dev.reconnect()
    wait_for(lambda: status(db, dev.device_id) == (True, True), what="online again")
    assert changes(db, dev.device_id)[-2:] == [(False, "state"), (True, "state")]


def test_camera_counts_offline_when_its_bridge_is(gateway, make_device, db):
    nvr = make_device("video_bridge", cameras=["c1", "c2"])
    nvr.send("heartbeat", battery=100, interval_s=60)
    nvr.send("camera_status", camera_id="c1", status="online", recording=True)
    nvr.send("camera_status", camera_id="c2", status="video_loss")

    def cams():
        return dict(
            db.execute(
                "SELECT camera_id, online FROM camera_status WHERE device_id=%s", (nvr.device_id,)
            ).fetchall()
        )

    wait_for(lambda: cams() == {"c1": True, "c2": False}, what="camera states")
    nvr.drop()
    wait_for(lambda: cams() == {"c1": False, "c2": False}, what="bridge offline")
    assert (False, "bridge") in changes(db, nvr.device_id, camera=True)
    nvr.reconnect()
    wait_for(lambda: cams() == {"c1": True, "c2": False}, what="bridge back")
