"""Device health: the battery forecast (robust slope since the last charge) on hand-made
series, and offline risk end to end on the real database from synthetic heartbeats and
drops stored by the gateway's own store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from fastapi.testclient import TestClient

from eldercare.app import create_app
from eldercare.config import Settings, load_settings
from eldercare.models import Context, catalogue, workflow
from eldercare.models.device_health import battery_forecast, score_devices, theil_sen
from eldercare.registry import auth
from eldercare.simulators.device_history import DeviceHistoryReport, replay
from eldercare.storage.migrate import migrate
from harness.services import create_database, drop_database
from tests.alarm_support import FrozenClock, RecordingPublisher

T0 = datetime(2026, 9, 1, tzinfo=UTC)
DAYS = 16
END = T0 + timedelta(days=DAYS)


def _hours(n: int, step_h: float = 1.0) -> list[datetime]:
    return [T0 + timedelta(hours=k * step_h) for k in range(n)]


def test_theil_sen_ignores_a_wild_reading() -> None:
    import numpy as np

    t = np.arange(10, dtype=float)
    y = 90 - 2 * t
    y[4] = 5  # one glitch
    assert theil_sen(t, y) == pytest.approx(-2.0)


def test_battery_forecast_uses_only_what_came_after_the_last_charge() -> None:
    levels = [60, 58, 56, 54, 100, 99, 98, 97, 96, 95]  # charged at the 5th heartbeat
    f = battery_forecast(_hours(len(levels)), levels, low_pct=20)
    assert f.drain_pct_per_h == pytest.approx(-1.0)
    assert f.hours_to_low == pytest.approx(75.0) and f.hours_to_empty == pytest.approx(95.0)
    flat = battery_forecast(_hours(6), [100] * 6, low_pct=20)
    assert flat.hours_to_low is None and flat.battery == 100
    few = battery_forecast(_hours(2), [50, 49], low_pct=20)
    assert few.drain_pct_per_h is None and few.battery == 49


@pytest.fixture(scope="module")
def dsettings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    url = create_database()
    migrate(url)
    yield load_settings(database_url=url, models_dir=tmp_path_factory.mktemp("models"))
    drop_database(url)


@pytest.fixture(scope="module")
def history(dsettings: Settings) -> DeviceHistoryReport:
    return replay(dsettings, seed=3, start=T0, days=DAYS, devices=15)


def test_offline_risk_is_evaluated_on_later_days_and_scored_per_device(
    history: DeviceHistoryReport, dsettings: Settings
) -> None:
    assert history.heartbeats > 5000 and history.drops > 10
    model = catalogue.get("device_health")
    ctx = Context(dsettings, END)
    report = model.evaluate(model.dataset(ctx), ctx)
    assert report.synthetic
    # Drops cluster on flaky devices, so the model ranks better than chance.
    assert report.metrics["offline ROC-AUC"] > 0.6  # type: ignore[operator]
    assert report.metrics["low-battery crossings"] > 0  # type: ignore[operator]
    v = workflow.train(model, ctx, promote=True)
    est, _ = workflow.load(model, ctx)
    with psycopg.connect(dsettings.database_url, autocommit=True) as conn:
        n = score_devices(conn, dsettings, END, est, v.version)
        assert n == 15
        rows = conn.execute(
            "SELECT d.kind, h.battery, h.hours_to_low, h.offline_risk_24h, h.reasons"
            " FROM device_health h JOIN devices d ON d.id = h.device_id"
        ).fetchall()
        auth.create_user(conn, "health-op", "correct-horse-battery", "operator")
    assert all(0 <= r[3] <= 1 for r in rows)
    draining = [r for r in rows if r[0] == "wearable" and r[2] is not None]
    assert draining and all(r[4][0]["text"].startswith("battery") for r in draining)
    assert all(r[2] is None for r in rows if r[0] == "fall_sensor")  # mains powered

    app = create_app(
        dsettings, clock=FrozenClock(END), publisher=RecordingPublisher(), background=False
    )
    with TestClient(app) as client:
        tok = client.post(
            "/api/auth/token", data={"username": "health-op", "password": "correct-horse-battery"}
        ).json()["access_token"]
        got = client.get("/api/devices/health", headers={"Authorization": f"Bearer {tok}"})
        assert got.status_code == 200
        listed = got.json()
    assert len(listed) == 15
    lows = [d["hours_to_low"] for d in listed if d["hours_to_low"] is not None]
    assert lows == sorted(lows) and listed[0]["hours_to_low"] == lows[0]
