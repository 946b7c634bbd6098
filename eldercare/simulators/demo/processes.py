"""The demo's children: the fleet processes and ``eldercare serve``."""

from __future__ import annotations

import contextlib
import errno
import logging
import math
import multiprocessing
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eldercare.config import Settings
from eldercare.errors import DemoError
from eldercare.simulators.demo.provision import DemoFleet
from eldercare.simulators.scenario import DevicePlan

log = logging.getLogger("eldercare.demo")


class _Stop(Exception):
    """Raised in the fleet child by SIGTERM, to leave the runner's endless loop."""


def _fleet_child(
    devices: Sequence[DevicePlan],
    addr: Mapping[str, Any],
    rate: float,
    seed: int,
    incident_rate: float,
    run_id: str,
    log_path: str,
    out: Any,
) -> None:
    """Run one slice of the demo fleet until SIGTERM, then close cleanly and report."""
    # Ctrl-C reaches the whole foreground process group; the parent decides the order
    # in which things stop, so the fleet waits for its SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        filename=log_path,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s fleet %(name)s: %(message)s",
    )
    from eldercare.simulators.fleet import FleetRunner
    from eldercare.simulators.scenario import Scenario

    scenario = Scenario(
        devices,
        seed,
        rate=rate,
        incident_rate=incident_rate,
        start=datetime.now(UTC),
        run_id=run_id,
    )
    runner = FleetRunner(devices, scenario, addr["mqtt_host"], addr["mqtt_port"], io_seed=seed)

    def on_term(signum: int, frame: Any) -> None:
        # Once the runner is closing, let it finish: devices say goodbye (retained
        # offline state, DISCONNECT) instead of vanishing.
        if not runner._closing:
            raise _Stop

    signal.signal(signal.SIGTERM, on_term)
    try:
        stats = runner.run(math.inf, drain_s=0)
    except _Stop:
        stats = runner.stats
        stats.elapsed_s = runner.now()
        stats.unacked_at_end = scenario.pending_alarms
        runner.close()
    out.put(stats)


class FleetProcesses:
    """The fleet's child processes (multiprocessing, spawn) and their merged stats."""

    def __init__(
        self,
        fleet: DemoFleet,
        settings: Settings,
        *,
        rate: float,
        seed: int,
        incident_rate: float,
        processes: int,
        log_path: Path,
    ) -> None:
        from eldercare.simulators.fleet import broker_address

        # spawn: paho and psycopg state must not be inherited through fork.
        ctx = multiprocessing.get_context("spawn")
        self.queue = ctx.Queue()
        n = max(1, min(processes, len(fleet.devices)))
        slices = [fleet.devices[i::n] for i in range(n)]
        run_id = secrets.token_hex(3)
        addr = broker_address(settings)
        self.procs = [
            ctx.Process(
                target=_fleet_child,
                name=f"demo-fleet-{i}",
                args=(
                    s,
                    addr,
                    rate,
                    seed * 1000 + i,
                    incident_rate,
                    f"{run_id}{i}",
                    str(log_path),
                    self.queue,
                ),
            )
            for i, s in enumerate(slices)
        ]

    def start(self) -> None:
        for p in self.procs:
            p.start()

    def alive(self) -> bool:
        return any(p.is_alive() for p in self.procs)

    def stop(self, timeout: float = 10.0) -> Any:
        """SIGTERM every child, collect what they report, kill any that hang."""
        from eldercare.simulators.fleet import FleetStats

        for p in self.procs:
            if p.is_alive() and p.pid:
                os.kill(p.pid, signal.SIGTERM)
        total, deadline = FleetStats(), time.monotonic() + timeout
        for _ in self.procs:
            try:
                total.merge(self.queue.get(timeout=max(0.1, deadline - time.monotonic())))
            except Exception:  # queue.Empty, or a child that died before reporting
                break
        for p in self.procs:
            p.join(max(0.1, deadline - time.monotonic()))
            if p.is_alive():
                p.kill()
                p.join(5)
        return total


def display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "::", "") else host


def check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        # As uvicorn does, so a socket in TIME_WAIT from the last run does not count as busy.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise DemoError(
                    f"port {port} on {host} is already in use (another `eldercare serve` or "
                    f"demo?). Stop it, or pick another port: ELDERCARE_API_PORT=8001 make demo"
                ) from exc
            raise DemoError(f"cannot listen on {host}:{port}: {exc}") from exc


class Server:
    """``eldercare serve`` as a child process in its own process group."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with open(self.log_path, "wb") as fh:
            # Own process group: Ctrl-C in the terminal must not stop the server before
            # the fleet; the demo stops both, in order.
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "eldercare", "serve"],
                stdout=fh,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                process_group=0,
            )

    def wait_healthy(self, url: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise DemoError(
                    f"`eldercare serve` exited early; last lines of {self.log_path}:\n{self.tail()}"
                )
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass  # not listening yet, or 503 while the engine starts
            time.sleep(0.2)
        raise DemoError(f"{url} did not answer within {timeout:.0f} s; see {self.log_path}")

    def tail(self, n: int = 15) -> str:
        try:
            lines = self.log_path.read_text("utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    " + line for line in lines[-n:])

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM (uvicorn shuts down, then stops its gateway workers), wait, then kill
        the whole process group so no worker outlives the demo."""
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("eldercare serve did not stop in %.0f s; killing it", timeout)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # stragglers: workers of a killed server
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)
        return proc.returncode
