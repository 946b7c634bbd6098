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
    # Sampling rates the training windows are delivered at (features.at_rate): the
    # generator's and seglearn's 50 Hz, and the simulator's wearables' 25 Hz.
    rates: tuple[int, ...] = (50, 25)

    def __post_init__(self) -> None:
        if not self.rates or any(r <= 0 or 50 % r for r in self.rates):
            raise ValueError("rates must be divisors of 50 Hz")
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
