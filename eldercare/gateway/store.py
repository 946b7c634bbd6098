"""The gateway's database side: alarms committed one by one, everything else in batches.

Each Store owns one connection (psycopg connections are not shared between
threads). psycopg's errors leave as StorageError; the worker retries the same
batch after a reconnect, so nothing uncommitted is ever acknowledged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import psycopg

from eldercare.alerts import intake
from eldercare.errors import StorageError
from eldercare.gateway import liveness
from eldercare.gateway import metrics as m
from eldercare.protocol import Channel, EventClass, Uplink, topic
from eldercare.registry.schemas import DeviceInfo

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]

_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS staging_events (
    time timestamptz, received_at timestamptz, device_ts timestamptz, device_id text,
    facility_id bigint, msg_id text, type text, clock_skew boolean, payload text, digest bytea
) ON COMMIT DELETE ROWS
"""
_COPY = (
    "COPY staging_events (time, received_at, device_ts, device_id, facility_id, msg_id, type,"
    " clock_skew, payload, digest) FROM STDIN (FORMAT BINARY)"
)
_COPY_TYPES = [
    "timestamptz",
    "timestamptz",
    "timestamptz",
    "text",
    "int8",
    "text",
    "text",
    "bool",
    "text",
    "bytea",
]
# A message id already stored with *another* body is a new message (the device's counter
# restarted): it is kept under "<id>#<digest>" (see reuse_key), never swallowed (audit H7).
#
# The earlier copy's digest is looked up per row by the primary key (a correlated subquery,
# which the planner cannot turn into a join): as a LEFT JOIN, the planner chose, whenever
# its statistics of message_ids lagged behind the table's growth, to hash the whole table
# for every batch (up to 0.9 s per 1,000 rows at 150,000 ids, growing with the table).
_INSERT_FRESH = """
WITH keyed AS (
    SELECT s.*, CASE WHEN (SELECT m.digest FROM message_ids m
                           WHERE m.device_id = s.device_id AND m.msg_id = s.msg_id) <> s.digest
                     THEN s.msg_id || '#' || encode(s.digest, 'hex') ELSE s.msg_id END AS key
    FROM staging_events s
), fresh AS (
    INSERT INTO message_ids (device_id, msg_id, received_at, digest)
    SELECT device_id, key, received_at, digest FROM keyed
    ON CONFLICT DO NOTHING
    RETURNING device_id, msg_id
)
INSERT INTO device_events (time, received_at, device_ts, device_id, facility_id, msg_id, type,
                           clock_skew, payload)
SELECT k.time, k.received_at, k.device_ts, k.device_id, k.facility_id, k.key, k.type,
       k.clock_skew, k.payload::jsonb
FROM keyed k JOIN fresh f ON f.device_id = k.device_id AND f.msg_id = k.key
"""


def reuse_key(msg_id: str, digest: bytes) -> str:
    """Where a reused message id with a different body is stored (same form as the SQL)."""
    return f"{msg_id}#{digest.hex()}"


_UPSERT_STATUS = """
INSERT INTO device_status AS d (device_id, state_online, online, last_seen_at,
                                last_heartbeat_at, interval_s, battery, rssi, changed_at)
SELECT * FROM unnest(%s::text[], %s::boolean[], %s::boolean[], %s::timestamptz[],
                     %s::timestamptz[], %s::integer[], %s::integer[], %s::integer[],
                     %s::timestamptz[])
ON CONFLICT (device_id) DO UPDATE SET
    state_online = EXCLUDED.state_online, online = EXCLUDED.online,
    last_seen_at = EXCLUDED.last_seen_at,
    last_heartbeat_at = COALESCE(EXCLUDED.last_heartbeat_at, d.last_heartbeat_at),
    interval_s = COALESCE(EXCLUDED.interval_s, d.interval_s),
    battery = COALESCE(EXCLUDED.battery, d.battery),
    rssi = COALESCE(EXCLUDED.rssi, d.rssi),
    changed_at = COALESCE(EXCLUDED.changed_at, d.changed_at)
"""


@dataclass(frozen=True, slots=True)
class Refusal:
    topic: str
    device_id: str | None
    msg_id: str | None
    reason: str
    detail: str
    payload: bytes
    received_at: datetime


def _db_refusal(e: Uplink, exc: psycopg.Error) -> Refusal:
    """A message PostgreSQL refused deterministically (DataError): kept, nacked, skipped,
    never retried (a retry would fail the same way and block the lane, audit C1)."""
    return Refusal(
        topic(e.device_id, Channel.UP),
        e.device_id,
        e.msg_id,
        "schema",
        f"the database cannot store a value in this message (SQLSTATE {exc.sqlstate})",
        e.raw,
        e.received_at,
    )


def _not_its_camera(e: Uplink) -> Refusal:
    return Refusal(
        topic(e.device_id, Channel.UP),
        e.device_id,
        e.msg_id,
        "schema",
        "camera_status: this camera_id is not registered to this device (only a video"
        " bridge reports its own registered cameras)",
        e.raw,
        e.received_at,
    )


def _unknown_device(
    device_id: str, msg_id: str | None, payload: bytes, received_at: datetime
) -> Refusal:
    """An authenticated device the registry does not know (or has revoked)."""
    return Refusal(
        topic(device_id, Channel.UP),
        device_id,
        msg_id,
        "unknown_device",
        "this device is not registered or has been revoked",
        payload,
        received_at,
    )


@dataclass(frozen=True, slots=True)
class StateReport:
    device_id: str
    online: bool
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Transition:
    time: datetime
    device_id: str
    camera_id: str | None
    facility_id: int | None
    online: bool
    status: str
    cause: str


@dataclass(slots=True)
class BatchResult:
    stored: int = 0
    duplicates: int = 0
    refused: list[Refusal] = field(default_factory=list)
    transitions: list[Transition] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AlarmResult:
    alarm_id: uuid.UUID | None
    duplicate: bool


def _digest(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=16).digest()


class DeviceCache:
    """device id -> DeviceInfo, refreshed after ``ttl`` seconds (revocation also
    disconnects at the broker, so a short staleness here is harmless)."""

    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        self._items: dict[str, tuple[float, DeviceInfo | None]] = {}

    def get_many(
        self, conn: psycopg.Connection, ids: Iterable[str]
    ) -> dict[str, DeviceInfo | None]:
        now = time.monotonic()
        out: dict[str, DeviceInfo | None] = {}
        missing = []
        for i in set(ids):
            hit = self._items.get(i)
            if hit and now - hit[0] < self.ttl:
                out[i] = hit[1]
            else:
                missing.append(i)
        if missing:
            rows = conn.execute(
                "SELECT id, kind, status, facility_id, resident_id, home_bed_id, room"
                " FROM devices WHERE id = ANY(%s)",
                (missing,),
            ).fetchall()
            found = {r[0]: DeviceInfo(*r) for r in rows}
            for i in missing:
                info = found.get(i)
                self._items[i] = (now, info)
                out[i] = info
        return out


class Store:
    def __init__(self, conninfo: str, clock: Clock, *, liveness_factor: float = 2.5) -> None:
        self.conninfo = conninfo
        self.clock = clock
        self.factor = liveness_factor
        self.devices = DeviceCache()
        self._conn: psycopg.Connection | None = None

    # ---------------------------------------------------------------- connection

    def _connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(self.conninfo, connect_timeout=5)
                self._conn.execute(_STAGING)
                self._conn.commit()
            except psycopg.Error as exc:
                self._conn = None
                raise StorageError(f"cannot connect to the database: {exc}") from exc
        return self._conn

    def _fail(self, exc: psycopg.Error) -> StorageError:
        m.DB_ERRORS.inc()
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()
        return StorageError(str(exc).strip() or type(exc).__name__)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # ---------------------------------------------------------------- alarms

    def store_alarm(self, event: Uplink) -> AlarmResult | Refusal:
        """Commit one alarm-class (or control) event now; return its alarm id."""
        try:
            return self._store_alarm(event)
        except psycopg.DataError as exc:
            self._rollback()
            log.warning("the database refused an alarm-lane message (SQLSTATE %s)", exc.sqlstate)
            ref = _db_refusal(event, exc)
            self.store_refusals([ref])
            return ref
        except psycopg.Error as exc:
            raise self._fail(exc) from exc

    def _rollback(self) -> None:
        if self._conn is not None:
            try:
                self._conn.rollback()
            except psycopg.Error as exc:
                raise self._fail(exc) from exc

    @staticmethod
    def _claim(
        conn: psycopg.Connection, event: Uplink, digest: bytes
    ) -> tuple[str | None, uuid.UUID | None]:
        """Claim the message id: (key to store under, None) when fresh, else (None, the
        alarm id it had). The same id with another body is claimed under reuse_key."""
        key = event.msg_id
        for _ in range(2):
            fresh = conn.execute(
                "INSERT INTO message_ids (device_id, msg_id, received_at, digest)"
                " VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING 1",
                (event.device_id, key, event.received_at, digest),
            ).fetchone()
            if fresh is not None:
                return key, None
            row = conn.execute(
                "SELECT alarm_id, digest FROM message_ids WHERE device_id = %s AND msg_id = %s",
                (event.device_id, key),
            ).fetchone()
            assert row is not None
            if row[1] is None or row[1] == digest or key != event.msg_id:
                return None, row[0]
            log.warning(
                "message id reused with a different body on %s; stored as a new message",
                topic(event.device_id, Channel.UP),
            )
            m.ID_REUSED.inc()
            key = reuse_key(event.msg_id, digest)
        return None, None

    def _store_alarm(self, event: Uplink) -> AlarmResult | Refusal:
        conn = self._connection()
        dev = self.devices.get_many(conn, [event.device_id])[event.device_id]
        if dev is None or not dev.active:
            conn.rollback()
            return self._unknown(event.device_id, event.msg_id, event.raw, event.received_at)
        body = event.canonical
        digest = _digest(body)
        # Pipeline mode: statements whose results nobody reads (the event row, the status
        # touch, the lock, audit and notify rows) go out together, and the client waits
        # only where a result is needed: ~3 round trips per alarm instead of ~10. Each wait
        # is also a wait for the interpreter lock, which the parser may hold (issue 10).
        with conn.pipeline(), conn.transaction():
            key, previous = self._claim(conn, event, digest)
            if key is None:
                result = AlarmResult(previous, duplicate=True)
            else:
                self._insert_event(conn, event, dev, key, body)
                self._touch(conn, event)
                now = self.clock()
                alarm_id: uuid.UUID | None
                if event.cls is EventClass.ALARM:
                    alarm_id, _ = intake.raise_alarm(conn, event, dev, now)
                    conn.execute(
                        "UPDATE message_ids SET alarm_id = %s WHERE device_id = %s AND msg_id = %s",
                        (alarm_id, event.device_id, key),
                    )
                else:
                    alarm_id = intake.record_cancel(conn, event, dev, now)
                result = AlarmResult(alarm_id, duplicate=False)
        conn.commit()
        return result

    @staticmethod
    def _insert_event(
        conn: psycopg.Connection, e: Uplink, dev: DeviceInfo, key: str, body: bytes
    ) -> None:
        conn.execute(
            "INSERT INTO device_events (time, received_at, device_ts, device_id, facility_id,"
            " msg_id, type, clock_skew, payload) VALUES (%s, %s, %s, %s, %s, %s, %s, %s,"
            " %s::jsonb)",
            (
                e.time,
                e.received_at,
                e.device_ts,
                e.device_id,
                dev.facility_id,
                key,
                e.type,
                e.clock_skew,
                body.decode(),
            ),
        )

    def _touch(self, conn: psycopg.Connection, e: Uplink) -> None:
        # Liveness runs on arrival time, never the device's clock (audit H6).
        conn.execute(
            "INSERT INTO device_status (device_id, last_seen_at) VALUES (%s, %s)"
            " ON CONFLICT (device_id) DO UPDATE SET last_seen_at ="
            " GREATEST(device_status.last_seen_at, EXCLUDED.last_seen_at)",
            (e.device_id, e.received_at),
        )

    def _unknown(
        self, device_id: str, msg_id: str | None, payload: bytes, received_at: datetime
    ) -> Refusal:
        ref = _unknown_device(device_id, msg_id, payload, received_at)
        self.store_refusals([ref])
        return ref

    def store_refusals(self, refusals: Sequence[Refusal]) -> None:
        try:
            conn = self._connection()
            with conn.transaction():
                self._insert_refusals(conn, refusals)
            conn.commit()
        except psycopg.Error as exc:
            raise self._fail(exc) from exc

    @staticmethod
    def _insert_refusals(conn: psycopg.Connection, refusals: Sequence[Refusal]) -> None:
        if not refusals:
            return
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO dead_letters (received_at, topic, device_id, msg_id, reason, detail,"
                " payload) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [
                    (r.received_at, r.topic, r.device_id, r.msg_id, r.reason, r.detail, r.payload)
                    for r in refusals
                ],
            )

    # ---------------------------------------------------------------- batches

    def store_batch(
        self,
        events: Sequence[Uplink],
        states: Sequence[StateReport] = (),
        refusals: Sequence[Refusal] = (),
    ) -> BatchResult:
        """Commit a batch of non-alarm events, state reports and refusals in one transaction.

        A row PostgreSQL refuses (DataError) is found by storing the batch's events one
        by one; it is dead-lettered as ``schema`` and everything else is stored."""
        try:
            return self._store_batch(events, states, refusals)
        except psycopg.DataError as exc:
            self._rollback()
            if not events:
                raise self._fail(exc) from exc
            if len(events) == 1:
                log.warning(
                    "the database refused a message on %s (SQLSTATE %s); dead-lettered",
                    topic(events[0].device_id, Channel.UP),
                    exc.sqlstate,
                )
                return self.store_batch([], states, [*refusals, _db_refusal(events[0], exc)])
            total = self.store_batch([], states, refusals)
            for e in events:
                one = self.store_batch([e])
                total.stored += one.stored
                total.duplicates += one.duplicates
                total.refused += one.refused
                total.transitions += one.transitions
            return total
        except psycopg.Error as exc:
            raise self._fail(exc) from exc

    @staticmethod
    def _bridge_cameras(conn: psycopg.Connection, events: Sequence[Uplink]) -> set[tuple[str, str]]:
        """(bridge, camera) pairs registered for the batch's camera_status senders: a device
        may report only cameras registered to it, and only a video bridge has any (H3)."""
        senders = sorted({e.device_id for e in events if e.type == "camera_status"})
        if not senders:
            return set()
        rows = conn.execute(
            "SELECT c.device_id, c.camera_id FROM cameras c JOIN devices d ON d.id = c.device_id"
            " WHERE d.kind = 'video_bridge' AND c.device_id = ANY(%s)",
            (senders,),
        ).fetchall()
        return {(r[0], r[1]) for r in rows}

    def _store_batch(
        self,
        events: Sequence[Uplink],
        states: Sequence[StateReport],
        refusals: Sequence[Refusal],
    ) -> BatchResult:
        res = BatchResult(refused=list(refusals))
        conn = self._connection()
        ids = {e.device_id for e in events} | {s.device_id for s in states}
        devices = self.devices.get_many(conn, ids)
        # Per-row work in one pass, with per-device facts looked up once per batch: these
        # loops run for every message the gateway stores.
        facility = {i: d.facility_id for i, d in devices.items() if d is not None and d.active}
        cameras = self._bridge_cameras(conn, events)
        good: list[Uplink] = []
        rows: list[tuple[object, ...]] = []
        seen: dict[tuple[str, str], bytes] = {}
        for e in events:
            device_id = e.device_id
            if device_id not in facility:
                res.refused.append(_unknown_device(device_id, e.msg_id, e.raw, e.received_at))
                continue
            if e.type == "camera_status" and (device_id, e.body["camera_id"]) not in cameras:
                res.refused.append(_not_its_camera(e))
                continue
            body = e.canonical
            digest = _digest(body)
            key = e.msg_id
            first = seen.get((device_id, key))
            if first is not None and first != digest:
                key = reuse_key(key, digest)  # reused within this very batch
                first = seen.get((device_id, key))
            if first is not None:
                res.duplicates += 1
                continue
            seen[(device_id, key)] = digest
            good.append(e)
            rows.append(
                (
                    e.received_at if e.clock_skew else e.device_ts,  # e.time, without the call
                    e.received_at,
                    e.device_ts,
                    device_id,
                    facility[device_id],
                    key,
                    e.type,
                    e.clock_skew,
                    body.decode(),
                    digest,
                )
            )
        known_states = [s for s in states if s.device_id in facility]
        with conn.transaction():
            if good:
                with conn.cursor() as cur:
                    with cur.copy(_COPY) as copy:
                        copy.set_types(_COPY_TYPES)
                        write_row = copy.write_row
                        for row in rows:
                            write_row(row)
                    cur.execute(_INSERT_FRESH)
                    res.stored = cur.rowcount
                    res.duplicates += len(good) - res.stored
            self._insert_refusals(conn, res.refused)
            res.transitions = self._apply_status(conn, good, known_states, devices)
        conn.commit()
        return res

    # ---------------------------------------------------------------- liveness

    def _apply_status(
        self,
        conn: psycopg.Connection,
        events: Sequence[Uplink],
        states: Sequence[StateReport],
        devices: dict[str, DeviceInfo | None],
    ) -> list[Transition]:
        """Fold the batch into device_status / camera_status and record transitions."""
        seen: dict[str, datetime] = {}
        beats: dict[str, Uplink] = {}
        cams: dict[tuple[str, str], Uplink] = {}
        for e in events:
            # Arrival time, not the device's clock: a clock hours ahead must not keep a
            # dead device online, one hours behind must not make a live one offline (H6).
            if e.device_id not in seen or e.received_at > seen[e.device_id]:
                seen[e.device_id] = e.received_at
            if e.type == "heartbeat":
                prev = beats.get(e.device_id)
                if prev is None or e.time >= prev.time:
                    beats[e.device_id] = e
            elif e.type == "camera_status":
                k = (e.device_id, str(e.body["camera_id"]))
                prevc = cams.get(k)
                if prevc is None or e.time >= prevc.time:
                    cams[k] = e
        last_state = {s.device_id: s for s in states}  # arrival order: the last one wins
        touched = sorted(set(seen) | set(last_state))
        if not touched and not cams:
            return []
        now = self.clock()
        rows = {
            r[0]: r
            for r in conn.execute(
                "SELECT device_id, state_online, online, last_seen_at, interval_s"
                " FROM device_status WHERE device_id = ANY(%s) ORDER BY device_id FOR UPDATE",
                (touched,),
            ).fetchall()
        }
        transitions: list[Transition] = []
        upserts = []
        bridge_flips: dict[str, bool] = {}
        for dev_id in touched:
            old = rows.get(dev_id)
            state_online = old[1] if old else None
            was_online = bool(old[2]) if old else False
            last_seen = old[3] if old else None
            interval = old[4] if old else None
            cause = "message"
            if dev_id in last_state:
                state_online = last_state[dev_id].online
                cause = "state"
            if dev_id in seen and (last_seen is None or seen[dev_id] > last_seen):
                last_seen = seen[dev_id]
            hb = beats.get(dev_id)
            if hb is not None:
                interval = int(hb.body["interval_s"])
            online = liveness.is_online(
                liveness.DeviceLiveness(state_online, last_seen, interval), now, self.factor
            )
            info = devices.get(dev_id)
            fac = info.facility_id if info else None
            if online != was_online:
                transitions.append(
                    Transition(
                        now, dev_id, None, fac, online, "online" if online else "offline", cause
                    )
                )
                if info is not None and info.kind == "video_bridge":
                    bridge_flips[dev_id] = online
            upserts.append(
                (
                    dev_id,
                    state_online,
                    online,
                    last_seen,
                    hb.time if hb else None,
                    interval,
                    int(hb.body["battery"]) if hb else None,
                    hb.body.get("rssi") if hb else None,
                    now if online != was_online else None,
                )
            )
        if upserts:
            # One statement over arrays, not one per device: a batch of heartbeats from a
            # large fleet touches thousands of devices, and per-statement cost dominated.
            conn.execute(_UPSERT_STATUS, [list(col) for col in zip(*upserts, strict=True)])
        transitions += self._apply_cameras(conn, cams, bridge_flips, devices, now)
        self._record(conn, transitions)
        return transitions

    def _bridge_online(self, conn: psycopg.Connection, device_id: str) -> bool:
        row = conn.execute(
            "SELECT online FROM device_status WHERE device_id = %s", (device_id,)
        ).fetchone()
        return bool(row and row[0])

    def _apply_cameras(
        self,
        conn: psycopg.Connection,
        cams: dict[tuple[str, str], Uplink],
        bridge_flips: dict[str, bool],
        devices: dict[str, DeviceInfo | None],
        now: datetime,
    ) -> list[Transition]:
        out: list[Transition] = []
        keys = sorted(cams)
        bridges = sorted({k[0] for k in keys} | set(bridge_flips))
        if not bridges:
            return out
        current = {
            (r[0], r[1]): r
            for r in conn.execute(
                "SELECT device_id, camera_id, status, online FROM camera_status"
                " WHERE device_id = ANY(%s) ORDER BY device_id, camera_id FOR UPDATE",
                (bridges,),
            ).fetchall()
        }
        bridge_state = {b: self._bridge_online(conn, b) for b in bridges}
        for key in keys:
            e = cams[key]
            status = str(e.body["status"])
            online = liveness.camera_online(status, bridge_state[key[0]])
            old = current.get(key)
            changed = old is None or old[2] != status or old[3] != online
            conn.execute(
                "INSERT INTO camera_status AS c (device_id, camera_id, status, recording, online,"
                " reported_at, changed_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (device_id, camera_id) DO UPDATE SET status = EXCLUDED.status,"
                " recording = EXCLUDED.recording, online = EXCLUDED.online,"
                " reported_at = EXCLUDED.reported_at,"
                " changed_at = CASE WHEN %s THEN EXCLUDED.changed_at ELSE c.changed_at END",
                (key[0], key[1], status, e.body.get("recording"), online, e.time, now, changed),
            )
            if changed and (old is not None or not online):
                info = devices.get(key[0])
                out.append(
                    Transition(
                        now,
                        key[0],
                        key[1],
                        info.facility_id if info else None,
                        online,
                        status,
                        "camera_status",
                    )
                )
            current[key] = (key[0], key[1], status, online)
        for bridge, up in bridge_flips.items():
            for (dev, cam), row in list(current.items()):
                if dev != bridge or (dev, cam) in cams:
                    continue
                online = liveness.camera_online(row[2], up)
                if online != row[3]:
                    conn.execute(
                        "UPDATE camera_status SET online = %s, changed_at = %s"
                        " WHERE device_id = %s AND camera_id = %s",
                        (online, now, dev, cam),
                    )
                    info = devices.get(dev)
                    out.append(
                        Transition(
                            now,
                            dev,
                            cam,
                            info.facility_id if info else None,
                            online,
                            row[2] if online else "offline",
                            "bridge",
                        )
                    )
        return out

    @staticmethod
    def _record(conn: psycopg.Connection, transitions: Sequence[Transition]) -> None:
        if not transitions:
            return
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO state_changes (time, device_id, camera_id, facility_id, online,"
                " status, cause) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                [
                    (t.time, t.device_id, t.camera_id, t.facility_id, t.online, t.status, t.cause)
                    for t in transitions
                ],
            )
            cur.executemany(
                "SELECT pg_notify('eldercare_state', %s)",
                [
                    (
                        json.dumps(
                            {
                                "device_id": t.device_id,
                                "camera_id": t.camera_id,
                                "facility_id": t.facility_id,
                                "online": t.online,
                                "status": t.status,
                                "cause": t.cause,
                                "time": t.time.isoformat(),
                            }
                        ),
                    )
                    for t in transitions
                ],
            )
        for t in transitions:
            m.STATE_CHANGES.labels("camera" if t.camera_id else "device", str(t.online)).inc()

    def sweep(self) -> list[Transition]:
        """Mark offline every device whose heartbeat clock ran out (and its cameras)."""
        now = self.clock()
        try:
            conn = self._connection()
            with conn.transaction():
                rows = conn.execute(
                    "SELECT s.device_id, d.facility_id, d.kind FROM device_status s"
                    " JOIN devices d ON d.id = s.device_id"
                    " WHERE s.online AND s.interval_s IS NOT NULL AND s.last_seen_at <"
                    " %s - s.interval_s * %s * interval '1 second'"
                    " ORDER BY s.device_id FOR UPDATE OF s SKIP LOCKED",
                    (now, self.factor),
                ).fetchall()
                out: list[Transition] = []
                for dev_id, fac, kind in rows:
                    conn.execute(
                        "UPDATE device_status SET online = false, changed_at = %s"
                        " WHERE device_id = %s",
                        (now, dev_id),
                    )
                    out.append(
                        Transition(now, dev_id, None, fac, False, "offline", "heartbeat_timeout")
                    )
                    if kind == "video_bridge":
                        for (cam,) in conn.execute(
                            "UPDATE camera_status SET online = false, changed_at = %s"
                            " WHERE device_id = %s AND online RETURNING camera_id",
                            (now, dev_id),
                        ).fetchall():
                            out.append(
                                Transition(now, dev_id, cam, fac, False, "offline", "bridge")
                            )
                self._record(conn, out)
            conn.commit()
            return out
        except psycopg.Error as exc:
            raise self._fail(exc) from exc
