"""``eldercare serve``: the gateway workers and the HTTP API (alert engine, console) in one
command. Gateway workers run as child processes so ingest never competes with the API's
event loop for one interpreter lock."""

from __future__ import annotations

import argparse
import logging

from eldercare.config import Settings

log = logging.getLogger(__name__)


def serve(settings: Settings, *, workers: int | None = None) -> int:
    import threading

    import uvicorn

    from eldercare.gateway.runner import (
        Supervisor,
        prepare_multiprocess_metrics,
        start_workers,
        stop_workers,
    )
    from eldercare.registry.service import sync_broker
    from eldercare.storage.db import connect
    from eldercare.storage.migrate import migrate
    from eldercare.storage.roles import require_least_privilege

    # Without an owner URL (compose's platform) this only checks the schema is current.
    migrate(settings.migration_url, settings.database_url)
    require_least_privilege(settings)
    with connect(settings.database_url) as conn:
        # The gateway's own broker credentials must be in place before it connects.
        sync_broker(conn, settings)
    prepare_multiprocess_metrics()
    procs = start_workers(settings, workers or settings.gateway_workers)
    # A dead worker is replaced (audit H4); /healthz reports whether all are running.
    supervisor = Supervisor(settings, procs)
    stop = threading.Event()
    threading.Thread(target=supervisor.run, args=(stop,), name="supervisor", daemon=True).start()
    # Alarm triage (eldercare.models) writes scores the queue orders by within a band.
    from eldercare.alerts.rules import utc_now
    from eldercare.models.triage import run_scorer

    threading.Thread(
        target=run_scorer, args=(settings, utc_now, stop), name="triage", daemon=True
    ).start()
    from eldercare.models import device_health

    threading.Thread(
        target=device_health.run_scorer,
        args=(settings, utc_now, stop),
        name="device-health",
        daemon=True,
    ).start()
    try:
        from eldercare.app import create_app

        app = create_app(settings)
        app.state.ingest = supervisor
        from eldercare.http.logs import redact_tokens

        log.info("console on http://%s:%s/console", settings.api_host, settings.api_port)
        config = uvicorn.Config(
            app,
            host=settings.api_host,
            port=settings.api_port,
            log_level="info",
            ws_ping_interval=20,
        )
        # After Config has set up uvicorn's logging: no bearer token in the log (audit M5).
        redact_tokens()
        server = uvicorn.Server(config)
        server.run()
        if not server.started:
            return 3
    finally:
        stop.set()
        stop_workers(procs)
    return 0


def _serve(args: argparse.Namespace) -> int:
    from eldercare.config import get_settings

    return serve(get_settings(), workers=args.workers)


def register(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("serve", help="run the gateway and the HTTP API (console, alert engine)")
    s.add_argument("--workers", type=int, help="gateway worker processes")
    s.set_defaults(func=_serve)
