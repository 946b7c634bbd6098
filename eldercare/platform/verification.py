"""Visit verification (design §2.8): anomaly rules as pure functions over a visit context.

The server gathers the facts (:mod:`eldercare.platform.visitchecks` does the SQL); this module
only decides. Nothing here reads a clock or a database, so every rule is tested with plain
values (tests/test_verification.py, hypothesis properties included).

Severity decides the effect (§2.8): ``hard`` blocks verification until civil_affairs decides,
``soft`` forces a revisit before verification, ``info`` is report-only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from eldercare.alerts.rules import distance_m

Phase = Literal["check_in", "check_out"]
Severity = Literal["info", "soft", "hard"]

# Default parameters from the design's table (§2.8); the area snapshot picks town or remote.
GPS_LIMIT_M: Final = {"town": 200.0, "remote": 500.0}
ACCURACY_LIMIT_M: Final = 100.0
SPEED_LIMIT_KMH: Final = {"town": 60.0, "remote": 90.0}
SAME_HOUSEHOLD_M: Final = 50.0
CLOCK_SKEW_S: Final = 300
PRESENCE_COVERAGE: Final = 0.5
OFF_SCHEDULE: Final = timedelta(hours=2)
ALARM_KINDS: Final = frozenset({"sos", "fall"})
# R04b: the alarm statuses that mean nobody has finished with it yet.
UNANSWERED_STATUSES: Final = frozenset({"raised", "acknowledged", "dispatched"})


@dataclass(frozen=True, slots=True)
class Fix:
    """A check-in or check-out: where the worker's phone said it was, and when (server time)."""

    at: datetime
    lat: float | None = None
    lon: float | None = None
    accuracy_m: float | None = None
    client_time: datetime | None = None


@dataclass(frozen=True, slots=True)
class OtherVisit:
    """Another visit of the same worker or of the same resident (its own order)."""

    order_id: str
    resident_id: int
    worker_id: int | None
    service_item_code: str
    start: datetime
    end: datetime | None  # None while still checked in
    ref: tuple[float, float] | None = None
    end_point: tuple[float, float] | None = None
    start_point: tuple[float, float] | None = None


@dataclass(frozen=True, slots=True)
class StatusPeriod:
    status: str  # hospitalised, deceased, moved_out, away
    start: datetime
    end: datetime | None  # None = open-ended (deceased always)


@dataclass(frozen=True, slots=True)
class AlarmFact:
    id: str
    kind: str
    status: str
    event_time: datetime
    resolved_at: datetime | None
    worker_accepted: bool = False  # the checked-in worker's responder accepted an offer


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    msg_id: str
    type: str
    time: datetime
    duration_s: float | None = None
    presence: str | None = None


@dataclass(frozen=True, slots=True)
class Visit:
    """Everything the rules know about the visit being checked."""

    order_id: str
    resident_id: int
    worker_id: int | None
    service_item_code: str
    check_in: Fix
    check_out: Fix | None = None
    ref: tuple[float, float] | None = None
    area: str | None = None
    scheduled_start: datetime | None = None
    min_duration_min: int | None = None
    max_duration_min: int | None = None
    requires_presence: bool = True
    setting: str = "home"


@dataclass(frozen=True, slots=True)
class Facts:
    visit: Visit
    phase: Phase
    now: datetime
    worker_visits: Sequence[OtherVisit] = ()
    resident_visits: Sequence[OtherVisit] = ()
    status_periods: Sequence[StatusPeriod] = ()
    alarms: Sequence[AlarmFact] = ()
    device_events: Sequence[DeviceEvent] = ()


@dataclass(frozen=True, slots=True)
class Finding:
    rule_code: str
    severity: Severity
    evidence: dict[str, Any] = field(default_factory=dict)
    # Another order that gets the same finding (R06 flags both visits).
    also_order_id: str | None = None

    @property
    def blocks_verification(self) -> bool:
        """Hard findings hold the order (and so its subsidy) until civil_affairs decides."""
        return self.severity == "hard"

    @property
    def needs_revisit(self) -> bool:
        return self.severity == "soft"


# ---------------------------------------------------------------- helpers


def window(visit: Visit) -> tuple[datetime, datetime]:
    """The visit as an interval; before check-out it is the instant of check-in."""
    start = visit.check_in.at
    end = visit.check_out.at if visit.check_out is not None else start
    return start, max(start, end)


def overlap_s(a: tuple[datetime, datetime], b: tuple[datetime, datetime]) -> float:
    """Seconds two closed intervals share (0 if they only touch or are apart)."""
    return max(0.0, (min(a[1], b[1]) - max(a[0], b[0])).total_seconds())


def _inside(t: datetime, start: datetime, end: datetime | None) -> bool:
    return start <= t and (end is None or t < end)


def _intersects(a: tuple[datetime, datetime], start: datetime, end: datetime | None) -> bool:
    """Does [a0, a1] meet the half-open [start, end)? An instant visit counts when inside."""
    return a[0] < (end or datetime.max.replace(tzinfo=a[0].tzinfo)) and start <= a[1]


def _other_window(o: OtherVisit, now: datetime) -> tuple[datetime, datetime]:
    end = o.end if o.end is not None else max(o.start, now)
    return o.start, max(o.start, end)


def _points(visit: Visit) -> list[tuple[str, Fix]]:
    out = [("check_in", visit.check_in)]
    if visit.check_out is not None:
        out.append(("check_out", visit.check_out))
    return out


# ---------------------------------------------------------------- rules


def r01_dup_claim(f: Facts) -> list[Finding]:
    """Same resident, same item, visit windows overlapping: the later claim is hard."""
    if f.phase != "check_out":
        return []
    mine = window(f.visit)
    out = []
    for o in f.resident_visits:
        if o.order_id == f.visit.order_id or o.service_item_code != f.visit.service_item_code:
            continue
        shared = overlap_s(mine, _other_window(o, f.now))
        if shared > 0:
            out.append(
                Finding(
                    "dup_claim",
                    "hard",
                    {"related": o.order_id, "overlap_min": round(shared / 60, 1)},
                )
            )
    return out[:1]


def r02_resident_inactive(f: Facts) -> list[Finding]:
    """Service while hospitalised or moved out (hard), away (soft), or after death (hard)."""
    mine = window(f.visit)
    worst: Finding | None = None
    for p in f.status_periods:
        # deceased periods are open-ended, so this is also "after the time of death".
        if not _intersects(mine, p.start, p.end):
            continue
        sev: Severity = "soft" if p.status == "away" else "hard"
        found = Finding(
            "resident_inactive",
            sev,
            {
                "status": p.status,
                "from": p.start.isoformat(),
                "to": p.end.isoformat() if p.end else None,
            },
        )
        if worst is None or (worst.severity == "soft" and sev == "hard"):
            worst = found
    return [worst] if worst else []


def _presence_coverage(f: Facts) -> tuple[float, DeviceEvent] | None:
    start, end = window(f.visit)
    length = (end - start).total_seconds()
    best: tuple[float, DeviceEvent] | None = None
    for e in f.device_events:
        if e.type == "presence" and e.presence == "away" and start <= e.time <= end:
            cover = 1.0
        elif e.type == "inactivity" and e.duration_s:
            quiet = (e.time - timedelta(seconds=e.duration_s), e.time)
            if length <= 0:
                cover = 1.0 if quiet[0] <= start <= quiet[1] else 0.0
            else:
                cover = overlap_s((start, end), quiet) / length
        else:
            continue
        if best is None or cover > best[0]:
            best = (cover, e)
    return best


def r03_no_presence_evidence(f: Facts) -> list[Finding]:
    """Home devices say nobody moved for at least half of an in-home visit."""
    if f.phase != "check_out" or not f.visit.requires_presence or f.visit.setting != "home":
        return []
    best = _presence_coverage(f)
    if best is None or best[0] < PRESENCE_COVERAGE:
        return []
    cover, e = best
    return [
        Finding(
            "no_presence_evidence",
            "soft",
            {"coverage": round(min(cover, 1.0), 3), "msg_id": e.msg_id, "event": e.type},
        )
    ]


def _sos_fall(f: Facts) -> list[AlarmFact]:
    return [a for a in f.alarms if a.kind in ALARM_KINDS]


def r04b_alarm_open_at_check_in(f: Facts) -> list[Finding]:
    """Check-in while an SOS/fall alarm of the resident is open: the console is told."""
    at = f.visit.check_in.at
    for a in _sos_fall(f):
        if a.status in UNANSWERED_STATUSES and _inside(at, a.event_time, a.resolved_at):
            return [
                Finding(
                    "alarm_open_at_check_in",
                    "soft",
                    {"alarm_id": a.id, "kind": a.kind, "event_time": a.event_time.isoformat()},
                )
            ]
    return []


def r04a_alarm_unanswered(f: Facts) -> list[Finding]:
    """An SOS/fall alarm open during the visit that the worker on site never took."""
    if f.phase != "check_out":
        return []
    mine = window(f.visit)
    for a in _sos_fall(f):
        if _intersects(mine, a.event_time, a.resolved_at) and not a.worker_accepted:
            return [
                Finding(
                    "alarm_unanswered_during_visit",
                    "soft",
                    {"alarm_id": a.id, "kind": a.kind, "event_time": a.event_time.isoformat()},
                )
            ]
    return []


def r05_gps_far(f: Facts) -> list[Finding]:
    """A point too far from home, too vague, or missing. The worst point is the evidence."""
    limit = GPS_LIMIT_M.get(f.visit.area or "town", GPS_LIMIT_M["town"])
    worst: dict[str, Any] | None = None
    for name, fix in _points(f.visit):
        if fix.lat is None or fix.lon is None:
            return [Finding("gps_far", "soft", {"point": name, "reason": "no_point"})]
        reasons = []
        d = None
        if f.visit.ref is not None:
            d = round(distance_m(f.visit.ref[0], f.visit.ref[1], fix.lat, fix.lon), 2)
            if d > limit:
                reasons.append("distance")
        if fix.accuracy_m is not None and fix.accuracy_m > ACCURACY_LIMIT_M:
            reasons.append("accuracy")
        if not reasons:
            continue
        ev = {
            "point": name,
            "distance_m": d,
            "threshold_m": limit,
            "accuracy_m": fix.accuracy_m,
            "reasons": reasons,
        }
        if worst is None or (d or 0) > (worst["distance_m"] or 0):
            worst = ev
    return [Finding("gps_far", "soft", worst)] if worst else []


def r06_worker_overlap(f: Facts) -> list[Finding]:
    """The same worker in two places at once, unless both are the same household."""
    mine = window(f.visit)
    out = []
    for o in f.worker_visits:
        if o.order_id == f.visit.order_id:
            continue
        theirs = _other_window(o, f.now)
        shared = overlap_s(mine, theirs)
        instant = mine[0] == mine[1] and theirs[0] <= mine[0] < theirs[1]
        if shared <= 0 and not instant:
            continue
        if (
            f.visit.ref is not None
            and o.ref is not None
            and distance_m(*f.visit.ref, *o.ref) <= SAME_HOUSEHOLD_M
        ):
            continue
        ev = {"related": o.order_id, "overlap_min": round(shared / 60, 1)}
        out.append(
            Finding(
                "worker_overlap",
                "hard",
                ev,
                also_order_id=o.order_id,
            )
        )
    return out


def r07_impossible_travel(f: Facts) -> list[Finding]:
    """From the worker's previous check-out to this check-in faster than the speed limit."""
    if f.phase != "check_out":
        return []
    fix = f.visit.check_in
    if fix.lat is None or fix.lon is None:
        return []
    before = [
        o
        for o in f.worker_visits
        if o.order_id != f.visit.order_id
        and o.end is not None
        and o.end <= fix.at
        and o.end_point is not None
    ]
    if not before:
        return []
    prev = max(before, key=lambda o: o.end or o.start)
    assert prev.end is not None and prev.end_point is not None
    dist = distance_m(prev.end_point[0], prev.end_point[1], fix.lat, fix.lon)
    gap_h = (fix.at - prev.end).total_seconds() / 3600
    limit = SPEED_LIMIT_KMH.get(f.visit.area or "town", SPEED_LIMIT_KMH["town"])
    if dist < SAME_HOUSEHOLD_M:
        return []
    speed = float("inf") if gap_h <= 0 else dist / 1000 / gap_h
    if speed <= limit:
        return []
    return [
        Finding(
            "impossible_travel",
            "soft",
            {
                "related": prev.order_id,
                "distance_m": round(dist, 1),
                "gap_min": round(gap_h * 60, 1),
                "speed_kmh": round(speed, 1) if gap_h > 0 else None,
                "limit_kmh": limit,
            },
        )
    ]


def r08_duration(f: Facts) -> list[Finding]:
    if f.phase != "check_out" or f.visit.check_out is None:
        return []
    minutes = (f.visit.check_out.at - f.visit.check_in.at).total_seconds() / 60
    lo, hi = f.visit.min_duration_min, f.visit.max_duration_min
    if (lo is not None and minutes < lo) or (hi is not None and minutes > hi):
        return [
            Finding(
                "duration_out_of_range",
                "soft",
                {"duration_min": round(minutes, 1), "min_min": lo, "max_min": hi},
            )
        ]
    return []


def r09_clock_skew(f: Facts) -> list[Finding]:
    fix = f.visit.check_out if f.phase == "check_out" else f.visit.check_in
    if fix is None or fix.client_time is None:
        return []
    skew = (fix.client_time - fix.at).total_seconds()
    if abs(skew) <= CLOCK_SKEW_S:
        return []
    return [Finding("clock_skew", "info", {"point": f.phase, "skew_s": round(skew, 1)})]


def r16_off_schedule(f: Facts) -> list[Finding]:
    if f.visit.scheduled_start is None:
        return []
    off = f.visit.check_in.at - f.visit.scheduled_start
    if abs(off) <= OFF_SCHEDULE:
        return []
    return [Finding("off_schedule", "info", {"off_min": round(off.total_seconds() / 60, 1)})]


# Check-in runs R02, R04b, R05, R06 and R09 (design §2.4); check-out runs all of them.
CHECK_IN_RULES: Final = (
    r02_resident_inactive,
    r04b_alarm_open_at_check_in,
    r05_gps_far,
    r06_worker_overlap,
    r09_clock_skew,
    r16_off_schedule,
)
CHECK_OUT_RULES: Final = (
    r01_dup_claim,
    r02_resident_inactive,
    r03_no_presence_evidence,
    r04a_alarm_unanswered,
    r05_gps_far,
    r06_worker_overlap,
    r07_impossible_travel,
    r08_duration,
    r09_clock_skew,
)


def check(facts: Facts) -> list[Finding]:
    """All findings of one phase, at most one per rule for the visit itself (the table's
    ``UNIQUE (rule_code, work_order_id)``); R06 may also name the other visits."""
    rules = CHECK_IN_RULES if facts.phase == "check_in" else CHECK_OUT_RULES
    out: list[Finding] = []
    for rule in rules:
        out.extend(rule(facts))
    return out
