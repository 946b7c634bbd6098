"""The fall model in shadow mode, end to end on the real broker, gateway and database: a
wearable streams imu windows and raises its own fall; the shadow pass scores every window,
stores the score next to the device's decision, and leaves the alarm exactly as it was."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psycopg
import pytest

from eldercare.config import Settings
from eldercare.models import workflow
from eldercare.models.base import Context
from eldercare.models.fall import features as F
from eldercare.models.fall import model as M
from eldercare.models.fall import shadow, synth
from eldercare.models.fall.detector import FallModel
from harness.services import wait_for

SMALL = M.TrainSpec(n_subjects=6, falls_per_subject=15, negatives_per_subject=45, n_estimators=15)
HZ = 25  # what the simulator's wearables send: 1 s windows at 25 Hz


def _msg(device: str, msg_id: str, end: datetime, acc: np.ndarray, hz: int = HZ):
    return shadow.ImuMessage(device, msg_id, end, None, hz, acc)


def test_stitch_builds_the_window_from_the_last_four_seconds_of_short_messages() -> None:
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    still = np.tile([0.0, 0.0, 1.0], (HZ, 1))
    side = np.tile([1.0, 0.0, 0.0], (HZ, 1))
    old = _msg("w", "a", t0, still)
    prev = _msg("w", "b", t0 + timedelta(seconds=1), still)
    last = _msg("w", "c", t0 + timedelta(seconds=2), side)
    window, coverage = shadow.stitch(last, [old, prev])
    assert window.shape == (synth.N, 3) and coverage == 3.0
    # The last second is the last message's samples; before the first one, its first sample.
    assert np.allclose(window[-HZ * 2 + 2 :], [1.0, 0.0, 0.0])
    assert np.allclose(window[:50], [0.0, 0.0, 1.0])
    alone, cov = shadow.stitch(last, [])
    assert cov == 1.0 and np.allclose(alone, [1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="another device"):
        shadow.stitch(last, [_msg("x", "d", t0, still)])


def test_link_picks_the_nearest_device_fall_in_range() -> None:
    t = datetime(2030, 1, 1, tzinfo=UTC)

    def fall(s: float) -> shadow.DeviceFall:
        return shadow.DeviceFall("w", f"f{s}", t + timedelta(seconds=s), 0.9, None)

    assert shadow.link(t, [fall(-10), fall(40)]) is None
    assert shadow.link(t, [fall(-3), fall(20)]).msg_id == "f-3"  # type: ignore[union-attr]
    assert shadow.link(t, [fall(25), fall(5)]).msg_id == "f5"  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def models_dir(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small fall model trained, saved as skops and promoted."""
    models = tmp_path_factory.mktemp("models")
    ctx = Context(
        settings=settings.model_copy(update={"models_dir": models}), now=datetime.now(UTC)
    )
    workflow.train(FallModel(spec=SMALL), ctx, promote=True)
    assert (models / "fall" / "manifest.json").exists()
    return models


@pytest.fixture(scope="module")
def scorer(settings: Settings, models_dir: Path) -> shadow.Scorer:
    """The promoted version, loaded back through the store's sha256 and allow-list checks."""
    ctx = Context(
        settings=settings.model_copy(update={"models_dir": models_dir}), now=datetime.now(UTC)
    )
    return shadow.load_scorer(ctx)


def _strong_fall() -> np.ndarray:
    falls = synth.generate(
        synth.CONFIG_A, 77, n_subjects=1, falls_per_subject=10, negatives_per_subject=0
    ).windows
    # The fall whose impact is latest in its window, as a device streams it before alarming.
    col = F.FEATURES.index("peak_at")
    return falls[int(np.argmax(F.extract(falls)[:, col]))]


def test_shadow_scores_every_window_next_to_the_device_fall_and_changes_no_alarm(
    gateway, make_device, db: psycopg.Connection, scorer: shadow.Scorer
) -> None:
    # Windows other tests left in the session database are scored first, so the counts
    # below are this test's own (the scorer has no device filter, by design).
    while shadow.run_once(db, scorer, datetime.now(UTC) + shadow.SETTLE + timedelta(seconds=1)):
        pass
    wearer = make_device("wearable")
    quiet = make_device("wearable")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=60)
    still = [[0.0, 0.01, 1.0]] * HZ
    sent: list[str] = []
    for k in range(5):
        ts = start + timedelta(seconds=k)
        sent.append(wearer.send("imu", ts=ts, hz=HZ, acc=still))
        sent.append(quiet.send("imu", ts=ts, hz=HZ, acc=still))
    fall_at = start + timedelta(seconds=9)
    fall = _strong_fall()
    sent.append(wearer.send("imu", ts=fall_at, hz=synth.HZ, acc=fall.tolist()))
    fall_id = wearer.raise_alarm("fall", ts=fall_at + timedelta(seconds=2), confidence=0.9)
    alarm_id = wearer.ack_for(fall_id)["alarm_id"]
    devices = [wearer.device_id, quiet.device_id]
    wait_for(
        lambda: (
            db.execute(
                "SELECT count(*) FROM device_events WHERE type = 'imu' AND device_id = ANY(%s)",
                (devices,),
            ).fetchone()[0]  # type: ignore[index]
            == len(sent)
        ),
        timeout=10,
    )
    alarm_before = db.execute("SELECT * FROM alarms WHERE id = %s", (alarm_id,)).fetchone()

    # Too fresh: the device may still raise its fall, so nothing is scored yet.
    received = datetime.now(UTC)
    assert shadow.run_once(db, scorer, received) == 0
    later = received + shadow.SETTLE + timedelta(seconds=1)
    assert shadow.run_once(db, scorer, later) == len(sent)
    assert shadow.run_once(db, scorer, later) == 0  # each window once

    got = db.execute(
        """SELECT device_id, msg_id, score, suspected, coverage_s, device_alarm_id::text,
                  device_confidence, device_fall_msg_id, model_version, latency_us
           FROM fall_shadow_scores WHERE device_id = ANY(%s) ORDER BY time, device_id""",
        (devices,),
    ).fetchall()
    by_msg = {r[1]: r for r in got}
    impact = by_msg[sent[-1]]
    assert impact[3] is True and impact[2] >= scorer.threshold
    assert (impact[5], impact[6], impact[7]) == (alarm_id, pytest.approx(0.9), fall_id)
    assert impact[4] == pytest.approx(synth.WINDOW_S)
    for r in got:
        assert r[8] == scorer.version and r[9] >= 0
        if r[0] == quiet.device_id:
            assert r[3] is False and r[5] is None and r[2] < scorer.threshold
    # The quiet wearer's fifth second has four seconds of history behind it.
    assert max(r[4] for r in got if r[0] == quiet.device_id) == pytest.approx(4.0)

    # Shadow only: the alarm row is exactly what the device and the engine made it.
    assert db.execute("SELECT * FROM alarms WHERE id = %s", (alarm_id,)).fetchone() == alarm_before
    agree = shadow.agreement(db, start - timedelta(minutes=1), later)
    assert agree["device_falls"] >= 1 and agree["model_agrees"] >= 1
    assert agree["windows_scored"] >= len(sent)

    # An operator closes the fall as real: the comparison counts it as a real fall the
    # model agreed with.
    from eldercare.alerts import lifecycle
    from eldercare.registry.auth import Actor

    op = Actor(username="shadow-test-supervisor", role="supervisor")
    for action, disposition in (
        ("acknowledge", None),
        ("resolve", None),
        ("close", "genuine_emergency"),
    ):
        lifecycle.act(db, alarm_id, action, op, later, disposition=disposition)
    closed = shadow.agreement(db, start - timedelta(minutes=1), later)
    assert closed["closed_real"] == agree["closed_real"] + 1
    assert closed["closed_real_model_agrees"] == agree["closed_real_model_agrees"] + 1


def test_the_shadow_command_loads_the_promoted_model_and_runs_a_pass(
    settings: Settings,
    models_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from eldercare.cli import main
    from eldercare.config import get_settings

    monkeypatch.setenv("ELDERCARE_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("ELDERCARE_MODELS_DIR", str(models_dir))
    get_settings.cache_clear()
    try:
        assert main(["models", "shadow", "fall", "--once"]) == 0
        out = capsys.readouterr().out
        assert "model v1" in out and "shadow only" in out
        assert '"scored":' in out
        # A version that does not exist is refused, not silently replaced by another.
        assert main(["models", "shadow", "fall", "--once", "--version", "9"]) == 1
        assert "no version 9" in capsys.readouterr().err
    finally:
        get_settings.cache_clear()
