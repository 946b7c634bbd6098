"""Alarm triage end to end on the real database: a month of synthetic alarms closed by
simulated operators, features that see only the past, a time-split evaluation, a promoted
model scoring open alarms, and the queue ordered by the score only within a priority band.

The module has its own database: the model learns from every closed alarm there is, so the
other tests' alarms must not be in it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest
from fastapi.testclient import TestClient

from eldercare.alerts import lifecycle
from eldercare.app import create_app
from eldercare.config import Settings, load_settings
from eldercare.gateway.store import AlarmResult, Store
from eldercare.models import Context, catalogue, triage, workflow
from eldercare.protocol import parse_uplink, uplink
from eldercare.registry import auth
from eldercare.registry.auth import Actor
from eldercare.simulators.alarm_history import HistoryReport, replay
from eldercare.storage.migrate import migrate
from harness.services import create_database, drop_database
from tests.alarm_support import FrozenClock, RecordingPublisher

START = datetime(2026, 8, 1, tzinfo=UTC)
DAYS = 30
END = START + timedelta(days=DAYS + 1)


@pytest.fixture(scope="module")
def tsettings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    url = create_database()
    migrate(url)
    yield load_settings(database_url=url, models_dir=tmp_path_factory.mktemp("models"))
    drop_database(url)


@pytest.fixture(scope="module")
def history(tsettings: Settings) -> HistoryReport:
    return replay(tsettings, seed=1, start=START, days=DAYS, residents=24)


@pytest.fixture
def conn(tsettings: Settings) -> Iterator[psycopg.Connection]:
    with psycopg.connect(tsettings.database_url, autocommit=True) as c:
        yield c


def _one(conn: psycopg.Connection, sql: str, params: Any = None) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def test_simulated_operators_close_every_alarm_with_a_disposition(
    history: HistoryReport, conn: psycopg.Connection
) -> None:
    assert history.alarms > 200 and history.closed == history.alarms
    assert _one(conn, "SELECT count(*) FROM alarms WHERE status <> 'closed'") == 0
    d = history.dispositions
    for disp in ("accidental_press", "false_sensor_alarm", "genuine_emergency", "service_request"):
        assert d.get(disp, 0) > 0, d
    # Cancelled presses are mostly accidental, as the generator's truth says.
    cancelled = conn.execute(
        "SELECT disposition, count(*) FROM alarms WHERE cancel_requested_at IS NOT NULL GROUP BY 1"
    ).fetchall()
    by: dict[str, int] = dict(cancelled)
    assert by.get("accidental_press", 0) > 5 * by.get("genuine_emergency", 0)


def test_features_count_only_alarms_closed_before_arrival(
    history: HistoryReport, conn: psycopg.Connection
) -> None:
    rows = triage.labelled_rows(conn)
    assert len(rows) > 150
    for r in rows[::15]:
        expect = _one(
            conn,
            "SELECT count(*) FROM alarms WHERE device_id = (SELECT device_id FROM alarms"
            " WHERE id = %s) AND received_at < %s AND closed_at < %s"
            " AND disposition = ANY(%s)",
            (r["id"], r["received_at"], r["received_at"], [str(x) for x in triage.LABELLED]),
        )
        assert r["dev_n"] == expect
    # A cancel arriving after the horizon is not a feature in training.
    late = dict(rows[0], cancel_requested_at=rows[0]["event_time"] + timedelta(minutes=5))
    x = triage.features(late, load_settings().tz)
    assert x[triage.FEATURES.index("cancelled")] == 0.0
    assert (
        triage.features(late, load_settings().tz, now=END)[triage.FEATURES.index("cancelled")]
        == 1.0
    )


def test_time_split_evaluation_beats_the_cold_start_rates(
    history: HistoryReport, tsettings: Settings, tmp_path: Path
) -> None:
    model = catalogue.get("triage")
    report = workflow.evaluate(model, Context(tsettings, END), tmp_path, "cmd")
    m = report.metrics
    assert report.synthetic
    assert m["PR-AUC"] > m["cold-start PR-AUC"]  # type: ignore[operator]
    assert m["PR-AUC"] > 0.85  # type: ignore[operator]
    assert m["genuine emergencies in top-decile score"] == 0
    assert (tmp_path / "triage.md").read_text().count("Time split") == 1


def test_fast_scorer_matches_the_pipeline(history: HistoryReport, tsettings: Settings) -> None:
    model = triage.TriageModel()
    ctx = Context(tsettings, END)
    data = model.dataset(ctx)
    est = model.fit(data, ctx)
    fast = triage.LinearScorer.of(est).score(data.X)
    np.testing.assert_allclose(fast, est.predict_proba(data.X)[:, 1], rtol=0, atol=1e-12)


def _send(store: Store, clock: FrozenClock, device: str, msg: str, kind: str, **f: Any) -> Any:
    t = clock()
    result = store.store_alarm(parse_uplink(device, uplink(msg, kind, t, **f), t))
    assert isinstance(result, AlarmResult)
    return result.alarm_id


def test_promoted_model_orders_the_queue_within_bands_only(
    history: HistoryReport, tsettings: Settings, conn: psycopg.Connection
) -> None:
    clock = FrozenClock(END + timedelta(hours=2))
    ctx = Context(tsettings, END)
    # Before a promotion: cold-start rates, with the rate as the reason.
    cold = triage.TriageScorer(tsettings, clock)
    assert (cold.model, cold.version) == ("triage-rates", 0)
    v = workflow.train(catalogue.get("triage"), ctx, promote=True)
    scorer = triage.TriageScorer(tsettings, clock)
    assert (scorer.model, scorer.version) == ("triage", v.version)

    devices = conn.execute(
        "SELECT r.id, d.id, d.kind FROM devices d JOIN residents r ON r.id = d.resident_id"
        " WHERE r.facility_id = %s ORDER BY r.id, d.kind",
        (history.facility_id,),
    ).fetchall()
    sos = [d for _, d, k in devices if k == "sos_button"]
    store = Store(tsettings.database_url, clock)
    try:
        # Band 1: a cancelled double press and a long press nobody cancelled.
        likely_false = _send(store, clock, sos[0], "q1", "sos", press="double")
        clock.advance(4)
        _send(store, clock, sos[0], "q1c", "cancel", ref="q1")
        clock.advance(30)
        likely_real = _send(store, clock, sos[1], "q2", "sos", press="long")
        # Band 3: a bed exit, scored, whatever its score, after every band-1 alarm.
        bed = [d for _, d, k in devices if k == "fall_sensor"][2]
        band3 = _send(store, clock, bed, "q3", "bed_exit", duration_s=600)
    finally:
        store.close()
    assert scorer.run_once(conn) == 3
    assert scorer.run_once(conn) == 0  # nothing changed: nothing re-scored
    p: dict[Any, float] = dict(
        conn.execute("SELECT alarm_id, p_false FROM alarm_triage").fetchall()
    )
    assert p[likely_false] > 0.5 > p[likely_real]

    # Force the band-3 alarm to look certainly genuine and a band-1 one certainly false:
    # bands still win.
    conn.execute("UPDATE alarm_triage SET p_false = 0 WHERE alarm_id = %s", (band3,))
    conn.execute("UPDATE alarm_triage SET p_false = 0.99 WHERE alarm_id = %s", (likely_false,))
    op = Actor("t", "operator")
    queue = lifecycle.list_alarms(conn, op, facility=history.facility_id, now=clock())
    assert [a["id"] for a in queue] == [likely_real, likely_false, band3]
    assert [a["priority"] for a in queue] == [1, 1, 3]
    # Triage holds an unanswered alarm back for TRIAGE_HOLD_S only: 60 s after it came in,
    # the likely-false one ranks as genuine and, older, first in its band (never past band).
    held = clock() + timedelta(seconds=lifecycle.TRIAGE_HOLD_S - 34 - 1)
    overdue = held + timedelta(seconds=2)
    queue = lifecycle.list_alarms(conn, op, facility=history.facility_id, now=held)
    assert [a["id"] for a in queue] == [likely_real, likely_false, band3]
    queue = lifecycle.list_alarms(conn, op, facility=history.facility_id, now=overdue)
    assert [a["id"] for a in queue] == [likely_false, likely_real, band3]

    # The same order and the reasons over HTTP (queue, detail, console extras).
    app = create_app(tsettings, clock=clock, publisher=RecordingPublisher(), background=False)
    auth.create_user(conn, "triage-op", "correct-horse-battery", "operator")
    with TestClient(app) as client:
        tok = client.post(
            "/api/auth/token", data={"username": "triage-op", "password": "correct-horse-battery"}
        ).json()["access_token"]
        h = {"Authorization": f"Bearer {tok}"}
        listed = client.get(f"/api/alarms?facility={history.facility_id}", headers=h).json()
        assert [a["id"] for a in listed] == [str(likely_real), str(likely_false), str(band3)]
        detail = client.get(f"/api/alarms/{likely_real}", headers=h).json()["alarm"]
        assert detail["triage_model"] == "triage" and 0 <= detail["triage_p_false"] < 0.5
        texts = [r["text"] for r in detail["triage_reasons"]]
        assert len(texts) == 3 and all(texts), texts
        extras = client.get("/api/console/open", headers=h).json()["alarms"]
        assert [a["id"] for a in extras] == [str(likely_real), str(likely_false), str(band3)]
        clock.advance(lifecycle.TRIAGE_HOLD_S)  # nobody answered: no more holding back
        overdue_order = [str(likely_false), str(likely_real), str(band3)]
        listed = client.get(f"/api/alarms?facility={history.facility_id}", headers=h).json()
        assert [a["id"] for a in listed] == overdue_order
        extras = client.get("/api/console/open", headers=h).json()["alarms"]
        assert [a["id"] for a in extras] == overdue_order


def test_a_cancel_after_scoring_is_scored_again(
    history: HistoryReport, tsettings: Settings, conn: psycopg.Connection
) -> None:
    clock = FrozenClock(END + timedelta(hours=5))
    # The last resident's button: the queue test left the first residents' alarms open, and
    # a press there would join one of them.
    sos = _one(
        conn,
        "SELECT d.id FROM devices d JOIN residents r ON r.id = d.resident_id"
        " WHERE r.facility_id = %s AND d.kind = 'sos_button' ORDER BY r.id DESC LIMIT 1",
        (history.facility_id,),
    )
    store = Store(tsettings.database_url, clock)
    scorer = triage.TriageScorer(tsettings, clock)
    try:
        alarm = _send(store, clock, sos, "c1", "sos", press="single")
        scorer.run_once(conn)
        before = _one(conn, "SELECT p_false FROM alarm_triage WHERE alarm_id = %s", (alarm,))
        clock.advance(6)
        _send(store, clock, sos, "c1c", "cancel", ref="c1")
    finally:
        store.close()
    assert scorer.run_once(conn) >= 1
    row = conn.execute(
        "SELECT p_false, seen_cancel, reasons FROM alarm_triage WHERE alarm_id = %s", (alarm,)
    ).fetchone()
    assert row is not None and row[1] is True and row[0] > before
    assert any("cancelled after 6 s" in r["text"] for r in row[2])
