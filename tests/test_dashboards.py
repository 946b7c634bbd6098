"""The Grafana dashboards in dashboards/: valid Grafana JSON, and every panel's SQL runs.

Grafana only reports a broken query when someone opens the panel, so here every
query is expanded the way Grafana's PostgreSQL data source expands it (template
variables in the frontend, then the ``$__`` macros in the backend) and run against
a migrated TimescaleDB with sample rows, as the read-only role Grafana uses in
deployments. A query that fails, returns nothing, or returns columns Grafana
cannot plot fails its test.
"""

from __future__ import annotations

import decimal
import importlib.util
import json
import re
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from psycopg import sql
from psycopg.types.json import Jsonb

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


build = _load_module("eldercare_dashboards_build", DASHBOARD_DIR / "build.py")
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
        conn.execute(
            "INSERT INTO facilities (code, name) VALUES (%s, %s) RETURNING id",
            (f"dash-{tag}-{i}", f"Dashboard home {tag} {i}"),
        ).fetchone()[0]
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
    return {"facilities": fac}


@pytest.fixture
def as_grafana(db: psycopg.Connection) -> Iterator[tuple[psycopg.Connection, dict[str, Any]]]:
    """The session database with sample rows, seen through Grafana's read-only role.

    Everything (the role included: CREATE ROLE is transactional) is rolled back.
    """
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
    assert ds["uid"] == build.DATASOURCE["uid"]
    assert ds["type"] == build.DATASOURCE["type"]
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
        assert p["datasource"] == build.DATASOURCE, where
        assert p["targets"], where
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), where
        for t in p["targets"]:
            assert t["datasource"] == build.DATASOURCE, where
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
            cur.execute(query)  # type: ignore[arg-type]  (SQL text from a file)
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
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute(query)
