"""The fall model's parts without a database: the synthetic generator, the features, the
safe loader of seglearn's real wrist data, the exported forest and the evaluation
protocol, on data small enough to train in a second or two."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from eldercare.errors import InvalidInput
from eldercare.models.fall import data, synth
from eldercare.models.fall import evaluate as E
from eldercare.models.fall import features as F
from eldercare.models.fall import model as M
from eldercare.models.fall.trees import export_forest

COL = {name: i for i, name in enumerate(F.FEATURES)}
SMALL = M.TrainSpec(n_subjects=6, falls_per_subject=15, negatives_per_subject=45, n_estimators=15)


def _upright(n: int = synth.N) -> np.ndarray:
    return np.tile([0.0, 0.0, 1.0], (n, 1))


# ---------------------------------------------------------------- generator


def test_generator_is_deterministic_per_seed_and_config() -> None:
    kw = {"n_subjects": 2, "falls_per_subject": 3, "negatives_per_subject": 5}
    a1 = synth.generate(synth.CONFIG_A, 7, **kw)
    a2 = synth.generate(synth.CONFIG_A, 7, **kw)
    assert np.array_equal(a1.windows, a2.windows) and a1.activities == a2.activities
    assert not np.array_equal(a1.windows, synth.generate(synth.CONFIG_A, 8, **kw).windows)
    assert not np.array_equal(a1.windows, synth.generate(synth.CONFIG_SOFT, 7, **kw).windows)
    assert a1.windows.shape == (16, synth.N, 3) and a1.labels.sum() == 6
    assert np.abs(a1.windows).max() <= synth.CLIP_G
    # The protocol's precision: three decimals, like the simulator's imu.acc.
    assert np.array_equal(a1.windows, np.round(a1.windows, 3))


def test_generated_falls_have_the_multiphase_shape_and_soft_falls_are_softer() -> None:
    kw = {"n_subjects": 4, "falls_per_subject": 10, "negatives_per_subject": 0}
    a = F.extract(synth.generate(synth.CONFIG_A, 3, **kw).windows)
    soft = F.extract(synth.generate(synth.CONFIG_SOFT, 3, **kw).windows)
    # Descent below 1 g, an impact, a new orientation: in (nearly) every A fall.
    assert (a[:, COL["pre_impact_min"]] < 0.8).mean() > 0.95
    assert (a[:, COL["mag_max"]] > 1.7).all()
    assert np.median(a[:, COL["orientation_cos"]]) < 0.5
    assert np.median(soft[:, COL["mag_max"]]) < np.median(a[:, COL["mag_max"]])
    assert np.median(soft[:, COL["pre_impact_min"]]) > np.median(a[:, COL["pre_impact_min"]])


def test_a_config_with_a_reversed_range_is_refused() -> None:
    with pytest.raises(ValueError, match="reversed"):
        synth.GeneratorConfig(name="bad", descent_s=(0.8, 0.3))


# ---------------------------------------------------------------- features


def test_features_of_hand_built_windows() -> None:
    still = _upright()
    fall = _upright()
    fall[90:110] = [0.0, 0.0, 0.2]  # 0.4 s of near free fall
    fall[110] = [0.0, 3.0, 0.0]  # the impact, 3 g
    fall[111:] = [1.0, 0.0, 0.0]  # lying on the side, still
    X = F.extract(np.stack([still, fall]))
    s, f = X[0], X[1]
    assert s[COL["mag_max"]] == pytest.approx(1.0) and s[COL["mag_std"]] == pytest.approx(0)
    assert s[COL["orientation_cos"]] == pytest.approx(1.0)
    assert s[COL["time_below_0_6g"]] == 0
    assert f[COL["mag_max"]] == pytest.approx(3.0)
    assert f[COL["pre_impact_min"]] == pytest.approx(0.2)
    assert f[COL["peak_minus_pre_min"]] == pytest.approx(2.8)
    assert f[COL["time_below_0_6g"]] == pytest.approx(20 / synth.HZ)
    assert f[COL["orientation_cos"]] == pytest.approx(0.0, abs=1e-9)
    assert f[COL["post_mean"]] == pytest.approx(1.0) and f[COL["post_std"]] == pytest.approx(0)
    assert f[COL["peak_at"]] == pytest.approx(110 / (synth.N - 1))
    assert X.shape == (2, F.N_FEATURES)


def test_resample_keeps_the_last_sample_and_fit_window_pads_with_the_first() -> None:
    acc = np.array([[0, 0, 1.0], [0, 0, 2.0], [0, 0, 3.0]])  # 25 Hz: 80 ms
    up = F.resample(acc, 25)
    assert len(up) == 5 and up[-1, 2] == 3.0 and up[0, 2] == 1.0 and up[1, 2] == 1.5
    w = F.fit_window(up)
    assert w.shape == (synth.N, 3) and (w[: synth.N - 5, 2] == 1.0).all()
    with pytest.raises(ValueError):
        F.resample(np.zeros((0, 3)), 50)


# ---------------------------------------------------------------- exported forest


@pytest.fixture(scope="module")
def trained() -> tuple[Any, np.ndarray]:
    syn = M.synthetic_training_set(SMALL)
    X = F.extract(syn.windows)
    return M.fit(SMALL, X, syn.labels), X


def test_exported_forest_matches_predict_proba(trained: tuple[Any, np.ndarray]) -> None:
    model, X = trained
    held = F.extract(
        synth.generate(
            synth.CONFIG_SOFT, 5, n_subjects=2, falls_per_subject=10, negatives_per_subject=20
        ).windows
    )
    forest = export_forest(model)
    for x in (X, held, held[:1]):
        np.testing.assert_allclose(
            forest.proba(x),
            model.predict_proba(x)[:, 1],
            rtol=0,
            atol=1e-9,  # type: ignore[attr-defined]
        )


# ---------------------------------------------------------------- real data (seglearn)


def test_watch_data_loads_without_running_foreign_pickle_code() -> None:
    recs = data.load_watch()
    assert len(recs) == 140 and sorted({r.subject for r in recs}) == list(range(1, 11))
    hours = sum(r.hours for r in recs)
    assert 1.3 < hours < 1.4
    mags = np.linalg.norm(np.concatenate([r.acc for r in recs]), axis=1)
    assert 0.95 < float(np.median(mags)) < 1.2  # g with gravity, as the protocol's imu.acc


class _Boom:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (print, ("this must never run",))


def test_the_watch_loader_refuses_a_pickle_outside_its_allow_list(tmp_path: Path) -> None:
    path = tmp_path / "evil.npy"
    arr = np.empty((), dtype=object)
    arr[()] = {"X": [_Boom()]}
    np.save(path, arr, allow_pickle=True)
    assert b"print" in path.read_bytes() and pickle.HIGHEST_PROTOCOL >= 2
    with pytest.raises(InvalidInput, match=r"refusing to unpickle builtins\.print"):
        data.load_watch(path)


# ---------------------------------------------------------------- evaluation protocol


def test_events_merge_flagged_windows_of_one_recording_within_the_merge_gap() -> None:
    rw = data.RealWindows(
        windows=np.zeros((6, synth.N, 3)),
        subjects=np.ones(6, dtype=np.int32),
        recording=np.array([0, 0, 0, 0, 1, 1], dtype=np.int32),
        start_s=np.array([0, 2, 40, 42, 0, 2], dtype=np.float64),
        hours=1.0,
    )
    flags = np.array([True, True, True, False, False, True])
    assert E.events(flags, rw, merge_s=30) == 3  # {0, 2}, {40}, and one in recording 1
    assert E.events(flags, rw, merge_s=60) == 2
    assert E.events(np.zeros(6, dtype=bool), rw, merge_s=30) == 0
    assert E.poisson_upper(0) == pytest.approx(2.9957, abs=1e-3)


def test_evaluation_is_subject_wise_and_reports_both_generator_configs() -> None:
    recs = [r for r in data.load_watch() if r.subject <= 4]
    spec = E.EvalSpec(train=SMALL, test_subjects=3, test_falls_per_subject=10, folds=2)
    report = E.evaluate(spec, E.rows(SMALL, recs))
    assert report["synthetic"] is True and report["clinically_validated"] is False
    held_out = [set(f["held_out_subjects"]) for f in report["folds"]]
    assert held_out == [{1, 3}, {2, 4}]  # every real person held out exactly once
    assert sum(f["real_windows"] for f in report["folds"]) == report["data"]["real_windows"]
    for hz in ("50hz", "25hz"):
        s = report["sensitivity"][hz]
        assert s["A_held_out_seed"]["min"] >= 0.8, hz
        # The held-out configuration is harder: the sim-to-sim gap shows.
        assert s["soft_held_out_config"]["mean"] < s["A_held_out_seed"]["mean"], hz
        fa = report["false_alarms_real"][hz]["model"]
        assert fa["per_user_day"] == pytest.approx(
            fa["events"] / report["data"]["real_hours"] * 16, abs=0.01
        )
        assert fa["per_user_day_upper95"] > fa["per_user_day"]


def test_at_rate_is_what_stitching_a_slower_device_gives() -> None:
    from datetime import UTC, datetime

    from eldercare.models.fall.shadow import ImuMessage, stitch

    w = synth.generate(
        synth.CONFIG_A, 2, n_subjects=1, falls_per_subject=2, negatives_per_subject=0
    ).windows
    slow = F.at_rate(w, 25)
    t = datetime(2030, 1, 1, tzinfo=UTC)
    for i in range(2):
        got, coverage = stitch(ImuMessage("d", "m", t, None, 25, w[i][1::2]), [])
        np.testing.assert_allclose(got, slow[i], atol=1e-12)
        assert coverage == synth.WINDOW_S
    assert F.at_rate(w, 50) is w
    with pytest.raises(ValueError):
        F.at_rate(w, 30)


def test_the_catalogue_model_evaluates_its_own_dataset_per_rate(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from eldercare.config import load_settings
    from eldercare.models import catalogue
    from eldercare.models.base import Context
    from eldercare.models.fall.detector import CAVEAT, FallModel

    assert isinstance(catalogue.get("fall"), FallModel)
    ctx = Context(
        settings=load_settings(models_dir=tmp_path), now=datetime(2026, 11, 25, tzinfo=UTC)
    )
    model = FallModel(
        spec=SMALL, eval_spec=E.EvalSpec(train=SMALL, test_subjects=2, test_falls_per_subject=5)
    )
    data = model.dataset(ctx)
    n_syn = SMALL.n_subjects * (SMALL.falls_per_subject + SMALL.negatives_per_subject)
    assert data.synthetic and data.rows == 2 * (n_syn + 2229)  # every window at 50 and 25 Hz
    report = model.evaluate(data, ctx)
    md = report.to_markdown("eldercare models evaluate fall")
    assert CAVEAT in md and report.synthetic
    assert set(report.metrics) >= {
        "sensitivity_synthetic_A_25hz",
        "sensitivity_synthetic_soft_50hz",
        "false_alarms_per_user_day_25hz",
    }
    assert report.metrics["real_windows"] == 2229
    with pytest.raises(ValueError, match="held-out"):
        FallModel().dataset(Context(settings=ctx.settings, now=ctx.now, seed=E.HELD_OUT_SEED - 1))
