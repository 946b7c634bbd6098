"""Gateway memory across a database outage (security audit H4), as a soak, not a test.

    python -m bench.outage [--minutes 5] [--rate 300] [--devices 20]

A private TimescaleDB and Mosquitto; devices publish ``vitals`` at ``rate`` msgs/s while
the database is stopped for ``minutes``. The gateway PUBACKs only after commit, and the
broker keeps at most ``max_inflight_messages`` un-PUBACKed messages in flight to it, so
the backlog waits at the broker: the gateway's RSS must stay flat. Prints JSON with RSS
samples (MiB, the gateway's process tree) and whether everything sent was stored after
the database came back.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.run import _metrics_up, count_rows, provision, start_blasters, tree_rss_mib
from harness.services import (
    PrivatePostgres,
    Proc,
    free_port,
    make_settings,
    migrate_database,
    running_broker,
    wait_for,
)


def run(minutes: float, rate: float, devices: int, work: Path) -> dict:
    pg = PrivatePostgres().start()
    try:
        migrate_database(pg.url)
        with running_broker(work / "mosquitto") as broker:
            port = free_port()
            s = make_settings(
                pg.url, broker, metrics_port=port, device_rate_per_s=1e9, device_burst=10**9
            )
            creds = provision(s, devices)
            gw = Proc(["gateway", "--workers", "1"], s, work / "gateway.log").start()
            try:
                assert gw.proc is not None
                pid = gw.proc.pid
                wait_for(lambda: _metrics_up(port), timeout=60, interval=0.2, what="metrics")
                warm, after = 20.0, 30.0
                total = warm + minutes * 60 + after
                pool, result = start_blasters(s, creds, 1, rate, total, "outage")
                samples: list[tuple[float, str, float]] = []
                t0 = time.monotonic()

                def sample_until(t: float, phase: str) -> None:
                    while time.monotonic() - t0 < t:
                        samples.append(
                            (round(time.monotonic() - t0, 1), phase, round(tree_rss_mib(pid), 1))
                        )
                        time.sleep(max(0.1, min(10.0, t - (time.monotonic() - t0))))

                sample_until(warm, "before")
                pg._ctl("stop", "-m", "fast")
                sample_until(warm + minutes * 60, "outage")
                pg._ctl("start")
                sample_until(total, "after")
                sent = sum(r.sent for r in result.get(timeout=300))
                pool.close()
                deadline = time.monotonic() + 600
                while count_rows(pg.url) < sent and time.monotonic() < deadline:
                    samples.append(
                        (round(time.monotonic() - t0, 1), "drain", round(tree_rss_mib(pid), 1))
                    )
                    time.sleep(5)
                stored = count_rows(pg.url)
                outage = [r for _, ph, r in samples if ph == "outage"]
                return {
                    "outage_minutes": minutes,
                    "rate_msgs_per_s": rate,
                    "sent": sent,
                    "stored": stored,
                    "rss_before_mib": [r for _, ph, r in samples if ph == "before"][-1],
                    "rss_outage_min_mib": min(outage),
                    "rss_outage_max_mib": max(outage),
                    "rss_end_mib": samples[-1][2],
                    "samples": samples,
                }
            finally:
                gw.stop()
    finally:
        pg.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--rate", type=float, default=300.0)
    ap.add_argument("--devices", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="eldercare-outage-") as work:
        print(json.dumps(run(args.minutes, args.rate, args.devices, Path(work)), indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
