"""What a simulated fleet does next: pure, seeded, clock-free scenario logic.

No I/O here. :class:`Scenario` turns a seed and a clock reading into the
actions of every device (send this payload, lose the network, come back), so a
scenario replays byte for byte under a fake clock and the I/O runner in
:mod:`eldercare.simulators.fleet` only executes what it is told. Acks are the
one input from the outside world: they stop re-sends and never consume
randomness, so ack timing cannot change what happens next.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from eldercare.protocol import event_class, uplink

# Base behaviour at rate 1 / incident_rate 1: seconds between events (means for Poisson ones).
HEARTBEAT_S: Final = {
    "sos_button": 300,
    "fall_sensor": 60,
    "home_kit": 60,
    "video_bridge": 60,
    "wearable": 60,
}
BATTERY_KINDS: Final = frozenset({"sos_button", "wearable"})
IMU_WINDOW_S: Final = 1.0
IMU_HZ: Final = 25
VITALS_S: Final = 10.0
CAMERA_REFRESH_S: Final = (240.0, 290.0)  # the protocol asks for at least every 300 s
SOS_MEAN_S: Final = 2 * 3600.0
ACCIDENTAL_SOS: Final = 0.4
FALL_MEAN_S: Final = 6 * 3600.0
BED_EXIT_MEAN_S: Final = 12 * 3600.0
HOME_ALARM_MEAN_S: Final = {"smoke": 7 * 86400.0, "gas": 14 * 86400.0, "water_leak": 7 * 86400.0}
CAMERA_FAULT_MEAN_S: Final = 4 * 3600.0
DROP_MEAN_S: Final = 3 * 3600.0
OUTAGE_S: Final = (10.0, 120.0)
# Precomputed windows keep imu cheap at benchmark rates (5,000 msgs/s from a few processes).
_IMU_BANK_SIZE: Final = 32


class Op(StrEnum):
    SEND = "send"
    DROP = "drop"
    RECONNECT = "reconnect"


@dataclass(frozen=True, slots=True)
class DevicePlan:
    """One provisioned device as the simulator needs it. The password never appears in repr."""

    device_id: str
    kind: str
    password: str = field(repr=False)
    facility_code: str
    room: str | None = None
    cameras: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Action:
    """One thing a device does at scenario time ``at`` (seconds from the start)."""

    at: float
    device_id: str
    op: Op
    event_type: str | None = None
    msg_id: str | None = None
    payload: bytes | None = None
    attempt: int = 1  # 1 for the first send of a message, 2+ for an alarm's re-sends

    @property
    def is_alarm(self) -> bool:
        return self.event_type is not None and event_class(self.event_type).value == "alarm"


@dataclass(slots=True)
class _Dev:
    plan: DevicePlan
    online: bool = True
    battery: int = 100
    rssi_base: int = -60
    heart_base: float = 72.0
    seq: int = 0
    cameras: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Alarm:
    device_id: str
    msg_id: str
    event_type: str
    payload: bytes
    attempts: int  # sends emitted so far; 0 when raised while the device was offline


class Scenario:
    """Seeded behaviour of a set of devices; drive it with :meth:`advance` and :meth:`acked`.

    ``rate`` multiplies background traffic (heartbeats, vitals, imu, camera
    refresh); ``incident_rate`` multiplies rare events (alarms, camera faults,
    network drops). ``run_id`` goes into message ids so a replay against the
    same database is not deduplicated away; it does not change behaviour.
    """

    def __init__(
        self,
        devices: Iterable[DevicePlan],
        seed: int,
        *,
        rate: float = 1.0,
        incident_rate: float = 1.0,
        retry_s: float = 2.0,
        start: datetime | None = None,
        run_id: str = "r0",
    ) -> None:
        if rate <= 0 or incident_rate < 0 or retry_s <= 0:
            raise ValueError("rate and retry_s must be positive, incident_rate non-negative")
        self.rng = random.Random(seed)
        self.rate, self.incident_rate, self.retry_s = rate, incident_rate, retry_s
        self.start = start or datetime(2026, 1, 1, tzinfo=UTC)
        self.run_id = run_id
        self._heap: list[tuple[float, int, str, str, Any]] = []
        self._n = 0
        self._devs: dict[str, _Dev] = {}
        self._alarms: dict[tuple[str, str], _Alarm] = {}
        self._imu_bank = [self._imu_window() for _ in range(_IMU_BANK_SIZE)]
        for plan in sorted(devices, key=lambda p: p.device_id):
            self._add(plan)

    # ------------------------------------------------------------------ public

    @property
    def devices(self) -> Sequence[str]:
        return list(self._devs)

    def is_online(self, device_id: str) -> bool:
        return self._devs[device_id].online

    @property
    def pending_alarms(self) -> int:
        return len(self._alarms)

    @property
    def pending_alarms_online(self) -> int:
        """Unacked alarms of devices that are online now (the others cannot be acked yet)."""
        return sum(1 for (did, _) in self._alarms if self._devs[did].online)

    def next_at(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def advance(self, now: float, *, retries_only: bool = False) -> list[Action]:
        """Every action due at or before ``now``, in time order.

        ``retries_only`` (used while draining at the end of a run) keeps re-sending
        unacked alarms but starts nothing new.
        """
        out: list[Action] = []
        while self._heap and self._heap[0][0] <= now:
            at, _, what, device_id, arg = heapq.heappop(self._heap)
            if retries_only and what != "retry":
                continue
            getattr(self, "_on_" + what)(at, self._devs[device_id], arg, out)
        return out

    def acked(self, device_id: str, msg_id: str) -> bool:
        """The platform acked this alarm: stop re-sending. False if it was not pending."""
        return self._alarms.pop((device_id, msg_id), None) is not None

    # ------------------------------------------------------------------ setup

    def _add(self, plan: DevicePlan) -> None:
        rng = self.rng
        d = _Dev(plan, rssi_base=rng.randint(-85, -45), heart_base=rng.gauss(74, 7))
        if plan.kind in BATTERY_KINDS:
            d.battery = rng.randint(35, 100)
        self._devs[plan.device_id] = d
        did = plan.device_id
        hb = self._hb_period(plan.kind)
        self._at(rng.uniform(0, hb), "heartbeat", did)
        if plan.kind == "wearable":
            self._at(rng.uniform(0, IMU_WINDOW_S / self.rate), "imu", did)
            self._at(rng.uniform(0, VITALS_S / self.rate), "vitals", did)
            self._later(FALL_MEAN_S * 4, "fall", did)
        if plan.kind in ("sos_button", "home_kit"):
            self._later(SOS_MEAN_S * (3 if plan.kind == "home_kit" else 1), "sos", did)
        if plan.kind in ("fall_sensor", "home_kit"):
            self._later(FALL_MEAN_S, "fall", did)
        if plan.kind == "fall_sensor":
            self._later(BED_EXIT_MEAN_S, "bed_exit", did)
        if plan.kind == "home_kit":
            for etype, mean in HOME_ALARM_MEAN_S.items():
                self._later(mean, "home_alarm", did, etype)
            self._later(BED_EXIT_MEAN_S * 2, "inactivity", did)
        if plan.kind == "video_bridge":
            for cam in plan.cameras:
                d.cameras[cam] = "online"
                # Every camera reports on start-up: its first "change" from unknown.
                self._at(rng.uniform(0, 2.0), "camera", did, (cam, None))
                self._later(CAMERA_FAULT_MEAN_S, "camera_fault", did, cam)
        self._later(DROP_MEAN_S, "drop", did)

    def _hb_period(self, kind: str) -> float:
        return HEARTBEAT_S[kind] / self.rate

    def _at(self, at: float, what: str, device_id: str, arg: Any = None) -> None:
        self._n += 1
        heapq.heappush(self._heap, (at, self._n, what, device_id, arg))

    def _later(
        self, mean_s: float, what: str, device_id: str, arg: Any = None, now: float = 0.0
    ) -> None:
        """Schedule a Poisson event (mean ``mean_s`` scaled by incident_rate); never if rate 0."""
        if self.incident_rate == 0:
            return
        self._at(now + self.rng.expovariate(self.incident_rate / mean_s), what, device_id, arg)

    # ------------------------------------------------------------------ building messages

    def _msg(self, at: float, d: _Dev, etype: str, out: list[Action], **fields: Any) -> str | None:
        """Emit one uplink if the device is online; return its id."""
        d.seq += 1
        msg_id = f"{self.run_id}-{d.seq:x}"
        ts = self.start + timedelta(seconds=at)
        payload = uplink(msg_id, etype, ts, **fields)
        if event_class(etype).value == "alarm":
            # Devices keep alarms even while offline and re-send them until acked.
            self._alarms[(d.plan.device_id, msg_id)] = _Alarm(
                d.plan.device_id, msg_id, etype, payload, attempts=1 if d.online else 0
            )
            self._at(at + self.retry_s, "retry", d.plan.device_id, msg_id)
        if not d.online:
            return msg_id if event_class(etype).value == "alarm" else None
        out.append(Action(at, d.plan.device_id, Op.SEND, etype, msg_id, payload))
        return msg_id

    def _imu_window(self) -> list[list[float]]:
        rng = self.rng
        return [
            [
                round(rng.gauss(0, 0.03), 3),
                round(rng.gauss(0, 0.03), 3),
                round(1 + rng.gauss(0, 0.04), 3),
            ]
            for _ in range(int(IMU_HZ * IMU_WINDOW_S))
        ]

    def _fall_imu(self, real: bool) -> list[list[float]]:
        """4 s at IMU_HZ from the physics-based generator of :mod:`eldercare.models.fall.synth`:
        a fall (its training configuration A or the held-out 'soft' one, half each) when
        the device is right, a look-alike (sitting down hard, a knock, a dropped watch, a
        stumble) when its fall is false. Synthetic either way: a demo of the wiring, not
        evidence for the model."""
        import numpy as np

        from eldercare.models.fall import synth

        gen = np.random.default_rng(self.rng.getrandbits(64))
        who = synth.draw_subject(gen)
        if real:
            cfg = synth.CONFIG_A if gen.random() < 0.5 else synth.CONFIG_SOFT
            window = synth.fall_window(gen, who, cfg)
        else:
            kind = str(
                gen.choice(("sit_down_hard", "clap_or_hit", "drop_device", "stumble_recover"))
            )
            window = synth.negative_window(gen, who, kind)
        step = synth.HZ // IMU_HZ
        return [[float(v) for v in row] for row in window[step - 1 :: step]]

    # ------------------------------------------------------------------ event handlers

    def _on_heartbeat(self, at: float, d: _Dev, arg: Any, out: list[Action]) -> None:
        rng = self.rng
        period = self._hb_period(d.plan.kind)
        if d.plan.kind in BATTERY_KINDS:
            if rng.random() < (0.1 if d.plan.kind == "wearable" else 0.02):
                d.battery = max(0, d.battery - 1)
            if d.plan.kind == "wearable" and d.battery < 15 and rng.random() < 0.2:
                d.battery = 100  # put on its charger overnight
        self._status(at, d, out)
        self._at(at + period * rng.uniform(0.9, 1.0), "heartbeat", d.plan.device_id)

    def _status(self, at: float, d: _Dev, out: list[Action]) -> None:
        rssi = max(-120, min(-20, d.rssi_base + self.rng.randint(-4, 4)))
        # Declare at least the real period so a compressed (rate > 1) run never looks late.
        self._msg(
            at,
            d,
            "heartbeat",
            out,
            battery=d.battery,
            interval_s=max(1, math.ceil(self._hb_period(d.plan.kind))),
            rssi=rssi,
        )

    def _on_imu(self, at: float, d: _Dev, arg: Any, out: list[Action]) -> None:
        window = self._imu_bank[self.rng.randrange(_IMU_BANK_SIZE)]
        self._msg(at, d, "imu", out, hz=IMU_HZ, acc=window)
        self._at(at + IMU_WINDOW_S / self.rate, "imu", d.plan.device_id)

    def _on_vitals(self, at: float, d: _Dev, arg: Any, out: list[Action]) -> None:
        rng = self.rng
        self._msg(
            at,
            d,
            "vitals",
            out,
            heart_rate=round(d.heart_base + rng.gauss(0, 3), 1),
            resp_rate=round(rng.gauss(16, 1.5), 1),
        )
        self._at(at + VITALS_S / self.rate * rng.uniform(0.95, 1.05), "vitals", d.plan.device_id)

    def _on_sos(self, at: float, d: _Dev, arg: Any, out: list[Action]) -> None:
        rng = self.rng
        press = rng.choice(("single", "single", "long", "double"))
        sos_id = self._msg(at, d, "sos", out, press=press)
        if sos_id is not None and rng.random() < ACCIDENTAL_SOS:
            # Pressed by mistake: the resident cancels a few seconds later.
            self._at(at + rng.uniform(3, 15), "cancel", d.plan.device_id, sos_id)
        self._later(SOS_MEAN_S, "sos", d.plan.device_id, now=at)

    def _on_cancel(self, at: float, d: _Dev, ref: str, out: list[Action]) -> None:
        self._msg(at, d, "cancel", out, ref=ref)

    def _on_fall(self, at: float, d: _Dev, arg: Any, out: list[Action]) -> None:
        rng = self.rng
        real = rng.random() < 0.7
        conf = round(rng.uniform(0.75, 0.99) if real else rng.uniform(0.4, 0.7), 2)
        if d.plan.kind == "wearable":
            # The wrist unit streams the 4 s around the impact just before it raises the
            # alarm (what the shadow fall model scores).
            self._msg(at, d, "imu", out, hz=IMU_HZ, acc=self._fall_imu(real))
            self._msg(at, d, "fall", out, confidence=conf)
        elif d.plan.room:
            self._msg(at, d, "fall", out, confidence=conf, room=d.plan.room)
        else:
            self._msg(at, d, "fall", out, confidence=conf)
        mean = FALL_MEAN_S * (4 if d.plan.kind == "wearable" else 1)
        self._later(mean, "fall", d.plan.device_id, now=at)

    def _on_bed_exit(self, at: float, d: _Dev, arg: Any, out: list[Action]) -> None:
        self._msg(at, d, "bed_exit", out, duration_s=self.rng.randint(300, 3600))
        self._later(BED_EXIT_MEAN_S, "bed_exit", d.plan.device_id, now=at)

    def _on_inactivity(self, at: float, d: _Dev, arg: Any, out: list[Action]) -> None:
        self._msg(at, d, "inactivity", out, duration_s=self.rng.randint(4 * 3600, 12 * 3600))
        self._later(BED_EXIT_MEAN_S * 2, "inactivity", d.plan.device_id, now=at)

    def _on_home_alarm(self, at: float, d: _Dev, etype: str, out: list[Action]) -> None:
        self._msg(at, d, etype, out)
        self._later(HOME_ALARM_MEAN_S[etype], "home_alarm", d.plan.device_id, etype, now=at)

    def _on_camera(
        self, at: float, d: _Dev, arg: tuple[str, str | None], out: list[Action]
    ) -> None:
        """Report one camera. ``arg`` is (camera, expected status) for a change, or (camera,
        None) for the periodic refresh; a stale change event (superseded) is ignored."""
        cam, expected = arg
        status = d.cameras[cam]
        if expected is not None and expected != status:
            return
        self._msg(
            at, d, "camera_status", out, camera_id=cam, status=status, recording=status == "online"
        )
        if expected is None:
            lo, hi = CAMERA_REFRESH_S
            self._at(
                at + self.rng.uniform(lo, hi) / max(1.0, self.rate),
                "camera",
                d.plan.device_id,
                (cam, None),
            )

    def _on_camera_fault(self, at: float, d: _Dev, cam: str, out: list[Action]) -> None:
        rng = self.rng
        fault = rng.choice(("offline", "video_loss", "tamper", "storage_error", "offline"))
        d.cameras[cam] = fault
        self._on_camera(at, d, (cam, fault), out)
        self._at(at + rng.uniform(30, 900), "camera_restore", d.plan.device_id, cam)

    def _on_camera_restore(self, at: float, d: _Dev, cam: str, out: list[Action]) -> None:
        d.cameras[cam] = "online"
        self._on_camera(at, d, (cam, "online"), out)
        self._later(CAMERA_FAULT_MEAN_S, "camera_fault", d.plan.device_id, cam, now=at)

    def _on_drop(self, at: float, d: _Dev, arg: Any, out: list[Action]) -> None:
        d.online = False
        out.append(Action(at, d.plan.device_id, Op.DROP))
        self._at(at + self.rng.uniform(*OUTAGE_S), "reconnect", d.plan.device_id)

    def _on_reconnect(self, at: float, d: _Dev, arg: Any, out: list[Action]) -> None:
        d.online = True
        out.append(Action(at, d.plan.device_id, Op.RECONNECT))
        # Like real firmware, report status at once so the platform need not wait a period.
        self._status(at, d, out)
        for cam, status in d.cameras.items():
            self._msg(
                at,
                d,
                "camera_status",
                out,
                camera_id=cam,
                status=status,
                recording=status == "online",
            )
        # Unacked alarms go out again straight away, not at their next retry tick.
        for (did, msg_id), alarm in list(self._alarms.items()):
            if did == d.plan.device_id:
                alarm.attempts += 1
                out.append(
                    Action(
                        at, did, Op.SEND, alarm.event_type, msg_id, alarm.payload, alarm.attempts
                    )
                )
        self._later(DROP_MEAN_S, "drop", d.plan.device_id, now=at)

    def _on_retry(self, at: float, d: _Dev, msg_id: str, out: list[Action]) -> None:
        alarm = self._alarms.get((d.plan.device_id, msg_id))
        if alarm is None:
            return  # acked: the retry timer dies with it
        if d.online:
            alarm.attempts += 1
            out.append(
                Action(
                    at,
                    d.plan.device_id,
                    Op.SEND,
                    alarm.event_type,
                    msg_id,
                    alarm.payload,
                    alarm.attempts,
                )
            )
        self._at(at + self.retry_s, "retry", d.plan.device_id, msg_id)
