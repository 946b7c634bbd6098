"""What alarm triage costs per alarm: ``python -m bench.triage_scoring [--days D] [--repeat N]``.

Builds a scratch database in the project-local TimescaleDB, plays ``--days`` of synthetic
alarm history closed by simulated operators (eldercare.simulators.alarm_history), trains
the shipped model (standardised logistic regression), then times per alarm:

- ``single`` (wall clock) and ``single_cpu`` (this thread's CPU time, which other load on
  the machine cannot inflate): one alarm's feature vector from its row, the score and its
  three reasons (``score_rows`` for one row): the model side of scoring. Goal < 1 ms.
- ``single_sklearn``: the same vector through the pipeline's ``predict_proba``.
- ``feature_sql``: the point-in-time feature query for one alarm (history, cancel,
  repeats), a database round trip, reported apart from the model.
- ``run_once_per_alarm``: ``TriageScorer.run_once`` over 50 open alarms (query, features,
  scores, upsert, NOTIFY), divided by 50.

Prints one JSON object. Wall-clock timings; read p50 more than p99 on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg

from eldercare.config import load_settings
from eldercare.models import Context, triage, workflow
from eldercare.simulators.alarm_history import replay
from eldercare.storage.migrate import migrate
from harness.services import create_database, drop_database


def _pct(xs: list[float]) -> dict[str, float]:
    a = np.array(xs) * 1e6
    return {
        "p50_us": round(float(np.percentile(a, 50)), 1),
        "p99_us": round(float(np.percentile(a, 99)), 1),
        "mean_us": round(float(a.mean()), 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--residents", type=int, default=24)
    ap.add_argument("--repeat", type=int, default=2000)
    args = ap.parse_args(argv)
    import sklearn

    url = create_database()
    models_dir = tempfile.TemporaryDirectory(prefix="eldercare-bench-models-")
    try:
        migrate(url)
        settings = load_settings(database_url=url, models_dir=models_dir.name)
        start = datetime(2026, 8, 1, tzinfo=UTC)
        end = start + timedelta(days=args.days + 1)
        hist = replay(settings, seed=1, start=start, days=args.days, residents=args.residents)
        ctx = Context(settings, end)
        model = triage.TriageModel()
        v = workflow.train(model, ctx, promote=True)
        est, _ = workflow.load(model, ctx)
        scorer = triage.LinearScorer.of(est)
        tz = settings.tz
        with psycopg.connect(url, autocommit=True) as conn:
            rows = triage.labelled_rows(conn)
            single, single_cpu, sk = [], [], []
            for i in range(args.repeat):
                r = rows[i % len(rows)]
                t0, c0 = time.perf_counter(), time.thread_time()
                triage.score_rows([r], tz, end, scorer, 0.5)
                single.append(time.perf_counter() - t0)
                single_cpu.append(time.thread_time() - c0)
                x = triage.features(r, tz, end).reshape(1, -1)
                t0 = time.perf_counter()
                est.predict_proba(x)
                sk.append(time.perf_counter() - t0)
            sql = []
            ids = [r["id"] for r in rows]
            for i in range(min(args.repeat, 300)):
                t0 = time.perf_counter()
                conn.execute(
                    triage.FEATURE_SQL + " WHERE a.id = %(id)s",
                    {**triage.sql_params(end), "id": ids[i % len(ids)]},
                ).fetchall()
                sql.append(time.perf_counter() - t0)
            # 50 open alarms: re-open closed ones in a scratch copy of their status.
            reopen = ids[-50:]
            conn.execute("UPDATE alarms SET status = 'acknowledged' WHERE id = ANY(%s)", (reopen,))
            online = triage.TriageScorer(settings, lambda: end)
            t0 = time.perf_counter()
            n = online.run_once(conn)
            per_alarm = (time.perf_counter() - t0) / max(n, 1)
        out = {
            "bench": "triage_scoring",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(["python -m bench.triage_scoring", *(argv or sys.argv[1:])]),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "scikit-learn": sklearn.__version__,
            "load_average": os.getloadavg(),
            "history": {"alarms": hist.alarms, "closed": hist.closed, "train_rows": len(rows)},
            "model_version": v.version,
            "single": _pct(single),
            "single_cpu": _pct(single_cpu),
            "single_sklearn": _pct(sk),
            "feature_sql": _pct(sql),
            "run_once_per_alarm_us": round(per_alarm * 1e6, 1),
            "run_once_alarms": n,
        }
        print(json.dumps(out))
    finally:
        drop_database(url)
        models_dir.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
