"""What the fall model costs per window: ``python -m bench.fall_scoring [--windows N]``.

Trains the production configuration (random forest, 50 trees, depth <= 12, on generator
A plus seglearn's real windows, at 50 and 25 Hz), then times on this machine, per window:

- ``single`` (wall clock) and ``single_cpu`` (this thread's CPU time, which other load
  on the machine cannot inflate): one window at a time, as the shadow scorer would do
  without batching: stitch four 1 s / 25 Hz imu messages into the 4 s / 50 Hz window,
  21 features, the exported forest walk. The goal is < 1 ms (issue 9B).
- ``single_sklearn``: the same window's features through ``predict_proba`` instead of the
  exported forest (what the design measured at 1.1-4.3 ms).
- ``batch``: ``run_once``'s path, windows scored 256 at a time, divided by 256.

Windows are held-out synthetic falls and negatives (generator seed 4242), so trees are
walked to realistic depths. Prints one JSON object. Wall-clock timings, so run it on a
quiet machine and read p50 more than p99.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from datetime import UTC, datetime, timedelta

import numpy as np

from eldercare.models.fall import evaluate as E
from eldercare.models.fall import features as F
from eldercare.models.fall import model as M
from eldercare.models.fall import shadow, synth
from eldercare.models.fall.data import load_watch
from eldercare.models.fall.trees import export_forest


def _pct(xs: list[float]) -> dict[str, float]:
    a = np.array(xs) * 1e6
    return {
        "p50_us": round(float(np.percentile(a, 50)), 1),
        "p99_us": round(float(np.percentile(a, 99)), 1),
        "mean_us": round(float(a.mean()), 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--windows", type=int, default=2000)
    args = ap.parse_args(argv)
    import sklearn

    spec = M.TrainSpec()
    model = M.fit(spec, *E.rows(spec, load_watch()).training())
    forest = export_forest(model)
    held = synth.generate(
        synth.CONFIG_A,
        4242,
        n_subjects=max(1, args.windows // 100),
        falls_per_subject=20,
        negatives_per_subject=80,
    ).windows[: args.windows]

    # Each window as a device sends it: four 1 s messages at 25 Hz (every other sample).
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    messages = []
    for w in held:
        at25 = w[1::2]
        msgs = [
            shadow.ImuMessage(
                "d", str(k), t0 + timedelta(seconds=k), None, 25, at25[25 * k : 25 * k + 25]
            )
            for k in range(4)
        ]
        messages.append(msgs)

    single, single_cpu, single_sk = [], [], []
    for msgs in messages:
        a, a_cpu = time.perf_counter(), time.thread_time()
        window, _ = shadow.stitch(msgs[-1], msgs[:-1])
        x = F.extract(window[None])
        forest.proba(x)
        b, b_cpu = time.perf_counter(), time.thread_time()
        model.predict_proba(x)
        c = time.perf_counter()
        single.append(b - a)
        single_cpu.append(b_cpu - a_cpu)
        single_sk.append(c - b + (b - a))  # the same stitch + features, sklearn's trees
    batch = []
    for i in range(0, len(held) - 255, 256):
        chunk = held[i : i + 256]
        a = time.perf_counter()
        forest.proba(F.extract(chunk))
        batch.append((time.perf_counter() - a) / len(chunk))
    parity = float(
        np.abs(forest.proba(F.extract(held)) - model.predict_proba(F.extract(held))[:, 1]).max()
    )
    print(
        json.dumps(
            {
                "when": datetime.now(UTC).isoformat(timespec="seconds"),
                "command": "python -m bench.fall_scoring --windows " + str(args.windows),
                "machine": f"{platform.machine()}, python {platform.python_version()}, "
                f"numpy {np.__version__}, sklearn {sklearn.__version__}",
                "trees": len(forest.roots),
                "depth": forest.depth,
                "windows": len(held),
                "single": _pct(single),
                # CPU time of this thread: what other load on the machine cannot inflate.
                "single_cpu": _pct(single_cpu),
                "single_sklearn": _pct(single_sk),
                "batch_256_per_window": _pct(batch) if batch else None,
                "max_abs_diff_vs_predict_proba": parity,
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
