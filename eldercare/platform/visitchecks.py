"""Visit verification against the database: gather the facts the pure rules need
(:mod:`eldercare.platform.verification`), store what they find as ``anomalies``, and let
civil_affairs decide them (design §2.8, §2.11).

:func:`inspect` is the work-order lifecycle's ``Hooks.inspect``: it runs inside the check-in /
check-out transaction, after the move, so a refusal elsewhere rolls the findings back too.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Final

import psycopg
from psycopg.types.json import Jsonb

from eldercare.alerts import events
from eldercare.errors import ConflictError, NotFoundError
from eldercare.platform import verification as v
from eldercare.platform.workorders import visible_sql
from eldercare.registry.auth import Actor
from eldercare.storage import db

Row = dict[str, Any]
AROUND: Final = timedelta(hours=2)  # device data from 2 h before to 2 h after the visit (§2.8)
SAME_DAY: Final = timedelta(hours=24)
_GONE: Final = "('cancelled', 'rejected')"


def _fix(point: Row | None, at: datetime | None) -> v.Fix | None:
    if at is None:
        return None
    point = point or {}
    client = point.get("client_time")
    return v.Fix(
        at=at,
        lat=point.get("lat"),
        lon=point.get("lon"),
        accuracy_m=point.get("accuracy_m"),
        client_time=datetime.fromisoformat(client) if client else None,
    )


def _xy(point: Row | None) -> tuple[float, float] | None:
    if not point or point.get("lat") is None or point.get("lon") is None:
        return None
    return float(point["lat"]), float(point["lon"])


_VISIT_COLS: Final = (
    "id::text AS id, resident_id, worker_id, service_item_code, checked_in_at, checked_out_at,"
    " ref_lat, ref_lon, check_in, check_out"
)


def _others(conn: psycopg.Connection, where: str, params: dict[str, Any]) -> list[v.OtherVisit]:
    found = db.rows(
        conn,
        f"SELECT {_VISIT_COLS} FROM work_orders WHERE {where} AND id <> %(me)s"
        f" AND checked_in_at IS NOT NULL AND status NOT IN {_GONE}"
        " AND checked_in_at < %(until)s AND COALESCE(checked_out_at, %(until)s) > %(since)s",
        params,
    )
    return [
        v.OtherVisit(
            order_id=o["id"],
            resident_id=o["resident_id"],
            worker_id=o["worker_id"],
            service_item_code=o["service_item_code"],
            start=o["checked_in_at"],
            end=o["checked_out_at"],
            ref=(o["ref_lat"], o["ref_lon"]) if o["ref_lat"] is not None else None,
            start_point=_xy(o["check_in"]),
            end_point=_xy(o["check_out"]),
        )
        for o in found
    ]


def facts(conn: psycopg.Connection, order: Row, phase: v.Phase, now: datetime) -> v.Facts:
    """The visit context of design §2.8, read from the tables the platform already holds."""
    item = db.one(
        conn,
        "SELECT min_duration_min, max_duration_min, requires_presence, setting"
        " FROM service_items WHERE code = %s",
        (order["service_item_code"],),
    )
    check_in = _fix(order["check_in"], order["checked_in_at"])
    assert check_in is not None, "visit checks run after check-in"
    visit = v.Visit(
        order_id=order["id"],
        resident_id=order["resident_id"],
        worker_id=order["worker_id"],
        service_item_code=order["service_item_code"],
        check_in=check_in,
        check_out=_fix(order["check_out"], order["checked_out_at"]),
        ref=(order["ref_lat"], order["ref_lon"]) if order["ref_lat"] is not None else None,
        area=order["area"],
        scheduled_start=order["scheduled_start"],
        min_duration_min=item["min_duration_min"],
        max_duration_min=item["max_duration_min"],
        requires_presence=item["requires_presence"],
        setting=item["setting"],
    )
    start, end = v.window(visit)
    params = {
        "me": order["id"],
        "since": start - SAME_DAY,
        "until": end + SAME_DAY,
        "worker": order["worker_id"],
        "resident": order["resident_id"],
        "item": order["service_item_code"],
        "bed": order["home_bed_id"],
        "from": start - AROUND,
        "to": end + AROUND,
    }
    worker_visits = (
        _others(conn, "worker_id = %(worker)s", params) if order["worker_id"] is not None else []
    )
    resident_visits = _others(
        conn, "resident_id = %(resident)s AND service_item_code = %(item)s", params
    )
    periods = [
        v.StatusPeriod(p["status"], p["lo"], p["hi"])
        for p in db.rows(
            conn,
            "SELECT status, lower(during) AS lo, upper(during) AS hi"
            " FROM resident_status_periods WHERE resident_id = %(resident)s",
            params,
        )
    ]
    alarms = [
        v.AlarmFact(
            id=a["id"],
            kind=a["kind"],
            status=a["status"],
            event_time=a["event_time"],
            resolved_at=a["resolved_at"],
            worker_accepted=a["accepted"],
        )
        for a in db.rows(
            conn,
            "SELECT a.id::text AS id, a.kind, a.status, a.event_time, a.resolved_at,"
            " EXISTS (SELECT 1 FROM dispatch_offers o JOIN workers w"
            "   ON w.responder_id = o.responder_id"
            "   WHERE o.alarm_id = a.id AND w.id = %(worker)s AND o.status = 'accepted')"
            " AS accepted"
            " FROM alarms a"
            " WHERE (a.resident_id = %(resident)s OR a.home_bed_id = %(bed)s)"
            " AND a.kind IN ('sos', 'fall') AND a.event_time <= %(to)s"
            " AND (a.resolved_at IS NULL OR a.resolved_at >= %(from)s)"
            " ORDER BY a.event_time",
            params,
        )
    ]
    device_events = [
        v.DeviceEvent(
            msg_id=e["msg_id"],
            type=e["type"],
            time=e["time"],
            duration_s=e["duration_s"],
            presence=e["presence"],
        )
        for e in db.rows(
            conn,
            "SELECT e.msg_id, e.type, e.time,"
            " (e.payload->>'duration_s')::float8 AS duration_s, e.payload->>'presence' AS presence"
            " FROM device_events e JOIN devices d ON d.id = e.device_id"
            " WHERE (d.resident_id = %(resident)s OR d.home_bed_id = %(bed)s)"
            " AND e.type IN ('inactivity', 'presence')"
            " AND e.time BETWEEN %(from)s AND %(to)s",
            params,
        )
    ]
    return v.Facts(
        visit=visit,
        phase=phase,
        now=now,
        worker_visits=worker_visits,
        resident_visits=resident_visits,
        status_periods=periods,
        alarms=alarms,
        device_events=device_events,
    )


_STORE: Final = (
    "INSERT INTO anomalies (rule_code, severity, work_order_id, resident_id, worker_id,"
    " provider_id, detected_at, evidence)"
    " SELECT %(rule)s, %(severity)s, o.id, o.resident_id, o.worker_id, o.provider_id, %(now)s,"
    " %(evidence)s FROM work_orders o WHERE o.id = %(order)s"
    # A later phase refines an open finding's evidence (check-out knows the whole window);
    # a decided one stays as it was decided.
    " ON CONFLICT (rule_code, work_order_id) DO UPDATE"
    " SET evidence = EXCLUDED.evidence, severity = EXCLUDED.severity"
    " WHERE anomalies.status = 'open'"
    " RETURNING id, work_order_id::text AS work_order_id, rule_code, severity, status,"
    " detected_at, evidence"
)


def store(
    conn: psycopg.Connection, order_id: str, found: list[v.Finding], now: datetime
) -> list[Row]:
    """Write the findings; returns this order's anomalies as stored (one per rule)."""
    mine: dict[str, v.Finding] = {}
    for f in found:
        prior = mine.get(f.rule_code)
        if prior is None or f.evidence.get("overlap_min", 0) > prior.evidence.get("overlap_min", 0):
            mine[f.rule_code] = f
        if f.also_order_id is not None:
            # R06 flags both visits: the other one's evidence points back at this order.
            back = {**f.evidence, "related": order_id}
            db.rows(
                conn,
                _STORE,
                {
                    "rule": f.rule_code,
                    "severity": f.severity,
                    "now": now,
                    "evidence": Jsonb(back),
                    "order": f.also_order_id,
                },
            )
    out = []
    for f in mine.values():
        out.extend(
            db.rows(
                conn,
                _STORE,
                {
                    "rule": f.rule_code,
                    "severity": f.severity,
                    "now": now,
                    "evidence": Jsonb(f.evidence),
                    "order": order_id,
                },
            )
        )
    return out


def inspect(conn: psycopg.Connection, order: Row, phase: str, now: datetime) -> list[Row]:
    """``workorders.Hooks.inspect``: run the phase's rules and store the findings."""
    assert phase in ("check_in", "check_out")
    ctx = facts(conn, order, "check_in" if phase == "check_in" else "check_out", now)
    found = v.check(ctx)
    stored = store(conn, order["id"], found, now)
    if phase == "check_in":
        for f in found:
            if f.rule_code == "alarm_open_at_check_in":
                _tell_alarm(conn, f.evidence["alarm_id"], order, now)
    return stored


def _tell_alarm(conn: psycopg.Connection, alarm_id: str, order: Row, now: datetime) -> None:
    """The alarm's timeline and the console learn that a worker is on site (§2.4 check-in)."""
    status = db.one(conn, "SELECT status FROM alarms WHERE id = %s", (alarm_id,))["status"]
    detail = {
        "work_order_id": order["id"],
        "number": order["number"],
        "worker_id": order["worker_id"],
    }
    events.audit(conn, alarm_id, now, "system", "worker_checked_in", status, status, detail)
    events.emit(conn, alarm_id, "worker_checked_in", "system", work_order_id=order["id"])


# ---------------------------------------------------------------- API side

_LIST_COLS: Final = (
    "a.id, a.rule_code, a.severity, a.status, a.work_order_id::text AS work_order_id,"
    " w.number, a.resident_id, a.worker_id, a.provider_id, a.detected_at, a.evidence"
)


def search(
    conn: psycopg.Connection,
    actor: Actor,
    *,
    status: str | None = None,
    rule: str | None = None,
    provider: int | None = None,
    severity: str | None = None,
    work_order: str | None = None,
    limit: int = 200,
) -> list[Row]:
    """Anomalies the actor may see: provider users only their provider's, through the
    same visibility as the orders themselves."""
    seen, params = visible_sql(actor)
    where = [seen]
    for col, val in (
        ("a.status", status),
        ("a.rule_code", rule),
        ("a.provider_id", provider),
        ("a.severity", severity),
        ("a.work_order_id::text", work_order),
    ):
        if val is not None:
            key = "p_" + col.split(".")[1].split("::")[0]
            where.append(f"{col} = %({key})s")
            params[key] = val
    params["limit"] = limit
    return db.rows(
        conn,
        f"SELECT {_LIST_COLS} FROM anomalies a JOIN work_orders w ON w.id = a.work_order_id"
        f" WHERE {' AND '.join(where)} ORDER BY a.detected_at DESC, a.id DESC"
        " LIMIT %(limit)s",
        params,
    )


def decide(
    conn: psycopg.Connection, actor: Actor, anomaly_id: int, decision: str, note: str, now: datetime
) -> Row:
    """civil_affairs confirms or dismisses an open finding; the decision is append-only."""
    actor.require("civil_affairs", "admin")
    found = db.rows(conn, "SELECT status FROM anomalies WHERE id = %s FOR UPDATE", (anomaly_id,))
    if not found:
        raise NotFoundError(f"anomaly {anomaly_id} not found")
    if found[0]["status"] != "open":
        raise ConflictError(f"anomaly {anomaly_id} is already {found[0]['status']}")
    conn.execute(
        "INSERT INTO anomaly_decisions (anomaly_id, at, by_user, decision, note)"
        " VALUES (%s, %s, %s, %s, %s)",
        (anomaly_id, now, actor.username, decision, note),
    )
    conn.execute("UPDATE anomalies SET status = %s WHERE id = %s", (decision, anomaly_id))
    return one(conn, anomaly_id)


def visible(conn: psycopg.Connection, actor: Actor, anomaly_id: int) -> Row:
    """One finding with its decisions and appeal evidence, if the actor may see its order."""
    seen, params = visible_sql(actor)
    found = db.rows(
        conn,
        "SELECT a.id FROM anomalies a JOIN work_orders w ON w.id = a.work_order_id"
        f" WHERE a.id = %(id)s AND {seen}",
        {"id": anomaly_id, **params},
    )
    if not found:
        raise NotFoundError(f"anomaly {anomaly_id} not found")
    return one(conn, anomaly_id)


def add_evidence(
    conn: psycopg.Connection,
    actor: Actor,
    anomaly_id: int,
    note: str,
    files: list[dict[str, str]],
    now: datetime,
) -> Row:
    """A provider's appeal material (design §4 Q20): its admin may attach a note and file
    references (name and sha256; the files stay with the provider) while the finding is
    open. Append-only, like the decisions; civil_affairs reads it before deciding."""
    actor.require("provider_admin", "admin")
    visible(conn, actor, anomaly_id)
    status = db.one(conn, "SELECT status FROM anomalies WHERE id = %s FOR UPDATE", (anomaly_id,))[
        "status"
    ]
    if status != "open":
        raise ConflictError(f"anomaly {anomaly_id} is already {status}; evidence comes before")
    conn.execute(
        "INSERT INTO anomaly_evidence (anomaly_id, at, by_user, note, files)"
        " VALUES (%s, %s, %s, %s, %s)",
        (anomaly_id, now, actor.username, note, Jsonb(files)),
    )
    return one(conn, anomaly_id)


def one(conn: psycopg.Connection, anomaly_id: int) -> Row:
    row = db.one(
        conn,
        f"SELECT {_LIST_COLS} FROM anomalies a JOIN work_orders w ON w.id = a.work_order_id"
        " WHERE a.id = %s",
        (anomaly_id,),
        missing=f"anomaly {anomaly_id} not found",
    )
    row["decisions"] = db.rows(
        conn,
        "SELECT at, by_user, decision, note FROM anomaly_decisions WHERE anomaly_id = %s"
        " ORDER BY id",
        (anomaly_id,),
    )
    row["evidence_submitted"] = db.rows(
        conn,
        "SELECT at, by_user, note, files FROM anomaly_evidence WHERE anomaly_id = %s ORDER BY id",
        (anomaly_id,),
    )
    return row
