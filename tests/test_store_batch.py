"""Store.store_batch on the real database with many devices in one batch: what the gateway
commits for a large fleet's heartbeats (one status upsert over arrays), duplicates inside
a batch and across batches, and refusals for devices the registry does not know."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from eldercare import protocol as p
from eldercare.gateway import store as store_module
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


def test_dedup_looks_each_id_up_by_key_and_never_scans_the_id_table(settings, db):
    """The dedup lookup is an index probe per staged row whatever the planner's statistics
    say: as a join, it hashed all of message_ids for every batch once the table had grown
    (0.9 s per 1,000-row batch at 150,000 ids; cost growing with the table)."""
    db.execute(
        "INSERT INTO message_ids (device_id, msg_id, received_at) SELECT 'sb-plan', 'old-' || g,"
        " now() FROM generate_series(1, 50000) g ON CONFLICT DO NOTHING"
    )
    db.execute("ANALYZE message_ids")
    with psycopg.connect(settings.database_url) as conn:
        conn.execute(store_module._STAGING)
        conn.execute(
            "INSERT INTO staging_events SELECT now(), now(), now(), 'sb-plan', NULL, 'new-' || g,"
            " 'vitals', false, '{}', '\\x00'::bytea FROM generate_series(1, 1000) g"
        )
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + store_module._INSERT_FRESH))
        conn.rollback()
    assert "Index Scan using message_ids_pkey on message_ids" in plan, plan
    assert "Seq Scan on message_ids" not in plan, plan
