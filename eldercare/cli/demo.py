"""``eldercare demo`` (what ``make demo`` runs): the whole platform with a seeded synthetic
fleet and a live status line. The work is in :mod:`eldercare.simulators.demo`."""

from __future__ import annotations

import argparse
from pathlib import Path


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _demo(args: argparse.Namespace) -> int:
    # Imported here: ``eldercare --help`` must not pay for psycopg and the fleet.
    from eldercare.simulators import demo

    return demo.main(args)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="run the platform with a seeded synthetic fleet and a live status line",
        description="Run the platform with a seeded synthetic fleet and a live status line.",
    )
    p.add_argument(
        "--duration",
        type=_positive,
        help="stop after this many seconds of fleet traffic (default: until Ctrl-C)",
    )
    p.add_argument(
        "--rate",
        type=_positive,
        default=1.0,
        help="multiplier on heartbeats, vitals, imu and camera refresh (default 1)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=1,
        help="scenario seed; also the fleet's seed when it is first created",
    )
    p.add_argument(
        "--alarm-every",
        type=_positive,
        default=20.0,
        help="mean seconds between resident alarms across the fleet (default 20)",
    )
    p.add_argument("--processes", type=int, default=1, help="fleet processes (default 1)")
    p.add_argument(
        "--state-dir",
        type=Path,
        help="logs and saved device credentials (default $ELDERCARE_DEMO_DIR or .local/demo)",
    )
    p.set_defaults(func=_demo)
