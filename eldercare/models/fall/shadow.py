"""The fall model in **shadow** mode: score every wearable ``imu`` window the gateway has
stored and keep the score next to the device's own fall decision. It never raises,
suppresses or reorders an alarm; it only writes ``fall_shadow_scores`` (design §4.4).

Runs as its own process (``eldercare models shadow fall``), never in the gateway, whose
ack path must not carry model work (design §4.3). Each pass reads committed ``imu`` rows
from ``device_events``:

- a window is scored once it is :data:`SETTLE` old, so the device's own ``fall`` for the
  same moment (sent up to :data:`LINK_AFTER` later) is already stored and can be linked;
- a device's ``imu`` messages may be short (the simulator sends 1 s at 25 Hz), so the
  model's 4 s window ending at each message is stitched from that device's messages of
  the last 4 s, resampled to 50 Hz, and padded with its first sample where the device
  had sent nothing yet (``coverage_s`` says how much was real);
- windows older than :data:`LOOKBACK` when first seen are not scored (after an outage
  of the scorer, the backlog beyond it is skipped, not queued).

The protocol says an ``imu`` message's ``ts`` is "when the event happened"; this platform
takes it as the time of the window's *last* sample (docs/device-protocol.md).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import psycopg

from eldercare.models.base import Context
from eldercare.models.fall import features as F
from eldercare.models.fall import synth
from eldercare.models.fall.trees import Forest
from eldercare.storage.db import rows, translate

WINDOW: Final = timedelta(seconds=synth.WINDOW_S)
LINK_BEFORE: Final = WINDOW  # the device decided on an impact inside this window ...
LINK_AFTER: Final = timedelta(seconds=30)  # ... or up to 30 s after it (waiting for rest)
SETTLE: Final = LINK_AFTER + timedelta(seconds=5)
LOOKBACK: Final = timedelta(minutes=10)
_GRID: Final = (np.arange(synth.N) - (synth.N - 1)) / synth.HZ  # seconds before the end


@dataclass(frozen=True, slots=True)
class ImuMessage:
    """One stored ``imu`` message: ``acc`` ``(m, 3)`` in g at ``hz``, ending at ``time``."""

    device_id: str
    msg_id: str
    time: datetime
    facility_id: int | None
    hz: int
    acc: npt.NDArray[np.float64]

    def __post_init__(self) -> None:
        if self.hz < 1 or self.acc.ndim != 2 or self.acc.shape[1] != 3 or len(self.acc) == 0:
            raise ValueError("an imu message needs hz >= 1 and a non-empty (m, 3) acc")


def stitch(
    target: ImuMessage, history: Sequence[ImuMessage]
) -> tuple[npt.NDArray[np.float64], float]:
    """The model's window ``(N, 3)`` ending at ``target.time`` from the device's messages
    (``history`` may include ``target``), and how many seconds of it were real samples."""
    ts, xs = [], []
    for m in (*history, target):
        if m.device_id != target.device_id:
            raise ValueError("stitching messages of another device")
        end = (m.time - target.time).total_seconds()
        t = end - np.arange(len(m.acc))[::-1] / m.hz
        keep = (t > _GRID[0] - 1 / synth.HZ) & (t <= 0)
        ts.append(t[keep])
        xs.append(m.acc[keep])
    t_all = np.concatenate(ts)
    x_all = np.concatenate(xs)
    # Duplicates (a message in history and as target) collapse; later messages win ties.
    t_u, idx = np.unique(t_all[::-1], return_index=True)
    x_u = x_all[::-1][idx]
    window = np.stack([np.interp(_GRID, t_u, x_u[:, k]) for k in range(3)], axis=1)
    coverage = float(min(-t_u[0] + 1 / target.hz, synth.WINDOW_S)) if len(t_u) else 0.0
    return window, round(coverage, 3)


@dataclass(frozen=True, slots=True, eq=False)
class Scorer:
    """A verified model version turned into arrays (:func:`trees.export_forest`)."""

    forest: Forest
    version: int
    sha256: str
    threshold: float

    def score(self, windows: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        return self.forest.proba(F.extract(windows))


@dataclass(frozen=True, slots=True)
class DeviceFall:
    device_id: str
    msg_id: str
    time: datetime
    confidence: float | None
    alarm_id: Any


def link(at: datetime, falls: Sequence[DeviceFall]) -> DeviceFall | None:
    """The device's own fall for a window ending ``at``: the nearest one from
    ``LINK_BEFORE`` before to ``LINK_AFTER`` after."""
    near = [f for f in falls if at - LINK_BEFORE <= f.time <= at + LINK_AFTER]
    return min(near, key=lambda f: abs((f.time - at).total_seconds()), default=None)


def _message(r: dict[str, Any]) -> ImuMessage | None:
    p = r["payload"]
    try:
        acc = np.asarray(p["acc"], dtype=np.float64)
        return ImuMessage(
            r["device_id"], r["msg_id"], r["time"], r["facility_id"], int(p["hz"]), acc
        )
    except (KeyError, TypeError, ValueError):
        return None  # the gateway validated it; a row that still is not a window is skipped


def run_once(
    conn: psycopg.Connection,
    scorer: Scorer,
    now: datetime,
    *,
    limit: int = 5000,
    perf: Callable[[], float] = time.perf_counter,
) -> int:
    """Score the settled, unscored imu windows (at most ``limit``); returns how many.
    One transaction: a pass reads one snapshot and is written whole or not at all."""
    with translate(), conn.transaction():
        return _pass(conn, scorer, now, limit, perf)


def _pass(
    conn: psycopg.Connection,
    scorer: Scorer,
    now: datetime,
    limit: int,
    perf: Callable[[], float],
) -> int:
    pending = rows(
        conn,
        """
        SELECT e.device_id, e.msg_id, e.time, e.facility_id, e.payload
        FROM device_events e
        WHERE e.type = 'imu' AND e.time > %(since)s AND e.received_at <= %(until)s
          AND NOT EXISTS (SELECT 1 FROM fall_shadow_scores s
                          WHERE s.device_id = e.device_id AND s.msg_id = e.msg_id
                            AND s.time = e.time)
        ORDER BY e.time
        LIMIT %(limit)s
        """,
        {"since": now - LOOKBACK, "until": now - SETTLE, "limit": limit},
    )
    targets = [m for m in map(_message, pending) if m is not None]
    if not targets:
        return 0
    devices = sorted({m.device_id for m in targets})
    lo = min(m.time for m in targets)
    hi = max(m.time for m in targets)
    history: dict[str, list[ImuMessage]] = defaultdict(list)
    for r in rows(
        conn,
        """
        SELECT device_id, msg_id, time, facility_id, payload FROM device_events
        WHERE type = 'imu' AND device_id = ANY(%s) AND time > %s AND time <= %s
        ORDER BY time
        """,
        (devices, lo - WINDOW, hi),
    ):
        m = _message(r)
        if m is not None:
            history[m.device_id].append(m)
    falls: dict[str, list[DeviceFall]] = defaultdict(list)
    for r in rows(
        conn,
        """
        SELECT e.device_id, e.msg_id, e.time, e.payload, m.alarm_id
        FROM device_events e
        LEFT JOIN message_ids m ON m.device_id = e.device_id AND m.msg_id = e.msg_id
        WHERE e.type = 'fall' AND e.device_id = ANY(%s) AND e.time >= %s AND e.time <= %s
        """,
        (devices, lo - LINK_BEFORE, hi + LINK_AFTER),
    ):
        conf = r["payload"].get("confidence")
        falls[r["device_id"]].append(
            DeviceFall(
                r["device_id"],
                r["msg_id"],
                r["time"],
                float(conf) if isinstance(conf, int | float) else None,
                r["alarm_id"],
            )
        )

    t0 = perf()
    # Only messages ending inside the window can contribute samples to it.
    reach = WINDOW + timedelta(seconds=1 / synth.HZ)
    stitched = [
        stitch(m, [h for h in history[m.device_id] if m.time - reach < h.time <= m.time])
        for m in targets
    ]
    scores = scorer.score(np.stack([w for w, _ in stitched]))
    per_window_us = int((perf() - t0) * 1e6 / len(targets))
    out = []
    for m, (_, coverage), score in zip(targets, stitched, scores, strict=True):
        dev = link(m.time, falls[m.device_id])
        out.append(
            (
                m.time,
                now,
                m.device_id,
                m.msg_id,
                m.facility_id,
                scorer.version,
                scorer.sha256,
                float(score),
                scorer.threshold,
                bool(score >= scorer.threshold),
                coverage,
                dev.msg_id if dev else None,
                dev.alarm_id if dev else None,
                dev.confidence if dev else None,
                per_window_us,
            )
        )
    with conn.cursor() as cur:
        cur.executemany(
            """
            INSERT INTO fall_shadow_scores (time, scored_at, device_id, msg_id, facility_id,
                model_version, model_sha256, score, threshold, suspected, coverage_s,
                device_fall_msg_id, device_alarm_id, device_confidence, latency_us)
            VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
            ON CONFLICT DO NOTHING
            """,
            out,
        )
    return len(out)


# The comparison an operator's supervisor reads (and the dashboard panel runs): for every
# device-raised fall with a scored window, did the model agree, and how did operators
# close it. A fall alarm the model scored many windows for counts once (its best score).
AGREEMENT_SQL: Final = """
WITH per_fall AS (
    SELECT s.device_alarm_id, bool_or(s.suspected) AS model_suspects, max(s.score) AS score
    FROM fall_shadow_scores s
    WHERE s.device_alarm_id IS NOT NULL AND s.time >= %(since)s AND s.time < %(until)s
    GROUP BY s.device_alarm_id
)
SELECT count(*) AS device_falls,
       count(*) FILTER (WHERE p.model_suspects) AS model_agrees,
       count(*) FILTER (WHERE a.disposition IN ('genuine_emergency', 'fall_without_injury'))
           AS closed_real,
       count(*) FILTER (WHERE a.disposition IN ('genuine_emergency', 'fall_without_injury')
                          AND p.model_suspects) AS closed_real_model_agrees,
       count(*) FILTER (WHERE a.disposition IN ('false_sensor_alarm', 'accidental_press'))
           AS closed_false,
       count(*) FILTER (WHERE a.disposition IN ('false_sensor_alarm', 'accidental_press')
                          AND p.model_suspects) AS closed_false_model_agrees,
       (SELECT count(*) FROM fall_shadow_scores s
        WHERE s.suspected AND s.device_alarm_id IS NULL
          AND s.time >= %(since)s AND s.time < %(until)s) AS model_only_windows,
       (SELECT count(*) FROM fall_shadow_scores s
        WHERE s.time >= %(since)s AND s.time < %(until)s) AS windows_scored
FROM per_fall p LEFT JOIN alarms a ON a.id = p.device_alarm_id
"""


def agreement(conn: psycopg.Connection, since: datetime, until: datetime) -> dict[str, int]:
    """Agreement of the shadow model with device-raised falls between ``since`` and ``until``."""
    r = rows(conn, AGREEMENT_SQL, {"since": since, "until": until})[0]
    return {k: int(v) for k, v in r.items()}


def load_scorer(ctx: Context, version: int | None = None) -> Scorer:
    """The active (or given) fall model version, sha256- and allow-list-checked by the
    artefact store, exported to arrays once so scoring needs no sklearn call."""
    from eldercare.models import workflow
    from eldercare.models.fall.detector import FallModel
    from eldercare.models.fall.model import THRESHOLD
    from eldercare.models.fall.trees import export_forest

    estimator, v = workflow.load(FallModel(), ctx, version)
    return Scorer(export_forest(estimator), v.version, v.sha256, THRESHOLD)


def run(
    conninfo: str,
    scorer: Scorer,
    clock: Callable[[], datetime],
    stop: Callable[[float], bool],
    *,
    interval_s: float = 5.0,
    limit: int = 5000,
    log: Callable[[str], None] = print,
) -> None:
    """Score a pass every ``interval_s`` until ``stop(timeout)`` returns True (an
    ``Event.wait``: it returns early when the process is told to stop)."""
    from eldercare.storage.db import connect

    with connect(conninfo, autocommit=True) as conn:
        while True:
            n = run_once(conn, scorer, clock(), limit=limit)
            if n:
                log(f"fall shadow: scored {n} windows (model v{scorer.version})")
            # A full pass means a backlog: go again at once (still honouring a stop).
            if stop(0 if n >= limit else interval_s):
                return
