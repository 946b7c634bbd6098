"""Weeks of synthetic alarm history, closed by simulated operators, for training and testing
the alarm-triage model (issue 9 part B).

The live simulator (:mod:`.scenario`) decides whether a press is accidental or a fall real,
but never tells anyone, and nobody closes its alarms. Here every alarm has a recorded
*truth* (genuine, accidental, a false sensor alarm, a service request) and a
:class:`SimOperator` closes it with the disposition an operator would record for that
truth, with the mistakes operators make. Everything is synthetic and says so
(``SIMhist`` facility codes, ``演示`` names).

Pure planning (:func:`plan_history`, :class:`SimOperator`) is separate from the replay
(:func:`replay`), which goes through the platform's own code with the clock set to each
event's time: uplinks are parsed by the protocol and stored by the gateway's
:class:`~eldercare.gateway.store.Store` (correlation, repeats and cancels as in
production), and operators act through :func:`eldercare.alerts.lifecycle.act`.

What the generator assumes (none of it is field data):
- accidental SOS presses vary by resident (a few press often), happen in the day and are
  cancelled within 3-15 s about half the time; genuine ones are rarely cancelled, more
  often long presses and repeated;
- fall sensors differ in how often they misfire; real falls are likelier at night and
  carry a higher device confidence (0.75-0.99) than false ones (0.45-0.9);
- home kits raise smoke at meal times (cooking) far more often than real fires.
"""

from __future__ import annotations

import heapq
import math
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

import psycopg

from eldercare.alerts import lifecycle
from eldercare.alerts.rules import Disposition
from eldercare.config import Settings
from eldercare.errors import ConflictError
from eldercare.gateway.store import AlarmResult, Store
from eldercare.protocol import parse_uplink, uplink
from eldercare.registry import service as registry
from eldercare.registry.auth import Actor
from eldercare.registry.schemas import DeviceCreate, FacilityCreate, HomeBedCreate, ResidentCreate
from eldercare.storage import db

TAG: Final = "SIMhist"


class Truth(StrEnum):
    GENUINE = "genuine"
    ACCIDENTAL = "accidental"
    FALSE_SENSOR = "false_sensor"
    SERVICE = "service"


@dataclass(frozen=True, slots=True)
class Person:
    """One synthetic resident and the behaviour the generator gives them."""

    index: int
    home: bool  # a home care bed, else a nursing-home room
    accidental_per_day: float
    flaky_sensor_per_day: float  # false falls from this resident's fall sensor
    wearable: bool


@dataclass(frozen=True, slots=True)
class Incident:
    """One alarm-raising event and what really happened."""

    at: datetime
    person: int
    device: str  # "sos", "fall", "kit"
    kind: str
    truth: Truth
    fields: tuple[tuple[str, Any], ...] = ()
    cancel_after_s: float | None = None
    repeats: tuple[float, ...] = ()  # seconds after the first press


# Per-day means for a typical resident; the per-resident ones are drawn around them.
GENUINE_SOS_PER_DAY: Final = 0.04
SERVICE_PER_DAY: Final = 0.05
REAL_FALL_PER_DAY: Final = 0.015
BED_EXIT_PER_DAY: Final = 0.06
KIT_SMOKE_FALSE_PER_DAY: Final = 0.03
KIT_REAL_PER_DAY: Final = 0.003
INACTIVITY_PER_DAY: Final = 0.02


def _hour(rng: random.Random, profile: str) -> float:
    """An hour of the day (local) from a daily profile."""
    if profile == "day":  # awake and busy
        return min(23.99, max(6.0, rng.gauss(13.5, 3.5)))
    if profile == "night":  # bathroom trips, getting up
        return (rng.gauss(2.5, 2.0)) % 24
    if profile == "meal":
        return rng.choice((7.0, 11.5, 17.5)) + rng.random()
    return rng.random() * 24


def _press(rng: random.Random, truth: Truth) -> str:
    weights = {
        Truth.ACCIDENTAL: (0.7, 0.1, 0.2),
        Truth.GENUINE: (0.45, 0.5, 0.05),
        Truth.SERVICE: (0.8, 0.2, 0.0),
    }[truth]
    return rng.choices(("single", "long", "double"), weights)[0]


def _people(rng: random.Random, residents: int, home_share: float) -> list[Person]:
    out = []
    for i in range(residents):
        heavy = rng.random() < 0.15  # residents who press by accident often
        acc = rng.lognormvariate(math.log(0.8 if heavy else 0.12), 0.4)
        flaky = rng.random() < 0.2
        sensor = rng.lognormvariate(math.log(0.35 if flaky else 0.03), 0.4)
        out.append(Person(i, rng.random() < home_share, acc, sensor, rng.random() < 0.3))
    return out


def plan_history(
    seed: int, start: datetime, days: int, residents: int = 24, home_share: float = 0.35
) -> tuple[list[Person], list[Incident]]:
    """Every incident of ``days`` days from ``start`` (UTC), in time order, with its truth.
    Hours are drawn in local time (UTC+8, the platform's default zone)."""
    rng = random.Random(seed)
    people = _people(rng, residents, home_share)
    out: list[Incident] = []
    local = timedelta(hours=8)

    def at(day: int, profile: str) -> datetime:
        midnight = (start + local).replace(hour=0, minute=0, second=0, microsecond=0)
        t = midnight + timedelta(days=day, hours=_hour(rng, profile)) - local
        return t if t > start else start + timedelta(seconds=rng.random() * 3600)

    def poisson(rate: float) -> int:
        n, p, limit = 0, 1.0, math.exp(-rate)
        while True:
            p *= rng.random()
            if p <= limit:
                return n
            n += 1

    for day in range(days):
        for p in people:
            for _ in range(poisson(p.accidental_per_day)):
                cancel = rng.uniform(3, 15) if rng.random() < 0.55 else None
                repeats: tuple[float, ...] = (rng.uniform(2, 20),) if rng.random() < 0.05 else ()
                out.append(
                    Incident(
                        at(day, "day"),
                        p.index,
                        "sos",
                        "sos",
                        Truth.ACCIDENTAL,
                        (("press", _press(rng, Truth.ACCIDENTAL)),),
                        cancel,
                        repeats,
                    )
                )
            for _ in range(poisson(GENUINE_SOS_PER_DAY)):
                cancel = rng.uniform(5, 30) if rng.random() < 0.03 else None
                n = rng.choice((0, 0, 1, 2)) if rng.random() < 0.35 else 0
                repeats = tuple(sorted(rng.uniform(5, 90) for _ in range(n)))
                profile = "night" if rng.random() < 0.4 else "any"
                out.append(
                    Incident(
                        at(day, profile),
                        p.index,
                        "sos",
                        "sos",
                        Truth.GENUINE,
                        (("press", _press(rng, Truth.GENUINE)),),
                        cancel,
                        repeats,
                    )
                )
            for _ in range(poisson(SERVICE_PER_DAY)):
                cancel = rng.uniform(5, 30) if rng.random() < 0.1 else None
                out.append(
                    Incident(
                        at(day, "day"),
                        p.index,
                        "sos",
                        "sos",
                        Truth.SERVICE,
                        (("press", _press(rng, Truth.SERVICE)),),
                        cancel,
                    )
                )
            sensor = "kit" if p.home else "fall"
            for _ in range(poisson(REAL_FALL_PER_DAY)):
                conf = round(rng.uniform(0.75, 0.99), 2)
                profile = "night" if rng.random() < 0.5 else "any"
                out.append(
                    Incident(
                        at(day, profile),
                        p.index,
                        sensor,
                        "fall",
                        Truth.GENUINE,
                        (("confidence", conf),),
                    )
                )
            for _ in range(poisson(p.flaky_sensor_per_day)):
                conf = round(rng.uniform(0.45, 0.9), 2)
                out.append(
                    Incident(
                        at(day, "any"),
                        p.index,
                        sensor,
                        "fall",
                        Truth.FALSE_SENSOR,
                        (("confidence", conf),),
                    )
                )
            if not p.home:
                for _ in range(poisson(BED_EXIT_PER_DAY)):
                    truth = Truth.GENUINE if rng.random() < 0.3 else Truth.FALSE_SENSOR
                    out.append(
                        Incident(
                            at(day, "night"),
                            p.index,
                            "fall",
                            "bed_exit",
                            truth,
                            (("duration_s", rng.randint(60, 1800)),),
                        )
                    )
            else:
                for _ in range(poisson(KIT_SMOKE_FALSE_PER_DAY)):
                    out.append(
                        Incident(at(day, "meal"), p.index, "kit", "smoke", Truth.FALSE_SENSOR)
                    )
                for _ in range(poisson(KIT_REAL_PER_DAY)):
                    kind = rng.choice(("smoke", "gas", "water_leak"))
                    out.append(Incident(at(day, "any"), p.index, "kit", kind, Truth.GENUINE))
                for _ in range(poisson(INACTIVITY_PER_DAY)):
                    truth = Truth.GENUINE if rng.random() < 0.25 else Truth.FALSE_SENSOR
                    out.append(
                        Incident(
                            at(day, "day"),
                            p.index,
                            "kit",
                            "inactivity",
                            truth,
                            (("duration_s", rng.randint(7200, 20000)),),
                        )
                    )
    out.sort(key=lambda i: (i.at, i.person, i.kind))
    return people, out


@dataclass(frozen=True, slots=True)
class Handling:
    """What a simulated operator does with one alarm, in seconds after it arrived."""

    disposition: Disposition
    ack_s: float
    resolve_s: float
    close_s: float


class SimOperator:
    """Closes alarms as a duty operator would: the disposition follows what happened, with
    the slips real operators make (a genuine call closed as "other", an accidental press
    closed as "no response needed"). Seeded; no I/O."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def handle(self, kind: str, truth: Truth) -> Handling:
        r, D = self.rng, Disposition
        if truth is Truth.GENUINE:
            if kind == "fall":
                disp = r.choices(
                    (D.FALL_WITHOUT_INJURY, D.GENUINE_EMERGENCY, D.OTHER), (0.55, 0.42, 0.03)
                )[0]
            else:
                disp = r.choices((D.GENUINE_EMERGENCY, D.OTHER), (0.95, 0.05))[0]
        elif truth is Truth.ACCIDENTAL:
            disp = r.choices(
                (D.ACCIDENTAL_PRESS, D.NO_RESPONSE_NEEDED, D.OTHER), (0.88, 0.08, 0.04)
            )[0]
        elif truth is Truth.FALSE_SENSOR:
            disp = r.choices(
                (D.FALSE_SENSOR_ALARM, D.NO_RESPONSE_NEEDED, D.OTHER), (0.85, 0.1, 0.05)
            )[0]
        else:
            disp = r.choices((D.SERVICE_REQUEST, D.OTHER), (0.9, 0.1))[0]
        urgent = truth is Truth.GENUINE
        ack = r.lognormvariate(math.log(12 if urgent else 25), 0.5)
        work = r.uniform(600, 2400) if urgent else r.uniform(60, 600)
        return Handling(disp, ack, ack + work, ack + work + r.uniform(30, 300))


@dataclass
class HistoryReport:
    facility_id: int
    alarms: int = 0
    incidents: int = 0
    joined: int = 0
    closed: int = 0
    dispositions: dict[str, int] = field(default_factory=dict)


class _Clock:
    """The store's and the operators' clock: the simulated time of the step being played."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _provision(
    conn: psycopg.Connection, settings: Settings, people: list[Person], seed: int
) -> tuple[int, dict[tuple[int, str], str]]:
    """A synthetic facility with its residents and their devices (never connected, so the
    broker files are not rewritten)."""
    code = f"{TAG}-{seed}-{uuid.uuid4().hex[:6]}"
    fac = registry.create_facility(
        conn, FacilityCreate(code=code, name=f"演示历史养老院 {seed}", lat=29.6, lon=120.8)
    )
    devices: dict[tuple[int, str], str] = {}
    for p in people:
        home_bed_id = None
        if p.home:
            bed = registry.create_home_bed(
                conn, HomeBedCreate(facility_id=fac["id"], address=f"演示地址 {p.index}")
            )
            home_bed_id = bed["id"]
        res = registry.create_resident(
            conn,
            ResidentCreate(
                name=f"演示老人{p.index:03d}",
                facility_id=None if p.home else fac["id"],
                home_bed_id=home_bed_id,
                room=None if p.home else f"{100 + p.index}",
            ),
        )
        kinds = (
            {"sos": "sos_button", "kit": "home_kit"}
            if p.home
            else {
                "sos": "sos_button",
                "fall": "fall_sensor",
            }
        )
        for key, kind in kinds.items():
            cred = registry.provision_device(
                conn,
                settings,
                DeviceCreate.model_validate({"kind": kind, "resident_id": res["id"]}),
                sync=False,
            )
            devices[(p.index, key)] = cred.device_id
    conn.commit()
    return int(fac["id"]), devices


def replay(
    settings: Settings, *, seed: int, start: datetime, days: int, residents: int = 24
) -> HistoryReport:
    """Play ``days`` of history into the configured database. Commits as it goes."""
    people, incidents = plan_history(seed, start, days, residents)
    operator = SimOperator(seed + 1)
    actors = [Actor(f"sim-operator-{i}", "operator") for i in (1, 2, 3)]
    clock = _Clock(start)
    store = Store(settings.database_url, clock)
    # Autocommit: each operator action is its own transaction (lifecycle.act opens one),
    # so no row lock is held while the gateway store joins a repeat to the alarm.
    with db.connect(settings.database_url, autocommit=True) as conn:
        facility_id, devices = _provision(conn, settings, people, seed)
        report = HistoryReport(facility_id=facility_id, incidents=len(incidents))
        # (time, seq, step): uplinks and operator actions in one time order.
        queue: list[tuple[datetime, int, tuple[Any, ...]]] = []
        seq = 0

        def push(t: datetime, step: tuple[Any, ...]) -> None:
            nonlocal seq
            seq += 1
            heapq.heappush(queue, (t, seq, step))

        for i, inc in enumerate(incidents):
            push(inc.at, ("raise", inc, f"h{seed}-{i}"))
        handled: set[uuid.UUID] = set()
        try:
            for t, _, step in _drain(queue):
                clock.now = t
                if step[0] == "raise":
                    _, inc, msg_id = step
                    result = _send(
                        store,
                        devices[(inc.person, inc.device)],
                        msg_id,
                        inc.kind,
                        t,
                        dict(inc.fields),
                    )
                    if result.alarm_id is None:
                        continue
                    if result.alarm_id in handled:
                        report.joined += 1
                        continue
                    handled.add(result.alarm_id)
                    report.alarms += 1
                    for k, after in enumerate(inc.repeats):
                        push(t + timedelta(seconds=after), ("repeat", inc, f"{msg_id}r{k}"))
                    if inc.cancel_after_s is not None:
                        push(t + timedelta(seconds=inc.cancel_after_s), ("cancel", inc, msg_id))
                    h = operator.handle(inc.kind, inc.truth)
                    actor = actors[seq % len(actors)]
                    for action, after in (
                        ("acknowledge", h.ack_s),
                        ("resolve", h.resolve_s),
                        ("close", h.close_s),
                    ):
                        push(
                            t + timedelta(seconds=after),
                            ("act", result.alarm_id, action, actor, h.disposition),
                        )
                elif step[0] == "repeat":
                    _, inc, msg_id = step
                    _send(
                        store,
                        devices[(inc.person, inc.device)],
                        msg_id,
                        inc.kind,
                        t,
                        dict(inc.fields),
                    )
                elif step[0] == "cancel":
                    _, inc, ref = step
                    _send(
                        store,
                        devices[(inc.person, inc.device)],
                        f"{ref}c",
                        "cancel",
                        t,
                        {"ref": ref},
                    )
                else:
                    _, alarm_id, action, actor, disp = step
                    try:
                        lifecycle.act(
                            conn,
                            alarm_id,
                            action,
                            actor,
                            t,
                            disposition=disp if action == "close" else None,
                        )
                    except ConflictError:
                        continue  # merged into another incident meanwhile: nothing to close
                    if action == "close":
                        report.closed += 1
                        report.dispositions[str(disp)] = report.dispositions.get(str(disp), 0) + 1
            # These devices never connect, so their downlinks can never be delivered: mark
            # them failed, or a running engine would try to send weeks of stale statuses.
            conn.execute(
                "UPDATE notifications SET status = 'failed' WHERE status = 'pending'"
                " AND channel = 'device' AND target = ANY(%s)",
                (list(devices.values()),),
            )
            conn.commit()
        finally:
            store.close()
    return report


def _drain(queue: list[tuple[datetime, int, tuple[Any, ...]]]) -> Iterator[tuple[Any, ...]]:
    while queue:
        yield heapq.heappop(queue)


def _send(
    store: Store, device_id: str, msg_id: str, kind: str, t: datetime, fields: dict[str, Any]
) -> AlarmResult:
    event = parse_uplink(device_id, uplink(msg_id, kind, t, **fields), t)
    result = store.store_alarm(event)
    if not isinstance(result, AlarmResult):
        raise ConflictError(f"the gateway refused a simulated {kind}: {result}")
    return result
