"""``eldercare models ...``: train, evaluate, promote and list the ML models.

eldercare models list [MODEL]
eldercare models train MODEL [--seed N] [--promote]
eldercare models evaluate MODEL [--seed N] [--out docs/models]
eldercare models promote MODEL VERSION
eldercare models shadow fall [--once] [--interval S] [--version N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
from datetime import UTC, datetime
from pathlib import Path


def _context(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from eldercare.config import get_settings
    from eldercare.models.base import Context

    return Context(settings=get_settings(), now=datetime.now(UTC), seed=args.seed)


def _list(args: argparse.Namespace) -> int:
    from eldercare.models import catalogue, workflow

    ctx = _context(args)
    store = workflow.store_for(ctx)
    for name in [args.model] if args.model else catalogue.names():
        catalogue.get(name)  # an unknown name is refused, not listed as empty
        versions = store.versions(name)
        print(json.dumps({"model": name, "versions": [v.as_dict() for v in versions]}))
    return 0


def _train(args: argparse.Namespace) -> int:
    from eldercare.models import catalogue, workflow

    model = catalogue.get(args.model)
    v = workflow.train(model, _context(args), promote=args.promote)
    print(json.dumps(v.as_dict()))
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from eldercare.models import catalogue, workflow

    model = catalogue.get(args.model)
    # Written into the report, so anyone can reproduce its figures.
    command = shlex.join(["eldercare", "models", "evaluate", args.model, "--seed", str(args.seed)])
    report = workflow.evaluate(model, _context(args), None if args.no_write else args.out, command)
    print(report.to_markdown(command))
    return 0


def _promote(args: argparse.Namespace) -> int:
    from eldercare.models import workflow

    v = workflow.promote(args.model, args.version, _context(args))
    print(json.dumps(v.as_dict()))
    return 0


def _score(args: argparse.Namespace) -> int:
    from eldercare.alerts.rules import utc_now
    from eldercare.config import get_settings
    from eldercare.models import triage
    from eldercare.storage.db import connect

    settings = get_settings()
    if args.model == "device_health":
        return _score_devices(settings)
    scorer = triage.TriageScorer(settings, utc_now)
    with connect(settings.database_url, autocommit=True) as conn:
        n = scorer.run_once(conn)
    print(json.dumps({"model": scorer.model, "version": scorer.version, "scored": n}))
    return 0


def _score_devices(settings) -> int:  # type: ignore[no-untyped-def]
    from eldercare.errors import UnknownModel
    from eldercare.models import catalogue, workflow
    from eldercare.models.base import Context
    from eldercare.models.device_health import score_devices
    from eldercare.storage.db import connect

    ctx = Context(settings, datetime.now(UTC))
    try:
        est, v = workflow.load(catalogue.get("device_health"), ctx)
        version = v.version
    except UnknownModel:
        est, version = None, 0  # battery forecasts only until a risk model is promoted
    with connect(settings.database_url, autocommit=True) as conn:
        n = score_devices(conn, settings, ctx.now, est, version)
    print(json.dumps({"model": "device_health", "version": version, "devices": n}))
    return 0


def _device_history(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from eldercare.config import get_settings
    from eldercare.errors import ConfigError
    from eldercare.simulators.device_history import replay

    settings = get_settings()
    if settings.environment == "production":
        raise ConfigError("synthetic device history is refused in production")
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    report = replay(
        settings,
        seed=args.seed,
        start=end - timedelta(days=args.days),
        days=args.days,
        devices=args.devices,
    )
    print(json.dumps(report.__dict__))
    return 0


def _history(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from eldercare.config import get_settings
    from eldercare.errors import ConfigError
    from eldercare.simulators.alarm_history import replay

    settings = get_settings()
    if settings.environment == "production":
        raise ConfigError("synthetic alarm history is refused in production")
    end = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    report = replay(
        settings,
        seed=args.seed,
        start=end - timedelta(days=args.days),
        days=args.days,
        residents=args.residents,
    )
    print(json.dumps(report.__dict__))
    return 0


def _shadow(args: argparse.Namespace) -> int:
    import signal
    import threading

    from eldercare.models.fall import shadow

    ctx = _context(args)
    scorer = shadow.load_scorer(ctx, args.version)
    print(f"fall shadow: model v{scorer.version} ({scorer.sha256[:12]}), shadow only")
    if args.once:
        from eldercare.storage.db import connect

        with connect(ctx.settings.database_url, autocommit=True) as conn:
            print(json.dumps({"scored": shadow.run_once(conn, scorer, datetime.now(UTC))}))
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        shadow.run(
            ctx.settings.database_url,
            scorer,
            lambda: datetime.now(UTC),
            stop.wait,
            interval_s=args.interval,
        )
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("models", help="train, evaluate and promote the ML models")
    ms = m.add_subparsers(dest="models", required=True)

    ls = ms.add_parser("list", help="saved versions (all models, or one)")
    ls.add_argument("model", nargs="?")
    ls.set_defaults(func=_list, seed=0)

    tr = ms.add_parser("train", help="fit on all data and save a new version")
    tr.add_argument("model")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--promote", action="store_true", help="make the new version active")
    tr.set_defaults(func=_train)

    ev = ms.add_parser("evaluate", help="honest split, metrics; writes <out>/<model>.md/.json")
    ev.add_argument("model")
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--out", type=Path, default=Path("docs/models"))
    ev.add_argument("--no-write", action="store_true", help="print only")
    ev.set_defaults(func=_evaluate)

    sc = ms.add_parser("score", help="score open alarms now (what `serve` does every second)")
    sc.add_argument("model", choices=["triage", "device_health"])
    sc.set_defaults(func=_score, seed=0)

    hi = ms.add_parser(
        "history",
        help="write synthetic alarm history closed by simulated operators (not in production)",
    )
    hi.add_argument("--days", type=int, default=60)
    hi.add_argument("--residents", type=int, default=24)
    hi.add_argument("--seed", type=int, default=1)
    hi.set_defaults(func=_history)

    dh = ms.add_parser(
        "device-history",
        help="write synthetic heartbeats and connection drops (not in production)",
    )
    dh.add_argument("--days", type=int, default=45)
    dh.add_argument("--devices", type=int, default=30)
    dh.add_argument("--seed", type=int, default=1)
    dh.set_defaults(func=_device_history)

    pr = ms.add_parser("promote", help="make a saved version the active one")
    pr.add_argument("model")
    pr.add_argument("version", type=int)
    pr.set_defaults(func=_promote, seed=0)

    sh = ms.add_parser(
        "shadow",
        help="score wearable imu windows next to the devices' own fall decisions "
        "(writes fall_shadow_scores; never raises or changes an alarm)",
    )
    sh.add_argument("model", choices=["fall"])
    sh.add_argument("--version", type=int, default=None, help="default: the active one")
    sh.add_argument("--once", action="store_true", help="one pass, then exit")
    sh.add_argument("--interval", type=float, default=5.0, help="seconds between passes")
    sh.set_defaults(func=_shadow, seed=0)
