"""The model machinery (eldercare.models): skops artefacts with an allow-list and a sha256
manifest, promotion, the shared train/evaluate workflow and the ``eldercare models`` CLI.

Small estimators on generated rows: no database is needed to check the artefact rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from eldercare.cli import main
from eldercare.config import load_settings
from eldercare.errors import ArtefactRefused, ModelError, NotEnoughData, UnknownModel
from eldercare.models import ArtefactStore, Context, Dataset, Model, Report, Table, workflow
from eldercare.models.artefacts import ARTEFACT, MANIFEST

NOW = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
HGB_TYPES = frozenset({"sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"})


def _rows(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    y = (X[:, 0] + 0.3 * rng.normal(size=n) > 0).astype(int)
    return X, y


@pytest.fixture
def store(tmp_path: Path) -> ArtefactStore:
    return ArtefactStore(tmp_path / "models", clock=lambda: NOW)


def _hgb() -> HistGradientBoostingClassifier:
    X, y = _rows()
    return HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(X, y)


def test_save_load_round_trip_gives_identical_scores(store: ArtefactStore) -> None:
    est = _hgb()
    v = store.save("toy", est, trusted_types=HGB_TYPES, info={"rows": 300})
    assert v.version == 1 and not v.active
    store.promote("toy", 1)
    loaded, lv = store.load("toy", trusted_types=HGB_TYPES)
    X, _ = _rows(50, seed=1)
    assert lv.active and lv.sha256 == v.sha256
    np.testing.assert_array_equal(loaded.predict_proba(X), est.predict_proba(X))
    m = orjson.loads((store.root / "toy" / MANIFEST).read_bytes())
    entry = m["versions"]["1"]
    assert entry["trusted_types"] == sorted(HGB_TYPES)
    assert entry["libraries"]["scikit-learn"] and entry["rows"] == 300
    assert [h["action"] for h in m["history"]] == ["saved", "promoted"]


def test_a_changed_byte_is_refused_by_sha256(store: ArtefactStore) -> None:
    store.save("toy", _hgb(), trusted_types=HGB_TYPES, info={})
    path = store.root / "toy" / "1" / ARTEFACT
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtefactRefused, match="sha256"):
        store.load("toy", trusted_types=HGB_TYPES, version=1)
    with pytest.raises(ArtefactRefused, match="sha256"):
        store.promote("toy", 1)  # a damaged version is never made active
    assert store.manifest("toy")["active"] is None


def test_types_outside_the_allow_list_are_refused_when_loading(store: ArtefactStore) -> None:
    store.save("toy", _hgb(), trusted_types=HGB_TYPES, info={})
    with pytest.raises(ArtefactRefused, match="TreePredictor"):
        store.load("toy", trusted_types=frozenset(), version=1)


def test_saving_an_estimator_with_untrusted_types_writes_nothing(store: ArtefactStore) -> None:
    with pytest.raises(ArtefactRefused, match="allow-list"):
        store.save("toy", _hgb(), trusted_types=frozenset(), info={})
    assert store.versions("toy") == []
    assert not (store.root / "toy" / "1").exists()


def test_a_file_that_is_not_skops_is_refused(store: ArtefactStore) -> None:
    import hashlib

    store.save("toy", _hgb(), trusted_types=HGB_TYPES, info={})
    path = store.root / "toy" / "1" / ARTEFACT
    junk = b"\x80\x04not a zip"
    path.write_bytes(junk)
    m = store.manifest("toy")
    m["versions"]["1"]["sha256"] = hashlib.sha256(junk).hexdigest()  # a forged manifest
    (store.root / "toy" / MANIFEST).write_bytes(orjson.dumps(m))
    with pytest.raises(ArtefactRefused, match="not a readable skops"):
        store.load("toy", trusted_types=HGB_TYPES, version=1)


def test_promotion_picks_the_version_load_returns(store: ArtefactStore) -> None:
    with pytest.raises(UnknownModel, match="no active version"):
        store.load("toy", trusted_types=HGB_TYPES)
    store.save("toy", _hgb(), trusted_types=HGB_TYPES, info={})
    store.save("toy", _hgb(), trusted_types=HGB_TYPES, info={})
    with pytest.raises(UnknownModel, match="no version 3"):
        store.promote("toy", 3)
    store.promote("toy", 2)
    assert store.load("toy", trusted_types=HGB_TYPES)[1].version == 2
    store.promote("toy", 1)  # rollback
    assert [v.active for v in store.versions("toy")] == [True, False]
    with pytest.raises(UnknownModel):
        store.versions("../etc")


def test_time_split_trains_on_the_past_and_tests_on_the_future() -> None:
    X, y = _rows(100)
    order = np.arange(100, dtype=float)[::-1].copy()  # rows arrive newest first
    d = Dataset(X=X, y=y, features=("a", "b", "c"), synthetic=True, source="t", order=order)
    train, test = d.time_split(0.25)
    assert train.rows == 75 and test.rows == 25
    assert train.order is not None and test.order is not None
    assert train.order.max() < test.order.min()
    with pytest.raises(ValueError, match="features"):
        Dataset(X=X, y=y, features=("a",), synthetic=True, source="t")
    with pytest.raises(NotEnoughData):
        d.take(y == 1).require(rows=10)


@dataclass
class ToyModel:
    """A model as another helper would write one, to drive the shared workflow."""

    name: str = "toy"
    description: str = "logistic regression on three generated features"
    trusted_types: frozenset[str] = frozenset()

    def dataset(self, ctx: Context) -> Dataset:
        X, y = _rows(200, seed=ctx.seed)
        order = np.arange(200, dtype=float)
        return Dataset(X, y, ("a", "b", "c"), synthetic=True, source="generated", order=order)

    def fit(self, data: Dataset, ctx: Context) -> Any:
        return LogisticRegression().fit(data.X, data.y)

    def evaluate(self, data: Dataset, ctx: Context) -> Report:
        train, test = data.time_split()
        est = self.fit(train, ctx)
        acc = float((est.predict(test.X) == test.y).mean())
        return Report(
            model=self.name,
            title="Toy",
            summary="A toy.",
            metrics={"accuracy": acc, "test rows": test.rows},
            synthetic=True,
            data=data.source,
            tables=(Table("by class", ("class", "rows"), ((0, 1), (1, 2))),),
        )

    def score(self, estimator: Any, X: np.ndarray) -> np.ndarray:
        return estimator.predict_proba(X)[:, 1]


def test_workflow_trains_evaluates_and_loads_any_model(tmp_path: Path) -> None:
    model = ToyModel()
    assert isinstance(model, Model)
    ctx = Context(load_settings(models_dir=tmp_path / "m"), NOW, seed=3)
    v = workflow.train(model, ctx, promote=True)
    assert v.active and v.info["synthetic"] is True and v.info["features"] == ["a", "b", "c"]
    est, _ = workflow.load(model, ctx)
    assert model.score(est, np.zeros((2, 3))).shape == (2,)
    report = workflow.evaluate(model, ctx, tmp_path / "out", "eldercare models evaluate toy")
    md = (tmp_path / "out" / "toy.md").read_text()
    assert "synthetic data" in md and "eldercare models evaluate toy" in md
    assert "| accuracy |" in md and "## by class" in md
    js = orjson.loads((tmp_path / "out" / "toy.json").read_bytes())
    accuracy = report.metrics["accuracy"]
    assert isinstance(accuracy, float) and js["metrics"]["accuracy"] == accuracy > 0.7


def test_cli_refuses_unknown_models_and_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from eldercare.config import get_settings

    monkeypatch.setenv("ELDERCARE_MODELS_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        assert main(["models", "train", "no_such_model"]) == 1
        assert "no model 'no_such_model'" in capsys.readouterr().err
        assert main(["models", "promote", "no_such_model", "7"]) == 1
        assert "no model" in capsys.readouterr().err
        assert main(["models", "list"]) == 0
    finally:
        get_settings.cache_clear()
    assert issubclass(ArtefactRefused, ModelError)
