"""Run one or several gateway workers; several share the load through an MQTT shared
subscription (``$share/<group>/...``), each with its own persistent session."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import tempfile
import threading
from pathlib import Path

from eldercare.config import Settings

log = logging.getLogger(__name__)


def _child(settings_json: str, index: int, shared: bool) -> None:
    from eldercare.config import Settings
    from eldercare.gateway.worker import GatewayWorker

    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s gw{index} %(name)s: %(message)s"
    )
    settings = Settings.model_validate_json(settings_json)
    worker = GatewayWorker(settings, index, shared=shared)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    worker.start()
    stop.wait()
    worker.stop()


def prepare_multiprocess_metrics() -> Path:
    """Counters from every worker process merge in one directory (Prometheus multiprocess)."""
    existing = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if existing:
        return Path(existing)
    d = Path(tempfile.mkdtemp(prefix="eldercare-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(d)
    return d


def start_workers(settings: Settings, count: int) -> list[mp.process.BaseProcess]:
    return [
        start_workers_one(settings, i, shared=settings.gateway_subscription_shared(count))
        for i in range(count)
    ]


def stop_workers(procs: list[mp.process.BaseProcess], timeout: float = 15) -> None:
    for proc in procs:
        if proc.is_alive() and proc.pid:
            os.kill(proc.pid, signal.SIGTERM)
    for proc in procs:
        proc.join(timeout)
        if proc.is_alive():
            proc.kill()


def serve_metrics(port: int) -> None:
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    start_http_server(port, addr="127.0.0.1", registry=registry)


def run_gateway(settings: Settings, workers: int) -> int:
    """``eldercare gateway``: run workers until SIGTERM/SIGINT, metrics on settings.metrics_port."""
    prepare_multiprocess_metrics()
    procs = start_workers(settings, workers)
    if settings.metrics_port:
        serve_metrics(settings.metrics_port)
        log.info("gateway metrics on http://127.0.0.1:%s/metrics", settings.metrics_port)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    log.info("gateway running with %d worker(s)", workers)
    Supervisor(settings, procs).run(stop)
    stop_workers(procs)
    return 0


class Supervisor:
    """Keeps gateway worker processes running (``eldercare gateway`` and ``eldercare
    serve``): a worker that died is replaced and resumes its persistent broker session,
    so nothing it had not PUBACKed is lost. ``alive()`` feeds ``/healthz`` (audit H4)."""

    def __init__(self, settings: Settings, procs: list[mp.process.BaseProcess]) -> None:
        self.settings = settings
        self.procs = procs
        self.restarts = 0

    def alive(self) -> bool:
        return all(p.is_alive() for p in self.procs)

    def check(self) -> None:
        for i, p in enumerate(self.procs):
            if not p.is_alive():
                log.error("gateway worker %d exited with %s; restarting it", i, p.exitcode)
                self.procs[i] = start_workers_one(
                    self.settings,
                    i,
                    shared=self.settings.gateway_subscription_shared(len(self.procs)),
                )
                self.restarts += 1

    def run(self, stop: threading.Event, every: float = 1.0) -> None:
        while not stop.wait(every):
            self.check()


def start_workers_one(settings: Settings, index: int, *, shared: bool) -> mp.process.BaseProcess:
    ctx = mp.get_context("spawn")
    proc = ctx.Process(
        target=_child,
        args=(settings.model_dump_json(), index, shared),
        name=f"eldercare-gateway-{index}",
    )
    proc.start()
    return proc
