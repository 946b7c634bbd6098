"""The Grafana dashboards in dashboards/: valid Grafana JSON, and every panel's SQL runs.

Grafana only reports a broken query when someone opens the panel, so here every
query is expanded the way Grafana's PostgreSQL data source expands it (template
variables in the frontend, then the ``$__`` macros in the backend) and run against
a migrated TimescaleDB with sample rows, as the read-only role Grafana uses in
deployments. A query that fails, returns nothing, or returns columns Grafana
cannot plot fails its test.
"""

from __future__ import annotations

import contextlib
import decimal
import importlib.util
import json
import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import psycopg
import pytest
import yaml
from psycopg import sql
from psycopg.types.json import Jsonb

from dashboards import build, grafana, model_quality, response_times
from eldercare.alerts import metrics as clocks
from eldercare.alerts import rules
from eldercare.platform import hotline, reports
from tests.alarm_support import one_row

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD_DIR = ROOT / "dashboards"
DASHBOARD_FILES = sorted(DASHBOARD_DIR.glob("*.json"))
DATASOURCE_YAML = DASHBOARD_DIR / "provisioning" / "datasources" / "eldercare.yaml"


def _load_module(name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


grafana_reader = _load_module(
    "eldercare_grafana_reader", ROOT / "docker" / "platform" / "grafana_reader.py"
)


def _dashboards() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, json.loads(p.read_text("utf-8"))) for p in DASHBOARD_FILES]


def _panels(dash: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for p in dash["panels"]:
        if p["type"] == "row":
            yield from p.get("panels", [])
        else:
            yield p


PANELS = [
    pytest.param(dash, panel, id=f"{name}:{panel['title']}")
    for name, dash in _dashboards()
    for panel in _panels(dash)
]


# ------------------------------------------------------------------ Grafana's expansion

_GRAFANA_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"  # RFC 3339 in UTC, as Grafana's macros print it
_TIME_FILTER = re.compile(r"\$__timeFilter\(\s*([^()]+?)\s*\)")
_VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)")


def expand(
    raw: str,
    *,
    start: datetime,
    end: datetime,
    interval: str,
    interval_ms: int,
    variables: dict[str, str],
) -> str:
    """Expand a panel's SQL as Grafana does.

    Template variables (``$facility``, ``$__interval``) are replaced first, the way the
    frontend does before sending the query; then the macros of the PostgreSQL data
    source: ``$__timeFilter(col)`` -> ``col BETWEEN 'from' AND 'to'``,
    ``$__timeFrom()``/``$__timeTo()`` -> quoted timestamps. Any other ``$`` name is an
    error, so a macro this test does not model fails loudly instead of passing.
    """
    f, t = f"'{start.strftime(_GRAFANA_TIME)}'", f"'{end.strftime(_GRAFANA_TIME)}'"
    out = _TIME_FILTER.sub(lambda m: f"{m[1]} BETWEEN {f} AND {t}", raw)
    out = out.replace("$__timeFrom()", f).replace("$__timeTo()", t)
    builtins = {"__interval": interval, "__interval_ms": str(interval_ms)}

    def var(m: re.Match[str]) -> str:
        name = m[1] or m[2] or m[3]
        if name in builtins:
            return builtins[name]
        if name.startswith("__") or name not in variables:
            raise AssertionError(f"unexpanded Grafana variable or macro ${name} in:\n{raw}")
        return variables[name]

    return _VARIABLE.sub(var, out)


def variable_values(dash: dict[str, Any], facility: str) -> dict[str, str]:
    """Template variables as Grafana formats them for SQL: multi-value as 'a','b'."""
    values = {}
    for v in dash["templating"]["list"]:
        if v["type"] == "constant":
            values[v["name"]] = v["query"]
        elif v["name"] == "facility":
            values[v["name"]] = facility
        else:
            raise AssertionError(f"no test value for template variable ${v['name']}")
    return values


# ------------------------------------------------------------------ sample data


def insert_sample_rows(conn: psycopg.Connection, now: datetime) -> dict[str, Any]:
    """A few rows in every table the dashboards read, so each panel returns rows.

    Ids are random: the session database is shared with other tests, and the caller
    rolls all of this back.
    """
    tag = secrets.token_hex(3)
    fac = [
        one_row(
            conn.execute(
                "INSERT INTO facilities (code, name) VALUES (%s, %s) RETURNING id",
                (f"dash-{tag}-{i}", f"Dashboard home {tag} {i}"),
            )
        )[0]
        for i in (1, 2)
    ]
    devices = {  # id -> (kind, facility, online, battery)
        f"sos-{tag}": ("sos_button", fac[0], True, 85),
        f"fall-{tag}": ("fall_sensor", fac[0], False, 12),
        f"wear-{tag}": ("wearable", fac[1], True, 5),
        f"nvr-{tag}": ("video_bridge", fac[1], True, None),
        f"kit-{tag}": ("home_kit", fac[1], None, None),  # never heard from
    }
    for dev, (kind, facility, online, battery) in devices.items():
        conn.execute(
            "INSERT INTO devices (id, kind, facility_id, room, password_hash)"
            " VALUES (%s, %s, %s, '101', '$7$101$x$y')",
            (dev, kind, facility),
        )
        if online is not None:
            conn.execute(
                "INSERT INTO device_status (device_id, state_online, online, last_seen_at,"
                " last_heartbeat_at, interval_s, battery, changed_at)"
                " VALUES (%s, %s, %s, %s, %s, 60, %s, %s)",
                (dev, online, online, now, now, battery, now - timedelta(minutes=30)),
            )
    nvr = f"nvr-{tag}"
    for cam, online in (("cam-1", True), ("cam-2", False), ("cam-3", None)):
        conn.execute("INSERT INTO cameras (device_id, camera_id) VALUES (%s, %s)", (nvr, cam))
        if online is not None:
            conn.execute(
                "INSERT INTO camera_status (device_id, camera_id, status, recording, online,"
                " reported_at, changed_at) VALUES (%s, %s, %s, true, %s, %s, %s)",
                (nvr, cam, "online" if online else "video_loss", online, now, now),
            )
    n = 0
    for minutes_ago in range(0, 180, 7):
        for dev, typ, skew in (
            (f"sos-{tag}", "heartbeat", False),
            (f"wear-{tag}", "vitals", minutes_ago % 3 == 0),
            (f"sos-{tag}", "sos", False),
        ):
            at = now - timedelta(minutes=minutes_ago)
            n += 1
            conn.execute(
                "INSERT INTO device_events (time, received_at, device_ts, device_id,"
                " facility_id, msg_id, type, clock_skew, payload)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    at,
                    at,
                    at - timedelta(days=9) if skew else at,
                    dev,
                    devices[dev][1],
                    f"m{n}",
                    typ,
                    skew,
                    Jsonb({"v": 1}),
                ),
            )
    for minutes_ago, dev, online, cause in (
        (150, f"fall-{tag}", True, "state"),
        (40, f"fall-{tag}", False, "heartbeat_timeout"),
        (20, f"wear-{tag}", False, "last_will"),
        (10, f"wear-{tag}", True, "state"),
    ):
        conn.execute(
            "INSERT INTO state_changes (time, device_id, facility_id, online, status, cause)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            (
                now - timedelta(minutes=minutes_ago),
                dev,
                devices[dev][1],
                online,
                "online" if online else "offline",
                cause,
            ),
        )
    conn.execute(
        "INSERT INTO state_changes (time, device_id, camera_id, facility_id, online, status,"
        " cause) VALUES (%s, %s, 'cam-2', %s, false, 'video_loss', 'camera_status')",
        (now - timedelta(minutes=5), nvr, fac[1]),
    )
    for minutes_ago, reason in (
        (90, "schema"),
        (30, "malformed_json"),
        (29, "schema"),
        (3, "unknown_device"),
    ):
        conn.execute(
            "INSERT INTO dead_letters (received_at, topic, device_id, reason, detail, payload)"
            " VALUES (%s, %s, %s, %s, 'sample', %s)",
            (
                now - timedelta(minutes=minutes_ago),
                f"eldercare/v1/dev/sos-{tag}/up",
                f"sos-{tag}",
                reason,
                b"{",
            ),
        )
    alarms = insert_sample_alarms(conn, now, fac)
    insert_fall_shadow_rows(conn, now, fac, alarms, f"wear-{tag}")
    insert_triage_rows(conn, now, alarms)
    for dev, hours, risk in ((f"wear-{tag}", 6.5, 0.2), (f"sos-{tag}", None, 0.7)):
        conn.execute(
            "INSERT INTO device_health (device_id, computed_at, battery, hours_to_low,"
            " offline_risk_24h, model, version) VALUES (%s, %s, 30, %s, %s, 'device_health', 1)",
            (dev, now, hours, risk),
        )
    subsidy = insert_subsidy_rows(conn, now, fac[0], tag)
    return {"facilities": fac, "alarms": alarms, "subsidy": subsidy, "tag": tag}


def insert_fall_shadow_rows(
    conn: psycopg.Connection, now: datetime, fac: list[int], alarms: dict[str, str], dev: str
) -> None:
    """Shadow fall scores in both facilities: windows linked to the device falls t-fall (not
    closed) and r-fall (closed as a real fall), and two model-only suspected windows."""
    conn.execute(
        "UPDATE alarms SET disposition = 'genuine_emergency' WHERE id = %s", (alarms["r-fall"],)
    )
    for k, (minutes_ago, f, score, alarm, conf) in enumerate(
        (
            (150, 0, 0.82, "t-fall", 0.9),
            (150.02, 0, 0.31, "t-fall", 0.9),
            (160, 1, 0.12, "r-fall", 0.8),
            (100, 1, 0.71, None, None),
            (99, 1, 0.66, None, None),  # a minute later: a second model-only event
            (30, 0, 0.02, None, None),
        )
    ):
        conn.execute(
            "INSERT INTO fall_shadow_scores (time, scored_at, device_id, msg_id, facility_id,"
            " model_version, model_sha256, score, threshold, suspected, coverage_s,"
            " device_alarm_id, device_confidence, latency_us)"
            " VALUES (%s, %s, %s, %s, %s, 1, 'sha', %s, 0.5, %s, 4.0, %s, %s, 300)",
            (
                now - timedelta(minutes=minutes_ago),
                now,
                dev,
                f"imu-{k}",
                fac[f],
                score,
                score >= 0.5,
                alarms[alarm] if alarm else None,
                conf,
            ),
        )


# Closed sample alarms: (disposition, P(false alarm) the queue was ordered by). r-fall keeps
# the disposition insert_fall_shadow_rows gives it.
TRIAGE_SAMPLE: dict[str, tuple[str | None, float]] = {
    "t-sos": ("accidental_press", 0.91),  # flagged, false: a true positive
    "t-smoke": ("false_sensor_alarm", 0.3),  # not flagged, false: missed
    "r-fall": (None, 0.12),  # genuine_emergency, not flagged
}


def insert_triage_rows(conn: psycopg.Connection, now: datetime, alarms: dict[str, str]) -> None:
    for name, (disposition, p) in TRIAGE_SAMPLE.items():
        if disposition is not None:
            conn.execute(
                "UPDATE alarms SET disposition = %s WHERE id = %s", (disposition, alarms[name])
            )
        conn.execute(
            "INSERT INTO alarm_triage (alarm_id, p_false, reasons, model, version, scored_at,"
            " seen_cancel, seen_occurrences) VALUES (%s, %s, '[]', 'triage', 1, %s, false, 1)",
            (alarms[name], p, now),
        )


def insert_subsidy_rows(
    conn: psycopg.Connection, now: datetime, facility: int, tag: str
) -> dict[str, Any]:
    """One resident's entitlement, one settled voucher order, its finding and two revisits
    (issue 8)."""
    month = now.astimezone(ZoneInfo("Asia/Shanghai")).date().replace(day=1)
    # The resident's own street under 330683, so the API's reports (which sum a district's
    # residents) see only this sample in the shared session database.
    dist = "9" + str(secrets.randbelow(10**8)).zfill(8)
    for code, parent, level in (
        ("000000", None, "country"),
        ("330683", "000000", "county"),
        (dist, "330683", "street"),
    ):
        conn.execute(
            "INSERT INTO districts (code, name, parent_code, level, fiscal_region)"
            " VALUES (%s, %s, %s, %s, 'east') ON CONFLICT (code) DO NOTHING",
            (code, code, parent, level),
        )
    conn.execute("UPDATE facilities SET district_code = %s WHERE id = %s", (dist, facility))
    resident = one_row(
        conn.execute(
            "INSERT INTO residents (name, facility_id) VALUES ('sample', %s) RETURNING id",
            (facility,),
        )
    )[0]
    prog = f"care_{tag}"
    conn.execute(
        "INSERT INTO programmes (code, name_zh, kind, payee, period)"
        " VALUES (%s, '护理', 'care_fee', 'resident', 'month')",
        (prog,),
    )
    pv = one_row(
        conn.execute(
            "INSERT INTO policy_versions (programme_code, district_code, effective, status, rules,"
            " funding, source_doc, created_by, created_at, published_by, published_at)"
            " VALUES (%s, '330683', daterange('2020-01-01', NULL), 'published', '[]',"
            ' \'{"by_fiscal_region": {"east": {"central": 0.85, "local": 0.15}}}\','
            " 'seed', 'ca', %s, 'ca', %s) RETURNING id",
            (prog, now, now),
        )
    )[0]
    run = one_row(
        conn.execute(
            "INSERT INTO entitlement_runs (month, district_code, started_by, started_at)"
            " VALUES (%s, '330683', 'ca', %s) RETURNING id",
            (month, now),
        )
    )[0]
    conn.execute(
        "INSERT INTO entitlements (run_id, resident_id, programme_code, month, amount_fen,"
        " policy_version_id, district_code, basis, created_at)"
        " VALUES (%s, %s, %s, %s, 165600, %s, %s, '{}', %s)",
        (run, resident, prog, month, pv, dist, now),
    )
    item = f"bath_{tag}"
    conn.execute(
        "INSERT INTO service_items (code, name_zh, category, setting, unit)"
        " VALUES (%s, '助浴', 'bath', 'home', 'visit')",
        (item,),
    )
    provider = one_row(
        conn.execute(
            "INSERT INTO providers (name, kind, district_code) VALUES (%s, 'company', '330683')"
            " RETURNING id",
            (f"provider {tag}",),
        )
    )[0]
    worker = one_row(
        conn.execute(
            "INSERT INTO workers (provider_id, name) VALUES (%s, 'w') RETURNING id", (provider,)
        )
    )[0]
    order = one_row(
        conn.execute(
            "INSERT INTO work_orders (number, resident_id, district_code, service_item_code,"
            " source, status, provider_id, worker_id, price_fen, checked_in_at, checked_out_at,"
            " created_by, created_at) VALUES (%s, %s, %s, %s, 'app', 'settled', %s, %s,"
            " 12000, %s, %s, 'op', %s) RETURNING id",
            (
                f"WO-330683-{month:%Y%m%d}-{secrets.randbelow(10**6):06d}",
                resident,
                dist,
                item,
                provider,
                worker,
                now - timedelta(hours=2),
                now - timedelta(hours=1),
                now - timedelta(hours=3),
            ),
        )
    )[0]
    # Two revisits of the order (回访): one reached (满意, confirmed), one not reached.
    for reached, confirmed, satisfaction in ((True, True, 2), (False, None, None)):
        conn.execute(
            "INSERT INTO revisits (work_order_id, due_at, done_at, channel, reached,"
            " service_confirmed, satisfaction, created_at) VALUES (%s, %s, %s, 'phone', %s,"
            " %s, %s, %s)",
            (order, now, now - timedelta(minutes=30), reached, confirmed, satisfaction, now),
        )
    conn.execute(
        "INSERT INTO anomalies (rule_code, severity, work_order_id, provider_id, detected_at,"
        " evidence) VALUES ('gps_far', 'soft', %s, %s, %s, '{}')",
        (order, provider, now - timedelta(hours=1)),
    )
    batch = one_row(
        conn.execute(
            "INSERT INTO settlement_batches (provider_id, month, status, totals, created_by,"
            " created_at, approved_by, approved_at) VALUES (%s, %s, 'approved', '{}', 'pa', %s,"
            " 'ca', %s) RETURNING id",
            (provider, month, now, now),
        )
    )[0]
    conn.execute(
        "INSERT INTO settlement_lines (batch_id, work_order_id, kind, service_month,"
        " district_code, price_fen, ltc_fen, copay_fen, subsidy, funding)"
        " VALUES (%s, %s, 'service', %s, %s, 12000, 0, 6000,"
        ' \'{"elderly_care_voucher": 6000}\', \'{"central": 5100, "local": 900}\')',
        (batch, order, month, dist),
    )
    return {"district": dist, "programme": prog, "provider": provider, "month": month}


# Alarms for the response-time panels: name -> (minutes ago, kind, facility index, status,
# seconds after receipt it was acknowledged, dispatched, accepted, on site, resolved).
# Facility 0 is in town on the default targets (60 s / 180 s / 15 min); facility 1 is
# remote with its own policy of 25 min on site, so r-sos (28 min) is outside it though
# inside the remote default of 30 min.
SAMPLE_ALARMS: dict[str, tuple[Any, ...]] = {
    "t-sos": (170, "sos", 0, "closed", 20, 90, 130, 600, 1500),
    "t-fall": (150, "fall", 0, "resolved", 75, 120, 180, 1200, 2000),
    "t-smoke": (120, "smoke", 0, "closed", 30, None, None, None, 400),
    "t-bed": (90, "bed_exit", 0, "resolved", 200, None, None, None, 500),
    "t-waiting": (5, "sos", 0, "raised", None, None, None, None, None),  # past both targets
    "t-new": (0.5, "water_leak", 0, "raised", None, None, None, None, None),  # within them
    # Never in the answer-time panels: device health, and an alarm merged into another.
    "t-offline": (100, "device_offline", 0, "raised", None, None, None, None, None),
    "t-merged": (149, "fall", 0, "merged", 500, None, None, None, None),
    "r-fall": (160, "fall", 1, "closed", 10, 60, 90, 1400, 3000),
    "r-sos": (60, "sos", 1, "on_site", 50, 100, 200, 1700, None),
    "r-idle": (45, "inactivity", 1, "dispatched", 170, 200, None, None, None),  # past 25 min
    "r-gas": (20, "gas", 1, "acknowledged", 40, None, None, None, None),
}
REMOTE_POLICY_ON_SITE_S = 25 * 60


def insert_sample_alarms(conn: psycopg.Connection, now: datetime, fac: list[int]) -> dict[str, str]:
    conn.execute("UPDATE facilities SET area = 'remote' WHERE id = %s", (fac[1],))
    conn.execute(
        "INSERT INTO response_policies (facility_id, name, on_site_target_s, steps)"
        " VALUES (%s, 'dashboard test', %s, '[]')",
        (fac[1], REMOTE_POLICY_ON_SITE_S),
    )
    ids = {}
    for name, (minutes_ago, kind, f, status, *offsets) in SAMPLE_ALARMS.items():
        received = now - timedelta(minutes=minutes_ago)
        ack, disp, acc, on_site, res = (
            None if o is None else received + timedelta(seconds=o) for o in offsets
        )
        ids[name] = str(
            one_row(
                conn.execute(
                    "INSERT INTO alarms (kind, priority, status, facility_id, area, event_time,"
                    " received_at, last_occurrence_at, acknowledged_at, dispatched_at,"
                    " accepted_at, on_site_at, resolved_at, closed_at, details)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    " RETURNING id",
                    (
                        kind,
                        rules.PRIORITY[kind],
                        status,
                        fac[f],
                        "remote" if f else "town",
                        received,
                        received,
                        received,
                        ack,
                        disp,
                        acc,
                        on_site,
                        res,
                        res if status == "closed" else None,
                        Jsonb({"heart_rate": 130}),
                    ),
                )
            )[0]
        )
    for name, after_s, action in (
        ("t-fall", 150, "escalated"),
        ("r-sos", 130, "escalated"),
        ("r-idle", 300, "escalation_stalled"),
        ("t-bed", 60, "supervisor_notified"),
        ("t-waiting", 60, "supervisor_notified"),
        ("t-sos", 20, "acknowledged"),  # not an escalation
    ):
        conn.execute(
            "INSERT INTO alarm_events (alarm_id, at, actor, action, detail)"
            " VALUES (%s, %s, 'system', %s, %s)",
            (
                ids[name],
                now - timedelta(minutes=SAMPLE_ALARMS[name][0]) + timedelta(seconds=after_s),
                action,
                Jsonb({"offers": [{"responder_id": 1}]}),
            ),
        )
    return ids


@pytest.fixture
def as_grafana(
    owner_db: psycopg.Connection,
) -> Iterator[tuple[psycopg.Connection, dict[str, Any]]]:
    """The session database with sample rows, seen through Grafana's read-only role.

    Everything (the role included: CREATE ROLE is transactional) is rolled back. As the
    owner, as in compose's init: the app's role may not create roles.
    """
    db = owner_db
    role = "grafana_reader_t_" + secrets.token_hex(4)
    with db.transaction(force_rollback=True):
        now = datetime.now(UTC)
        sample = insert_sample_rows(db, now)
        db.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
        grafana_reader.grant(db, role)
        db.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
        sample["now"] = now
        yield db, sample


# ------------------------------------------------------------------ structure


def test_there_are_dashboards() -> None:
    assert DASHBOARD_FILES, "no dashboards/*.json"
    assert {f"{name}.json" for name in build.DASHBOARDS} == {p.name for p in DASHBOARD_FILES}


def test_committed_json_is_what_build_py_writes() -> None:
    assert build.main(["--check"]) == 0, "run: python dashboards/build.py"


def test_datasource_provisioning_matches_panels() -> None:
    conf = yaml.safe_load(DATASOURCE_YAML.read_text("utf-8"))
    (ds,) = conf["datasources"]
    assert ds["type"] == "grafana-postgresql-datasource"
    assert ds["uid"] == grafana.DATASOURCE["uid"]
    assert ds["type"] == grafana.DATASOURCE["type"]
    assert ds["jsonData"]["timescaledb"] is True  # $__timeGroup -> time_bucket
    assert ds["jsonData"]["postgresVersion"] >= 1500
    assert ds["secureJsonData"]["password"].startswith("${"), "no password in the repository"


def test_dashboard_uids_are_unique() -> None:
    uids = [d["uid"] for _, d in _dashboards()]
    assert len(uids) == len(set(uids)), uids


@pytest.mark.parametrize("name,dash", _dashboards(), ids=[n for n, _ in _dashboards()])
def test_dashboard_is_valid_grafana(name: str, dash: dict[str, Any]) -> None:
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dash["uid"]), "Grafana uids: 40 chars max"
    assert dash["title"].strip()
    assert isinstance(dash["schemaVersion"], int) and dash["schemaVersion"] >= 36
    assert dash["time"]["from"] and dash["time"]["to"]
    declared = {v["name"] for v in dash["templating"]["list"]}
    ids = [p["id"] for p in dash["panels"]] + [
        p["id"] for p in _panels(dash) if p not in dash["panels"]
    ]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    panels = list(_panels(dash))
    assert panels, name
    for p in panels:
        where = f"{name}: panel {p.get('title')!r}"
        assert p["title"].strip(), where
        assert p["type"] in {
            "timeseries",
            "stat",
            "table",
            "bargauge",
            "barchart",
            "gauge",
            "piechart",
            "state-timeline",
            "heatmap",
        }, where
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["x"] + g["w"] <= 24, where
        assert p["datasource"] == grafana.DATASOURCE, where
        assert p["targets"], where
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), where
        for t in p["targets"]:
            assert t["datasource"] == grafana.DATASOURCE, where
            assert t["rawQuery"] is True and t["editorMode"] == "code", where
            assert t["rawSql"].strip(), where
            assert t["format"] in ("time_series", "table"), where
            if p["type"] == "timeseries":
                assert t["format"] == "time_series", where
            if t["format"] == "time_series":
                # Without it the panel ignores the time picker and scans every chunk.
                assert "$__timeFilter(" in t["rawSql"], where
            used = {m[1] or m[2] or m[3] for m in _VARIABLE.finditer(t["rawSql"])}
            undeclared = {u for u in used if not u.startswith("__")} - declared
            assert not undeclared, f"{where}: undeclared variables {undeclared}"


def test_expand_models_grafana() -> None:
    start, end = (
        datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
        datetime(2025, 1, 2, 4, 4, 5, tzinfo=UTC),
    )
    got = expand(
        "SELECT time_bucket('$__interval', t) WHERE $__timeFilter(e.time) AND x IN ($f)"
        " AND $__timeFrom() < $__timeTo() AND ${f} = [[f]] AND $__interval_ms > 0",
        start=start,
        end=end,
        interval="1m",
        interval_ms=60000,
        variables={"f": "'1','2'"},
    )
    assert got == (
        "SELECT time_bucket('1m', t) WHERE e.time BETWEEN '2025-01-02T03:04:05.000000Z' AND"
        " '2025-01-02T04:04:05.000000Z' AND x IN ('1','2') AND '2025-01-02T03:04:05.000000Z'"
        " < '2025-01-02T04:04:05.000000Z' AND '1','2' = '1','2' AND 60000 > 0"
    )
    with pytest.raises(AssertionError, match="unexpanded"):
        expand(
            "SELECT $__timeGroup(time, '5m')",
            start=start,
            end=end,
            interval="1m",
            interval_ms=60000,
            variables={},
        )
    with pytest.raises(AssertionError, match="unexpanded"):
        expand("SELECT $nope", start=start, end=end, interval="1m", interval_ms=60000, variables={})


@pytest.mark.parametrize(
    "spelling,seconds",
    [
        ("500ms", 0.5),
        ("15s", 15),
        ("1m", 60),
        ("2h", 7200),
        ("1d", 86400),
        ("7d", 604800),
    ],
)
def test_postgres_reads_grafana_interval_spellings(
    db: psycopg.Connection, spelling: str, seconds: float
) -> None:
    # Panels write '$__interval'::interval; these are the forms Grafana produces.
    got = db.execute("SELECT extract(epoch FROM %s::interval)::float", (spelling,)).fetchone()
    assert got == (seconds,)


# ------------------------------------------------------------------ every query runs


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float | decimal.Decimal) and not isinstance(v, bool)


def _run(conn: psycopg.Connection, query: str) -> tuple[list[str], list[tuple[Any, ...]]]:
    # A savepoint per query: one failure must not hide the next in the same transaction.
    with conn.transaction(), conn.cursor() as cur:
        try:
            cur.execute(query)  # type: ignore[arg-type]  # SQL text from a file
        except psycopg.Error as exc:
            raise AssertionError(f"panel SQL failed: {exc}\n{query}") from exc
        assert cur.description is not None, query
        return [c.name for c in cur.description], cur.fetchall()


def check_result(
    panel: dict[str, Any], fmt: str, cols: list[str], rows: list[tuple[Any, ...]], query: str
) -> None:
    where = f"panel {panel['title']!r}:\n{query}"
    assert rows, f"no rows from sample data; {where}"
    assert len(cols) == len(set(cols)), f"duplicate column names {cols}; {where}"
    if fmt == "time_series":
        assert "time" in cols, f"time series need a 'time' column; {where}"
        ti = cols.index("time")
        times = [r[ti] for r in rows]
        assert all(isinstance(t, datetime) for t in times), where
        assert times == sorted(times), f"Grafana needs rows in time order; {where}"
        values = [i for i, c in enumerate(cols) if c not in ("time", "metric")]
        assert values, f"no value column; {where}"
        for r in rows:
            assert all(_is_number(r[i]) for i in values), f"non-numeric value {r}; {where}"
            if "metric" in cols:
                assert isinstance(r[cols.index("metric")], str), where
    elif panel["type"] == "stat":
        assert len(rows) == 1, where
        assert all(_is_number(v) for v in rows[0]), f"stat values must be numbers; {where}"
    elif panel["type"] == "bargauge":
        assert any(_is_number(v) for v in rows[0]), where
        labels = [i for i, v in enumerate(rows[0]) if not _is_number(v)]
        assert len(labels) <= 1, f"one label column at most; {where}"


def _time_settings(now: datetime) -> list[tuple[datetime, datetime, str, int]]:
    # The default 6 h view at 1 min buckets, and a week at Grafana's widened 2 h buckets.
    return [
        (now - timedelta(hours=6), now, "1m", 60_000),
        (now - timedelta(days=7), now, "2h", 7_200_000),
    ]


@pytest.mark.parametrize("dash,panel", PANELS)
def test_panel_sql_runs_as_grafana(
    as_grafana: tuple[psycopg.Connection, dict[str, Any]],
    dash: dict[str, Any],
    panel: dict[str, Any],
) -> None:
    conn, sample = as_grafana
    one, both = sample["facilities"]
    # "All" (the custom all value) and a multi-selection, as Grafana quotes it.
    for facility in ("-1", f"'{one}','{both}'"):
        for start, end, interval, interval_ms in _time_settings(sample["now"]):
            for t in panel["targets"]:
                query = expand(
                    t["rawSql"],
                    start=start,
                    end=end,
                    interval=interval,
                    interval_ms=interval_ms,
                    variables=variable_values(dash, facility),
                )
                cols, rows = _run(conn, query)
                check_result(panel, t["format"], cols, rows, query)


def test_facility_filter_narrows(as_grafana: tuple[psycopg.Connection, dict[str, Any]]) -> None:
    # The filter must really filter: only facility 1's devices when it alone is picked.
    conn, sample = as_grafana
    (dash,) = [d for _, d in _dashboards() if d["uid"] == "eldercare-device-ingest"]
    (low,) = [p for p in _panels(dash) if p["title"] == "Low batteries" and p["type"] == "table"]
    now = sample["now"]
    query = expand(
        low["targets"][0]["rawSql"],
        start=now - timedelta(hours=1),
        end=now,
        interval="1m",
        interval_ms=60_000,
        variables=variable_values(dash, f"'{sample['facilities'][0]}'"),
    )
    cols, rows = _run(conn, query)
    assert [r[cols.index("battery")] for r in rows] == [12]


@pytest.mark.parametrize("name,dash", _dashboards(), ids=[n for n, _ in _dashboards()])
def test_variable_queries_run_as_grafana(
    as_grafana: tuple[psycopg.Connection, dict[str, Any]], name: str, dash: dict[str, Any]
) -> None:
    conn, _ = as_grafana
    for v in dash["templating"]["list"]:
        if v["type"] != "query":
            continue
        cols, rows = _run(conn, v["query"])
        assert {"__value", "__text"} <= set(cols), f"{name}: ${v['name']}"
        assert rows, f"{name}: ${v['name']} lists nothing"


def test_grafana_role_cannot_read_private_tables(
    as_grafana: tuple[psycopg.Connection, dict[str, Any]],
) -> None:
    conn, _ = as_grafana
    for query in (
        "SELECT name FROM residents LIMIT 1",
        "SELECT password_hash FROM devices LIMIT 1",
        "SELECT username FROM users LIMIT 1",
        "SELECT name FROM responders LIMIT 1",
        "SELECT resident_id FROM reveals LIMIT 1",
        "SELECT details FROM alarms LIMIT 1",
        "SELECT resident_id FROM alarms LIMIT 1",
        "SELECT acknowledged_by FROM alarms LIMIT 1",
        "SELECT actor FROM alarm_events LIMIT 1",
        "SELECT detail FROM alarm_events LIMIT 1",
        "SELECT steps FROM response_policies LIMIT 1",
        "SELECT phone FROM dispatch_offers LIMIT 1",
        "SELECT secret FROM webhooks LIMIT 1",
        "SELECT payload FROM notifications LIMIT 1",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute(query)


def _readable(conn: psycopg.Connection) -> tuple[set[str], dict[str, set[str]]]:
    """Tables the current role may SELECT whole, and per table the columns it may SELECT."""
    rows = conn.execute(
        "SELECT c.relname, a.attname, has_table_privilege(c.oid, 'SELECT'),"
        "       has_column_privilege(c.oid, a.attnum, 'SELECT')"
        " FROM pg_class c"
        " JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = 'public'"
        " JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped"
        " WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')"
    ).fetchall()
    whole = {t for t, _, table_ok, _ in rows if table_ok}
    columns: dict[str, set[str]] = {}
    for t, col, table_ok, col_ok in rows:
        if col_ok and not table_ok:
            columns.setdefault(t, set()).add(col)
    return whole, columns


def test_grafana_role_reads_exactly_what_is_granted(
    as_grafana: tuple[psycopg.Connection, dict[str, Any]],
) -> None:
    conn, _ = as_grafana
    role = one_row(conn.execute("SELECT current_user"))[0]
    # A grant left over from an older version (or a hand-made one) is revoked by grant().
    conn.execute("RESET ROLE")
    conn.execute(sql.SQL("GRANT SELECT ON residents, alarms TO {}").format(sql.Identifier(role)))
    grafana_reader.grant(conn, role)
    conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
    whole, columns = _readable(conn)
    assert whole == set(grafana_reader.TABLES)
    assert columns == {t: set(c) for t, c in grafana_reader.COLUMNS.items()}
    assert not {"residents", "users", "responders", "reveals", "home_beds"} & (whole | set(columns))


# ------------------------------------------------------------------ response times


def _response_dash() -> dict[str, Any]:
    (dash,) = [d for _, d in _dashboards() if d["uid"] == "eldercare-response-times"]
    return dash


def _run_panel(
    conn: psycopg.Connection,
    title: str,
    facility: str,
    start: datetime,
    end: datetime,
    interval: str = "1m",
) -> list[dict[str, Any]]:
    dash = _response_dash()
    (p,) = [p for p in _panels(dash) if p["title"] == title]
    query = expand(
        p["targets"][0]["rawSql"],
        start=start,
        end=end,
        interval=interval,
        interval_ms=60_000,
        variables=variable_values(dash, facility),
    )
    cols, rows = _run(conn, query)
    return [dict(zip(cols, r, strict=True)) for r in rows]


@contextlib.contextmanager
def _as_owner(conn: psycopg.Connection) -> Iterator[None]:
    """Step out of Grafana's role (clocks.py reads whole alarm rows), then back in."""
    role = one_row(conn.execute("SELECT current_user"))[0]
    conn.execute("RESET ROLE")
    try:
        yield
    finally:
        conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))


def test_response_definitions_match_the_platform() -> None:
    # The dashboard restates these in SQL; they must not drift from the API's.
    assert response_times.ALARM_KINDS == rules.ALARM_KINDS
    assert not set(response_times.ALARM_KINDS) & set(rules.HEALTH_KINDS)
    assert all(rules.category(k) == "alarm" for k in response_times.ALARM_KINDS)
    assert dict(rules.ON_SITE_TARGET_S) == response_times.ON_SITE_TARGET_S
    default = rules.default_policy("town")
    assert (
        default.ack_target_s,
        default.ack_target2_s,
    ) == (response_times.ACK_TARGET_S, response_times.ACK_TARGET2_S)


ACK_PANELS = {
    "ack_60s": "Acknowledged within 60 s (goal 97.5 %)",
    "ack_180s": "Acknowledged within 180 s (goal 99 %)",
}


def test_acknowledge_shares_agree_with_the_api(
    as_grafana: tuple[psycopg.Connection, dict[str, Any]],
) -> None:
    conn, sample = as_grafana
    one, two = sample["facilities"]
    db_now = one_row(conn.execute("SELECT now()"))[0]  # what the panels' now() is
    for start, end in ((db_now - timedelta(hours=6), db_now), (db_now - timedelta(days=7), db_now)):
        for grafana_facility, api_facility in (("-1", None), (f"'{one}'", one), (f"'{two}'", two)):
            with _as_owner(conn):
                api = clocks.response_metrics(conn, start, end, api_facility, db_now)
            targets = {t["name"]: t for t in api["targets"]}
            for name, title in ACK_PANELS.items():
                (row,) = _run_panel(conn, title, grafana_facility, start, end)
                (value,) = row.values()
                t = targets[name]
                assert t["n"], (name, api_facility)
                assert float(value) == pytest.approx(100 * t["within"] / t["n"]), (
                    name,
                    api_facility,
                    t,
                )
                goal = ACK_PANELS[name].split("goal ")[1].split(" %")[0]
                assert (float(value) >= float(goal)) == t["met"]
    # Facility 0: t-sos and t-smoke of 5 measured (t-new is still within 60 s) in 60 s;
    # t-fall too in 180 s. Facility 1: all but r-idle in 60 s, all in 180 s.
    start = db_now - timedelta(hours=6)
    got = {
        f: [
            float(next(iter(_run_panel(conn, title, f"'{f}'", start, db_now)[0].values())))
            for title in ACK_PANELS.values()
        ]
        for f in (one, two)
    }
    assert got == {one: [40.0, 60.0], two: [75.0, 100.0]}


def test_on_site_and_percentiles_agree_with_the_api(
    as_grafana: tuple[psycopg.Connection, dict[str, Any]],
) -> None:
    conn, sample = as_grafana
    one, two = sample["facilities"]
    db_now = one_row(conn.execute("SELECT now()"))[0]
    start = db_now - timedelta(hours=6)
    for grafana_facility, api_facility in (("-1", None), (f"'{one}'", one), (f"'{two}'", two)):
        with _as_owner(conn):
            api = clocks.response_metrics(conn, start, db_now, api_facility, db_now)
        targets = {t["name"]: t for t in api["targets"]}
        rows = _run_panel(
            conn, "On site within target, per facility", grafana_facility, start, db_now
        )
        on_site = [targets["on_site_town"], targets["on_site_remote"]]
        assert sum(r["measured"] for r in rows) == sum(t["n"] for t in on_site)
        assert sum(r["within_target"] for r in rows) == sum(t["within"] for t in on_site)
        # One bucket holding the whole range: the percentiles are the API's.
        for title, name in (
            ("Receive → acknowledge", "ack"),
            ("Dispatch → accept", "accept"),
            ("Receive → on site", "on_site"),
            ("Receive → resolved", "resolve"),
        ):
            (row,) = _run_panel(conn, title, grafana_facility, start, db_now, "100000d")
            for p in ("p50", "p90", "p99"):
                assert row[p] == pytest.approx(api["intervals"][name][f"{p}_s"], abs=1e-3), (
                    title,
                    p,
                    api_facility,
                )
    # The facility's own policy (25 min) decides, not the remote default (30 min).
    (remote,) = _run_panel(conn, "On site within target, per facility", f"'{two}'", start, db_now)
    assert (remote["measured"], remote["within_target"], remote["targets"]) == (
        3,
        1,
        "remote 25 min",
    )
    (town,) = _run_panel(conn, "On site within target, per facility", f"'{one}'", start, db_now)
    assert (town["measured"], town["within_target"], town["targets"]) == (2, 1, "town 15 min")
    # Acknowledge -> dispatch is the operator's step (t-sos 70 s, t-fall 45 s).
    (row,) = _run_panel(conn, "Acknowledge → dispatch", f"'{one}'", start, db_now, "100000d")
    assert row["p50"] == pytest.approx(57.5)


def test_response_panels_leave_out_health_and_merged_alarms(
    as_grafana: tuple[psycopg.Connection, dict[str, Any]],
) -> None:
    conn, sample = as_grafana
    one, _ = sample["facilities"]
    ids = sample["alarms"]
    now = sample["now"]
    start = now - timedelta(hours=6)
    slow = _run_panel(conn, "Slowest alarms (range)", f"'{one}'", start, now)
    assert {r["alarm"] for r in slow} == {
        ids[n] for n in ("t-sos", "t-fall", "t-smoke", "t-bed", "t-waiting", "t-new")
    }
    assert slow[0]["alarm"] == ids["t-waiting"]  # still waiting after 5 min
    assert not {"resident", "resident_id", "name", "details"} & set(slow[0])
    (open_now,) = _run_panel(conn, "Open unacknowledged alarms (now)", f"'{one}'", start, now)
    assert open_now["unacknowledged"] == 2  # t-waiting and t-new, not t-offline
    counts = _run_panel(conn, "Alarms by kind and priority", f"'{one}'", start, now)
    metrics = {r["metric"] for r in counts}
    assert "P4 device_offline" in metrics and sum(r["alarms"] for r in counts) == 7
    both = ",".join(f"'{f}'" for f in sample["facilities"])
    esc = _run_panel(conn, "Escalations and supervisor notifications", both, start, now)
    totals: dict[str, int] = {}
    for r in esc:
        totals[r["metric"]] = totals.get(r["metric"], 0) + r["events"]
    assert totals == {"escalated": 2, "escalation stalled": 1, "supervisor notified": 2}


# ------------------------------------------------------------------ subsidies dashboard


def _subsidy_panel(
    conn: psycopg.Connection, title: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    (dash,) = [d for _, d in _dashboards() if d["uid"] == "eldercare-subsidies"]
    (p,) = [p for p in _panels(dash) if p["title"] == title]
    query = expand(
        p["targets"][0]["rawSql"],
        start=start,
        end=end,
        interval="1h",
        interval_ms=3_600_000,
        variables=variable_values(dash, "-1"),
    )
    cols, rows = _run(conn, query)
    return [dict(zip(cols, r, strict=True)) for r in rows]


def test_coverage_and_revisit_panels_agree_with_the_api(
    as_grafana: tuple[psycopg.Connection, dict[str, Any]],
) -> None:
    """The dashboard's coverage and satisfaction (read through the views, as Grafana's role)
    give the API's numbers (read from the tables, as the platform)."""
    conn, sample = as_grafana
    sub = sample["subsidy"]
    tz = ZoneInfo("Asia/Shanghai")
    since = datetime.combine(sub["month"], datetime.min.time(), tz)
    until = (since + timedelta(days=32)).replace(day=1)
    db_now = one_row(conn.execute("SELECT now()"))[0]
    with _as_owner(conn):
        cov = reports.coverage(conn, sub["programme"], sub["month"], sub["district"], tz)
        rev = hotline.revisits_report(conn, since, until, None, sub["provider"])
    (row,) = [
        r
        for r in _subsidy_panel(conn, "Service coverage by district and programme", since, db_now)
        if r["programme"] == sub["programme"]
    ]
    assert cov["eligible"] == 1
    assert (row["eligible"], row["served"]) == (cov["eligible"], cov["served"])
    assert float(row["coverage %"]) == pytest.approx(100 * cov["rate"])
    (mine,) = [
        r
        for r in _subsidy_panel(conn, "Revisits by provider", since, db_now)
        if r["provider"] == f"provider {sub['programme'].removeprefix('care_')}"
    ]
    assert (rev["revisits"], rev["reached"]) == (2, 1)
    assert (mine["revisits"], mine["reached"]) == (rev["revisits"], rev["reached"])
    assert float(mine["reach %"]) == pytest.approx(100 * rev["reach_rate"])
    assert float(mine["satisfied %"]) == pytest.approx(100 * rev["satisfaction_rate"])
    assert float(mine["confirmed %"]) == pytest.approx(100 * rev["confirmed_rate"])
    assert (mine["1"], mine["2"], mine["3"], mine["4"]) == tuple(
        rev["distribution"][k] for k in "1234"
    )


def test_provider_panel_agrees_with_the_api(
    as_grafana: tuple[psycopg.Connection, dict[str, Any]],
) -> None:
    """The providers panel (a view restating the EVV rule in SQL) and the API's provider
    report (lifecycle.evv_missing in Python) agree on the sample's settled order, which has
    a soft finding and no check-in points (so it is not EVV-complete)."""
    conn, sample = as_grafana
    sub = sample["subsidy"]
    tz = ZoneInfo("Asia/Shanghai")
    since = datetime.combine(sub["month"], datetime.min.time(), tz)
    db_now = one_row(conn.execute("SELECT now()"))[0]
    with _as_owner(conn):
        (api,) = reports.providers(conn, sub["month"], sub["district"], sub["provider"], tz)[
            "providers"
        ]
    title = "Providers: on time, findings, EVV completeness (target 90 %)"
    (row,) = [r for r in _subsidy_panel(conn, title, since, db_now) if r["provider"] == api["name"]]
    assert (row["visits"], row["verified"]) == (api["visits"], api["verified"]) == (1, 1)
    assert float(row["flagged %"]) == pytest.approx(100 * api["anomaly_rate"]) == 100.0
    assert float(row["EVV %"]) == pytest.approx(100 * api["evv_rate"]) == 0.0
    assert row["on time %"] is None  # no scheduled start


def test_triage_labels_match_the_model() -> None:
    from eldercare.models import triage

    assert tuple(str(d) for d in triage.FALSE) == model_quality.TRIAGE_FALSE
    assert tuple(str(d) for d in triage.NEEDED) == model_quality.TRIAGE_NEEDED
    assert tuple(str(d) for d in triage.GENUINE) == model_quality.TRIAGE_GENUINE


def test_model_quality_panels_count_dispositions(
    as_grafana: tuple[psycopg.Connection, dict[str, Any]],
) -> None:
    """Precision and recall of "likely false" from the sample's three scored closed alarms:
    one flagged and false, one false and missed, one genuine and not flagged."""
    conn, sample = as_grafana
    (dash,) = [d for _, d in _dashboards() if d["uid"] == "eldercare-model-quality"]
    start, end = sample["now"] - timedelta(hours=6), sample["now"] + timedelta(minutes=1)

    def panel(title: str) -> list[dict[str, Any]]:
        (p,) = [p for p in _panels(dash) if p["title"] == title]
        query = expand(
            p["targets"][0]["rawSql"],
            start=start,
            end=end,
            interval="1d",
            interval_ms=86_400_000,
            variables=variable_values(dash, "-1"),
        )
        cols, rows = _run(conn, query)
        return [dict(zip(cols, r, strict=True)) for r in rows]

    assert panel("Scored alarms closed") == [{"alarms": 3}]
    assert panel("Precision of 'likely false'")[0]["precision"] == pytest.approx(1.0)
    assert panel("Recall of false alarms")[0]["recall"] == pytest.approx(0.5)
    assert panel("Genuine emergencies called likely false") == [{"alarms": 0}]
    (version,) = panel("By model version")
    assert version["model"] == "triage v1" and version["alarms"] == 3
    brier = ((0.91 - 1) ** 2 + (0.3 - 1) ** 2 + 0.12**2) / 3
    assert float(version["Brier"]) == pytest.approx(brier, rel=1e-5)


def test_device_health_panel_lists_devices_due_soon(
    as_grafana: tuple[psycopg.Connection, dict[str, Any]],
) -> None:
    conn, sample = as_grafana
    (dash,) = [d for _, d in _dashboards() if d["uid"] == "eldercare-model-quality"]
    (p,) = [p for p in _panels(dash) if p["title"] == "Devices due a charge or likely to drop"]
    query = expand(
        p["targets"][0]["rawSql"],
        start=sample["now"] - timedelta(hours=1),
        end=sample["now"] + timedelta(minutes=1),
        interval="1m",
        interval_ms=60_000,
        variables=variable_values(dash, "-1"),
    )
    cols, rows = _run(conn, query)
    got = [dict(zip(cols, r, strict=True)) for r in rows]
    mine = [g for g in got if g["device"].endswith(sample["tag"])]
    assert [g["device"].split("-")[0] for g in mine] == ["wear", "sos"]  # charge due first
