"""Training the fall model, and the threshold baseline it is compared with.

Offline only: this module imports scikit-learn (lazily; ``import sklearn.ensemble`` costs
most of a second). The serving side needs nothing but :class:`trees.Forest`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from eldercare.models.fall import features as F
from eldercare.models.fall import synth
from eldercare.models.fall.data import Recording, real_windows
from eldercare.models.fall.trees import Forest, export_forest

FloatArray = npt.NDArray[np.float64]

MODEL_NAME: Final = "fall"
# Pre-registered before any evaluation was looked at: P(fall) >= 0.5 is a "suspected fall".
THRESHOLD: Final = 0.5


@dataclass(frozen=True, slots=True)
class TrainSpec:
    """Everything that decides a trained fall model (recorded in its manifest)."""

    synth_seed: int = 1
    n_subjects: int = 30
    falls_per_subject: int = 40
    negatives_per_subject: int = 160
    n_estimators: int = 50
    max_depth: int = 12
    random_state: int = 0
    threshold: float = THRESHOLD

    def __post_init__(self) -> None:
        if self.n_subjects < 1 or self.falls_per_subject < 1 or self.negatives_per_subject < 1:
            raise ValueError("need subjects, falls and negatives to train on")
        if not 1 <= self.n_estimators <= 500 or not 1 <= self.max_depth <= 20:
            raise ValueError("n_estimators 1-500 and max_depth 1-20")
        if not 0 < self.threshold < 1:
            raise ValueError("threshold must be in (0, 1)")


def synthetic_training_set(spec: TrainSpec) -> synth.SynthSet:
    return synth.generate(
        synth.CONFIG_A,
        spec.synth_seed,
        n_subjects=spec.n_subjects,
        falls_per_subject=spec.falls_per_subject,
        negatives_per_subject=spec.negatives_per_subject,
    )


def fit(spec: TrainSpec, X: FloatArray, y: npt.NDArray[np.int8]) -> Any:
    """A ``RandomForestClassifier`` (design §2.4: 30-100 trees, depth <= 12, balanced)."""
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(
        n_estimators=spec.n_estimators,
        max_depth=spec.max_depth,
        min_samples_leaf=2,
        class_weight="balanced_subsample",
        n_jobs=1,  # reproducible, and the 2-core box is shared
        random_state=spec.random_state,
    )
    model.fit(X, y)
    return model


@dataclass(frozen=True, slots=True)
class Trained:
    model: Any  # the sklearn forest (for skops and the parity check)
    forest: Forest
    n_synthetic: int
    n_synthetic_falls: int
    n_real_negatives: int
    real_subjects: tuple[int, ...]


def train(spec: TrainSpec, recordings: list[Recording]) -> Trained:
    """Synthetic falls and negatives (generator A) plus every real window of
    ``recordings`` as negatives (design §3.3: real negatives matter most)."""
    syn = synthetic_training_set(spec)
    real = real_windows(recordings)
    X = np.vstack([F.extract(syn.windows), F.extract(real.windows)])
    y = np.concatenate([syn.labels, np.zeros(len(real.windows), dtype=np.int8)])
    model = fit(spec, X, y)
    return Trained(
        model=model,
        forest=export_forest(model),
        n_synthetic=len(syn.labels),
        n_synthetic_falls=int(syn.labels.sum()),
        n_real_negatives=len(real.windows),
        real_subjects=tuple(sorted({r.subject for r in recordings})),
    )


def threshold_rule(X: FloatArray) -> npt.NDArray[np.bool_]:
    """The classic wrist/waist threshold detector (Bourke 2007, Kangas 2008 style): an
    impact over 2.5 g after a descent under 0.7 g, a changed orientation and a quiet rest
    afterwards. The baseline every learned model must beat."""
    col = {name: i for i, name in enumerate(F.FEATURES)}
    return (
        (X[:, col["mag_max"]] > 2.5)
        & (X[:, col["pre_impact_min"]] < 0.7)
        & (X[:, col["orientation_cos"]] < 0.7)
        & (X[:, col["post_std"]] < 0.15)
    )
