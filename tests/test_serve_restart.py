"""``eldercare serve`` killed with SIGKILL in the middle of an escalation: the restarted
process still has the open alarm, fires the escalation that came due while it was down,
and a new press from the device joins the same alarm."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import psycopg
import pytest

from eldercare.registry import service as registry
from eldercare.registry.schemas import Contact, DeviceCreate, FacilityCreate, ResidentCreate
from eldercare.simulators.device import SimDevice
from harness.services import (
    Proc,
    add_user,
    free_port,
    make_settings,
    running_broker,
    settings_env,
    wait_for,
)
from tests.alarm_support import one_row

pytestmark = pytest.mark.slow
PASSWORD = "restart-test-password"


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_open_alarm_and_escalation_timer_survive_kill_9_of_serve(settings, tmp_path: Path):
    with running_broker(tmp_path / "mosquitto") as broker:
        port = free_port()
        s = make_settings(settings.database_url, broker, api_port=port)
        with psycopg.connect(s.database_url) as conn:
            fac = registry.create_facility(
                conn, FacilityCreate(code=f"RS-{port}", name="重启测试养老院", lat=31.0, lon=121.0)
            )
            res = registry.create_resident(
                conn,
                ResidentCreate(
                    name="Synthetic Resident",
                    facility_id=fac["id"],
                    room="301",
                    contacts=[
                        Contact(name="Contact A", phone="13800000011"),
                        Contact(name="Contact B", phone="13800000012"),
                    ],
                ),
            )
            conn.commit()
            cred = registry.provision_device(
                conn, s, DeviceCreate(kind="sos_button", resident_id=res["id"])
            )
        for user, role in (("rs-admin", "admin"), ("rs-op", "operator")):
            add_user(settings_env(s), user, PASSWORD, role)
        serve = Proc(["serve"], s, tmp_path / "serve.log").start()
        dev = SimDevice.from_credentials(cred, retry_s=1.0)
        try:
            wait_for(lambda: _healthy(port), timeout=60, interval=0.2, what="serve up")
            api = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

            def login(user: str) -> dict[str, str]:
                tok = api.post("/api/auth/token", data={"username": user, "password": PASSWORD})
                return {"Authorization": "Bearer " + tok.json()["access_token"]}

            admin, op = login("rs-admin"), login("rs-op")
            r = api.put(
                "/api/policies",
                headers=admin,
                json={
                    "facility_id": fac["id"],
                    "name": "short steps for the restart test",
                    "steps": [
                        {"kind": "family", "count": 1, "timeout_s": 10},
                        {"kind": "family", "count": 1, "timeout_s": 10},
                    ],
                },
            )
            assert r.status_code == 200, r.text
            dev.connect()
            alarm_id = dev.ack_for(dev.raise_alarm("sos"), timeout=20)["alarm_id"]
            assert api.post(f"/api/alarms/{alarm_id}/acknowledge", headers=op).status_code == 200
            assert (
                api.post(f"/api/alarms/{alarm_id}/dispatch", headers=op, json={}).status_code == 200
            )
            dev.wait_downlink(lambda d: d.get("status") == "dispatched", timeout=10)
            with psycopg.connect(s.database_url) as conn:
                step_before, due = one_row(
                    conn.execute(
                        "SELECT escalation_step, escalation_due_at FROM alarms WHERE id = %s",
                        (alarm_id,),
                    )
                )
            assert due is not None

            serve.kill9()
            time.sleep(11)  # the step's 10 s run out while nothing is running
            serve.start()
            wait_for(lambda: _healthy(port), timeout=60, interval=0.2, what="serve back")
            op = login("rs-op")
            assert alarm_id in [a["id"] for a in api.get("/api/alarms", headers=op).json()]

            def escalated() -> bool:
                detail = api.get(f"/api/alarms/{alarm_id}", headers=op).json()
                return any(e["action"] == "escalated" for e in detail["timeline"])

            wait_for(escalated, timeout=15, interval=0.3, what="escalation after the restart")
            with psycopg.connect(s.database_url) as conn:
                (step_after,) = one_row(
                    conn.execute("SELECT escalation_step FROM alarms WHERE id = %s", (alarm_id,))
                )
            assert step_after != step_before
            # The device, reconnected to the restarted gateway, presses again: same alarm.
            again = dev.ack_for(dev.raise_alarm("sos"), timeout=20)
            assert again["alarm_id"] == alarm_id
        finally:
            dev.close()
            serve.stop()
