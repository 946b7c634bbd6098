"""Alert engine against the real database, with frozen time: correlation, lifecycle,
audit, concurrency, dispatch and escalation, supervisor, device health, webhooks."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import ClassVar

import psycopg
import pytest

from eldercare.alerts import dispatch, health, notify, outbound, rules
from eldercare.alerts import lifecycle as alarms
from eldercare.alerts.engine import Engine
from eldercare.config import Settings
from eldercare.errors import ConflictError, NotFoundError, PermissionDenied
from eldercare.registry.auth import Actor
from tests.alarm_support import (
    OPERATOR,
    OPERATOR2,
    FrozenClock,
    RecordingPublisher,
    World,
    build_world,
    rows,
)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def world(settings: Settings, clock: FrozenClock) -> Iterator[World]:
    w = build_world(settings, clock)
    yield w
    w.retire()


def alarm_row(db: psycopg.Connection, alarm_id: uuid.UUID | str) -> dict:
    return rows(db, "SELECT * FROM alarms WHERE id = %s", (alarm_id,))[0]


# ---------------------------------------------------------------- correlation


def test_repeated_presses_join_the_open_alarm(world: World, db: psycopg.Connection) -> None:
    first = world.send(world.sos, "sos")
    world.clock.advance(5)
    second = world.send(world.sos, "sos", press="double")
    assert first.alarm_id == second.alarm_id
    a = alarm_row(db, first.alarm_id)
    assert a["occurrences"] == 2 and a["status"] == "raised" and a["priority"] == 1
    actions = [e["action"] for e in alarms.timeline(db, first.alarm_id)]
    assert actions == ["raised", "joined"]


def test_fall_and_sos_of_one_resident_are_one_incident(
    world: World, db: psycopg.Connection
) -> None:
    fall = world.send(world.fall, "fall", confidence=0.93)
    world.clock.advance(90)
    sos = world.send(world.sos, "sos")
    assert sos.alarm_id == fall.alarm_id
    a = alarm_row(db, fall.alarm_id)
    assert a["kinds"] == ["fall", "sos"] and sorted(a["devices"]) == sorted([world.fall, world.sos])
    # A different kind (water leak) is its own alarm: several open alarms per resident.
    leak = world.send(world.sos, "water_leak")
    assert leak.alarm_id != fall.alarm_id


def test_fall_and_sos_far_apart_are_two_alarms(world: World) -> None:
    fall = world.send(world.fall, "fall", confidence=0.9)
    world.clock.advance(rules.CORRELATION_WINDOW.total_seconds() + 1)
    sos = world.send(world.sos, "sos")
    assert sos.alarm_id != fall.alarm_id


def test_cancel_is_recorded_but_never_closes(world: World, db: psycopg.Connection) -> None:
    res = world.send(world.sos, "sos", msg_id="press-1")
    world.send(world.sos, "cancel", ref="press-1")
    a = alarms.summary(db, res.alarm_id)
    assert a["status"] == "raised" and a["cancel_requested_at"] is not None
    alarms.act(db, res.alarm_id, "acknowledge", OPERATOR, world.clock())
    alarms.act(db, res.alarm_id, "resolve", OPERATOR, world.clock())
    done = alarms.act(
        db, res.alarm_id, "close", OPERATOR, world.clock(), disposition="accidental_press"
    )
    assert done["status"] == "closed" and done["disposition"] == "accidental_press"


# ---------------------------------------------------------------- lifecycle


def test_full_lifecycle_clocks_audit_and_device_told(
    world: World, db: psycopg.Connection, owner_db: psycopg.Connection, settings: Settings
) -> None:
    aid = world.send(world.sos, "sos").alarm_id
    t0 = world.clock()
    world.clock.advance(20)
    alarms.act(db, aid, "acknowledge", OPERATOR, world.clock(), note="called the room")
    world.clock.advance(10)
    a = dispatch.dispatch(db, aid, OPERATOR, world.clock())
    assert a["status"] == "dispatched" and a["escalation_step"] == 0
    offers = dispatch.offers(db, aid)
    # Only the two nurses on the rota are asked; nurse 2 is off duty.
    assert sorted(o["responder_id"] for o in offers) == sorted(world.staff[:2])
    world.clock.advance(15)
    nurse = Actor("nurse0", "facility_staff", world.facility_id, world.staff[0])
    a = dispatch.accept(db, aid, nurse, world.clock())
    assert a["status"] == "accepted" and a["escalation_due_at"] is None
    statuses = {o["responder_id"]: o["status"] for o in dispatch.offers(db, aid)}
    assert statuses == {world.staff[0]: "accepted", world.staff[1]: "withdrawn"}
    world.clock.advance(200)
    alarms.act(db, aid, "on_site", nurse, world.clock())
    world.clock.advance(300)
    alarms.act(db, aid, "resolve", nurse, world.clock())
    with pytest.raises(PermissionDenied):
        alarms.act(db, aid, "close", nurse, world.clock(), disposition="genuine_emergency")
    a = alarms.act(db, aid, "close", OPERATOR, world.clock(), disposition="genuine_emergency")
    assert a["received_at"] == t0
    assert (a["acknowledged_at"] - t0).total_seconds() == 20
    assert (a["dispatched_at"] - t0).total_seconds() == 30
    assert (a["accepted_at"] - t0).total_seconds() == 45
    assert (a["on_site_at"] - t0).total_seconds() == 245
    assert (a["resolved_at"] - t0).total_seconds() == 545
    assert a["acknowledged_by"] == "op1"
    trail = alarms.timeline(db, aid)
    assert [(e["action"], e["actor"]) for e in trail] == [
        ("raised", f"device:{world.sos}"),
        ("acknowledged", "op1"),
        ("dispatched", "op1"),
        ("accepted", "nurse0"),
        ("on_site", "nurse0"),
        ("resolved", "nurse0"),
        ("closed", "op1"),
    ]
    assert trail[1]["detail"] == {"note": "called the room"}
    # The audit trail is append-only, enforced by the database: the app's role has no
    # right to change it, and the trigger refuses even the owner.
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("UPDATE alarm_events SET actor = 'x' WHERE alarm_id = %s", (aid,))
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("DELETE FROM alarm_events WHERE alarm_id = %s", (aid,))
    with pytest.raises(psycopg.errors.RaiseException):
        owner_db.execute("UPDATE alarm_events SET actor = 'x' WHERE alarm_id = %s", (aid,))
    with pytest.raises(psycopg.errors.RaiseException):
        owner_db.execute("DELETE FROM alarm_events WHERE alarm_id = %s", (aid,))
    pub = RecordingPublisher()
    notify.deliver_due(db, world.clock(), "device", publisher=pub)
    assert pub.statuses(world.sos) == ["acknowledged", "dispatched", "on_site", "resolved"]
    assert all(
        p["alarm_id"] == str(aid) and p["type"] == "alarm_status"
        for d, p in pub.sent
        if d == world.sos
    )


def test_no_skipping_back_and_unknown_ids(world: World, db: psycopg.Connection) -> None:
    aid = world.send(world.sos, "sos").alarm_id
    with pytest.raises(ConflictError, match="cannot on-site: alarm is raised"):
        alarms.act(db, aid, "on_site", OPERATOR, world.clock())
    with pytest.raises(ConflictError):
        dispatch.dispatch(db, aid, OPERATOR, world.clock())
    alarms.act(db, aid, "acknowledge", OPERATOR, world.clock())
    with pytest.raises(ConflictError, match="acknowledged"):
        alarms.act(db, aid, "acknowledge", OPERATOR2, world.clock())
    with pytest.raises(ConflictError):
        alarms.act(db, aid, "close", OPERATOR, world.clock(), disposition="test")
    with pytest.raises(NotFoundError):
        alarms.act(db, uuid.uuid4(), "acknowledge", OPERATOR, world.clock())
    other = Actor("staff-x", "facility_staff", world.home_facility_id)
    with pytest.raises(NotFoundError):
        alarms.act(db, aid, "note", other, world.clock())


def test_two_acknowledges_at_once_exactly_one_wins(
    world: World, settings: Settings, db: psycopg.Connection
) -> None:
    for _ in range(5):
        aid = world.send(world.sos, "smoke").alarm_id
        barrier = threading.Barrier(2)
        results: list[str] = []

        def ack(
            actor: Actor,
            aid: uuid.UUID = aid,
            barrier: threading.Barrier = barrier,
            results: list[str] = results,
        ) -> None:
            with psycopg.connect(settings.database_url, autocommit=True) as conn:
                barrier.wait()
                try:
                    alarms.act(conn, aid, "acknowledge", actor, world.clock())
                    results.append("won")
                except ConflictError:
                    results.append("409")

        threads = [threading.Thread(target=ack, args=(a,)) for a in (OPERATOR, OPERATOR2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert sorted(results) == ["409", "won"]
        acks = [e for e in alarms.timeline(db, aid) if e["action"] == "acknowledged"]
        assert len(acks) == 1
        alarms.act(db, aid, "resolve", OPERATOR, world.clock())
        alarms.act(db, aid, "close", OPERATOR, world.clock(), disposition="test")


# ---------------------------------------------------------------- escalation, frozen time


def test_escalation_runs_until_someone_accepts(world: World, db: psycopg.Connection) -> None:
    aid = world.send(world.fall, "fall", confidence=0.99).alarm_id
    alarms.act(db, aid, "acknowledge", OPERATOR, world.clock())
    dispatch.dispatch(db, aid, OPERATOR, world.clock())
    world.clock.advance(119)
    assert dispatch.escalate_due(db, world.clock()) == []
    world.clock.advance(2)
    assert dispatch.escalate_due(db, world.clock()) == [str(aid)]
    a = alarm_row(db, aid)
    # facility_staff (0) -> outreach skipped for a facility resident -> family (2).
    assert a["escalation_step"] == 2 and a["status"] == "dispatched"
    offers = dispatch.offers(db, aid)
    assert [o["status"] for o in offers[:2]] == ["expired", "expired"]
    assert offers[2]["responder_kind"] == "family" and offers[2]["phone"] == "13800000001"
    # The daughter declines: the next step starts at once (nearest provider).
    dispatch.decline(db, aid, OPERATOR, world.clock(), offer_id=offers[2]["id"], reason="abroad")
    a = alarm_row(db, aid)
    assert a["escalation_step"] == 3
    prov = dispatch.offers(db, aid)[-1]
    # The facility (31.23, 121.47) is nearest to provider 0.
    assert prov["responder_kind"] == "provider" and prov["responder_id"] == world.providers[0]
    world.clock.advance(301)
    dispatch.escalate_due(db, world.clock())
    em = dispatch.offers(db, aid)[-1]
    assert em["responder_kind"] == "emergency" and em["status"] == "called"
    world.clock.advance(301)
    dispatch.escalate_due(db, world.clock())
    # Nobody accepted: the policy starts over (nurses again), the daughter is not re-asked.
    a = alarm_row(db, aid)
    assert a["escalation_step"] == 0
    last = dispatch.offers(db, aid)[-2:]
    assert sorted(o["responder_id"] for o in last) == sorted(world.staff[:2])
    nurse = Actor("nurse1", "facility_staff", world.facility_id, world.staff[1])
    dispatch.accept(db, aid, nurse, world.clock())
    world.clock.advance(3600)
    assert dispatch.escalate_due(db, world.clock()) == []
    actions = [e["action"] for e in alarms.timeline(db, aid)]
    assert actions.count("escalated") == 4 and actions[-1] == "accepted"


def test_home_bed_goes_to_outreach_then_nearest_provider(
    world: World, db: psycopg.Connection
) -> None:
    aid = world.send(world.home_sos, "sos").alarm_id
    a = alarm_row(db, aid)
    assert a["area"] == "remote"
    alarms.act(db, aid, "acknowledge", OPERATOR, world.clock())
    dispatch.dispatch(db, aid, OPERATOR, world.clock())
    o = dispatch.offers(db, aid)
    assert [x["responder_id"] for x in o] == world.outreach
    d = alarms.detail(db, aid, OPERATOR, world.clock())
    assert d["proposal"]["kind"] == "family"
    world.clock.advance(181)
    dispatch.escalate_due(db, world.clock())
    world.clock.advance(181)
    dispatch.escalate_due(db, world.clock())
    prov = dispatch.offers(db, aid)[-1]
    assert prov["responder_id"] == world.providers[1]
    assert prov["distance_m"] is not None and prov["distance_m"] < 2000


def test_policy_per_facility_replaces_the_default(world: World, db: psycopg.Connection) -> None:
    db.execute(
        "INSERT INTO response_policies (facility_id, name, on_site_target_s,"
        " supervisor_after_s, steps) VALUES (%s, 'strict', 600, 30, %s)",
        (world.facility_id, json.dumps([{"kind": "emergency", "number": "119", "timeout_s": 60}])),
    )
    aid = world.send(world.sos, "gas").alarm_id
    world.clock.advance(31)
    assert str(aid) in dispatch.supervisor_due(db, world.clock())
    alarms.act(db, aid, "acknowledge", OPERATOR, world.clock())
    dispatch.dispatch(db, aid, OPERATOR, world.clock())
    (o,) = dispatch.offers(db, aid)
    assert o["name"] == "119" and o["status"] == "called"


def test_supervisor_told_once_when_unacknowledged_past_target(
    world: World, db: psycopg.Connection
) -> None:
    aid = world.send(world.sos, "sos").alarm_id
    world.clock.advance(59)
    assert str(aid) not in dispatch.supervisor_due(db, world.clock())
    world.clock.advance(2)
    assert str(aid) in dispatch.supervisor_due(db, world.clock())
    world.clock.advance(60)
    assert str(aid) not in dispatch.supervisor_due(db, world.clock())
    assert alarm_row(db, aid)["supervisor_notified_at"] is not None


# ---------------------------------------------------------------- device health


def test_device_offline_raised_and_cleared_by_restore(
    world: World, db: psycopg.Connection, settings: Settings
) -> None:
    dev = world.device("sos_button")
    world.send(dev, "heartbeat", battery=90, interval_s=60)
    world.state(dev, True)
    for _ in range(3):  # enough healthy devices that one offline is not an outage
        other = world.device("sos_button")
        world.send(other, "heartbeat", battery=90, interval_s=60)
        world.state(other, True)
    world.state(dev, False)  # Last Will
    health.scan(db, settings, world.clock(), [world.facility_id])
    (a,) = rows(db, "SELECT * FROM alarms WHERE device_id = %s AND kind = 'device_offline'", (dev,))
    assert a["status"] == "raised" and a["details"]["cause"] == "state" and a["priority"] == 4
    health.scan(db, settings, world.clock(), [world.facility_id])  # idempotent
    assert len(rows(db, "SELECT 1 FROM alarms WHERE device_id = %s", (dev,))) == 1
    world.clock.advance(30)
    world.state(dev, True)
    health.scan(db, settings, world.clock(), [world.facility_id])
    a = alarm_row(db, a["id"])
    assert a["cleared_at"] == world.clock() and a["status"] == "closed"
    assert a["disposition"] == "no_response_needed"
    assert [e["action"] for e in alarms.timeline(db, a["id"])] == ["raised", "cleared"]


def test_facility_outage_is_one_incident(
    settings: Settings, clock: FrozenClock, db: psycopg.Connection
) -> None:
    w = build_world(settings, clock)
    devs = [w.device("sos_button") for _ in range(6)]
    for d in devs:
        w.send(d, "heartbeat", battery=80, interval_s=60)
        w.state(d, True)
    # Two drop first: ordinary device alarms.
    for d in devs[:2]:
        w.state(d, False)
    health.scan(db, settings, clock(), [w.facility_id])
    assert (
        len(
            rows(
                db,
                "SELECT 1 FROM alarms WHERE facility_id = %s AND kind = 'device_offline'",
                (w.facility_id,),
            )
        )
        == 2
    )
    # Then the whole building: heartbeats stop, the gateway's sweep marks them offline.
    clock.advance(200)
    w.store.sweep()
    health.scan(db, settings, clock(), [w.facility_id])
    got = rows(
        db, "SELECT kind, status, merged_into FROM alarms WHERE facility_id = %s", (w.facility_id,)
    )
    outage = [a for a in got if a["kind"] == "facility_outage"]
    assert len(outage) == 1
    assert all(a["status"] == "merged" for a in got if a["kind"] == "device_offline")
    assert len(got) == 3  # no storm of 6 device alarms
    listed = alarms.list_alarms(db, OPERATOR, facility=w.facility_id)
    assert [a["kind"] for a in listed] == ["facility_outage"]
    # Power back: the outage clears itself.
    clock.advance(10)
    for d in devs:
        w.send(d, "heartbeat", battery=80, interval_s=60)
        w.state(d, True)
    health.scan(db, settings, clock(), [w.facility_id])
    o = rows(
        db,
        "SELECT * FROM alarms WHERE facility_id = %s AND kind = 'facility_outage'",
        (w.facility_id,),
    )[0]
    assert o["cleared_at"] is not None and o["status"] == "closed"


def test_low_battery_and_camera_offline(
    world: World, db: psycopg.Connection, settings: Settings
) -> None:
    dev = world.device("sos_button")
    world.send(dev, "heartbeat", battery=12, interval_s=60)
    health.scan(db, settings, world.clock())
    (a,) = rows(db, "SELECT * FROM alarms WHERE device_id = %s AND kind = 'low_battery'", (dev,))
    world.send(dev, "heartbeat", battery=22, interval_s=60)  # within the hysteresis
    health.scan(db, settings, world.clock())
    assert alarm_row(db, a["id"])["cleared_at"] is None
    world.send(dev, "heartbeat", battery=100, interval_s=60)
    health.scan(db, settings, world.clock())
    assert alarm_row(db, a["id"])["cleared_at"] is not None

    nvr = world.device("video_bridge", cameras=["cam1"])
    world.state(nvr, True)
    world.send(nvr, "heartbeat", battery=100, interval_s=60)
    world.send(nvr, "camera_status", camera_id="cam1", status="video_loss")
    world.clock.advance(settings.camera_offline_alarm_s - 1)
    world.send(nvr, "heartbeat", battery=100, interval_s=60)
    health.scan(db, settings, world.clock(), [world.facility_id])
    assert not rows(
        db, "SELECT 1 FROM alarms WHERE device_id = %s AND kind = 'camera_offline'", (nvr,)
    )
    world.clock.advance(2)
    health.scan(db, settings, world.clock(), [world.facility_id])
    (cam,) = rows(
        db, "SELECT * FROM alarms WHERE device_id = %s AND kind = 'camera_offline'", (nvr,)
    )
    assert cam["camera_id"] == "cam1"
    world.send(nvr, "camera_status", camera_id="cam1", status="online")
    health.scan(db, settings, world.clock(), [world.facility_id])
    assert alarm_row(db, cam["id"])["cleared_at"] is not None


# ---------------------------------------------------------------- webhooks and delivery


class _Hook(BaseHTTPRequestHandler):
    fail_first = 2
    received: ClassVar[list[tuple[dict, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        code = 503 if len(type(self).received) <= type(self).fail_first else 204
        self.send_response(code)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_webhook_signed_retried_with_backoff_every_attempt_recorded(
    world: World, settings: Settings, db: psycopg.Connection
) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hook.received = []
    try:
        db.execute(
            "INSERT INTO webhooks (url, secret, events, facility_id) VALUES"
            " (%s, 'super-secret-signing-key', '{raised}', %s)",
            (f"http://127.0.0.1:{server.server_port}/hook", world.facility_id),
        )
        aid = world.send(world.sos, "sos").alarm_id
        poster = outbound.WebhookPoster(outbound.OutboundPolicy.of(["127.0.0.1"]))
        worker = notify.WebhookWorker(
            lambda: psycopg.connect(settings.database_url, autocommit=True), world.clock, poster
        )
        assert worker.run_once(db)["retry"] == 1
        assert worker.run_once(db)["delivered"] == 0  # not due
        world.clock.advance(2)
        assert worker.run_once(db)["retry"] == 1
        world.clock.advance(3)
        assert worker.run_once(db) == {"delivered": 0, "retry": 0, "failed": 0}
        world.clock.advance(1)  # 2nd backoff is 4 s
        assert worker.run_once(db)["delivered"] == 1
        worker.close()
        (n,) = notify.history(db, str(aid))
        assert n["status"] == "delivered" and n["attempts"] == 3
        assert [x["ok"] for x in n["attempt_log"]] == [False, False, True]
        assert n["attempt_log"][0]["status_code"] == 503
        headers, body = _Hook.received[-1]
        ts = int(headers["X-Eldercare-Timestamp"])
        assert rules.verify_signature(
            "super-secret-signing-key", ts, body, headers["X-Eldercare-Signature"]
        )
        assert json.loads(body)["alarm_id"] == str(aid)
        # The alarm itself never waited on the webhook.
        assert alarms.summary(db, aid)["status"] == "raised"
    finally:
        server.shutdown()
        db.execute("UPDATE webhooks SET active = false")


def test_device_channel_failure_keeps_the_notification(
    world: World, db: psycopg.Connection
) -> None:
    aid = world.send(world.sos, "sos").alarm_id
    alarms.act(db, aid, "acknowledge", OPERATOR, world.clock())
    pub = RecordingPublisher()
    pub.fail = True
    notify.deliver_due(db, world.clock(), "device", publisher=pub)
    pub.fail = False
    world.clock.advance(3)
    notify.deliver_due(db, world.clock(), "device", publisher=pub)
    assert pub.statuses(world.sos) == ["acknowledged"]


def test_escalation_survives_an_engine_restart(
    world: World, settings: Settings, db: psycopg.Connection
) -> None:
    """Timers live in the database: a new engine picks up what the old one started."""
    aid = world.send(world.sos, "sos").alarm_id
    first = Engine(settings, clock=world.clock, publisher=RecordingPublisher())
    first.tick()
    alarms.act(db, aid, "acknowledge", OPERATOR, world.clock())
    dispatch.dispatch(db, aid, OPERATOR, world.clock())
    del first
    world.clock.advance(121)
    pub = RecordingPublisher()
    second = Engine(settings, clock=world.clock, publisher=pub)
    out = second.tick()
    assert str(aid) in out["escalated"]
    assert alarm_row(db, aid)["escalation_step"] == 2
    assert pub.statuses(world.sos) == ["acknowledged", "dispatched"]
