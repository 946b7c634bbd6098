"""The alert engine's rules as pure code: priorities, transitions, policies, escalation
steps, distances, backoff and signatures. No I/O, no clock of its own: callers pass ``now``.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from eldercare.errors import ConflictError

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


class AlarmKind(StrEnum):
    """What an alarm is about: a resident's alarm, or the health of the devices."""

    SOS = "sos"
    FALL = "fall"
    SMOKE = "smoke"
    GAS = "gas"
    WATER_LEAK = "water_leak"
    BED_EXIT = "bed_exit"
    INACTIVITY = "inactivity"
    DEVICE_OFFLINE = "device_offline"
    LOW_BATTERY = "low_battery"
    CAMERA_OFFLINE = "camera_offline"
    FACILITY_OUTAGE = "facility_outage"


class AlarmStatus(StrEnum):
    RAISED = "raised"
    ACKNOWLEDGED = "acknowledged"
    DISPATCHED = "dispatched"
    ACCEPTED = "accepted"
    ON_SITE = "on_site"
    RESOLVED = "resolved"
    CLOSED = "closed"
    MERGED = "merged"


class OfferStatus(StrEnum):
    """A dispatch offer to one responder (``called``: emergency services were phoned)."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"
    CALLED = "called"


class Disposition(StrEnum):
    """Why an alarm was closed (required to close one)."""

    GENUINE_EMERGENCY = "genuine_emergency"
    FALL_WITHOUT_INJURY = "fall_without_injury"
    ACCIDENTAL_PRESS = "accidental_press"
    TEST = "test"
    FALSE_SENSOR_ALARM = "false_sensor_alarm"
    SERVICE_REQUEST = "service_request"
    NO_RESPONSE_NEEDED = "no_response_needed"
    OTHER = "other"


_K, _S = AlarmKind, AlarmStatus
HEALTH_KINDS: Final = (_K.DEVICE_OFFLINE, _K.LOW_BATTERY, _K.CAMERA_OFFLINE, _K.FACILITY_OUTAGE)
ALARM_KINDS: Final = tuple(k for k in AlarmKind if k not in HEALTH_KINDS)
# A whole facility going dark is the one health alarm a supervisor hears about unacknowledged.
NO_SUPERVISOR: Final = tuple(k for k in HEALTH_KINDS if k != _K.FACILITY_OUTAGE)

# 1 = life-safety; lower numbers are served first.
PRIORITY: Final[Mapping[str, int]] = {
    "fall": 1,
    "sos": 1,
    "smoke": 1,
    "gas": 1,
    "water_leak": 2,
    "facility_outage": 2,
    "bed_exit": 3,
    "inactivity": 3,
    "device_offline": 4,
    "low_battery": 4,
    "camera_offline": 4,
}

# The resident's ability level (GB/T 42195, the platform layer's assessments, cached on
# residents.ability_level) drives priority: someone assessed severe or complete cannot get up
# or call for help alone, so their bed-exit and inactivity alarms rank one step higher.
FRAIL_LEVELS: Final = frozenset({"severe", "complete"})
LEVEL_SENSITIVE_KINDS: Final = frozenset({"bed_exit", "inactivity"})


def alarm_priority(kind: str, ability_level: str | None) -> int:
    base = PRIORITY[kind]
    if ability_level in FRAIL_LEVELS and kind in LEVEL_SENSITIVE_KINDS:
        return max(1, base - 1)
    return base


# A new event joins an open alarm only while nobody is on the way back from it:
# after ``resolved`` a fresh press is a fresh emergency.
JOINABLE: Final = (_S.RAISED, _S.ACKNOWLEDGED, _S.DISPATCHED, _S.ACCEPTED, _S.ON_SITE)
ACTIVE: Final = (*JOINABLE, _S.RESOLVED)  # the operator queue: everything not closed/merged
TERMINAL: Final = (_S.CLOSED, _S.MERGED)
assert set(ACTIVE) | set(TERMINAL) == set(AlarmStatus)
# Nobody has taken these up yet: a health alarm whose cause clears closes itself.
UNTAKEN: Final = frozenset({_S.RAISED, _S.ACKNOWLEDGED})
# One resident's fall and SOS this close together are one incident.
PERSONAL_KINDS: Final = frozenset({_K.SOS, _K.FALL})
CORRELATION_WINDOW: Final = timedelta(minutes=5)

# Statuses the device is told about on its downlink.
DEVICE_TOLD: Final = frozenset({_S.ACKNOWLEDGED, _S.DISPATCHED, _S.ON_SITE, _S.RESOLVED})

DISPOSITIONS: Final = tuple(Disposition)


def category(kind: str) -> str:
    return "health" if kind in HEALTH_KINDS else "alarm"


# ---------------------------------------------------------------- transitions


@dataclass(frozen=True, slots=True)
class Move:
    """One action of the alarm state machine."""

    allowed: frozenset[AlarmStatus]  # the statuses it may start from
    to: AlarmStatus | None  # None: the status does not change ...
    stamp: str | None  # the clock column set on the first such move
    event: str  # the name in the audit trail, the outbox and the websocket
    # ... unless the status it starts from is listed here.
    targets: Mapping[AlarmStatus, AlarmStatus] = field(default_factory=dict)

    def target(self, status: str) -> AlarmStatus:
        return self.targets.get(AlarmStatus(status)) or self.to or AlarmStatus(status)


_UNDERWAY: Final = frozenset({_S.ACKNOWLEDGED, _S.DISPATCHED, _S.ACCEPTED, _S.ON_SITE})
MOVES: Final[Mapping[str, Move]] = {
    "acknowledge": Move(frozenset({_S.RAISED}), _S.ACKNOWLEDGED, "acknowledged_at", "acknowledged"),
    "dispatch": Move(
        frozenset({_S.ACKNOWLEDGED, _S.DISPATCHED}), _S.DISPATCHED, "dispatched_at", "dispatched"
    ),
    "accept": Move(frozenset({_S.DISPATCHED}), _S.ACCEPTED, "accepted_at", "accepted"),
    "decline": Move(frozenset({_S.DISPATCHED}), None, None, "declined"),
    "on_site": Move(frozenset({_S.ACCEPTED}), _S.ON_SITE, "on_site_at", "on_site"),
    "resolve": Move(_UNDERWAY, _S.RESOLVED, "resolved_at", "resolved"),
    "close": Move(frozenset({_S.RESOLVED}), _S.CLOSED, "closed_at", "closed"),
    # Calling 120 for an acknowledged alarm is a dispatch: the clock and the device say so.
    "emergency": Move(
        _UNDERWAY, None, "dispatched_at", "emergency", {_S.ACKNOWLEDGED: _S.DISPATCHED}
    ),
    "note": Move(frozenset(AlarmStatus) - {_S.MERGED}, None, None, "note"),
}
# Health alarms need no responder: an operator may close them once seen.
HEALTH_CLOSE_FROM: Final = frozenset({_S.RAISED, _S.ACKNOWLEDGED, _S.RESOLVED})
# The detail view proposes whom to send while sending is still to come.
PROPOSAL_FOR: Final = frozenset({_S.RAISED, *MOVES["dispatch"].allowed})


def _allowed(action: str, kind: str) -> frozenset[AlarmStatus]:
    allowed = MOVES[action].allowed
    if action == "close" and category(kind) == "health":
        allowed = allowed | HEALTH_CLOSE_FROM
    return allowed


def check_move(action: str, status: str, kind: str) -> AlarmStatus:
    """The status after ``action``, or ConflictError saying why it is not allowed now."""
    allowed = _allowed(action, kind)
    if status not in allowed:
        verb = action.replace("_", "-")
        need = " or ".join(sorted(allowed))
        raise ConflictError(f"cannot {verb}: alarm is {status} (needs {need})")
    return MOVES[action].target(status)


def allowed_actions(status: str, kind: str) -> list[str]:
    """The actions the state machine allows now (roles are checked separately), in
    MOVES order: what the console enables."""
    return [a for a in MOVES if status in _allowed(a, kind)]


# ---------------------------------------------------------------- policies


STEP_KINDS: Final = ("facility_staff", "outreach", "family", "provider", "emergency")


@dataclass(frozen=True, slots=True)
class Step:
    kind: str
    count: int = 1
    timeout_s: int = 120
    number: str | None = None  # emergency: 120 (ambulance) or 119 (fire)

    def applies(self, at_home: bool) -> bool:
        """Rota staff work inside the facility; the outreach team goes to home care beds."""
        if self.kind == "facility_staff":
            return not at_home
        if self.kind == "outreach":
            return at_home
        return True


@dataclass(frozen=True, slots=True)
class Policy:
    id: int | None
    facility_id: int | None
    area: str | None
    name: str
    ack_target_s: int = 60
    ack_target2_s: int = 180
    on_site_target_s: int = 900
    supervisor_after_s: int = 60
    steps: tuple[Step, ...] = field(default_factory=tuple)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "facility_id": self.facility_id,
            "area": self.area,
            "name": self.name,
            "ack_target_s": self.ack_target_s,
            "ack_target2_s": self.ack_target2_s,
            "on_site_target_s": self.on_site_target_s,
            "supervisor_after_s": self.supervisor_after_s,
            "steps": [step_dict(s) for s in self.steps],
        }


def step_dict(s: Step) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": s.kind, "count": s.count, "timeout_s": s.timeout_s}
    if s.number:
        d["number"] = s.number
    return d


DEFAULT_STEPS: Final = (
    Step("facility_staff", 2, 120),
    Step("outreach", 2, 180),
    Step("family", 1, 180),
    Step("provider", 1, 300),
    Step("emergency", 1, 300, "120"),
)
ON_SITE_TARGET_S: Final[Mapping[str, int]] = {"town": 15 * 60, "remote": 30 * 60}


def default_policy(area: str) -> Policy:
    return Policy(
        None,
        None,
        area,
        f"{area} default",
        on_site_target_s=ON_SITE_TARGET_S.get(area, 900),
        steps=DEFAULT_STEPS,
    )


def policy_from_row(row: Mapping[str, Any]) -> Policy:
    steps = tuple(
        Step(s["kind"], int(s.get("count", 1)), int(s.get("timeout_s", 120)), s.get("number"))
        for s in row["steps"]
    )
    return Policy(
        row["id"],
        row["facility_id"],
        row["area"],
        row["name"],
        row["ack_target_s"],
        row["ack_target2_s"],
        row["on_site_target_s"],
        row["supervisor_after_s"],
        steps,
    )


def choose_policy(rows: Iterable[Mapping[str, Any]], facility_id: int | None, area: str) -> Policy:
    """The facility's own policy, else its area's, else the built-in default."""
    by_area = None
    for r in rows:
        if facility_id is not None and r["facility_id"] == facility_id:
            return policy_from_row(r)
        if r["facility_id"] is None and r["area"] == area:
            by_area = r
    return policy_from_row(by_area) if by_area is not None else default_policy(area)


def next_step(steps: Sequence[Step], current: int | None, at_home: bool) -> list[int]:
    """Step indexes to try, in order, after ``current``: the rest of the policy, then the
    policy again from the start (escalation repeats until someone accepts)."""
    n = len(steps)
    start = 0 if current is None else current + 1
    order = [(start + i) % n for i in range(n)] if n else []
    return [i for i in order if steps[i].applies(at_home)]


# ---------------------------------------------------------------- geography


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Great-circle (haversine) distance in metres."""
    r = 6_371_000.0
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(min(1.0, math.sqrt(a)))


def nearest(
    candidates: Iterable[Mapping[str, Any]], lat: float | None, lon: float | None, count: int
) -> list[dict[str, Any]]:
    """The ``count`` nearest candidates with a location; unknown distances last."""
    out = []
    for c in candidates:
        d = dict(c)
        if (
            lat is not None
            and lon is not None
            and c.get("lat") is not None
            and c.get("lon") is not None
        ):
            d["distance_m"] = round(distance_m(lat, lon, c["lat"], c["lon"]), 1)
        else:
            d["distance_m"] = None
        out.append(d)
    out.sort(key=lambda d: (d["distance_m"] is None, d["distance_m"] or 0.0, d.get("id") or 0))
    return out[:count]


# ---------------------------------------------------------------- health


OUTAGE_MIN_DEVICES: Final = 3
OUTAGE_SHARE: Final = 0.5


def is_outage(
    total: int, offline: int, *, min_devices: int = OUTAGE_MIN_DEVICES, share: float = OUTAGE_SHARE
) -> bool:
    """Most of a facility's devices offline together: a network or power outage."""
    return total >= min_devices and offline >= min_devices and offline >= share * total


BATTERY_HYSTERESIS: Final = 5  # a battery hovering at the threshold must not flap


# ---------------------------------------------------------------- delivery


WEBHOOK_MAX_ATTEMPTS: Final = 12
DEVICE_MAX_ATTEMPTS: Final = 50


def retry_delay(attempts: int, *, cap: float = 300.0) -> float:
    """Exponential backoff after ``attempts`` failed attempts: 2, 4, 8 ... seconds, capped."""
    return float(min(cap, 2.0 ** max(1, attempts)))


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(secret: str, timestamp: int, body: bytes, signature: str) -> bool:
    return hmac.compare_digest(sign(secret, timestamp, body), signature)
