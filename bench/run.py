"""``make bench``: ingest throughput and alarm latencies on this machine, all parts real.

Phases (each with its own broker and a fresh bench database in the local cluster):
1. ingest: publisher processes push QoS 1 telemetry as fast as the chain commits it;
   the rate is the count of rows committed in TimescaleDB over the steady window.
2. latency: background load at --background msgs/s; a probe device presses SOS and
   times publish -> downlink ack (the device's view).
3. console: the same under ``eldercare serve``; publish -> alarm event on a connected
   console websocket.
Results go to bench/results/latest.json and are appended to bench/results/history.jsonl.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from bench.blaster import BlastResult, blast_process
from eldercare.config import Settings
from eldercare.registry import service as registry
from eldercare.registry.schemas import DeviceCreate, FacilityCreate
from eldercare.simulators.device import SimDevice
from eldercare.storage.migrate import migrate
from harness.services import ADMIN_URL, Broker, Proc, add_user, free_port, make_settings, wait_for

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
WORK = ROOT / ".local" / "bench"


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    mosq = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True).stdout.split("\n")[0]
    with psycopg.connect(ADMIN_URL) as conn:
        pg = conn.execute("SELECT version()").fetchone()[0].split(" on ")[0]
        ts = conn.execute(
            "SELECT default_version FROM pg_available_extensions WHERE name='timescaledb'"
        ).fetchone()[0]
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem, 1),
        "python": platform.python_version(),
        "postgres": pg,
        "timescaledb": ts,
        "mosquitto": mosq.strip(),
        "kernel": platform.release(),
    }


def fresh_database() -> str:
    url = ADMIN_URL.rsplit("/", 1)[0] + "/eldercare_bench"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "eldercare_bench" WITH (FORCE)')
        conn.execute('CREATE DATABASE "eldercare_bench"')
    migrate(url)
    return url


def provision(settings: Settings, n: int, kind: str = "home_kit") -> list[tuple[str, str]]:
    with psycopg.connect(settings.database_url) as conn:
        fac = registry.create_facility(
            conn,
            FacilityCreate(
                code=f"BENCH-{time.time_ns()}", name="基准测试养老院", lat=31.2, lon=121.5
            ),
        )
        conn.commit()
        creds = [
            registry.provision_device(
                conn, settings, DeviceCreate(kind=kind, facility_id=fac["id"]), sync=False
            )
            for _ in range(n)
        ]
        registry.sync_broker(conn, settings)
    return [(c.username, c.password) for c in creds]


def tree_cpu(root: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process and its descendants, from /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry.name)] = (int(fields[1]), int(fields[11]) / tick, int(fields[12]) / tick)
    user = system = 0.0
    todo = [root]
    while todo:
        pid = todo.pop()
        _, u, s = stats.get(pid, (0, 0.0, 0.0))
        user, system = user + u, system + s
        todo += [c for c, (ppid, _, _) in stats.items() if ppid == pid]
    return user, system


def count_rows(url: str) -> int:
    with psycopg.connect(url) as conn:
        return int(conn.execute("SELECT count(*) FROM device_events").fetchone()[0])


def start_blasters(
    settings: Settings,
    devices: list[tuple[str, str]],
    procs: int,
    rate: float,
    duration: float,
    tag: str,
):
    ctx = mp.get_context("spawn")
    pool = ctx.Pool(procs)
    per = [devices[i::procs] for i in range(procs)]
    args = [
        (
            per[i],
            settings.mqtt_host,
            settings.mqtt_port,
            rate / procs if rate else 0,
            duration,
            f"{tag}{i}",
        )
        for i in range(procs)
    ]
    return pool, pool.map_async(blast_process, args)


def start_profile(pid: int, duration: float, out: Path) -> subprocess.Popen[bytes]:
    """py-spy on the gateway's process tree: collapsed stacks, one line per stack, for
    BENCHMARKS.md (``--gil``: only samples that hold the interpreter lock, i.e. Python CPU)."""
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--pid",
            str(pid),
            "--subprocesses",
            "--gil",
            "--rate",
            "200",
            "--duration",
            str(int(duration)),
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def phase_ingest(
    settings: Settings,
    workers: int,
    publishers: int,
    duration: float,
    log: Path,
    profile: Path | None = None,
) -> dict[str, Any]:
    devices = provision(settings, 16 * publishers)
    gw = Proc(["gateway", "--workers", str(workers)], settings, log).start()
    try:
        probe = devices[0]
        wait_ready(settings, probe)
        before = count_rows(settings.database_url)
        assert gw.proc is not None
        cpu0 = tree_cpu(gw.proc.pid)
        pool, res = start_blasters(settings, devices, publishers, 0, duration, "ing")
        spy = start_profile(gw.proc.pid, duration - 4, profile) if profile else None
        samples: list[tuple[float, int]] = []
        t0 = time.monotonic()
        while not res.ready():
            samples.append((time.monotonic() - t0, count_rows(settings.database_url)))
            time.sleep(1.0)
        blasts: list[BlastResult] = res.get()
        pool.close()
        if spy is not None:
            spy.wait(60)
        sent = sum(b.sent for b in blasts)
        acked = sum(b.acked for b in blasts)
        wait_for(
            lambda: count_rows(settings.database_url) - before >= acked,
            timeout=120,
            interval=0.5,
            what="ingest drained",
        )
        stored = count_rows(settings.database_url) - before
        cpu1 = tree_cpu(gw.proc.pid)
        user, system = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
        # Steady window: skip the first 3 s (connects, warm-up) and the tail.
        window = [s for s in samples if 3 <= s[0] <= duration - 1]
        rate = (window[-1][1] - window[0][1]) / (window[-1][0] - window[0][0])
        return {
            "ingest_msgs_per_s": round(rate),
            "ingest_workers": workers,
            "ingest_publishers": publishers,
            "ingest_sent": sent,
            "ingest_acked": acked,
            "ingest_stored": stored,
            "publish_rate_msgs_per_s": round(sent / duration),
            "gateway_cpu_us_per_msg": round((user + system) / stored * 1e6, 1),
            "gateway_user_us_per_msg": round(user / stored * 1e6, 1),
            "gateway_sys_us_per_msg": round(system / stored * 1e6, 1),
        }
    finally:
        gw.stop()


def wait_ready(settings: Settings, cred: tuple[str, str]) -> None:
    dev = SimDevice(cred[0], cred[1], settings.mqtt_host, settings.mqtt_port)
    dev.connect()
    try:
        dev.ack_for(dev.raise_alarm("sos"), timeout=60)
    finally:
        dev.close()


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return round(values[k], 2)


def probe_sos(dev: SimDevice, n: int, gap: float, on_sent=None) -> list[float]:
    out = []
    for _ in range(n):
        t = time.monotonic()
        mid = dev.raise_alarm("sos")
        if on_sent:
            on_sent(mid, t)
        ack = dev.ack_for(mid, timeout=10)
        out.append((ack["_rx"] - t) * 1000)
        time.sleep(gap)
    return out


def phase_latency(
    settings: Settings, workers: int, background: float, samples: int, log: Path
) -> dict[str, Any]:
    devices = provision(settings, 33)
    gw = Proc(["gateway", "--workers", str(workers)], settings, log).start()
    try:
        wait_ready(settings, devices[0])
        pool, res = start_blasters(settings, devices[1:], 2, background, 10 + samples * 0.03, "bg")
        time.sleep(3)
        dev = SimDevice(devices[0][0], devices[0][1], settings.mqtt_host, settings.mqtt_port)
        dev.connect()
        lat = probe_sos(dev, samples, 0.02)
        dev.close()
        blasts = res.get()
        pool.close()
        bg = sum(b.sent for b in blasts) / max(b.seconds for b in blasts)
        return {
            "sos_ack_p50_ms": pct(lat, 50),
            "sos_ack_p99_ms": pct(lat, 99),
            "sos_ack_max_ms": pct(lat, 100),
            "sos_samples": len(lat),
            "background_msgs_per_s": round(bg),
            "latency_workers": workers,
        }
    finally:
        gw.stop()


def phase_console(settings: Settings, background: float, samples: int, log: Path) -> dict[str, Any]:
    import websockets.sync.client as wsc

    devices = provision(settings, 33)
    port = free_port()
    s = settings.model_copy(update={"api_port": port})
    add_user(_env(s), "bench-op", "bench-operator-pw", "operator")
    app = Proc(["serve"], s, log).start()
    try:
        import httpx

        wait_for(lambda: _healthy(port), timeout=60, interval=0.2, what="serve healthy")
        tok = httpx.post(
            f"http://127.0.0.1:{port}/api/auth/token",
            data={"username": "bench-op", "password": "bench-operator-pw"},
        ).json()["access_token"]
        wait_ready(s, devices[0])
        sent_at: dict[str, float] = {}
        seen: list[float] = []
        ws = wsc.connect(f"ws://127.0.0.1:{port}/api/ws?token={tok}")
        probe_id = devices[0][0]
        stop = threading.Event()

        def reader() -> None:
            while not stop.is_set():
                try:
                    msg = json.loads(ws.recv(timeout=0.5))
                except TimeoutError:
                    continue
                except Exception:
                    return
                alarm = msg.get("alarm") or {}
                if (
                    msg.get("type") == "alarm"
                    and msg.get("event") in ("raised", "joined")
                    and probe_id in (alarm.get("devices") or [alarm.get("device_id")])
                ):
                    rx = time.monotonic()
                    pending = [t for t in sent_at.values()]
                    if pending:
                        seen.append((rx - max(pending)) * 1000)
                        sent_at.clear()

        th = threading.Thread(target=reader, daemon=True)
        th.start()
        pool, res = start_blasters(s, devices[1:], 2, background, 10 + samples * 0.05, "cbg")
        time.sleep(3)
        dev = SimDevice(devices[0][0], devices[0][1], s.mqtt_host, s.mqtt_port)
        dev.connect()
        for _ in range(samples):
            sent_at["x"] = time.monotonic()
            dev.ack_for(dev.raise_alarm("sos"), timeout=10)
            wait_for(lambda: not sent_at, timeout=10, what="console event")
            time.sleep(0.02)
        dev.close()
        stop.set()
        ws.close()
        res.get()
        pool.close()
        return {
            "alarm_to_console_p50_ms": pct(seen, 50),
            "alarm_to_console_p99_ms": pct(seen, 99),
            "alarm_to_console_samples": len(seen),
        }
    finally:
        app.stop()


def _healthy(port: int) -> bool:
    import httpx

    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _env(s: Settings) -> dict[str, str]:
    from harness.services import settings_env

    return settings_env(s)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--phases", default="ingest,latency,console")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--publishers", type=int, default=1)
    ap.add_argument("--duration", type=float, default=20)
    ap.add_argument("--background", type=float, default=5000)
    ap.add_argument("--samples", type=int, default=400)
    ap.add_argument("--profile", type=Path, help="py-spy collapsed stacks of the ingest gateway")
    args = ap.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "command": "python -m bench.run " + " ".join(sys.argv[1:]),
    }
    url = fresh_database()
    for phase in args.phases.split(","):
        broker = Broker(WORK / f"mosquitto-{phase}")
        broker.start()
        try:
            settings = make_settings(url, broker)
            log = WORK / f"{phase}.log"
            log.unlink(missing_ok=True)
            if phase == "ingest":
                r = phase_ingest(
                    settings, args.workers, args.publishers, args.duration, log, args.profile
                )
            elif phase == "latency":
                r = phase_latency(settings, args.workers, args.background, args.samples, log)
            elif phase == "console":
                r = phase_console(settings, args.background, args.samples // 2, log)
            else:
                raise SystemExit(f"unknown phase {phase}")
            print(phase, json.dumps(r), flush=True)
            result.update(r)
        finally:
            broker.stop()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    with open(RESULTS / "history.jsonl", "a") as fh:
        fh.write(json.dumps(result) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
