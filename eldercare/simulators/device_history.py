"""Weeks of synthetic device heartbeats and connection drops, for the device-health models
(battery time-to-empty, offline risk). Labelled synthetic (``SIMdev`` facility codes).

Each device gets a drain rate, a radio (mean RSSI) and a flakiness; drops are likelier
with a weak radio and a low battery, and come in clusters (a flaky device stays flaky).
A wearable is put on charge below 15 % and charges to 100 within two hours. None of it is
field data.

Replayed through the gateway's own :class:`~eldercare.gateway.store.Store` with the clock
set to each step: heartbeats as parsed uplinks, drops and returns as the retained
``state`` reports a broker publishes (offline on the last will, online on reconnect), so
``device_status``, ``device_events`` and ``state_changes`` are what production writes.
"""

from __future__ import annotations

import math
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from eldercare.config import Settings
from eldercare.gateway.store import StateReport, Store
from eldercare.protocol import parse_uplink, uplink
from eldercare.registry import service as registry
from eldercare.registry.schemas import DeviceCreate, FacilityCreate
from eldercare.storage import db

TAG: Final = "SIMdev"
HEARTBEAT_S: Final = 1800  # every 30 min in the history (devices default to 60-300 s)
KINDS: Final = ("wearable", "sos_button", "fall_sensor")


@dataclass(frozen=True, slots=True)
class DeviceTraits:
    kind: str
    drain_pct_per_h: float  # 0 for mains-powered sensors
    rssi_mean: float
    drops_per_day: float


def _traits(rng: random.Random, n: int) -> list[DeviceTraits]:
    out = []
    for i in range(n):
        kind = KINDS[i % len(KINDS)]
        drain = {
            "wearable": rng.lognormvariate(math.log(1.2), 0.3),
            "sos_button": rng.lognormvariate(math.log(0.12), 0.3),
            "fall_sensor": 0.0,
        }[kind]
        weak = rng.random() < 0.25
        rssi = rng.uniform(-95, -82) if weak else rng.uniform(-75, -50)
        drops = rng.lognormvariate(math.log(0.9 if weak else 0.06), 0.5)
        out.append(DeviceTraits(kind, drain, rssi, drops))
    return out


@dataclass
class DeviceHistoryReport:
    facility_id: int
    devices: int
    heartbeats: int = 0
    drops: int = 0


def replay(
    settings: Settings, *, seed: int, start: datetime, days: int, devices: int = 30
) -> DeviceHistoryReport:
    """Play ``days`` of heartbeats and drops into the configured database."""
    rng = random.Random(seed)
    traits = _traits(rng, devices)
    clock_now = [start]
    store = Store(settings.database_url, lambda: clock_now[0])
    with db.connect(settings.database_url, autocommit=True) as conn:
        fac = registry.create_facility(
            conn,
            FacilityCreate(
                code=f"{TAG}-{seed}-{uuid.uuid4().hex[:6]}", name=f"演示设备历史 {seed}"
            ),
        )
        ids = [
            registry.provision_device(
                conn,
                settings,
                DeviceCreate.model_validate({"kind": t.kind, "facility_id": fac["id"]}),
                sync=False,
            ).device_id
            for t in traits
        ]
    report = DeviceHistoryReport(facility_id=int(fac["id"]), devices=devices)
    battery = [rng.uniform(40, 100) if t.drain_pct_per_h else 100.0 for t in traits]
    charging = [False] * devices
    offline_until: list[datetime | None] = [None] * devices
    step = timedelta(seconds=HEARTBEAT_S)
    steps = int(days * 86400 / HEARTBEAT_S)
    try:
        for k in range(steps):
            t = start + k * step
            clock_now[0] = t
            beats, states = [], []
            for i, tr in enumerate(traits):
                h = HEARTBEAT_S / 3600
                if tr.drain_pct_per_h:
                    if charging[i]:
                        battery[i] = min(100.0, battery[i] + 50 * h)
                        charging[i] = battery[i] < 100
                    else:
                        battery[i] = max(0.0, battery[i] - tr.drain_pct_per_h * h)
                        if tr.kind == "wearable" and battery[i] < 15 and rng.random() < 0.5:
                            charging[i] = True
                        if tr.kind == "sos_button" and battery[i] < 5:
                            battery[i] = 100.0  # the battery is replaced on a visit
                until = offline_until[i]
                if until is not None:
                    if t < until:
                        continue
                    offline_until[i] = None
                    states.append(StateReport(ids[i], True, t))
                low = 2.0 if battery[i] < 20 else 1.0
                if rng.random() < tr.drops_per_day * low * HEARTBEAT_S / 86400:
                    offline_until[i] = t + timedelta(minutes=rng.uniform(20, 240))
                    states.append(StateReport(ids[i], False, t))
                    report.drops += 1
                    continue
                rssi = int(rng.gauss(tr.rssi_mean, 4))
                reading = round(battery[i] + rng.gauss(0, 0.8))
                payload = uplink(
                    f"hb-{k}",
                    "heartbeat",
                    t,
                    battery=max(0, min(100, reading)),
                    interval_s=HEARTBEAT_S,
                    rssi=max(-200, min(50, rssi)),
                )
                beats.append(parse_uplink(ids[i], payload, t))
            store.store_batch(beats, states)
            report.heartbeats += len(beats)
    finally:
        store.close()
    return report
