"""Store.store_batch on the real database with many devices in one batch: what the gateway
commits for a large fleet's heartbeats (one status upsert over arrays), duplicates inside
a batch and across batches, and refusals for devices the registry does not know."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from eldercare import protocol as p
from eldercare.gateway.store import StateReport, Store


def _devices(db: psycopg.Connection, facility_id: int, n: int, tag: str) -> list[str]:
    ids = [f"sb-{tag}-{i}" for i in range(n)]
    for i in ids:
        db.execute(
            "INSERT INTO devices (id, kind, facility_id, password_hash) VALUES (%s, 'home_kit',"
            " %s, 'x')",
            (i, facility_id),
        )
    return ids


def test_a_batch_over_many_devices_stores_each_once_and_folds_status(settings, db, facility_id):
    now = datetime.now(UTC).replace(microsecond=0)
    ids = _devices(db, facility_id, 60, "hb")
    store = Store(settings.database_url, lambda: now)
    try:
        events = [
            p.parse_uplink(
                d,
                p.uplink(f"hb-{k}", "heartbeat", now - timedelta(seconds=10 - k), battery=50 + k,
                         interval_s=60, **({"rssi": -70} if k == 1 else {})),
                now,
            )
            for k in range(2)
            for d in ids
        ]  # fmt: skip
        dup = events[0]
        stranger = p.parse_uplink("sb-nobody", p.uplink("x-1", "vitals", now), now)
        states = [StateReport(d, True, now) for d in ids[:30]]
        res = store.store_batch([*events, dup, stranger], states)
        assert res.stored == 120 and res.duplicates == 1
        assert [(r.device_id, r.reason) for r in res.refused] == [("sb-nobody", "unknown_device")]
        again = store.store_batch(events[60:65])  # redelivered: deduplicated by the database
        assert again.stored == 0 and again.duplicates == 5
    finally:
        store.close()
    rows = db.execute(
        "SELECT device_id, state_online, online, last_seen_at, interval_s, battery, rssi"
        " FROM device_status WHERE device_id LIKE 'sb-hb-%%' ORDER BY device_id"
    ).fetchall()
    assert len(rows) == 60
    latest = now  # liveness counts arrival time, not the device's clock
    for dev, state_online, online, last_seen, interval, battery, rssi in rows:
        said_online = int(dev.rsplit("-", 1)[1]) < 30
        assert state_online is (True if said_online else None)
        assert online is said_online  # no state report yet: not online
        assert (last_seen, interval, battery, rssi) == (latest, 60, 51, -70)
    counted = db.execute(
        "SELECT count(*) FROM device_events WHERE device_id LIKE 'sb-hb-%%'"
    ).fetchone()
    assert counted is not None and counted[0] == 120
    kept = db.execute("SELECT count(*) FROM dead_letters WHERE device_id = 'sb-nobody'").fetchone()
    assert kept is not None and kept[0] == 1
