"""The HTTP API: routes, websocket push, health and Prometheus metrics, with the alert
engine running in its lifespan.

``build_api(settings)`` is the API alone. The served application, API plus console, is
:func:`eldercare.app.create_app`, one layer up: ``web`` sits above ``http`` (it uses
``http.deps``), so ``http`` cannot mount it without a cycle. Tests pass a frozen ``clock``,
their own ``publisher`` and ``background=False`` to drive timers with :meth:`Engine.tick`
instead of waiting for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from eldercare.alerts import notify, rules
from eldercare.alerts.engine import Engine
from eldercare.config import Settings
from eldercare.errors import (
    AuthError,
    ConflictError,
    DatabaseFault,
    InvalidInput,
    NotFoundError,
    PermissionDenied,
    RateLimited,
    StorageError,
)
from eldercare.http import deps, headers, live
from eldercare.http.limits import LoginGate
from eldercare.http.routes import ROUTERS
from eldercare.platform import entitlements, followups, visitchecks, workorders
from eldercare.storage import db

log = logging.getLogger(__name__)


def _error(status: int, detail: str, **headers: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers or None)


PLATFORM_JOBS_EVERY_S = 60.0


async def _platform_jobs(app: FastAPI, clock: rules.Clock, auto_verify: bool) -> None:
    """The platform layer's periodic work (design §2.4, §2.9): verify checked-out work orders
    nothing blocks 24 h after check-out, and send maintenance to home-bed devices that have
    been offline or low on battery for 24 h."""

    def once() -> tuple[int, int]:
        env = deps.platform_env_of(app)
        with app.state.pool.connection() as conn:
            now = clock()
            verified = workorders.auto_verify_due(conn, now, env) if auto_verify else 0
            return verified, followups.device_maintenance_due(conn, now, env)

    while True:
        try:
            verified, maintenance = await asyncio.to_thread(once)
            if verified or maintenance:
                log.info(
                    "auto-verified %d work orders, %d maintenance orders", verified, maintenance
                )
        except Exception:
            # A database outage must not end the job; the next round retries.
            log.exception("platform jobs round failed")
        await asyncio.sleep(PLATFORM_JOBS_EVERY_S)


def platform_hooks(settings: Settings) -> workorders.Hooks:
    """The work-order lifecycle's hooks, for the API and for anything else that moves orders
    (the demo's service simulator): visit checks (design §2.8) run inside check-in and
    check-out; the voucher is allocated when an order is verified (design §4 Q24)."""
    return workorders.Hooks(
        inspect=visitchecks.inspect, on_verified=entitlements.on_verified(settings.tz)
    )


def build_api(
    settings: Settings,
    *,
    clock: rules.Clock | None = None,
    publisher: notify.Publisher | None = None,
    poster: notify.Poster | None = None,
    background: bool = True,
) -> FastAPI:
    clock = clock or rules.utc_now
    hub = live.Hub()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await asyncio.to_thread(
            db.make_pool, settings.database_url, min_size=2, max_size=settings.db_pool_max
        )
        own_publisher = publisher is None
        pub = publisher if publisher is not None else notify.MqttPublisher(settings)
        engine = Engine(settings, clock=clock, publisher=pub, poster=poster, feed=hub)
        app.state.pool, app.state.engine = pool, engine
        gate = LoginGate(settings)
        app.state.login_gate, app.state.login_slots = gate, gate.slots
        if background:
            engine.start()
        listener = asyncio.create_task(engine.listen(), name="engine-listen")
        # Open websockets outlive neither their token nor their user (audit M5).
        recheck = asyncio.create_task(
            live.recheck_loop(hub, pool, clock, settings.ws_recheck_s), name="ws-recheck"
        )
        verifier = (
            asyncio.create_task(
                _platform_jobs(app, clock, settings.auto_verify), name="platform-jobs"
            )
            if background
            else None
        )
        # Consoles connecting right after startup must not miss the first alarm.
        await asyncio.to_thread(engine.listening.wait, 10)
        try:
            yield
        finally:
            for task in (listener, verifier, recheck):
                if task is None:
                    continue
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await asyncio.to_thread(engine.stop)
            if own_publisher and isinstance(pub, notify.MqttPublisher):
                pub.close()
            await asyncio.to_thread(pool.close)

    app = FastAPI(
        title="eldercare alert engine",
        version="1",
        lifespan=lifespan,
        description="Alarms, dispatch, escalation and response metrics. See docs/api.md.",
    )
    app.state.settings, app.state.clock, app.state.hub = settings, clock, hub
    app.state.platform_hooks = platform_hooks(settings)

    @app.exception_handler(NotFoundError)
    async def _404(request: Request, exc: NotFoundError) -> JSONResponse:
        return _error(404, str(exc))

    @app.exception_handler(ConflictError)
    async def _409(request: Request, exc: ConflictError) -> JSONResponse:
        return _error(409, str(exc))

    @app.exception_handler(InvalidInput)
    async def _422(request: Request, exc: InvalidInput) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(AuthError)
    async def _401(request: Request, exc: AuthError) -> JSONResponse:
        if isinstance(exc, PermissionDenied):
            return _error(403, str(exc))
        return _error(401, str(exc), **{"WWW-Authenticate": "Bearer"})

    @app.exception_handler(RateLimited)
    async def _429(request: Request, exc: RateLimited) -> JSONResponse:
        return _error(429, str(exc), **{"Retry-After": str(exc.retry_after)})

    @app.exception_handler(DatabaseFault)
    async def _500(request: Request, exc: DatabaseFault) -> JSONResponse:
        # Not exc_info=exc.__cause__: the driver's text carries the server's DETAIL line,
        # which quotes the values of the row (db.error_for keeps it off the response for
        # that reason). The frames say where, the primary line what.
        cause = exc.__cause__
        frames = "".join(traceback.format_tb(cause.__traceback__)) if cause else ""
        log.error("%s on %s %s: %s\n%s", exc, request.method, request.url.path, exc.primary, frames)
        return _error(500, f"internal error ({exc.sqlstate or 'database'})")

    @app.exception_handler(StorageError)
    async def _503(request: Request, exc: StorageError) -> JSONResponse:
        log.error("storage error: %s", exc)
        return _error(503, "database unavailable")

    headers.install(app)
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(live.router)

    @app.get("/healthz", tags=["service"])
    def healthz(request: Request) -> Response:
        engine: Engine | None = getattr(request.app.state, "engine", None)
        try:
            with request.app.state.pool.connection(timeout=2) as conn:
                conn.execute("SELECT 1")
            db = True
        except Exception:
            db = False
        ok = db and engine is not None and engine.listening.is_set()
        # Set by `eldercare serve` (its gateway worker supervisor): a dead ingest worker
        # must not leave the service "healthy" (audit H4).
        ingest = getattr(request.app.state, "ingest", None)
        gateway = None if ingest is None else bool(ingest.alive())
        ok = ok and gateway is not False
        body: dict[str, Any] = {
            "status": "ok" if ok else "degraded",
            "db": db,
            "engine": bool(engine and engine.listening.is_set()),
        }
        if gateway is not None:
            body["gateway"] = gateway
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get("/metrics", tags=["service"])
    def metrics() -> Response:
        from prometheus_client import (
            CONTENT_TYPE_LATEST,
            REGISTRY,
            CollectorRegistry,
            generate_latest,
        )

        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    return app
