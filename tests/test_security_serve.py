"""Audit H4 (supervision): ``eldercare serve`` replaces a gateway worker that died, and
``/healthz`` says so while it is down."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx
import psycopg
import pytest

from eldercare.registry import service as registry
from eldercare.registry.schemas import DeviceCreate, FacilityCreate
from eldercare.simulators.device import SimDevice
from harness.services import Proc, free_port, make_settings, running_broker, wait_for

pytestmark = pytest.mark.slow


def _health(port: int) -> dict | None:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).json()
    except (httpx.HTTPError, ValueError):
        return None


def _gateway_children(pid: int) -> set[int]:
    """The serve process's worker children (multiprocessing spawn)."""
    out = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                cmd = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue
            if b"spawn_main" in cmd:
                out.add(int(child))
    return out


def test_h4_serve_restarts_a_dead_gateway_worker(settings, tmp_path: Path):
    with running_broker(tmp_path / "mosquitto") as broker:
        port = free_port()
        s = make_settings(settings.database_url, broker, api_port=port)
        with psycopg.connect(s.database_url) as conn:
            fac = registry.create_facility(
                conn, FacilityCreate(code=f"SV-{port}", name="Supervision", lat=31.0, lon=121.0)
            )
            conn.commit()
            cred = registry.provision_device(
                conn, s, DeviceCreate(kind="sos_button", facility_id=fac["id"])
            )
        serve = Proc(["serve", "--workers", "1"], s, tmp_path / "serve.log").start()
        dev = SimDevice.from_credentials(cred, retry_s=1.0)
        try:
            wait_for(
                lambda: (_health(port) or {}).get("status") == "ok",
                timeout=60,
                interval=0.2,
                what="serve up",
            )
            assert serve.proc is not None
            (worker,) = _gateway_children(serve.proc.pid)
            os.kill(worker, signal.SIGKILL)
            wait_for(
                lambda: _gateway_children(serve.proc.pid) - {worker},
                timeout=20,
                what="a new worker",
            )
            dev.connect()
            assert dev.ack_for(dev.raise_alarm("sos"), timeout=30)["alarm_id"]
            # And /healthz reports ingest (it did not look at the gateway at all before).
            assert (_health(port) or {}).get("gateway") is True
        finally:
            dev.close()
            serve.stop()
            print(serve.output()[-3000:])
