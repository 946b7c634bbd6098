"""The fall model's evaluation protocol (design §3.3), subject-wise throughout.

1. **Real negatives, leave-subjects-out**: seglearn's 10 people are split into ``folds``
   groups; each fold trains on synthetic data plus the *other* people's real windows and
   is scored on the held-out people's windows. Every real person is held out once, so the
   false alarms add up over all ~1.36 h of real wrist motion.
2. **Sensitivity on held-out synthetic subjects** from generator A with a seed no model
   trains on, and on the held-out generator configuration ``soft`` that no model sees:
   the drop between the two is a *lower bound* on the sim-to-real gap.
3. **Synthetic hard negatives** (dropping the watch, clapping, sitting down hard...):
   false positives per activity.
4. **The same without real negatives** (synthetic-only training) and the **threshold
   rule**, so the report shows what real negatives and learning each buy.

False alarms are counted as *events*: flagged windows of one recording closer than
``merge_s`` merge into one alarm (an operator would see one). Converting to a user-day
assumes ``wear_h_per_day`` hours of wear that look, alarm-wise, like these recordings
(vigorous shoulder exercises: pessimistic for a quiet day, optimistic for activities the
data lacks, such as clapping, hitting a table or dropping the watch).
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from eldercare.models.fall import features as F
from eldercare.models.fall import model as M
from eldercare.models.fall import synth
from eldercare.models.fall.data import RealWindows, Recording, real_windows
from eldercare.models.fall.trees import export_forest

HELD_OUT_SEED: Final = 9001  # frozen before development; never used for training


@dataclass(frozen=True, slots=True)
class EvalSpec:
    train: M.TrainSpec = field(default_factory=M.TrainSpec)
    test_subjects: int = 20
    test_falls_per_subject: int = 20
    test_negatives_per_subject: int = 80
    folds: int = 5
    merge_s: float = 30.0
    wear_h_per_day: float = 16.0

    def __post_init__(self) -> None:
        if self.folds < 2 or self.test_subjects < 1 or self.test_falls_per_subject < 1:
            raise ValueError("need >= 2 folds and some held-out synthetic falls")
        if not 0 < self.wear_h_per_day <= 24 or self.merge_s < 0:
            raise ValueError("wear_h_per_day in (0, 24], merge_s >= 0")


def events(flags: npt.NDArray[np.bool_], rw: RealWindows, merge_s: float) -> int:
    """Alarm events: flagged windows of one recording within ``merge_s`` are one event."""
    n = 0
    for rec in np.unique(rw.recording[flags]):
        starts = np.sort(rw.start_s[flags & (rw.recording == rec)])
        n += 1 + int((np.diff(starts) > merge_s).sum())
    return n


def poisson_upper(k: int, conf: float = 0.95) -> float:
    """One-sided upper confidence bound of a Poisson count (exact, via chi-squared)."""
    from scipy.stats import chi2

    return float(chi2.ppf(conf, 2 * (k + 1)) / 2)


def _fold_subjects(subjects: list[int], folds: int) -> list[list[int]]:
    return [subjects[i::folds] for i in range(folds)]


@dataclass(frozen=True, slots=True)
class FallRows:
    """The training rows of the fall model, split back into their two sources."""

    X_syn: npt.NDArray[np.float64]
    y_syn: npt.NDArray[np.int8]
    X_real: npt.NDArray[np.float64]
    real: RealWindows  # windows omitted (features are in X_real): subjects, recording, start


def rows(spec: M.TrainSpec, recordings: list[Recording]) -> FallRows:
    syn = M.synthetic_training_set(spec)
    real = real_windows(recordings)
    X_real = F.extract(real.windows)
    meta = RealWindows(
        windows=np.zeros((0, synth.N, 3)),
        subjects=real.subjects,
        recording=real.recording,
        start_s=real.start_s,
        hours=real.hours,
    )
    return FallRows(F.extract(syn.windows), syn.labels, X_real, meta)


def evaluate(spec: EvalSpec, fr: FallRows) -> dict[str, Any]:
    """Run the protocol; returns the report (plain JSON-able values)."""
    import sklearn

    tr = spec.train
    X_syn, y_syn, X_real, real = fr.X_syn, fr.y_syn, fr.X_real, fr.real
    held = {
        name: synth.generate(
            cfg,
            HELD_OUT_SEED,
            n_subjects=spec.test_subjects,
            falls_per_subject=spec.test_falls_per_subject,
            negatives_per_subject=spec.test_negatives_per_subject if name == "A" else 0,
            first_subject=100_000,
        )
        for name, cfg in synth.CONFIGS.items()
    }
    X_held = {k: F.extract(v.windows) for k, v in held.items()}
    people = sorted({int(s) for s in real.subjects})
    if len(people) < spec.folds:
        raise ValueError(f"{len(people)} real subjects cannot make {spec.folds} folds")

    def sens(p: npt.NDArray[np.float64], name: str) -> float:
        falls = held[name].labels == 1
        return float((p[falls] >= tr.threshold).mean())

    folds: list[dict[str, Any]] = []
    real_scores = np.zeros(len(X_real))
    neg_fp: dict[str, int] = {}
    acts = np.array(held["A"].activities)
    for out in _fold_subjects(people, spec.folds):
        test = np.isin(real.subjects, out)
        X = np.vstack([X_syn, X_real[~test]])
        y = np.concatenate([y_syn, np.zeros(int((~test).sum()), dtype=np.int8)])
        forest = export_forest(M.fit(tr, X, y))
        real_scores[test] = forest.proba(X_real[test])
        p_a = forest.proba(X_held["A"])
        for a in sorted(set(acts) - {synth.FALL}):
            neg_fp[a] = neg_fp.get(a, 0) + int((p_a[acts == a] >= tr.threshold).sum())
        folds.append(
            {
                "held_out_subjects": out,
                "real_windows": int(test.sum()),
                "real_flagged": int((real_scores[test] >= tr.threshold).sum()),
                "sensitivity_A": sens(p_a, "A"),
                "sensitivity_soft": sens(forest.proba(X_held["soft"]), "soft"),
            }
        )

    real_flags = real_scores >= tr.threshold
    # Synthetic-only (no real negatives), scored on all real windows: what they buy.
    syn_only = export_forest(M.fit(tr, X_syn, y_syn))
    syn_only_flags = syn_only.proba(X_real) >= tr.threshold
    rule_real = M.threshold_rule(X_real)

    def fa(flags: npt.NDArray[np.bool_]) -> dict[str, float | int]:
        ev = events(flags, real, spec.merge_s)
        per_h = ev / real.hours
        return {
            "flagged_windows": int(flags.sum()),
            "events": ev,
            "per_hour": round(per_h, 3),
            "per_user_day": round(per_h * spec.wear_h_per_day, 2),
            "per_user_day_upper95": round(poisson_upper(ev) / real.hours * spec.wear_h_per_day, 2),
        }

    n_neg = {a: int((acts == a).sum()) for a in neg_fp}
    return {
        "model": M.MODEL_NAME,
        "synthetic": True,
        "clinically_validated": False,
        "mode": "shadow",
        "threshold": tr.threshold,
        "spec": asdict(spec),
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "sklearn": sklearn.__version__,
        },
        "data": {
            "synthetic_train_windows": len(y_syn),
            "synthetic_train_falls": int(y_syn.sum()),
            "real_recordings": len(np.unique(real.recording)),
            "real_subjects": people,
            "real_windows": len(X_real),
            "real_hours": round(real.hours, 3),
            "held_out_seed": HELD_OUT_SEED,
            "held_out_falls": {k: int(v.labels.sum()) for k, v in held.items()},
        },
        "sensitivity": {
            "A_held_out_seed": {
                "mean": round(float(np.mean([f["sensitivity_A"] for f in folds])), 4),
                "min": round(min(f["sensitivity_A"] for f in folds), 4),
            },
            "soft_held_out_config": {
                "mean": round(float(np.mean([f["sensitivity_soft"] for f in folds])), 4),
                "min": round(min(f["sensitivity_soft"] for f in folds), 4),
            },
            "threshold_rule_A": round(
                float(M.threshold_rule(X_held["A"])[held["A"].labels == 1].mean()), 4
            ),
            "threshold_rule_soft": round(float(M.threshold_rule(X_held["soft"]).mean()), 4),
            "synthetic_only_A": sens(syn_only.proba(X_held["A"]), "A"),
        },
        "synthetic_negatives_false_positives": {
            a: {"flagged": neg_fp[a], "of": n_neg[a] * spec.folds} for a in sorted(neg_fp)
        },
        "false_alarms_real": {
            "model": fa(real_flags),
            "synthetic_only_model": fa(syn_only_flags),
            "threshold_rule": fa(rule_real),
            # How close real motion comes to the threshold (held-out scores).
            "score_max": round(float(real_scores.max()), 4),
            "score_p99": round(float(np.quantile(real_scores, 0.99)), 4),
            "assumption": (
                f"events = flagged windows of one recording merged within {spec.merge_s:g} s; "
                f"per user-day = events per hour of the held-out people's real wrist motion "
                f"x {spec.wear_h_per_day:g} h of wear a day"
            ),
        },
        "folds": folds,
    }
