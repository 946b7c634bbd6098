"""``eldercare gateway``: only the gateway, for scale-out."""

from __future__ import annotations

import argparse


def _gateway(args: argparse.Namespace) -> int:
    from eldercare.config import get_settings
    from eldercare.gateway.runner import run_gateway
    from eldercare.storage.roles import require_least_privilege

    settings = get_settings()
    require_least_privilege(settings)  # a scale-out replica holds the app's DSN too
    return run_gateway(settings, args.workers or settings.gateway_workers)


def register(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("gateway", help="run only the MQTT gateway (scale-out)")
    g.add_argument("--workers", type=int, help="worker processes (default from settings)")
    g.set_defaults(func=_gateway)
