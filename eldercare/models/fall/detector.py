"""The fall model as the ``eldercare models`` machinery sees it (:class:`FallModel`).

``eldercare models train fall`` fits a random forest on synthetic falls and negatives
(generator A) plus every real window of seglearn's wrist data; ``evaluate fall`` runs the
subject-wise protocol of :mod:`.evaluate`. The model runs in **shadow** only
(:mod:`.shadow`): synthetic falls, not clinically validated. Model card:
docs/models/fall-detection.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np

from eldercare.models.base import Context, Dataset, Report, Table
from eldercare.models.fall import data as real_data
from eldercare.models.fall import evaluate as E
from eldercare.models.fall import features as F
from eldercare.models.fall import model as M
from eldercare.models.fall.data import RealWindows

CAVEAT: Final = "Synthetic falls; not clinically validated; shadow only."


def _spec_for(spec: M.TrainSpec, seed: int) -> M.TrainSpec:
    synth_seed = spec.synth_seed + seed
    if synth_seed == E.HELD_OUT_SEED:
        raise ValueError(f"seed {seed} would train on the held-out generator seed")
    return M.TrainSpec(
        synth_seed=synth_seed,
        n_subjects=spec.n_subjects,
        falls_per_subject=spec.falls_per_subject,
        negatives_per_subject=spec.negatives_per_subject,
        n_estimators=spec.n_estimators,
        max_depth=spec.max_depth,
        random_state=spec.random_state + seed,
        threshold=spec.threshold,
    )


# Not frozen: the Model protocol declares its attributes as plain (settable) ones.
@dataclass(slots=True)
class FallModel:
    name: str = "fall"
    description: str = (
        "Wearable fall detection from 4 s wrist accelerometer windows (random forest on "
        f"21 features). {CAVEAT}"
    )
    trusted_types: frozenset[str] = frozenset({"sklearn.tree._tree.Tree"})
    spec: M.TrainSpec = field(default_factory=M.TrainSpec)
    eval_spec: E.EvalSpec | None = None

    def dataset(self, ctx: Context) -> Dataset:
        spec = _spec_for(self.spec, ctx.seed)
        fr = E.rows(spec, real_data.load_watch())
        n_syn = len(fr.y_syn)
        X, y = fr.training()
        return Dataset(
            X=X,
            y=y,
            features=F.FEATURES,
            synthetic=True,
            source=(
                f"synthetic generator A seed {spec.synth_seed} ({n_syn // len(fr.rates)} "
                f"windows, {int(fr.y_syn.sum()) // len(fr.rates)} falls) + "
                f"{real_data.SEGLEARN_PIN} watch data ({len(fr.real.subjects)} real non-fall "
                f"windows, {fr.real.hours:.2f} h, {len(np.unique(fr.real.subjects))} people), "
                f"each window as delivered at {' and '.join(f'{r} Hz' for r in fr.rates)}"
            ),
            # Synthetic rows as group -1, real rows by person (once per rate, in order).
            groups=np.concatenate(
                [-np.ones(n_syn, dtype=np.int32), np.tile(fr.real.subjects, len(fr.rates))]
            ),
            extra={"spec": spec, "real": fr.real, "rates": fr.rates},
        )

    def fit(self, data: Dataset, ctx: Context) -> Any:
        data.require(rows=50)
        return M.fit(data.extra.get("spec", _spec_for(self.spec, ctx.seed)), data.X, data.y)

    def score(self, estimator: Any, X: np.ndarray) -> np.ndarray:
        out: np.ndarray = estimator.predict_proba(X)[:, 1]
        return out

    def evaluate(self, data: Dataset, ctx: Context) -> Report:
        spec = data.extra.get("spec", _spec_for(self.spec, ctx.seed))
        real: RealWindows = data.extra["real"]
        rates: tuple[int, ...] = data.extra["rates"]
        groups = data.groups if data.groups is not None else np.zeros(data.rows)
        syn = groups < 0
        X_real = data.X[~syn]
        n = len(real.subjects)
        fr = E.FallRows(
            X_syn=data.X[syn],
            y_syn=data.y[syn].astype(np.int8),
            X_real={r: X_real[i * n : (i + 1) * n] for i, r in enumerate(rates)},
            real=real,
            rates=rates,
        )
        es = self.eval_spec or E.EvalSpec()
        es = E.EvalSpec(
            train=spec,
            test_subjects=es.test_subjects,
            test_falls_per_subject=es.test_falls_per_subject,
            test_negatives_per_subject=es.test_negatives_per_subject,
            folds=es.folds,
            merge_s=es.merge_s,
            wear_h_per_day=es.wear_h_per_day,
        )
        return report(E.evaluate(es, fr), data.source)


def report(r: dict[str, Any], source: str) -> Report:
    """The evaluation dict as the machinery's :class:`Report`."""
    rates: list[int] = r["rates"]
    hz = [f"{x}hz" for x in rates]
    sens, fa, d = r["sensitivity"], r["false_alarms_real"], r["data"]
    low = hz[-1]  # the lowest delivery rate: what the platform's wearables send
    detectors = (
        ("random forest (synthetic + real negatives)", "model"),
        ("random forest (synthetic only)", "synthetic_only_model"),
        ("threshold rule (Bourke/Kangas style)", "threshold_rule"),
    )
    metrics: dict[str, Any] = {}
    for h in hz:
        metrics[f"sensitivity_synthetic_A_{h}"] = sens[h]["A_held_out_seed"]["mean"]
        metrics[f"sensitivity_synthetic_soft_{h}"] = sens[h]["soft_held_out_config"]["mean"]
    for h in hz:
        metrics[f"false_alarms_per_user_day_{h}"] = fa[h]["model"]["per_user_day"]
        metrics[f"false_alarms_per_user_day_upper95_{h}"] = fa[h]["model"]["per_user_day_upper95"]
        metrics[f"real_score_max_{h}"] = fa[h]["score_max"]
    metrics |= {
        "real_windows": d["real_windows"],
        "real_hours": d["real_hours"],
        "threshold": r["threshold"],
    }
    neg = r["synthetic_negatives_false_positives"]
    return Report(
        model="fall",
        title="Fall detection (wearable IMU): evaluation",
        summary=(
            f"**{CAVEAT}** Falls come from a physics-based generator; the only real data is "
            f"{d['real_hours']:.2f} h of non-fall wrist motion from {len(d['real_subjects'])} "
            "people (seglearn's watch data), split by person: every person's windows are "
            "scored by a model that never saw that person. Every figure is given per "
            f"delivery rate ({', '.join(f'{x} Hz' for x in rates)}; the simulator's "
            f"wearables send {rates[-1]} Hz). Threshold {r['threshold']} fixed before "
            "evaluation."
        ),
        metrics=metrics,
        synthetic=True,
        data=source,
        tables=(
            Table(
                "Sensitivity on held-out synthetic falls",
                ("detector", "rate", "generator A, held-out seed", "generator 'soft' (held out)"),
                tuple(
                    row
                    for h in hz
                    for row in (
                        (
                            "random forest (mean over folds)",
                            h,
                            sens[h]["A_held_out_seed"]["mean"],
                            sens[h]["soft_held_out_config"]["mean"],
                        ),
                        (
                            "random forest (worst fold)",
                            h,
                            sens[h]["A_held_out_seed"]["min"],
                            sens[h]["soft_held_out_config"]["min"],
                        ),
                        (
                            "random forest (synthetic only)",
                            h,
                            sens[h]["synthetic_only_A"],
                            None,
                        ),
                        (
                            "threshold rule",
                            h,
                            sens[h]["threshold_rule_A"],
                            sens[h]["threshold_rule_soft"],
                        ),
                    )
                ),
            ),
            Table(
                "False alarms on real wrist motion of held-out people",
                (
                    "detector",
                    "rate",
                    "flagged windows",
                    "alarm events",
                    "per hour",
                    "per user-day",
                    "per user-day, 95 % upper bound",
                ),
                tuple(
                    (
                        label,
                        h,
                        fa[h][key]["flagged_windows"],
                        fa[h][key]["events"],
                        fa[h][key]["per_hour"],
                        fa[h][key]["per_user_day"],
                        fa[h][key]["per_user_day_upper95"],
                    )
                    for h in hz
                    for label, key in detectors
                ),
            ),
            Table(
                "Synthetic hard negatives flagged (held-out seed, summed over folds)",
                ("activity", *hz, "of"),
                tuple((a, *(v[h] for h in hz), v["of"]) for a, v in neg.items()),
            ),
            Table(
                "Folds (leave-subjects-out over the real people)",
                (
                    "held-out people",
                    "real windows",
                    f"flagged ({low})",
                    f"sensitivity A ({low})",
                    f"sensitivity soft ({low})",
                ),
                tuple(
                    (
                        ", ".join(str(s) for s in f["held_out_subjects"]),
                        f["real_windows"],
                        f[f"real_flagged_{low}"],
                        f[f"sensitivity_A_{low}"],
                        f[f"sensitivity_soft_{low}"],
                    )
                    for f in r["folds"]
                ),
            ),
        ),
        notes=(
            f"False alarms per user-day: {fa['assumption']}. The recordings are shoulder "
            "exercises: more vigorous than most of a day (pessimistic) but without clapping, "
            "hitting a table or dropping the watch (optimistic).",
            "The 95 % upper bound is the exact Poisson bound on the event count: with "
            f"{d['real_hours']:.2f} h of real data, zero events cannot rule out more than "
            "that bound.",
            "Generator 'soft' (softer impacts, slower and shallower descents) is never used "
            "for training: the drop from A to soft shows how much sensitivity rests on the "
            "generator's assumptions. Real falls of older people may differ more.",
            "A lower rate is the same window with every other sample dropped and linearly "
            "interpolated back, as the platform resamples a wearable's imu; training sees "
            "every window at every rate.",
            "Not done: a generator written blind by someone else (design §3.3 step 5); real "
            "falls (none can be installed here).",
            f"Training data for the saved model: all {d['synthetic_train_windows']} synthetic "
            "windows plus all real windows, at every rate; the figures above come from the "
            "folds.",
        ),
    )
