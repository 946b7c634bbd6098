"""``eldercare simulate``: provision a seeded fleet in the configured database, then run it."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def _simulate(args: argparse.Namespace) -> int:
    # Imported here: ``eldercare --help`` must not pay for paho and psycopg.
    from eldercare.config import load_settings
    from eldercare.simulators.fleet import Fleet
    from eldercare.storage.db import connect

    settings = load_settings()
    with connect(settings.database_url) as conn:
        plan = Fleet.provision(
            conn,
            settings,
            args.seed,
            facilities=args.facilities,
            rooms_per_facility=args.rooms,
            home_beds=args.home_beds,
            wearable_share=args.wearable_share,
        )
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(plan.kinds().items()))
    log.info(
        "provisioned fleet %s (seed %d): %d facilities; %s",
        plan.tag,
        plan.seed,
        len(plan.facilities),
        kinds,
    )
    stats = Fleet.run(
        plan,
        settings,
        rate=args.rate,
        duration=args.duration,
        processes=args.processes,
        seed=args.seed,
        incident_rate=args.incident_rate,
        retry_s=args.retry_s,
    )
    print(f"simulate {plan.tag}: {stats.summary()}")
    return 0


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text}")
    return value


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="provision a seeded simulated fleet and run it against the broker",
        description="Creates synthetic facilities, home care beds, residents and devices, then "
        "plays a seeded scenario: heartbeats, telemetry, alarms re-sent until acked, outages.",
    )
    p.add_argument("--facilities", type=_count, default=3, help="nursing homes (default 3)")
    p.add_argument("--rooms", type=_count, default=8, help="rooms per facility (default 8)")
    p.add_argument("--home-beds", type=_count, default=6, help="home care beds (default 6)")
    p.add_argument(
        "--wearable-share",
        type=float,
        default=0.3,
        help="share of residents with a wearable (default 0.3)",
    )
    p.add_argument("--seed", type=int, default=1, help="the same seed replays the same fleet")
    p.add_argument(
        "--rate",
        type=_positive,
        default=1.0,
        help="multiplier on heartbeats, vitals, imu and camera refresh",
    )
    p.add_argument(
        "--incident-rate",
        type=float,
        default=1.0,
        help="multiplier on alarms, camera faults and network drops",
    )
    p.add_argument("--retry-s", type=_positive, default=2.0, help="alarm re-send period")
    p.add_argument("--duration", type=_positive, default=60.0, help="seconds to run (default 60)")
    p.add_argument(
        "--processes", type=lambda s: max(1, int(s)), default=1, help="device processes (default 1)"
    )
    p.set_defaults(func=_simulate)
