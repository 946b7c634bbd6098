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
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import json
import logging
import math
import multiprocessing
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final, TextIO

import psycopg

from eldercare.alerts import rules
from eldercare.config import PROJECT_ROOT, Settings, load_settings
from eldercare.errors import DemoError, EldercareError
from eldercare.simulators import scenario as sc
from eldercare.simulators.scenario import DevicePlan
from eldercare.storage.db import sql_list

log = logging.getLogger("eldercare.demo")

DEMO_TAG: Final = "demo"  # facility codes SIMdemo-NN, device ids simdemo-<kind>-NNNN
FACILITY_PATTERN: Final = f"SIM{DEMO_TAG}-%"
DEVICE_PATTERN: Final = f"sim{DEMO_TAG}-%"
# Published on purpose: they are printed in the terminal for whoever watches the demo.
OPERATOR: Final = ("operator", "demo-operator", "operator")
SUPERVISOR: Final = ("supervisor", "demo-supervisor", "supervisor")
STAFF_PASSWORD: Final = "demo-staff"
STATUS_EVERY_TTY_S: Final = 1.0
STATUS_EVERY_PIPE_S: Final = 5.0
RATE_WINDOW_S: Final = 5
_ADVISORY_LOCK: Final = 4242077  # serialises two demos provisioning into one database
TERMINAL: Final = sql_list(rules.TERMINAL)  # open = not closed or merged


# ---------------------------------------------------------------- provisioning


@dataclass(frozen=True, slots=True)
class DemoFleet:
    facilities: tuple[tuple[int, str], ...]  # (id, code)
    devices: tuple[DevicePlan, ...]
    home_beds: int
    cameras: int
    reused: bool

    @property
    def facility_ids(self) -> list[int]:
        return [f[0] for f in self.facilities]


@dataclass(frozen=True, slots=True)
class Login:
    username: str
    password: str | None  # None: the account existed with another password; left alone
    role: str
    facility_code: str | None = None


def _plan_path(state_dir: Path) -> Path:
    return state_dir / "fleet.json"


def _load_saved(state_dir: Path) -> dict[str, DevicePlan]:
    path = _plan_path(state_dir)
    try:
        raw = json.loads(path.read_text("utf-8"))
        return {
            d["device_id"]: DevicePlan(
                d["device_id"],
                d["kind"],
                d["password"],
                d["facility_code"],
                d.get("room"),
                tuple(d.get("cameras", ())),
            )
            for d in raw["devices"]
        }
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError):
        log.warning("ignoring unreadable %s; device passwords will be rotated", path)
        return {}


def _save(state_dir: Path, devices: Sequence[DevicePlan]) -> None:
    path = _plan_path(state_dir)
    tmp = path.with_suffix(".tmp")
    body = {
        "tag": DEMO_TAG,
        "devices": [
            {
                "device_id": d.device_id,
                "kind": d.kind,
                "password": d.password,
                "facility_code": d.facility_code,
                "room": d.room,
                "cameras": list(d.cameras),
            }
            for d in devices
        ],
    }
    # Device passwords: readable by this user only, like an SSH key.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(body, fh)
    os.replace(tmp, path)


def _from_registry(conn: psycopg.Connection) -> list[tuple[DevicePlan, str]]:
    """The demo devices the registry has, with each stored password hash (no password)."""
    rows = conn.execute(
        "SELECT d.id, d.kind, f.code, d.room, d.password_hash,"
        " coalesce(array_agg(c.camera_id ORDER BY c.camera_id)"
        "          FILTER (WHERE c.camera_id IS NOT NULL), '{}')"
        " FROM devices d JOIN facilities f ON f.id = d.facility_id"
        " LEFT JOIN cameras c ON c.device_id = d.id"
        " WHERE f.code LIKE %s AND d.id LIKE %s AND d.status = 'active'"
        " GROUP BY d.id, d.kind, f.code, d.room, d.password_hash ORDER BY d.id",
        (FACILITY_PATTERN, DEVICE_PATTERN),
    ).fetchall()
    return [(DevicePlan(r[0], r[1], "", r[2], r[3], tuple(r[5])), r[4]) for r in rows]


def provision_fleet(
    conn: psycopg.Connection, settings: Settings, seed: int, state_dir: Path
) -> DemoFleet:
    """Reuse the demo fleet in this database, or create it once (tag ``demo``).

    Saved credentials are checked against the registry's hashes, so a plan file from
    another database (or a re-created one) is never trusted blindly: devices whose
    saved password does not match get a fresh one, and the broker is re-synced.
    """
    from eldercare.registry import broker_files as broker
    from eldercare.registry import service as registry
    from eldercare.simulators.fleet import Fleet

    conn.execute("SELECT pg_advisory_lock(%s)", (_ADVISORY_LOCK,))
    conn.commit()
    try:
        found = _from_registry(conn)
        reused = bool(found)
        if not found:
            plan = Fleet.provision(conn, settings, seed, tag=DEMO_TAG)
            devices = list(plan.devices)
        else:
            saved = _load_saved(state_dir)
            devices, stale = [], []
            for dev, stored_hash in found:
                old = saved.get(dev.device_id)
                if old is not None and broker.verify_password(old.password, stored_hash):
                    devices.append(dataclasses.replace(dev, password=old.password))
                else:
                    stale.append(dev)
            if stale:
                # No saved password for these (state directory wiped, or another
                # database): rotate, since the registry keeps only hashes.
                log.info("rotating %d demo device passwords", len(stale))
                for dev in stale:
                    password = broker.new_password()
                    conn.execute(
                        "UPDATE devices SET password_hash = %s WHERE id = %s",
                        (broker.hash_password(password), dev.device_id),
                    )
                    devices.append(dataclasses.replace(dev, password=password))
                registry.sync_broker(conn, settings)  # commits, then waits for the reload
            devices.sort(key=lambda d: d.device_id)
        conn.commit()
        _save(state_dir, devices)
        facilities = conn.execute(
            "SELECT id, code FROM facilities WHERE code LIKE %s ORDER BY code", (FACILITY_PATTERN,)
        ).fetchall()
        ids = [f[0] for f in facilities]
        home_beds = conn.execute(
            "SELECT count(*) FROM home_beds WHERE facility_id = ANY(%s)", (ids,)
        ).fetchone()
        conn.commit()
    finally:
        # After a failure the transaction is aborted: roll back before unlocking, and
        # never let the unlock hide the original error (closing the session unlocks too).
        with contextlib.suppress(psycopg.Error):
            conn.rollback()
            conn.execute("SELECT pg_advisory_unlock(%s)", (_ADVISORY_LOCK,))
            conn.commit()
    return DemoFleet(
        tuple((int(i), str(c)) for i, c in facilities),
        tuple(devices),
        int(home_beds[0]) if home_beds else 0,
        sum(len(d.cameras) for d in devices),
        reused,
    )


def ensure_logins(conn: psycopg.Connection, fleet: DemoFleet) -> list[Login]:
    """Demo logins, plus one on-duty responder per facility linked to its staff login so
    dispatch offers reach the staff page. An existing account with another password or
    role is left untouched (and its password is not printed)."""
    import bcrypt

    from eldercare.registry import auth

    logins: list[Login] = []

    def ensure(
        username: str,
        password: str,
        role: str,
        facility: tuple[int, str] | None = None,
        responder_id: int | None = None,
    ) -> None:
        fac_id, code = facility if facility else (None, None)
        row = conn.execute(
            "SELECT password_hash, role, facility_id FROM users WHERE username = %s", (username,)
        ).fetchone()
        if row is None:
            auth.create_user(conn, username, password, role, fac_id, responder_id)
            logins.append(Login(username, password, role, code))
        elif (
            row[1] == role
            and row[2] == fac_id
            and bcrypt.checkpw(password.encode(), row[0].encode())
        ):
            logins.append(Login(username, password, role, code))
        else:
            log.info("login %s exists with another role or password; left unchanged", username)
            logins.append(Login(username, None, row[1], code))

    ensure(*OPERATOR)
    ensure(*SUPERVISOR)
    for n, (fac_id, code) in enumerate(fleet.facilities, 1):
        name = f"演示值班员 {n:02d}"  # a role, not a person
        row = conn.execute(
            "SELECT id FROM responders WHERE facility_id = %s"
            " AND kind = 'facility_staff' AND name = %s",
            (fac_id, name),
        ).fetchone()
        if row is None:
            row = conn.execute(
                "INSERT INTO responders (kind, name, phone, facility_id, lat, lon)"
                " SELECT 'facility_staff', %s, %s, id, lat, lon FROM facilities WHERE id = %s"
                " RETURNING id",
                # 028-0...: no local number starts with 0, so this cannot ring anyone.
                (name, f"028-0100-{n:04d}", fac_id),
            ).fetchone()
        assert row is not None
        responder_id = int(row[0])
        # On duty now and for the next month: a rota shift that outlives any demo session.
        conn.execute(
            "INSERT INTO rota (responder_id, facility_id, starts_at, ends_at)"
            " SELECT %s, %s, now() - interval '1 hour', now() + interval '30 days'"
            " WHERE NOT EXISTS (SELECT 1 FROM rota WHERE responder_id = %s AND facility_id = %s"
            "   AND starts_at <= now() AND ends_at > now() + interval '1 day')",
            (responder_id, fac_id, responder_id, fac_id),
        )
        ensure(f"staff-{n:02d}", STAFF_PASSWORD, "facility_staff", (fac_id, code), responder_id)
    conn.commit()
    return logins


def alarms_per_second(devices: Sequence[DevicePlan]) -> float:
    """Expected resident alarms per second at incident_rate 1, from the scenario's means
    (device-health alarms such as drops and camera faults are extra)."""
    home = (
        1 / (3 * sc.SOS_MEAN_S)
        + 1 / sc.FALL_MEAN_S
        + 1 / (2 * sc.BED_EXIT_MEAN_S)
        + sum(1 / m for m in sc.HOME_ALARM_MEAN_S.values())
    )
    per_kind = {
        "sos_button": 1 / sc.SOS_MEAN_S,
        "fall_sensor": 1 / sc.FALL_MEAN_S + 1 / sc.BED_EXIT_MEAN_S,
        "home_kit": home,
        "wearable": 1 / (4 * sc.FALL_MEAN_S),
    }
    return sum(per_kind.get(d.kind, 0.0) for d in devices)


# ---------------------------------------------------------------- the fleet child


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


# ---------------------------------------------------------------- the server child


def _display_host(host: str) -> str:
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


# ---------------------------------------------------------------- live status


@dataclass(frozen=True, slots=True)
class Status:
    events_per_s: float
    open_alarms: int
    unacked: int
    devices_offline: int
    devices: int
    cameras_offline: int
    cameras: int


def read_status(conn: psycopg.Connection, facility_ids: list[int]) -> Status:
    """The demo fleet's state in plain SQL (the same tables the console reads)."""
    row = conn.execute(
        f"""
        WITH dev AS (
          SELECT d.id, coalesce(s.online, false) AS online
            FROM devices d LEFT JOIN device_status s ON s.device_id = d.id
           WHERE d.facility_id = ANY(%(f)s) AND d.status = 'active'
        ), cam AS (
          SELECT coalesce(cs.online, false) AS online
            FROM cameras c JOIN dev ON dev.id = c.device_id
            LEFT JOIN camera_status cs
              ON cs.device_id = c.device_id AND cs.camera_id = c.camera_id
        )
        SELECT
          (SELECT count(*) FROM device_events
            WHERE facility_id = ANY(%(f)s)
              AND time > now() - interval '15 minutes'   -- lets TimescaleDB skip old chunks
              AND received_at > now() - interval '{RATE_WINDOW_S} seconds'),
          (SELECT count(*) FROM alarms
            WHERE facility_id = ANY(%(f)s) AND status NOT IN {TERMINAL}),
          (SELECT count(*) FROM alarms WHERE facility_id = ANY(%(f)s) AND status = 'raised'),
          (SELECT count(*) FILTER (WHERE NOT online) FROM dev),
          (SELECT count(*) FROM dev),
          (SELECT count(*) FILTER (WHERE NOT online) FROM cam),
          (SELECT count(*) FROM cam)
        """,
        {"f": facility_ids},
    ).fetchone()
    assert row is not None
    return Status(row[0] / RATE_WINDOW_S, *(int(x) for x in row[1:]))


def format_status(elapsed: float, st: Status | None) -> str:
    m, s = divmod(int(elapsed), 60)
    if st is None:
        return f"{m:02d}:{s:02d} | database unavailable, retrying"
    return (
        f"{m:02d}:{s:02d} | {st.events_per_s:5.1f} events/s | open alarms {st.open_alarms}"
        f" ({st.unacked} unacked) | offline: devices {st.devices_offline}/{st.devices},"
        f" cameras {st.cameras_offline}/{st.cameras}"
    )


class StatusLine:
    """One line rewritten in place on a terminal; a new line every few seconds otherwise."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.tty = out.isatty()
        self.every = STATUS_EVERY_TTY_S if self.tty else STATUS_EVERY_PIPE_S
        self._width = 0

    def show(self, text: str) -> None:
        if self.tty:
            cols = shutil.get_terminal_size((100, 24)).columns - 1
            text = text[:cols]  # a wrapped line could not be rewritten with \r
            self.out.write("\r" + text.ljust(self._width))
            self._width = len(text)
        else:
            self.out.write(text + "\n")
        self.out.flush()

    def end(self) -> None:
        if self.tty and self._width:
            self.out.write("\n")
            self.out.flush()
            self._width = 0


# ---------------------------------------------------------------- main


def _banner(
    settings: Settings, fleet: DemoFleet, logins: list[Login], alarm_every: float, state_dir: Path
) -> str:
    base = f"http://{_display_host(settings.api_host)}:{settings.api_port}"

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


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _every_text(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def run(args: argparse.Namespace, out: TextIO) -> int:
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
    migrate(settings.database_url)

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
        if not fleet.devices:
            raise DemoError(
                "the demo fleet has no active devices (revoked?); "
                "remove the SIMdemo facilities' devices or use a fresh database"
            )
        base = f"http://{_display_host(settings.api_host)}:{settings.api_port}"
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
