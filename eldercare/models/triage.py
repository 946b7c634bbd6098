"""Alarm triage: the probability that an alarm is a false alarm, from operators' closing
dispositions and the alarm's history (design: shared/design/models.md §2.1).

Safety: the score never changes a priority, never closes an alarm and never holds back an
escalation. It is written to ``alarm_triage`` and the queue orders alarms by it only
*within* a priority band (``alerts.lifecycle``), unscored alarms first. Each score carries
its reasons (the largest contributions of a logistic model, or the rates a cold-start
score comes from), shown to the operator.

Features are computed *as of* the alarm's arrival: history counts only alarms closed
before it arrived; a cancel or a repeat counts if it arrived within :data:`HORIZON`
(training) or by now (scoring an open alarm; cancels come 3-15 s after a press).

The shipped estimator is a standardised logistic regression: its evaluation on a time
split is as good as gradient boosting on this data (see docs/models/triage.md), it is
calibrated, each contribution is an explanation, and scoring is a dot product
(:class:`LinearScorer`, microseconds per alarm).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

import numpy as np
import psycopg

from eldercare.alerts import events, rules
from eldercare.alerts.rules import Disposition
from eldercare.errors import NotEnoughData
from eldercare.models.base import Context, Dataset, Report, Table
from eldercare.storage import db

NAME: Final = "triage"
HORIZON: Final = timedelta(seconds=30)
HISTORY: Final = timedelta(days=90)
FALSE: Final = (Disposition.ACCIDENTAL_PRESS, Disposition.FALSE_SENSOR_ALARM)
NEEDED: Final = (
    Disposition.GENUINE_EMERGENCY,
    Disposition.FALL_WITHOUT_INJURY,
    Disposition.SERVICE_REQUEST,
)
GENUINE: Final = (Disposition.GENUINE_EMERGENCY, Disposition.FALL_WITHOUT_INJURY)
# test, no_response_needed and other say nothing about false vs needed: left out.
LABELLED: Final = (*FALSE, *NEEDED)
KINDS: Final = tuple(str(k) for k in rules.ALARM_KINDS)
# A device's (or resident's) false rate is shrunk towards a prior rate as if PRIOR_N alarms
# at that rate had been seen: 0.5 in the features (the same at training and scoring), the
# overall rate for the cold-start score.
PRIOR_N: Final = 2.0
FEATURE_PRIOR: Final = 0.5
CAP_H: Final = HISTORY.total_seconds() / 3600

FEATURES: Final = (
    *(f"kind_{k}" for k in KINDS),
    "press_long",
    "press_double",
    "fall_confidence",
    "cancelled",
    "cancelled_within_10s",
    "repeats",
    "clock_skew",
    "hour_sin",
    "hour_cos",
    "night",
    "device_false_rate",
    "device_history",
    "resident_false_rate",
    "resident_history",
    "device_alarms_24h",
    "device_alarms_7d",
    "hours_since_device_alarm",
    "hours_since_resident_genuine",
    "home_bed",
)

# One query for many alarms. History is bounded to 90 days and read through the
# alarms_device / alarms_resident indexes. Device-supplied fields (details) are parsed in
# Python, never cast in SQL (audit C2).
FEATURE_SQL: Final = """
SELECT a.id, a.kind, a.priority, a.status, a.received_at, a.event_time, a.clock_skew,
       a.details, a.disposition, a.closed_at, a.home_bed_id IS NOT NULL AS home_bed,
       a.cancel_requested_at, a.occurrences,
       (SELECT count(*) FROM alarm_events e WHERE e.alarm_id = a.id
          AND e.action IN ('joined', 'correlated')
          AND (%(now)s::timestamptz IS NOT NULL OR e.at <= a.received_at + %(horizon)s)
       )::int AS repeats,
       dh.n AS dev_n, dh.f AS dev_f, dh.n24 AS dev_24h, dh.n7 AS dev_7d, dh.last_at AS dev_last,
       rh.n AS res_n, rh.f AS res_f, rh.last_genuine AS res_last_genuine,
       COALESCE(fac.code LIKE 'SIM%%', false) AS simulated
FROM alarms a
LEFT JOIN facilities fac ON fac.id = a.facility_id
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE h.closed_at < a.received_at
                              AND h.disposition = ANY(%(labelled)s))::int AS n,
           count(*) FILTER (WHERE h.closed_at < a.received_at
                              AND h.disposition = ANY(%(false)s))::int AS f,
           count(*) FILTER (WHERE h.received_at >= a.received_at - interval '24 hours')::int
               AS n24,
           count(*) FILTER (WHERE h.received_at >= a.received_at - interval '7 days')::int AS n7,
           max(h.received_at) AS last_at
    FROM alarms h
    WHERE h.device_id = a.device_id AND h.received_at < a.received_at
      AND h.received_at >= a.received_at - %(history)s AND h.kind = ANY(%(kinds)s)
) dh ON true
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE h.closed_at < a.received_at
                              AND h.disposition = ANY(%(labelled)s))::int AS n,
           count(*) FILTER (WHERE h.closed_at < a.received_at
                              AND h.disposition = ANY(%(false)s))::int AS f,
           max(h.received_at) FILTER (WHERE h.closed_at < a.received_at
                              AND h.disposition = ANY(%(genuine)s)) AS last_genuine
    FROM alarms h
    WHERE a.resident_id IS NOT NULL AND h.resident_id = a.resident_id
      AND h.received_at < a.received_at
      AND h.received_at >= a.received_at - %(history)s AND h.kind = ANY(%(kinds)s)
) rh ON true
"""


def sql_params(now: datetime | None) -> dict[str, Any]:
    return {
        "now": now,
        "horizon": HORIZON,
        "history": HISTORY,
        "kinds": list(KINDS),
        "labelled": [str(d) for d in LABELLED],
        "false": [str(d) for d in FALSE],
        "genuine": [str(d) for d in GENUINE],
    }


def labelled_rows(
    conn: psycopg.Connection, since: datetime | None = None, until: datetime | None = None
) -> list[dict[str, Any]]:
    """Closed alarms with a disposition that says false or needed, oldest first."""
    return db.rows(
        conn,
        FEATURE_SQL + " WHERE a.status = 'closed' AND a.disposition = ANY(%(labelled)s)"
        " AND a.kind = ANY(%(kinds)s)"
        " AND (%(since)s::timestamptz IS NULL OR a.received_at >= %(since)s)"
        " AND (%(until)s::timestamptz IS NULL OR a.received_at < %(until)s)"
        " ORDER BY a.received_at, a.id",
        {**sql_params(None), "since": since, "until": until},
    )


def open_rows(conn: psycopg.Connection, now: datetime, limit: int = 500) -> list[dict[str, Any]]:
    """Open alarms that have no score yet, or whose cancel or repeats changed since."""
    return db.rows(
        conn,
        FEATURE_SQL + " LEFT JOIN alarm_triage t ON t.alarm_id = a.id"
        " WHERE a.status = ANY(%(active)s) AND a.kind = ANY(%(kinds)s)"
        " AND (t.alarm_id IS NULL OR t.seen_cancel <> (a.cancel_requested_at IS NOT NULL)"
        "      OR t.seen_occurrences <> a.occurrences)"
        " ORDER BY a.priority, a.received_at LIMIT %(limit)s",
        {**sql_params(now), "active": [str(s) for s in rules.ACTIVE], "limit": limit},
    )


# ---------------------------------------------------------------- features (pure)


def _device_field(details: Any, key: str) -> Any:
    dev = details.get("device") if isinstance(details, Mapping) else None
    return dev.get(key) if isinstance(dev, Mapping) else None


def _hours(later: datetime, earlier: datetime | None) -> float:
    if earlier is None:
        return CAP_H
    return min(CAP_H, max(0.0, (later - earlier).total_seconds() / 3600))


def _cancel_after(row: Mapping[str, Any], now: datetime | None) -> float | None:
    c = row["cancel_requested_at"]
    if c is None:
        return None
    after = max(0.0, (c - row["event_time"]).total_seconds())
    if now is None and after > HORIZON.total_seconds():
        return None  # training: a cancel the scorer would not have seen yet
    return after


def _rate(f: int, n: int, prior: float) -> float:
    return (f + PRIOR_N * prior) / (n + PRIOR_N)


def features(row: Mapping[str, Any], tz: ZoneInfo, now: datetime | None = None) -> np.ndarray:
    """The feature vector of one alarm row (from :data:`FEATURE_SQL`), in FEATURES order."""
    press = _device_field(row["details"], "press")
    conf = _device_field(row["details"], "confidence")
    conf = float(conf) if isinstance(conf, int | float) and 0 <= conf <= 1 else 0.0
    cancel = _cancel_after(row, now)
    local = row["received_at"].astimezone(tz)
    hour = local.hour + local.minute / 60
    angle = 2 * math.pi * hour / 24
    t = row["received_at"]
    values = [
        *(1.0 if row["kind"] == k else 0.0 for k in KINDS),
        1.0 if press == "long" else 0.0,
        1.0 if press == "double" else 0.0,
        conf if row["kind"] == "fall" else 0.0,
        1.0 if cancel is not None else 0.0,
        1.0 if cancel is not None and cancel <= 10 else 0.0,
        math.log1p(row["repeats"] or 0),
        1.0 if row["clock_skew"] else 0.0,
        math.sin(angle),
        math.cos(angle),
        1.0 if hour >= 22 or hour < 6 else 0.0,
        _rate(row["dev_f"] or 0, row["dev_n"] or 0, FEATURE_PRIOR),
        math.log1p(row["dev_n"] or 0),
        _rate(row["res_f"] or 0, row["res_n"] or 0, FEATURE_PRIOR),
        math.log1p(row["res_n"] or 0),
        math.log1p(row["dev_24h"] or 0),
        math.log1p(row["dev_7d"] or 0),
        math.log1p(_hours(t, row["dev_last"])),
        math.log1p(_hours(t, row["res_last_genuine"])),
        1.0 if row["home_bed"] else 0.0,
    ]
    return np.asarray(values, dtype=np.float64)


def matrix(
    rows: Sequence[Mapping[str, Any]], tz: ZoneInfo, now: datetime | None = None
) -> np.ndarray:
    if not rows:
        return np.empty((0, len(FEATURES)))
    return np.vstack([features(r, tz, now) for r in rows])


def label(disposition: str) -> int:
    return 1 if disposition in FALSE else 0


# ---------------------------------------------------------------- reasons


def _reason(feature: str, row: Mapping[str, Any], tz: ZoneInfo, now: datetime | None) -> str:
    """What an operator reads for one contribution (facts about the alarm, never a name)."""
    if feature.startswith("kind_"):
        return f"kind: {row['kind']}"
    if feature in ("cancelled", "cancelled_within_10s"):
        after = _cancel_after(row, now)
        return f"resident cancelled after {after:.0f} s" if after is not None else "not cancelled"
    if feature in ("device_false_rate", "device_history"):
        return f"this device: {row['dev_f'] or 0} of {row['dev_n'] or 0} earlier alarms false"
    if feature in ("resident_false_rate", "resident_history"):
        return f"this resident: {row['res_f'] or 0} of {row['res_n'] or 0} earlier alarms false"
    if feature == "device_alarms_24h":
        return f"{row['dev_24h'] or 0} earlier alarms from this device in 24 h"
    if feature == "device_alarms_7d":
        return f"{row['dev_7d'] or 0} earlier alarms from this device in 7 days"
    if feature in ("hour_sin", "hour_cos", "night"):
        return f"time of day {row['received_at'].astimezone(tz):%H:%M}"
    if feature == "fall_confidence":
        return f"fall sensor confidence {_device_field(row['details'], 'confidence')}"
    if feature in ("press_long", "press_double"):
        return f"{_device_field(row['details'], 'press') or 'single'} press"
    if feature == "repeats":
        return f"repeated {row['repeats'] or 0} times"
    if feature == "hours_since_device_alarm":
        h = _hours(row["received_at"], row["dev_last"])
        return "no earlier alarm from this device" if h >= CAP_H else f"last alarm {h:.0f} h ago"
    if feature == "hours_since_resident_genuine":
        h = _hours(row["received_at"], row["res_last_genuine"])
        return (
            "no genuine emergency in 90 days" if h >= CAP_H else f"genuine emergency {h:.0f} h ago"
        )
    if feature == "home_bed":
        return "home care bed" if row["home_bed"] else "in a facility"
    return "device clock off" if row["clock_skew"] else "device clock fine"


def _group(feature: str) -> str:
    """Contributions that tell one story are summed (the 24 h cycle is two features)."""
    if feature.startswith("kind_"):
        return "kind"
    for prefix in ("cancelled", "device_false", "device_hist", "resident_", "hour_", "press_"):
        if feature.startswith(prefix):
            return {
                "device_false": "device_history",
                "device_hist": "device_history",
                "hour_": "time",
                "press_": "press",
            }.get(prefix, prefix.rstrip("_"))
    return "time" if feature == "night" else feature


# ---------------------------------------------------------------- the fast scorer


@dataclass(frozen=True, slots=True)
class LinearScorer:
    """The fitted scaler + logistic regression as plain arrays: p = σ(w·(x-μ)/s + b).
    Identical to the pipeline's ``predict_proba`` (tested), without its per-call checks."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float

    @classmethod
    def of(cls, estimator: Any) -> LinearScorer:
        scaler, lr = estimator.named_steps["scale"], estimator.named_steps["lr"]
        return cls(
            mean=np.asarray(scaler.mean_, dtype=np.float64),
            scale=np.asarray(scaler.scale_, dtype=np.float64),
            coef=np.asarray(lr.coef_[0], dtype=np.float64),
            intercept=float(lr.intercept_[0]),
        )

    def contributions(self, X: np.ndarray) -> np.ndarray:
        return ((X - self.mean) / self.scale) * self.coef

    def score(self, X: np.ndarray) -> np.ndarray:
        z = self.contributions(X).sum(axis=-1) + self.intercept
        return 1.0 / (1.0 + np.exp(-z))


def explain(
    scorer: LinearScorer,
    x: np.ndarray,
    row: Mapping[str, Any],
    tz: ZoneInfo,
    now: datetime | None = None,
    top: int = 3,
) -> list[dict[str, Any]]:
    """The ``top`` largest contributions (log-odds towards "false" when positive), grouped."""
    contrib = scorer.contributions(x)
    groups: dict[str, tuple[float, str]] = {}
    for name, c in zip(FEATURES, contrib, strict=True):
        g = _group(name)
        total, lead = groups.get(g, (0.0, name))
        if abs(c) > abs(contrib[FEATURES.index(lead)]):
            lead = name
        groups[g] = (total + float(c), lead)
    ranked = sorted(groups.items(), key=lambda kv: -abs(kv[1][0]))[:top]
    return [
        {"feature": g, "weight": round(w, 3), "text": _reason(lead, row, tz, now)}
        for g, (w, lead) in ranked
    ]


def rate_score(row: Mapping[str, Any], prior: float) -> tuple[float, list[dict[str, Any]]]:
    """Cold start (no promoted model): the device's smoothed false rate, else the
    resident's, else the overall rate, with the rate as the reason."""
    if row["dev_n"]:
        p = _rate(row["dev_f"], row["dev_n"], prior)
        text = f"this device: {row['dev_f']} of {row['dev_n']} earlier alarms false"
    elif row["res_n"]:
        p = _rate(row["res_f"], row["res_n"], prior)
        text = f"this resident: {row['res_f']} of {row['res_n']} earlier alarms false"
    else:
        p, text = prior, "no history: the overall false-alarm rate"
    return p, [{"feature": "rate", "weight": round(p, 3), "text": text}]


def overall_rate(conn: psycopg.Connection, before: datetime | None = None) -> float:
    """Share of labelled closed alarms that were false, over the last 90 days."""
    r = db.one(
        conn,
        "SELECT count(*) FILTER (WHERE disposition = ANY(%(false)s))::int AS f, count(*)::int AS n"
        " FROM alarms WHERE status = 'closed' AND disposition = ANY(%(labelled)s)"
        " AND kind = ANY(%(kinds)s) AND received_at >= %(from)s AND received_at < %(to)s",
        {
            **sql_params(None),
            "from": (before or datetime.now().astimezone()) - HISTORY,
            "to": before or datetime.now().astimezone(),
        },
    )
    return (r["f"] + 1) / (r["n"] + 2)


# ---------------------------------------------------------------- the model


def _pipeline(seed: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    return Pipeline([("scale", StandardScaler()), ("lr", LogisticRegression(C=0.5, max_iter=2000))])


def _hgb(seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        max_iter=150,
        learning_rate=0.05,
        max_leaf_nodes=15,
        l2_regularization=1.0,
        random_state=seed,
    )


def _metrics(y: np.ndarray, p: np.ndarray, genuine: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

    top = p >= np.quantile(p, 0.9)
    flagged = p >= 0.5
    return {
        "pr_auc": float(average_precision_score(y, p)),
        "roc_auc": float(roc_auc_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "precision@0.5": float(y[flagged].mean()) if flagged.any() else float("nan"),
        "recall@0.5": float(flagged[y == 1].mean()),
        "genuine_in_top_decile": int((top & genuine).sum()),
    }


class TriageModel:
    name = NAME
    description = "P(false alarm) for an alarm, from dispositions and history (logistic)"
    trusted_types: frozenset[str] = frozenset()  # a Pipeline of sklearn types skops trusts

    def dataset(self, ctx: Context) -> Dataset:
        with db.connect(ctx.settings.database_url) as conn:
            rows = labelled_rows(conn, until=ctx.now)
        if not rows:
            raise NotEnoughData("no closed alarms with a false/needed disposition")
        y = np.asarray([label(r["disposition"]) for r in rows])
        X = matrix(rows, ctx.settings.tz)
        synthetic = any(r["simulated"] for r in rows)
        order = np.asarray([r["received_at"].timestamp() for r in rows])
        return Dataset(
            X=X,
            y=y,
            features=FEATURES,
            synthetic=synthetic,
            source=f"{len(rows)} closed alarms, {rows[0]['received_at']:%Y-%m-%d} to "
            f"{rows[-1]['received_at']:%Y-%m-%d}",
            order=order,
            extra={"rows": rows},
        )

    def fit(self, data: Dataset, ctx: Context) -> Any:
        data.require(rows=50)
        return _pipeline(ctx.seed).fit(data.X, data.y)

    def score(self, estimator: Any, X: np.ndarray) -> np.ndarray:
        return LinearScorer.of(estimator).score(X)

    def evaluate(self, data: Dataset, ctx: Context) -> Report:
        data.require(rows=100)
        train, test = data.time_split(0.3)
        rows = list(data.extra["rows"])
        test_rows = [r for r in rows if r["received_at"].timestamp() >= float(test.order.min())]  # type: ignore[union-attr]
        genuine = np.asarray([r["disposition"] in GENUINE for r in test_rows])
        prior = float(train.y.mean())
        results: dict[str, dict[str, float]] = {}
        rate = np.asarray([rate_score(r, prior)[0] for r in test_rows])
        results["rates (cold start)"] = _metrics(test.y, rate, genuine)
        lr = self.fit(train, ctx)
        p_lr = self.score(lr, test.X)
        results["logistic (shipped)"] = _metrics(test.y, p_lr, genuine)
        hgb = _hgb(ctx.seed).fit(train.X, train.y)
        results["gradient boosting"] = _metrics(test.y, hgb.predict_proba(test.X)[:, 1], genuine)
        cols = (
            "model",
            "PR-AUC",
            "ROC-AUC",
            "Brier",
            "precision@0.5",
            "recall@0.5",
            "genuine in top decile",
        )
        comparison = Table(
            "Time split: train on the earlier 70 %, test on the later 30 %",
            cols,
            tuple(
                (
                    k,
                    v["pr_auc"],
                    v["roc_auc"],
                    v["brier"],
                    v["precision@0.5"],
                    v["recall@0.5"],
                    v["genuine_in_top_decile"],
                )
                for k, v in results.items()
            ),
        )
        # Reliability: deciles of the shipped model's score vs the observed false share.
        edges = np.quantile(p_lr, np.linspace(0, 1, 6))
        bins = np.clip(np.searchsorted(edges, p_lr, side="right") - 1, 0, 4)
        calib = Table(
            "Calibration of the shipped model (score quintiles, test rows)",
            ("quintile", "alarms", "mean score", "observed false share"),
            tuple(
                (
                    i + 1,
                    int((bins == i).sum()),
                    float(p_lr[bins == i].mean()),
                    float(test.y[bins == i].mean()),
                )
                for i in range(5)
                if (bins == i).any()
            ),
        )
        coefs = LinearScorer.of(lr)
        weights = Table(
            "Largest standardised weights (log-odds towards false)",
            ("feature", "weight"),
            tuple(
                (f, float(w))
                for f, w in sorted(
                    zip(FEATURES, coefs.coef, strict=True), key=lambda fw: -abs(fw[1])
                )[:8]
            ),
        )
        by_kind = Table(
            "Test rows by kind (shipped model)",
            ("kind", "alarms", "false share", "mean score"),
            tuple(
                (k, int(m.sum()), float(test.y[m].mean()), float(p_lr[m].mean()))
                for k in KINDS
                if (m := np.asarray([r["kind"] == k for r in test_rows])).any()
            ),
        )
        shipped = results["logistic (shipped)"]
        return Report(
            model=self.name,
            title="Alarm triage: P(false alarm) — evaluation",
            summary=(
                "Orders alarms within a priority band (never across bands, never changing a "
                "priority). Label: accidental_press / false_sensor_alarm = false; "
                "genuine_emergency / fall_without_injury / service_request = needed; other "
                "dispositions left out. Features as of arrival (history closed before it)."
            ),
            metrics={
                "train rows": train.rows,
                "test rows": test.rows,
                "false share (test)": float(test.y.mean()),
                "PR-AUC": shipped["pr_auc"],
                "ROC-AUC": shipped["roc_auc"],
                "Brier": shipped["brier"],
                "genuine emergencies in top-decile score": shipped["genuine_in_top_decile"],
                "cold-start PR-AUC": results["rates (cold start)"]["pr_auc"],
                "gradient boosting PR-AUC": results["gradient boosting"]["pr_auc"],
            },
            synthetic=data.synthetic,
            data=data.source,
            tables=(comparison, calib, weights, by_kind),
            notes=(
                "Synthetic: alarms from eldercare.simulators.alarm_history, closed by its "
                "simulated operators; real base rates must be learned on site.",
                "Release gate (design §4.4): no genuine emergency in the top score decile.",
            ),
        )


# ---------------------------------------------------------------- online scoring


@dataclass(frozen=True, slots=True)
class Scored:
    alarm_id: Any
    p_false: float
    reasons: list[dict[str, Any]]


def score_rows(
    rows: Sequence[Mapping[str, Any]],
    tz: ZoneInfo,
    now: datetime,
    scorer: LinearScorer | None,
    prior: float,
) -> list[Scored]:
    """Pure: the scores and reasons of open-alarm rows (a model, or cold-start rates)."""
    if scorer is None:
        return [Scored(r["id"], *rate_score(r, prior)) for r in rows]
    X = matrix(rows, tz, now)
    p = scorer.score(X)
    return [
        Scored(r["id"], float(p[i]), explain(scorer, X[i], r, tz, now)) for i, r in enumerate(rows)
    ]


def write_scores(
    conn: psycopg.Connection,
    rows: Sequence[Mapping[str, Any]],
    scored: Sequence[Scored],
    model: str,
    version: int,
    now: datetime,
) -> None:
    from psycopg.types.json import Jsonb

    with db.translate(), conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO alarm_triage (alarm_id, p_false, reasons, model, version, scored_at,"
            " seen_cancel, seen_occurrences) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (alarm_id) DO UPDATE SET p_false = EXCLUDED.p_false,"
            " reasons = EXCLUDED.reasons, model = EXCLUDED.model, version = EXCLUDED.version,"
            " scored_at = EXCLUDED.scored_at, seen_cancel = EXCLUDED.seen_cancel,"
            " seen_occurrences = EXCLUDED.seen_occurrences",
            [
                (
                    s.alarm_id,
                    s.p_false,
                    Jsonb(s.reasons),
                    model,
                    version,
                    now,
                    r["cancel_requested_at"] is not None,
                    r["occurrences"],
                )
                for r, s in zip(rows, scored, strict=True)
            ],
        )
        # The engine pushes the re-read alarm (with its score) to the consoles.
        for s in scored:
            events.emit(conn, s.alarm_id, "triaged", f"model:{model}@{version}")


class TriageScorer:
    """Scores open alarms into ``alarm_triage``: the active model's version, or the
    cold-start rates (``triage-rates`` v0) while none is promoted. Run by ``eldercare
    serve`` on a short tick and by ``eldercare models score triage``."""

    def __init__(self, settings: Any, clock: Any) -> None:
        from eldercare.errors import UnknownModel
        from eldercare.models.artefacts import ArtefactStore

        self.settings = settings
        self.clock = clock
        self.scorer: LinearScorer | None = None
        self.model, self.version = "triage-rates", 0
        try:
            est, v = ArtefactStore(settings.models_dir).load(
                NAME, trusted_types=TriageModel.trusted_types
            )
        except UnknownModel:
            return  # nothing promoted yet: cold start
        self.scorer, self.model, self.version = LinearScorer.of(est), NAME, v.version

    def run_once(self, conn: psycopg.Connection) -> int:
        """Score what needs it now; returns how many alarms were (re)scored."""
        now = self.clock()
        rows = open_rows(conn, now)
        if not rows:
            return 0
        prior = overall_rate(conn, now) if self.scorer is None else 0.5
        scored = score_rows(rows, self.settings.tz, now, self.scorer, prior)
        write_scores(conn, rows, scored, self.model, self.version, now)
        return len(scored)


def run_scorer(settings: Any, clock: Any, stop: Any, tick_s: float = 1.0) -> None:
    """``eldercare serve``'s triage loop: score on a short tick until ``stop`` is set.
    A failing tick is logged and retried: triage is advice, never on the alarm path."""
    import logging

    from eldercare.errors import EldercareError

    log = logging.getLogger(__name__)
    while not stop.is_set():
        try:
            # Rebuilt every minute, so a newly promoted version takes over without a restart.
            scorer = TriageScorer(settings, clock)
            # translate(): write_scores' executemany talks to psycopg directly, and its
            # error text (which may quote a row) must not reach the log untranslated.
            with db.translate(), db.connect(settings.database_url, autocommit=True) as conn:
                for _ in range(max(1, int(60 / tick_s))):
                    if stop.is_set():
                        return
                    scorer.run_once(conn)
                    stop.wait(tick_s)
        except EldercareError as exc:
            log.warning("triage scoring paused: %s", exc)
            stop.wait(5 * tick_s)
