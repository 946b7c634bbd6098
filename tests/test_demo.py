"""``eldercare demo`` (``make demo``) end to end, on the session's real
database and broker: server up, fleet provisioned once and reused, status lines printed,
events stored, and nothing left running afterwards. Relies only on /healthz of the API."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from eldercare.config import Settings
from harness.services import ROOT, free_port, settings_env

STATUS = re.compile(
    r"\d\d:\d\d \| +\d+\.\d events/s \| open alarms \d+ \(\d+ unacked\) \| "
    r"offline: devices \d+/\d+, cameras \d+/\d+"
)


def _env(settings: Settings, state_dir: Path, marker: str, **extra: str) -> dict[str, str]:
    env = settings_env(settings)
    env.update(
        ELDERCARE_API_PORT=str(free_port()),
        # Its own gateway client ids: the session's in-process gateway must not be kicked off.
        ELDERCARE_MQTT_CLIENT_PREFIX="demo-" + secrets.token_hex(3),
        ELDERCARE_DEMO_DIR=str(state_dir),
        # Inherited by every process the demo starts: how the test finds leftovers.
        ELDERCARE_DEMO_TEST_MARK=marker,
    )
    env.update(extra)
    return env


def _run(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    # stdout is a pipe, not a TTY: the demo prints a status line every 5 s instead of \r.
    return subprocess.run(
        [sys.executable, "-m", "eldercare", "demo", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _processes_with(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue  # gone, or not ours
        if f"ELDERCARE_DEMO_TEST_MARK={marker}".encode() in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def _counts(db: psycopg.Connection) -> tuple[int, int, int]:
    row = db.execute(
        "SELECT (SELECT count(*) FROM facilities WHERE code LIKE 'SIMdemo-%'),"
        " (SELECT count(*) FROM devices WHERE id LIKE 'simdemo-%'),"
        " (SELECT count(*) FROM users WHERE username IN ('operator', 'supervisor')"
        "   OR username LIKE 'staff-__')"
    ).fetchone()
    assert row is not None
    return row


def test_demo_serves_runs_the_fleet_and_reuses_it(
    settings: Settings, db: psycopg.Connection, tmp_path: Path
) -> None:
    marker = secrets.token_hex(8)
    env = _env(settings, tmp_path / "demo", marker)
    port = env["ELDERCARE_API_PORT"]

    first = _run(env, "--duration", "11", "--seed", "7")
    assert first.returncode == 0, first.stdout + first.stderr
    assert f"http://127.0.0.1:{port}/console" in first.stdout
    assert f"http://127.0.0.1:{port}/staff" in first.stdout
    assert "operator / demo-operator" in first.stdout
    assert f"http://127.0.0.1:{port}/metrics" in first.stdout
    assert STATUS.search(first.stdout), first.stdout
    assert "\r" not in first.stdout  # not a TTY: plain lines
    assert "Fleet     created" in first.stdout
    # The service side (issue 8): where to see the orders and the month's entitlement.
    orders = re.search(
        rf"Orders +http://127\.0\.0\.1:{port}/console#orders +work-order tab "
        r"\(operator / demo-operator\): (\d+) orders \(([^)]*)\)",
        first.stdout,
    )
    assert orders, first.stdout
    assert f"http://127.0.0.1:{port}/console#call" in first.stdout
    entitled = re.search(r"Subsidies entitlement run (\d{4}-\d\d) for 330683: (.+)", first.stdout)
    assert entitled and "yuan" in entitled[2], first.stdout
    month = entitled[1]
    assert "Reports   (supervisor / demo-supervisor" in first.stdout
    for report in ("subsidy-spend", "anomalies", "revisits"):
        assert f"http://127.0.0.1:{port}/api/reports/{report}?" in first.stdout, report
    assert f"subsidy-spend?month={month}&district=330683" in first.stdout
    assert re.search(r"demo finished after \d+ s; \d+/\d+ devices connected", first.stdout)
    assert not _processes_with(marker), "the demo left processes running"

    # The count printed is what the console's tab lists for the district, by status.
    listed = db.execute(
        "SELECT count(*) FROM work_orders WHERE district_code IN"
        " (SELECT district_subtree('330683'))"
    ).fetchone()
    assert listed is not None and int(orders[1]) == listed[0] > 0
    assert "verified" in orders[2]
    live = db.execute(
        "SELECT count(*) FROM entitlements WHERE district_code LIKE '330683%%'"
        " AND to_char(month, 'YYYY-MM') = %s AND status <> 'void' AND amount_fen > 0",
        (month,),
    ).fetchone()
    assert live is not None and live[0] > 0

    # The fleet sits in the service district, with the follow-up visits in the catalogue:
    # a fall closed on the console as fall_without_injury gets its order in the tab.
    placed = db.execute(
        "SELECT count(*) FILTER (WHERE district_code = '330683001'), count(*) FROM facilities"
        " WHERE code LIKE 'SIMdemo-%%'"
    ).fetchone()
    assert placed is not None and placed[0] == placed[1] > 0
    items = db.execute(
        "SELECT count(*) FROM service_items WHERE code IN"
        " ('post_fall_visit', 'post_incident_visit', 'device_training_visit')"
    ).fetchone()
    assert items == (3,)

    facilities, devices, users = _counts(db)
    assert facilities >= 1 and devices > 0 and users == 2 + facilities
    stored = db.execute(
        "SELECT count(*) FROM device_events WHERE device_id LIKE 'simdemo-%'"
    ).fetchone()
    assert stored is not None and stored[0] > 0
    # Credentials for the re-run, readable by this user only.
    assert (tmp_path / "demo" / "fleet.json").stat().st_mode & 0o077 == 0
    assert (tmp_path / "demo" / "serve.log").stat().st_size > 0

    # Re-runs reuse the fleet: first with the saved credentials, then (state directory
    # lost) with rotated ones. Every device must still get into the broker.
    for lose_state in (False, True):
        if lose_state:
            (tmp_path / "demo" / "fleet.json").unlink()
        again = _run(env, "--duration", "3")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "Fleet     reused" in again.stdout
        assert f"/console#orders   work-order tab (operator / demo-operator): {orders[1]}" in (
            again.stdout
        )
        connected = re.search(r"(\d+)/(\d+) devices connected", again.stdout)
        assert connected and connected[1] == connected[2] == str(devices), again.stdout
        assert _counts(db) == (facilities, devices, users)
        assert not _processes_with(marker)


def test_demo_says_when_the_port_is_busy(settings: Settings, tmp_path: Path) -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        env = _env(
            settings,
            tmp_path / "demo",
            secrets.token_hex(8),
            ELDERCARE_API_PORT=str(busy.getsockname()[1]),
        )
        out = _run(env, "--duration", "1", timeout=30)
    assert out.returncode != 0
    assert "already in use" in out.stderr and "ELDERCARE_API_PORT" in out.stderr


@pytest.mark.parametrize(
    "secret_env",
    [
        {
            "ELDERCARE_ENVIRONMENT": "production",
            "ELDERCARE_SECRET_KEY": "x" * 40,
            "ELDERCARE_MQTT_PASSWORD": "not-the-default-" + "y" * 16,
        }
    ],
)
def test_demo_refuses_production(
    settings: Settings, db: psycopg.Connection, tmp_path: Path, secret_env: dict[str, str]
) -> None:
    env = _env(settings, tmp_path / "demo", secrets.token_hex(8), **secret_env)
    # A database URL whose password is not a default one, so only the demo itself refuses.
    env.pop("ELDERCARE_OWNER_DATABASE_URL", None)  # the test cluster's owner is a default
    parts = urlsplit(settings.database_url)
    env["ELDERCARE_DATABASE_URL"] = urlunsplit(
        parts._replace(
            netloc=f"{parts.username}:not-a-default-password@{parts.hostname}:{parts.port}"
        )
    )
    before = db.execute("SELECT count(*) FROM users").fetchone()
    out = _run(env, "--duration", "1", timeout=30)
    assert out.returncode != 0
    assert "refuses to run with ELDERCARE_ENVIRONMENT=production" in out.stderr
    assert db.execute("SELECT count(*) FROM users").fetchone() == before
    assert not (tmp_path / "demo").exists()
    assert os.environ.get("ELDERCARE_ENVIRONMENT") != "production"  # the session is untouched
