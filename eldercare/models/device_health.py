"""Device health (design: shared/design/models.md §2.2): battery time-to-empty and the risk
of going offline in the next 24 h, from heartbeats and ``state_changes``.

- **Battery**: per device, a robust (Theil–Sen: the median of pairwise slopes) line through
  the heartbeats since the last charge (a jump up of more than 5 points) over the last
  72 h; hours to the low-battery threshold and to empty where it drains. No training.
- **Offline risk**: P(an offline transition in the next 24 h) from the last day and week
  of the device's own history: drops, missed heartbeats, radio strength, battery, kind.
  A standardised logistic regression (the same fast scorer as triage), time-split.

Device payload fields (battery, rssi) are read as JSON and checked in Python, never cast
in SQL (audit C2). Results go to ``device_health`` (API: ``GET /api/devices/health``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
import psycopg

from eldercare.errors import NotEnoughData
from eldercare.models.base import Context, Dataset, Report, Table
from eldercare.models.triage import LinearScorer
from eldercare.storage import db

NAME: Final = "device_health"
WINDOW: Final = timedelta(hours=72)
CHARGE_JUMP: Final = 5  # points up between heartbeats: a charge or a new battery
DEVICE_KINDS: Final = ("wearable", "sos_button", "fall_sensor", "home_kit", "video_bridge")
FEATURES: Final = (
    *(f"kind_{k}" for k in DEVICE_KINDS),
    "drops_24h",
    "drops_7d",
    "heartbeat_share_24h",
    "rssi_mean",
    "rssi_std",
    "battery",
    "battery_low",
)


# ---------------------------------------------------------------- battery (pure)


def theil_sen(t: np.ndarray, y: np.ndarray) -> float:
    """The median of all pairwise slopes: one wild reading cannot tilt it."""
    i, j = np.triu_indices(len(t), k=1)
    dt = t[j] - t[i]
    ok = dt > 0
    if not ok.any():
        return float("nan")
    return float(np.median((y[j] - y[i])[ok] / dt[ok]))


@dataclass(frozen=True, slots=True)
class BatteryForecast:
    battery: int | None
    drain_pct_per_h: float | None
    hours_to_low: float | None
    hours_to_empty: float | None


def battery_forecast(
    times: Sequence[datetime], levels: Sequence[int], low_pct: int, min_points: int = 4
) -> BatteryForecast:
    """Hours until ``low_pct`` and until empty from heartbeats (oldest first)."""
    if not levels:
        return BatteryForecast(None, None, None, None)
    last = len(levels) - 1
    start = 0
    for k in range(1, len(levels)):
        if levels[k] - levels[k - 1] > CHARGE_JUMP:
            start = k  # only what came after the last charge
    now_level = int(levels[last])
    if len(levels) - start < min_points:
        return BatteryForecast(now_level, None, None, None)
    t = np.asarray([(x - times[start]).total_seconds() / 3600 for x in times[start:]])
    y = np.asarray(levels[start:], dtype=np.float64)
    slope = theil_sen(t, y)
    if not math.isfinite(slope) or slope >= -1e-3:
        return BatteryForecast(now_level, slope if math.isfinite(slope) else None, None, None)
    to_low = max(0.0, (now_level - low_pct) / -slope)
    return BatteryForecast(now_level, slope, to_low, now_level / -slope)


# ---------------------------------------------------------------- offline risk features

# Per (device, anchor time): its last day and week, and whether it dropped in the next day.
FEATURE_SQL: Final = """
SELECT d.id AS device_id, d.kind, g.at,
       (SELECT count(*) FROM state_changes c WHERE c.device_id = d.id AND c.camera_id IS NULL
          AND NOT c.online AND c.time >= g.at - interval '1 day' AND c.time < g.at)::int
          AS drops_24h,
       (SELECT count(*) FROM state_changes c WHERE c.device_id = d.id AND c.camera_id IS NULL
          AND NOT c.online AND c.time >= g.at - interval '7 days' AND c.time < g.at)::int
          AS drops_7d,
       (SELECT count(*) FROM state_changes c WHERE c.device_id = d.id AND c.camera_id IS NULL
          AND NOT c.online AND c.time >= g.at AND c.time < g.at + interval '1 day')::int
          AS drops_next_24h,
       hb.payloads
FROM devices d
CROSS JOIN LATERAL unnest(%(anchors)s::timestamptz[]) AS g(at)
LEFT JOIN LATERAL (
    SELECT array_agg(e.payload ORDER BY e.time) AS payloads
    FROM device_events e
    WHERE e.device_id = d.id AND e.type = 'heartbeat'
      AND e.time >= g.at - interval '1 day' AND e.time < g.at
) hb ON true
WHERE d.status = 'active' AND (%(devices)s::text[] IS NULL OR d.id = ANY(%(devices)s))
  -- Devices that report heartbeats (an alarm-only device has no health to forecast).
  AND EXISTS (SELECT 1 FROM device_events e WHERE e.device_id = d.id
              AND e.type = 'heartbeat' AND e.time >= g.at - interval '7 days' AND e.time < g.at)
ORDER BY g.at, d.id
"""


def _num(payload: Any, key: str) -> float | None:
    v = payload.get(key) if isinstance(payload, Mapping) else None
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def features(row: Mapping[str, Any], low_pct: int) -> np.ndarray:
    payloads = row["payloads"] or []
    rssi = [x for p in payloads if (x := _num(p, "rssi")) is not None]
    battery = [x for p in payloads if (x := _num(p, "battery")) is not None]
    interval = next((x for p in reversed(payloads) if (x := _num(p, "interval_s"))), None)
    expected = 86400 / interval if interval else 1.0
    level = battery[-1] if battery else 100.0
    return np.asarray(
        [
            *(1.0 if row["kind"] == k else 0.0 for k in DEVICE_KINDS),
            math.log1p(row["drops_24h"]),
            math.log1p(row["drops_7d"]),
            min(1.0, len(payloads) / expected),
            float(np.mean(rssi)) if rssi else -100.0,
            float(np.std(rssi)) if len(rssi) > 1 else 0.0,
            level,
            1.0 if level < low_pct else 0.0,
        ],
        dtype=np.float64,
    )


def anchor_rows(
    conn: psycopg.Connection, anchors: Sequence[datetime], devices: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    return db.rows(
        conn, FEATURE_SQL, {"anchors": list(anchors), "devices": list(devices) if devices else None}
    )


def _reason(feature: str, row: Mapping[str, Any], x: np.ndarray) -> str:
    v = x[FEATURES.index(feature)]
    if feature in ("drops_24h", "drops_7d"):
        return f"{row[feature]} drops in the last {'24 h' if feature == 'drops_24h' else '7 days'}"
    if feature == "heartbeat_share_24h":
        return f"{v:.0%} of expected heartbeats in 24 h"
    if feature in ("rssi_mean", "rssi_std"):
        mean, std = x[FEATURES.index("rssi_mean")], x[FEATURES.index("rssi_std")]
        return f"radio {mean:.0f} dBm (± {std:.0f})"
    if feature in ("battery", "battery_low"):
        return f"battery {x[FEATURES.index('battery')]:.0f} %"
    return f"kind: {row['kind']}"


# ---------------------------------------------------------------- the model


class OfflineRiskModel:
    name = NAME
    description = "P(device goes offline in the next 24 h) from its last day and week"
    trusted_types: frozenset[str] = frozenset()

    def _anchors(self, conn: psycopg.Connection, until: datetime) -> list[datetime]:
        span = db.one(
            conn,
            "SELECT min(time) AS first, max(time) AS last FROM device_events"
            " WHERE type = 'heartbeat' AND time < %s",
            (until,),
        )
        if span["first"] is None:
            raise NotEnoughData("no heartbeats stored")
        first = span["first"].replace(hour=0, minute=0, second=0, microsecond=0)
        out, t = [], first + timedelta(days=2)
        while t + timedelta(days=1) <= span["last"]:
            out.append(t)
            t += timedelta(days=1)
        return out

    def dataset(self, ctx: Context) -> Dataset:
        low = ctx.settings.low_battery_pct
        with db.connect(ctx.settings.database_url) as conn:
            anchors = self._anchors(conn, ctx.now)
            rows = anchor_rows(conn, anchors)
            simulated = db.rows(
                conn,
                "SELECT DISTINCT f.code LIKE 'SIM%%' AS sim FROM devices d"
                " JOIN facilities f ON f.id = d.facility_id WHERE d.id = ANY(%s)",
                (list({r["device_id"] for r in rows}),),
            )
        if not rows:
            raise NotEnoughData("no device-days to learn from")
        X = np.vstack([features(r, low) for r in rows])
        y = np.asarray([1 if r["drops_next_24h"] else 0 for r in rows])
        return Dataset(
            X=X,
            y=y,
            features=FEATURES,
            synthetic=any(s["sim"] for s in simulated),
            source=f"{len(rows)} device-days of {len({r['device_id'] for r in rows})} devices,"
            f" {anchors[0]:%Y-%m-%d} to {anchors[-1]:%Y-%m-%d}",
            order=np.asarray([r["at"].timestamp() for r in rows]),
            extra={"rows": rows},
        )

    def fit(self, data: Dataset, ctx: Context) -> Any:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import Pipeline
        from sklearn.preprocessing import StandardScaler

        data.require(rows=50)
        return Pipeline(
            [("scale", StandardScaler()), ("lr", LogisticRegression(C=0.5, max_iter=2000))]
        ).fit(data.X, data.y)

    def score(self, estimator: Any, X: np.ndarray) -> np.ndarray:
        return LinearScorer.of(estimator).score(X)

    def evaluate(self, data: Dataset, ctx: Context) -> Report:
        from sklearn.ensemble import HistGradientBoostingClassifier
        from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

        data.require(rows=100)
        train, test = data.time_split(0.3)
        results = {}
        base = np.clip(np.expm1(test.X[:, FEATURES.index("drops_7d")]) / 7, 0, 1)
        results["rule: drops in 7 days / 7"] = base
        lr = self.fit(train, ctx)
        results["logistic (shipped)"] = self.score(lr, test.X)
        hgb = HistGradientBoostingClassifier(max_iter=100, random_state=ctx.seed)
        results["gradient boosting"] = hgb.fit(train.X, train.y).predict_proba(test.X)[:, 1]
        table = Table(
            "Offline in the next 24 h: train on the earlier 70 % of days, test on the later",
            ("model", "PR-AUC", "ROC-AUC", "Brier", "precision@top10%"),
            tuple(
                (
                    k,
                    float(average_precision_score(test.y, p)),
                    float(roc_auc_score(test.y, p)),
                    float(brier_score_loss(test.y, p)),
                    float(test.y[p >= np.quantile(p, 0.9)].mean()),
                )
                for k, p in results.items()
            ),
        )
        battery = self._battery_backtest(ctx)
        shipped = table.rows[1]
        return Report(
            model=self.name,
            title="Device health: offline risk and battery time-to-empty — evaluation",
            summary=(
                "Offline risk: P(an offline transition in the next 24 h) per device and day, "
                "time-split. Battery: Theil–Sen slope of the heartbeats since the last "
                "charge, back-tested against when each device really crossed the "
                "low-battery threshold."
            ),
            metrics={
                "device-days (train / test)": f"{train.rows} / {test.rows}",
                "offline next 24 h (test share)": float(test.y.mean()),
                "offline PR-AUC": shipped[1],
                "offline ROC-AUC": shipped[2],
                "offline Brier": shipped[3],
                **battery[0],
            },
            synthetic=data.synthetic,
            data=data.source,
            tables=(table, battery[1]),
            notes=(
                "Synthetic: devices from eldercare.simulators.device_history (drain rates, "
                "radios and drops drawn by a generator); field rates must be learned on site.",
            ),
        )

    def _battery_backtest(self, ctx: Context) -> tuple[dict[str, Any], Table]:
        """For each time a draining device crossed the low threshold: the forecast made
        12 h earlier (from the 72 h before that) against the real crossing time."""
        low = ctx.settings.low_battery_pct
        with db.connect(ctx.settings.database_url) as conn:
            beats = db.rows(
                conn,
                "SELECT device_id, time, payload FROM device_events WHERE type = 'heartbeat'"
                " AND time < %s ORDER BY device_id, time",
                (ctx.now,),
            )
        by: dict[str, list[tuple[datetime, int]]] = {}
        for b in beats:
            lvl = _num(b["payload"], "battery")
            if lvl is not None:
                by.setdefault(b["device_id"], []).append((b["time"], int(lvl)))
        errors, warned, crossings = [], 0, 0
        for series in by.values():
            for k in range(1, len(series)):
                if not (series[k - 1][1] >= low > series[k][1]):
                    continue
                crossings += 1
                cross_at = series[k][0]
                asof = cross_at - timedelta(hours=12)
                past = [(t, v) for t, v in series if asof - WINDOW <= t <= asof]
                f = battery_forecast([t for t, _ in past], [v for _, v in past], low)
                if f.hours_to_low is None:
                    continue
                warned += f.hours_to_low <= 24
                errors.append(abs(f.hours_to_low - 12.0))
        mae = float(np.mean(errors)) if errors else float("nan")
        metrics = {
            "low-battery crossings": crossings,
            "forecast 12 h ahead: MAE (h)": mae,
            "warned 12 h ahead (forecast <= 24 h)": warned / crossings
            if crossings
            else float("nan"),
        }
        table = Table(
            "Battery back-test (forecast made 12 h before each low-battery crossing)",
            ("crossings", "with a forecast", "MAE hours", "warned (hours_to_low <= 24)"),
            ((crossings, len(errors), mae, warned),),
        )
        return metrics, table


# ---------------------------------------------------------------- scoring job


def score_devices(
    conn: psycopg.Connection,
    settings: Any,
    now: datetime,
    estimator: Any | None,
    version: int,
) -> int:
    """Write every reporting device's battery forecast and (with a model) offline risk."""
    from psycopg.types.json import Jsonb

    low = settings.low_battery_pct
    rows = anchor_rows(conn, [now])
    beats = db.rows(
        conn,
        "SELECT device_id, time, payload FROM device_events WHERE type = 'heartbeat'"
        " AND time >= %s AND time <= %s ORDER BY device_id, time",
        (now - WINDOW, now),
    )
    series: dict[str, list[tuple[datetime, int]]] = {}
    for b in beats:
        lvl = _num(b["payload"], "battery")
        if lvl is not None:
            series.setdefault(b["device_id"], []).append((b["time"], int(lvl)))
    scorer = LinearScorer.of(estimator) if estimator is not None else None
    out = []
    for r in rows:
        s = series.get(r["device_id"], [])
        f = battery_forecast([t for t, _ in s], [v for _, v in s], low)
        x = features(r, low)
        risk, reasons = None, []
        if scorer is not None:
            risk = float(scorer.score(x.reshape(1, -1))[0])
            contrib = scorer.contributions(x)
            top = np.argsort(-np.abs(contrib))[:3]
            reasons = [
                {
                    "feature": FEATURES[i],
                    "weight": round(float(contrib[i]), 3),
                    "text": _reason(FEATURES[i], r, x),
                }
                for i in top
            ]
        if f.hours_to_low is not None:
            reasons.insert(
                0,
                {
                    "feature": "battery",
                    "weight": 0.0,
                    "text": f"battery {f.battery} %, about {f.hours_to_low:.0f} h to {low} %",
                },
            )
        out.append(
            (
                r["device_id"],
                now,
                f.battery,
                f.drain_pct_per_h,
                f.hours_to_low,
                f.hours_to_empty,
                risk,
                Jsonb(reasons),
                NAME if scorer else "battery-only",
                version,
            )
        )
    with db.translate(), conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO device_health (device_id, computed_at, battery, drain_pct_per_h,"
            " hours_to_low, hours_to_empty, offline_risk_24h, reasons, model, version)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (device_id) DO UPDATE SET computed_at = EXCLUDED.computed_at,"
            " battery = EXCLUDED.battery, drain_pct_per_h = EXCLUDED.drain_pct_per_h,"
            " hours_to_low = EXCLUDED.hours_to_low, hours_to_empty = EXCLUDED.hours_to_empty,"
            " offline_risk_24h = EXCLUDED.offline_risk_24h, reasons = EXCLUDED.reasons,"
            " model = EXCLUDED.model, version = EXCLUDED.version",
            out,
        )
    return len(out)


def run_scorer(settings: Any, clock: Any, stop: Any, every_s: float = 600.0) -> None:
    """``eldercare serve``'s device-health loop: every ``every_s``, forecasts for every
    reporting device with the active offline-risk model (battery only until one is
    promoted). A failing run is logged and retried; nothing here is on an alarm path."""
    import logging

    from eldercare.errors import EldercareError, UnknownModel
    from eldercare.models.artefacts import ArtefactStore

    log = logging.getLogger(__name__)
    while not stop.is_set():
        try:
            try:
                est, v = ArtefactStore(settings.models_dir).load(
                    NAME, trusted_types=OfflineRiskModel.trusted_types
                )
                version = v.version
            except UnknownModel:
                est, version = None, 0
            # translate(): score_devices writes through psycopg directly; its errors leave
            # as ours, so the log line carries our message, not the driver's text.
            with db.translate(), db.connect(settings.database_url, autocommit=True) as conn:
                score_devices(conn, settings, clock(), est, version)
        except EldercareError as exc:
            log.warning("device-health scoring failed: %s", exc)
        stop.wait(every_s)
