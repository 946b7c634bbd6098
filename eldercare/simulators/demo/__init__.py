"""``eldercare demo`` (what ``make demo`` runs): the whole platform on
one machine, with a seeded synthetic fleet sending alarms a person can watch arrive.

It starts ``eldercare serve`` as a child process, provisions the demo fleet and demo logins
(idempotently: a second run reuses both), runs the fleet in child processes at a modest
rate, and keeps one live status line in the terminal, read from the database with plain
SQL. Ctrl-C (or ``--duration``) stops the fleet first, then the server.

Everything here is synthetic (see :mod:`eldercare.simulators.fleet`), and the demo logins
have published passwords, so the demo refuses to run when
``ELDERCARE_ENVIRONMENT=production``. Device credentials are kept in the state directory
(``.local/demo/``, git-ignored, mode 0600) so a re-run does not touch the registry.

This module runs it (:func:`main`, :func:`run`); the parts are :mod:`.provision` (fleet
and logins), :mod:`.processes` (the fleet children and ``eldercare serve``) and
:mod:`.status` (the status line).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import psycopg

from eldercare.config import PROJECT_ROOT, Settings, load_settings
from eldercare.errors import DemoError, EldercareError
from eldercare.simulators.demo.processes import (
    FleetProcesses,
    Server,
    check_port_free,
    display_host,
)
from eldercare.simulators.demo.provision import (
    STAFF_PASSWORD,
    DemoFleet,
    Login,
    alarms_per_second,
    ensure_logins,
    link_fleet_to_services,
    provision_fleet,
)
from eldercare.simulators.demo.status import (
    Status,
    StatusLine,
    format_status,
    order_counts,
    read_status,
)

log = logging.getLogger("eldercare.demo")

# ---------------------------------------------------------------- main


def _banner(
    settings: Settings, fleet: DemoFleet, logins: list[Login], alarm_every: float, state_dir: Path
) -> str:
    base = f"http://{display_host(settings.api_host)}:{settings.api_port}"

    def shown(lg: Login) -> str:
        return f"{lg.username} / {lg.password}" if lg.password else f"{lg.username} (existing)"

    central = ", ".join(shown(lg) for lg in logins if lg.facility_code is None)
    staff_logins = [lg for lg in logins if lg.facility_code]
    if staff_logins and all(lg.password == STAFF_PASSWORD for lg in staff_logins):
        first, last = staff_logins[0], staff_logins[-1]
        names = first.username if first is last else f"{first.username} .. {last.username}"
        staff = f"{names} / {STAFF_PASSWORD} (one per facility)"
    else:
        staff = ", ".join(f"{shown(lg)} ({lg.facility_code})" for lg in staff_logins)
    kinds: dict[str, int] = {}
    for d in fleet.devices:
        kinds[d.kind] = kinds.get(d.kind, 0) + 1
    kind_text = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    try:
        logs = state_dir.relative_to(Path.cwd())
    except ValueError:
        logs = state_dir
    return "\n".join(
        [
            "",
            "Eldercare demo (development only; every facility, resident and device is synthetic)",
            f"  Console   {base}/console   {central}",
            f"  Staff     {base}/staff     {staff}",
            f"  API docs  {base}/docs",
            f"  Metrics   {base}/metrics   (Prometheus)",
            "  Grafana   dashboards/ (provisioned by the docker-compose deployment; not part of "
            "the demo)",
            f"  Fleet     {'reused' if fleet.reused else 'created'}: {len(fleet.facilities)} "
            f"facilities, {fleet.home_beds} home care beds, {len(fleet.devices)} devices, "
            f"{fleet.cameras} cameras",
            f"            {kind_text}",
            f"            about one resident alarm every {_every_text(alarm_every)}, plus "
            "device-health alarms (drops, camera faults)",
            f"  Logs      {logs}/ (serve.log, fleet.log, demo.log)",
            "Ctrl-C stops the demo.",
            "",
        ]
    )


if TYPE_CHECKING:
    # Imported lazily at run time: the fleet's child processes import this package, and
    # must not pay for the API and platform modules the service simulator pulls in.
    from eldercare.simulators import services


def _services_banner(settings: Settings, r: services.ServiceReport, orders: dict[str, int]) -> str:
    """Where the service side shows: the console's work-order tab (operator), the reports
    (supervisor), and the month's entitlement run."""
    from eldercare.simulators import services
    from eldercare.simulators.demo.provision import OPERATOR, SUPERVISOR

    base = f"http://{display_host(settings.api_host)}:{settings.api_port}"
    by_status = ", ".join(f"{n} {s}" for s, n in sorted(orders.items())) or "none"
    operator = f"{OPERATOR[0]} / {OPERATOR[1]}"
    supervisor = f"{SUPERVISOR[0]} / {SUPERVISOR[1]}"
    if r.reused:
        done = "reused from an earlier run"
    else:
        done = (
            f"{_n(r.created, 'work order')} over the past month ({r.verified} verified, "
            f"{r.blocked} held back; {r.frauds} planted frauds)"
        )
    found = ", ".join(f"{k} {n}" for k, n in sorted(r.findings.items())) or "none"
    worker = (
        f"{r.worker_login} / {r.worker_password}"
        if r.worker_password
        else f"{r.worker_login} (existing)"
    )
    money = ", ".join(f"{k} {v / 100:.2f} yuan" for k, v in sorted(r.entitled_fen.items()))
    q = f"month={r.month}&district={services.DISTRICT}"
    return "\n".join(
        [
            f"  Services  {services.PROVIDER_NAME}: {done}",
            f"            verification findings: {found}",
            f"  Orders    {base}/console#orders   work-order tab ({operator}): "
            f"{sum(orders.values())} orders ({by_status})",
            f"            {base}/console#call   12349 call intake (a call creates an order)",
            f"  Worker    {base}/worker   {worker}   (the care worker's phone page: today's"
            " visits to accept, check in and check out)",
            f"  Subsidies entitlement run {r.month} for {services.DISTRICT}: {money or 'nothing'}",
            f"  Reports   ({supervisor}; add &format=csv for CSV)",
            f"            {base}/api/reports/subsidy-spend?{q}&group_by=district,programme,funding",
            f"            {base}/api/reports/anomalies?{q}",
            f"            {base}/api/reports/revisits?from={r.month}-01&to={_next_month(r.month)}"
            f"-01&district={services.DISTRICT}",
            "            Grafana: dashboards/subsidies.json",
            "",
        ]
    )


def _next_month(month: str) -> str:
    year, mon = (int(x) for x in month.split("-"))
    return f"{year + mon // 12}-{mon % 12 + 1:02d}"


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _every_text(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace, out: TextIO) -> int:
    from eldercare.simulators import services
    from eldercare.storage.db import connect
    from eldercare.storage.migrate import migrate

    settings = load_settings()
    if settings.environment != "development":
        raise DemoError(
            f"the demo creates synthetic facilities and logins with published passwords; "
            f"it refuses to run with ELDERCARE_ENVIRONMENT={settings.environment}"
        )
    state_dir: Path = (
        args.state_dir
        or Path(os.environ.get("ELDERCARE_DEMO_DIR") or PROJECT_ROOT / ".local" / "demo")
    ).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=state_dir / "demo.log",
        level=logging.INFO,
        force=True,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    check_port_free(settings.api_host, settings.api_port)
    # Before the server starts, so provisioning can overlap its start-up safely
    # (migrate holds an advisory lock; serve's own migrate then finds nothing to do).
    migrate(settings.migration_url, settings.database_url)

    server = Server(state_dir / "serve.log")
    fleet: DemoFleet | None = None
    fleet_procs: FleetProcesses | None = None
    status_line = StatusLine(out)
    started = time.monotonic()
    stats = None
    interrupted = False
    try:
        server.start()
        print(
            f"starting eldercare serve on {settings.api_host}:{settings.api_port} ...",
            file=out,
            flush=True,
        )
        with connect(settings.database_url) as conn:
            fleet = provision_fleet(conn, settings, args.seed, state_dir)
            logins = ensure_logins(conn, fleet)
        # Service activity (issue 8): work orders with a few frauds, and this month's
        # entitlement run; in autocommit so each visit's transactions stand on their own.
        with connect(settings.database_url, autocommit=True) as conn:
            service_report = services.simulate(conn, settings, datetime.now(UTC), args.seed)
            with conn.transaction():
                link_fleet_to_services(conn, services.STREET)
            orders = order_counts(conn, services.DISTRICT)
        if not fleet.devices:
            raise DemoError(
                "the demo fleet has no active devices (revoked?); "
                "remove the SIMdemo facilities' devices or use a fresh database"
            )
        base = f"http://{display_host(settings.api_host)}:{settings.api_port}"
        server.wait_healthy(base + "/healthz")

        per_s = alarms_per_second(fleet.devices)
        incident_rate = 1.0 / (args.alarm_every * per_s) if per_s else 1.0
        fleet_procs = FleetProcesses(
            fleet,
            settings,
            rate=args.rate,
            seed=args.seed,
            incident_rate=incident_rate,
            processes=args.processes,
            log_path=state_dir / "fleet.log",
        )
        fleet_procs.start()
        print(_banner(settings, fleet, logins, args.alarm_every, state_dir), file=out, flush=True)
        print(_services_banner(settings, service_report, orders), file=out, flush=True)
        log.info("demo running: %d devices, incident rate %.2f", len(fleet.devices), incident_rate)

        started = time.monotonic()
        deadline = started + args.duration if args.duration else math.inf
        with connect(settings.database_url, autocommit=True) as status_conn:
            next_at = started + status_line.every
            while (now := time.monotonic()) < deadline:
                if server.proc is not None and server.proc.poll() is not None:
                    status_line.end()
                    raise DemoError(
                        f"`eldercare serve` stopped unexpectedly; last lines of "
                        f"{server.log_path}:\n{server.tail()}"
                    )
                if not fleet_procs.alive():
                    status_line.end()
                    raise DemoError(f"the fleet process stopped; see {state_dir}/fleet.log")
                if now >= next_at:
                    try:
                        st: Status | None = read_status(status_conn, fleet.facility_ids)
                    except psycopg.Error:
                        st = None
                    status_line.show(format_status(now - started, st))
                    next_at += status_line.every
                time.sleep(max(0.0, min(next_at, deadline) - time.monotonic()))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        # Shutdown must finish even if Ctrl-C is pressed again: otherwise children leak.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        status_line.end()
        elapsed = time.monotonic() - started
        if fleet_procs is not None:
            print("stopping the fleet ...", file=out, flush=True)
            stats = fleet_procs.stop()
        print("stopping eldercare serve ...", file=out, flush=True)
        server.stop()
    final = None
    if fleet is not None:
        with (
            contextlib.suppress(psycopg.Error, EldercareError),
            connect(settings.database_url, autocommit=True) as conn,
        ):
            final = read_status(conn, fleet.facility_ids)
    parts = [f"demo {'interrupted' if interrupted else 'finished'} after {elapsed:.0f} s"]
    if stats is not None:
        parts.append(
            f"{stats.connected}/{stats.devices} devices connected, {stats.sent} "
            f"events sent, {_n(stats.alarms_raised, 'alarm')} raised "
            f"({stats.acks_received} acked by the platform)"
        )
    if final is not None:
        parts.append(f"{_n(final.open_alarms, 'alarm')} open ({final.unacked} unacknowledged)")
    print("; ".join(parts), file=out, flush=True)
    return 0


def main(args: argparse.Namespace) -> int:
    """``eldercare demo`` (options in :mod:`eldercare.cli.demo`)."""
    # A plain `kill` of the demo stops it as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        return run(args, sys.stdout)
    except DemoError as exc:
        print(f"demo: {exc}", file=sys.stderr, flush=True)
        return 2
    except (EldercareError, psycopg.Error) as exc:  # config, database or broker not reachable
        print(
            f"demo: {exc}\n(is `make services` done? `make demo` runs it first)",
            file=sys.stderr,
            flush=True,
        )
        return 2
