"""``eldercare gateway``: only the gateway, for scale-out."""

from __future__ import annotations

import argparse


def _gateway(args: argparse.Namespace) -> int:
    from eldercare.config import get_settings
    from eldercare.gateway.runner import run_gateway

    settings = get_settings()
    return run_gateway(settings, args.workers or settings.gateway_workers)


def register(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("gateway", help="run only the MQTT gateway (scale-out)")
    g.add_argument("--workers", type=int, help="worker processes (default from settings)")
    g.set_defaults(func=_gateway)
