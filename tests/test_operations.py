"""What an operator of the platform runs by hand: provisioning from the command line,
retention, and the gateway's Prometheus counters."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime, timedelta

import psycopg

from eldercare.registry import service as registry
from eldercare.registry.schemas import DeviceCreate
from eldercare.simulators.device import SimDevice
from eldercare.storage.retention import apply_retention
from harness.services import Proc, free_port, make_settings, running_broker, settings_env, wait_for


def eldercare(settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eldercare", *args],
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_provision_command_prints_credentials_the_broker_accepts_at_once(settings, facility_id):
    out = eldercare(
        settings,
        "devices",
        "provision",
        "--kind",
        "fall_sensor",
        "--facility",
        str(facility_id),
        "--room",
        "102",
        "--json",
    )
    assert out.returncode == 0, out.stderr
    cred = json.loads(out.stdout)
    assert set(cred) == {"device_id", "mqtt_host", "mqtt_port", "username", "password"}
    assert cred["username"] == cred["device_id"] and cred["mqtt_port"] == settings.mqtt_port
    dev = SimDevice(cred["username"], cred["password"], cred["mqtt_host"], cred["mqtt_port"])
    dev.connect(timeout=2)  # no wait, no broker restart: accepted when the command returned
    dev.close()
    bad = eldercare(settings, "devices", "provision", "--kind", "sos_button", "--json")
    assert bad.returncode == 1 and "facility or a resident" in bad.stderr
    revoked = eldercare(settings, "devices", "revoke", cred["device_id"])
    assert revoked.returncode == 0, revoked.stderr


def test_retention_drops_old_chunks_and_prunes_dedup_ids(settings, gateway, make_device, db):
    dev = make_device()
    old = datetime.now(UTC) - timedelta(days=400)
    db.execute(
        "INSERT INTO device_events (time, received_at, device_ts, device_id, msg_id, type,"
        " payload) VALUES (%s, %s, %s, %s, 'ancient', 'heartbeat', '{}')",
        (old, old, old, dev.device_id),
    )
    db.execute(
        "INSERT INTO message_ids (device_id, msg_id, received_at) VALUES (%s, 'ancient', %s)",
        (dev.device_id, old),
    )
    recent = dev.send("vitals", heart_rate=70)
    wait_for(
        lambda: (
            db.execute("SELECT count(*) FROM device_events WHERE msg_id=%s", (recent,)).fetchone()[
                0
            ]
            == 1
        ),
        what="recent event",
    )
    report = apply_retention(settings.migration_url, days=365, dedup_days=8)  # an owner job
    assert report["dropped"]["device_events"] >= 1
    assert report["policy"] is (report["license"] == "timescale")
    assert report["dedup_ids_pruned"] >= 1
    assert db.execute("SELECT count(*) FROM device_events WHERE msg_id='ancient'").fetchone() == (
        0,
    )
    assert db.execute(
        "SELECT count(*) FROM device_events WHERE msg_id=%s", (recent,)
    ).fetchone() == (1,)
    out = eldercare(settings, "db", "retention", "--days", "365")
    assert out.returncode == 0 and json.loads(out.stdout)["days"] == 365


def test_gateway_exposes_its_counters_on_metrics(settings, facility_id, tmp_path):
    # A broker of its own: the session's in-process gateway must not answer first.
    port = free_port()
    with running_broker(tmp_path / "mosquitto") as broker:
        s = make_settings(settings.database_url, broker, metrics_port=port)
        with psycopg.connect(s.database_url) as conn:
            cred = registry.provision_device(
                conn, s, DeviceCreate(kind="sos_button", facility_id=facility_id)
            )
        gw = Proc(["gateway", "--workers", "1"], s, tmp_path / "gw.log").start()
        dev = SimDevice.from_credentials(cred)
        try:
            dev.connect()
            _check_metrics(dev, port)
        finally:
            dev.close()
            gw.stop()


def _check_metrics(dev: SimDevice, port: int) -> None:
    dev.ack_for(dev.raise_alarm("sos"), timeout=20)
    dev.publish_raw(b"{not json")
    dev.wait_downlink(lambda d: d.get("type") == "nack")

    def metrics() -> str:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                return str(r.read().decode())
        except OSError:
            return ""

    # The nack is sent before the counters are scraped; the refusal counter is the last
    # thing incremented, so wait for it.
    text = wait_for(
        lambda: (t := metrics()) and 'reason="malformed_json"' in t and t,
        timeout=20,
        what="metrics",
    )
    assert 'eldercare_gateway_refused_total{reason="malformed_json"} 1.0' in text
    assert 'eldercare_gateway_stored_total{cls="alarm"} 1.0' in text
    assert "eldercare_gateway_batch_seconds_bucket" in text
