"""Real services for tests and benchmarks: a fresh database per session and a throwaway
Mosquitto, child processes, and the API served from a thread.

No mocks: each pytest session gets its own database in the project-local
TimescaleDB cluster and its own Mosquitto process on a free port, so parallel
sessions (and a running demo) never share broker credentials or rows.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg

from eldercare.config import DEFAULT_DB_URL, Settings, load_settings
from eldercare.registry.broker_files import render_mosquitto_conf
from eldercare.storage.migrate import migrate

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get(
    "ELDERCARE_TEST_ADMIN_URL", "postgresql://eldercare:eldercare@127.0.0.1:55432/postgres"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listens on {port}")


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(interval)


def app_url(owner_url: str) -> str:
    """The same database as the app's least-privilege role (audit H11). The role is
    cluster-wide, so every session uses the development credentials: one session's
    ``migrate(owner, app)`` never changes the password another session logs in with."""
    app = urlsplit(DEFAULT_DB_URL)
    owner = urlsplit(owner_url)
    netloc = f"{app.username}:{app.password}@{owner.hostname}:{owner.port}"
    return urlunsplit(owner._replace(netloc=netloc))


def owner_url(url: str) -> str:
    """The owner's URL of the database ``url`` names: ``url`` itself, unless it is the
    app role's, which on the project cluster means the owner of ADMIN_URL."""
    if urlsplit(url).username != urlsplit(DEFAULT_DB_URL).username:
        return url
    return urlunsplit(urlsplit(url)._replace(netloc=urlsplit(ADMIN_URL).netloc))


def migrate_database(owner_url: str) -> str:
    """Migrate as the owner and set up the app's role; returns the app's URL."""
    url = app_url(owner_url)
    migrate(owner_url, url)
    return url


def create_database() -> str:
    name = "eldercare_t_" + secrets.token_hex(4)
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return ADMIN_URL.rsplit("/", 1)[0] + "/" + name


def drop_database(url: str) -> None:
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class Broker:
    """A Mosquitto process of the project's own configuration, for one test session."""

    directory: Path
    port: int = field(default_factory=free_port)
    # Devices connect here: the listener that binds client id to user name (audit H1).
    device_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        (self.directory / "data").mkdir(parents=True, exist_ok=True)
        for name in ("passwd", "acl"):
            (self.directory / name).touch()
        conf = self.directory / "mosquitto.conf"
        conf.write_text(render_mosquitto_conf(self.directory, self.port, self.device_port))
        self.proc = subprocess.Popen(
            ["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_port(self.port)
        wait_port(self.device_port)
        wait_for(lambda: (self.directory / "mosquitto.pid").exists(), what="mosquitto pid file")

    def stop(self) -> None:
        """A graceful stop: Mosquitto saves its persistence file (queued QoS 1 messages)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


@contextmanager
def running_broker(directory: Path) -> Iterator[Broker]:
    b = Broker(directory)
    b.start()
    try:
        yield b
    finally:
        b.stop()


def make_settings(database_url: str, broker: Broker, **extra: object) -> Settings:
    values: dict[str, object] = {
        # Everything the platform does runs as the app's role; the owner only migrates.
        "database_url": app_url(database_url),
        "owner_database_url": owner_url(database_url),
        "mqtt_port": broker.port,
        "mqtt_public_port": broker.device_port,
        "broker_dir": broker.directory,
        "metrics_port": 0,
        "mqtt_client_prefix": "gw-" + secrets.token_hex(3),
    }
    values.update(extra)
    return load_settings(**values)


def settings_env(settings: Settings) -> dict[str, str]:
    """Environment for a subprocess (``eldercare gateway`` ...) with these settings."""
    env = dict(os.environ)
    env.update(
        ELDERCARE_DATABASE_URL=settings.database_url,
        ELDERCARE_OWNER_DATABASE_URL=settings.migration_url,
        ELDERCARE_MQTT_PORT=str(settings.mqtt_port),
        ELDERCARE_BROKER_DIR=str(settings.broker_dir),
        ELDERCARE_METRICS_PORT=str(settings.metrics_port),
        ELDERCARE_MQTT_CLIENT_PREFIX=settings.mqtt_client_prefix,
        ELDERCARE_API_PORT=str(settings.api_port),
        ELDERCARE_ENVIRONMENT=settings.environment,
        ELDERCARE_LOCAL_TZ=settings.local_tz,
        ELDERCARE_AUTO_VERIFY="on" if settings.auto_verify else "off",
        ELDERCARE_REVISIT_SAMPLE_PCT=str(settings.revisit_sample_pct),
        # The bench lifts the per-device budget (its 16 devices send thousands a second):
        # the gateway subprocess must get the same numbers.
        ELDERCARE_DEVICE_RATE_PER_S=repr(settings.device_rate_per_s),
        ELDERCARE_DEVICE_BURST=str(settings.device_burst),
    )
    return env


class Proc:
    """A subprocess of the ``eldercare`` command, logging to a file for post-mortems."""

    def __init__(self, args: list[str], settings: Settings, log: Path) -> None:
        self.args, self.settings, self.log = args, settings, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        fh = open(self.log, "ab")  # noqa: SIM115 - the child keeps writing after we return
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "eldercare", *self.args],
            env=settings_env(self.settings),
            stdout=fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill9()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def have_chromium() -> bool:
    return shutil.which("chromium") is not None


class PrivatePostgres:
    """A throwaway TimescaleDB cluster for tests that crash or restart the database, so
    other sessions sharing the project cluster are never disturbed."""

    BIN = Path("/usr/lib/postgresql/15/bin")

    def __init__(self) -> None:
        base = ROOT / ".local" / "tmp"
        base.mkdir(parents=True, exist_ok=True)
        self.dir = base / ("pg-" + secrets.token_hex(4))
        self.port = free_port()
        self.url = f"postgresql://eldercare:eldercare@127.0.0.1:{self.port}/eldercare"

    def _as_pg(self, *args: str) -> None:
        cmd = list(args)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start(self) -> PrivatePostgres:
        try:
            return self._start()
        except BaseException:
            self.stop()  # never leave a half-started cluster running
            raise

    def _start(self) -> PrivatePostgres:
        self.dir.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        data = str(self.dir / "data")
        self._as_pg(
            str(self.BIN / "initdb"),
            "-D",
            data,
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
        )
        with open(self.dir / "data" / "postgresql.conf", "a") as fh:
            fh.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.dir}'\n"
                "shared_preload_libraries = 'timescaledb'\n"
                "timescaledb.telemetry_level = off\nfsync = on\n"
            )
        self._ctl("start")
        subprocess.run(
            [
                str(self.BIN / "psql"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-q",
                "-c",
                "CREATE ROLE eldercare LOGIN SUPERUSER PASSWORD 'eldercare'",
                "-c",
                "CREATE DATABASE eldercare OWNER eldercare",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        return self

    def _ctl(self, action: str, *extra: str) -> None:
        self._as_pg(
            str(self.BIN / "pg_ctl"),
            "-D",
            str(self.dir / "data"),
            "-w",
            "-t",
            "60",
            "-l",
            str(self.dir / "log"),
            *extra,
            action,
        )

    def crash_restart(self) -> None:
        """Stop without a checkpoint (like a crash), then start: recovery replays the WAL."""
        self._ctl("stop", "-m", "immediate")
        self._ctl("start")

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._ctl("stop", "-m", "fast")
        shutil.rmtree(self.dir, ignore_errors=True)


@contextmanager
def serve_in_thread(app: Any, port: int) -> Iterator[str]:
    """Serve an ASGI app with uvicorn from a daemon thread; yields ``127.0.0.1:port``."""
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", ws_ping_interval=None)
    )
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    wait_for(lambda: server.started, timeout=20, what="uvicorn")
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)


def add_user(env: dict[str, str], username: str, password: str, role: str) -> None:
    """``eldercare users add`` as an operator runs it (a child process, the real CLI)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "eldercare",
            "users",
            "add",
            "--username",
            username,
            "--password",
            password,
            "--role",
            role,
        ],
        env=env,
        check=True,
        capture_output=True,
    )
