"""Device protocol v1: topics, the uplink envelope, and downlink messages.

Pure code: bytes in, a frozen validated :class:`Uplink` out, or a
:class:`~eldercare.errors.ProtocolError` carrying the protocol's nack reason.
Each payload is parsed exactly once, here. See ``docs/device-protocol.md``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any, Final, NamedTuple

import orjson

from eldercare.errors import ProtocolError

PROTOCOL_VERSION: Final = 1
MAX_PAYLOAD_BYTES: Final = 16 * 1024
TOPIC_ROOT: Final = "eldercare/v1/dev"
FUTURE_SKEW: Final = timedelta(hours=24)
PAST_SKEW: Final = timedelta(days=7)

# Device ids are MQTT usernames and topic levels: no wildcards, no slashes. `\Z`, not `$`:
# Python's `$` also matches before a final newline (audit M12).
DEVICE_ID_RE: Final = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
# A negative exponent of three or more digits: the only numbers worth a second look
# (see _check_numbers); everything else skips the slow path.
_LONG_EXPONENT: Final = re.compile(rb"[eE]-0*[0-9]{3,}")
MAX_DECIMAL_PLACES: Final = 400
_RFC3339_RE: Final = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"
)


class Reason(StrEnum):
    MALFORMED_JSON = "malformed_json"
    SCHEMA = "schema"
    TOO_LARGE = "too_large"
    UNKNOWN_TYPE = "unknown_type"
    UNKNOWN_DEVICE = "unknown_device"


class EventClass(StrEnum):
    ALARM = "alarm"
    CONTROL = "control"
    STATUS = "status"
    TELEMETRY = "telemetry"


class Channel(StrEnum):
    UP = "up"
    DOWN = "down"
    STATE = "state"


CAMERA_STATUSES: Final = frozenset({"online", "offline", "video_loss", "tamper", "storage_error"})
ALARM_STATUSES: Final = ("acknowledged", "dispatched", "on_site", "resolved")


def topic(device_id: str, channel: Channel | str) -> str:
    return f"{TOPIC_ROOT}/{device_id}/{Channel(channel).value}"


def parse_topic(name: str) -> tuple[str, Channel]:
    """Split ``eldercare/v1/dev/{id}/{channel}``; raises ValueError otherwise."""
    parts = name.split("/")
    if len(parts) != 5 or "/".join(parts[:3]) != TOPIC_ROOT:
        raise ValueError(f"not a device topic: {name!r}")
    if not DEVICE_ID_RE.match(parts[3]):
        raise ValueError(f"bad device id in topic: {name!r}")
    return parts[3], Channel(parts[4])


# ---- field validators: each returns nothing and raises _Bad on a violation ----


class _Bad(Exception):
    pass


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: object) -> bool:
    # A tuple, not ``int | float``: the union would be built anew on every call.
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _opt(body: Mapping[str, Any], key: str, check: Callable[[Any], bool], what: str) -> None:
    if key in body and body[key] is not None and not check(body[key]):
        raise _Bad(f"{key} must be {what}")


def _req(body: Mapping[str, Any], key: str, check: Callable[[Any], bool], what: str) -> None:
    if key not in body or body[key] is None:
        raise _Bad(f"{key} is required ({what})")
    if not check(body[key]):
        raise _Bad(f"{key} must be {what}")


def _short_str(v: object) -> bool:
    return isinstance(v, str) and 1 <= len(v) <= 64


def _v_sos(b: Mapping[str, Any]) -> None:
    _opt(b, "press", lambda v: v in ("single", "long", "double"), "single, long or double")


def _v_fall(b: Mapping[str, Any]) -> None:
    _req(b, "confidence", lambda v: _is_num(v) and 0 <= v <= 1, "a number from 0 to 1")
    _opt(b, "room", lambda v: isinstance(v, str) and len(v) <= 64, "a string of at most 64")


def _v_none(b: Mapping[str, Any]) -> None:
    return None


def _v_duration(b: Mapping[str, Any]) -> None:
    _opt(b, "duration_s", lambda v: _is_int(v) and 0 <= v <= 10**7, "a non-negative integer")


def _v_cancel(b: Mapping[str, Any]) -> None:
    _req(b, "ref", _short_str, "the id of the alarm message, 1-64 characters")


def _v_heartbeat(b: Mapping[str, Any]) -> None:
    _req(b, "battery", lambda v: _is_int(v) and 0 <= v <= 100, "an integer from 0 to 100")
    _req(b, "interval_s", lambda v: _is_int(v) and 1 <= v <= 86400, "an integer 1-86400")
    _opt(b, "rssi", lambda v: _is_int(v) and -200 <= v <= 50, "an integer (dBm)")


def _v_camera(b: Mapping[str, Any]) -> None:
    _req(b, "camera_id", _short_str, "a string of 1-64 characters")
    _req(
        b, "status", lambda v: v in CAMERA_STATUSES, "one of " + ", ".join(sorted(CAMERA_STATUSES))
    )
    _opt(b, "recording", lambda v: isinstance(v, bool), "a boolean")


def _v_vitals(b: Mapping[str, Any]) -> None:
    # Spelled out rather than via _opt: vitals are most of the traffic.
    v = b.get("heart_rate")
    if v is not None and not (_is_num(v) and 0 <= v <= 400):
        raise _Bad("heart_rate must be a number 0-400")
    v = b.get("resp_rate")
    if v is not None and not (_is_num(v) and 0 <= v <= 200):
        raise _Bad("resp_rate must be a number 0-200")


def _is_sample(v: object) -> bool:
    return isinstance(v, list) and len(v) == 3 and all(_is_num(x) for x in v)


def _v_imu(b: Mapping[str, Any]) -> None:
    _req(b, "hz", lambda v: _is_int(v) and 1 <= v <= 10_000, "an integer 1-10000")
    _req(
        b,
        "acc",
        lambda v: isinstance(v, list) and len(v) >= 1 and all(_is_sample(s) for s in v),
        "a non-empty list of [x, y, z] numbers",
    )


_TYPES: Final[dict[str, tuple[EventClass, Callable[[Mapping[str, Any]], None]]]] = {
    "sos": (EventClass.ALARM, _v_sos),
    "fall": (EventClass.ALARM, _v_fall),
    "smoke": (EventClass.ALARM, _v_none),
    "gas": (EventClass.ALARM, _v_none),
    "water_leak": (EventClass.ALARM, _v_none),
    "bed_exit": (EventClass.ALARM, _v_duration),
    "inactivity": (EventClass.ALARM, _v_duration),
    "cancel": (EventClass.CONTROL, _v_cancel),
    "heartbeat": (EventClass.STATUS, _v_heartbeat),
    "camera_status": (EventClass.STATUS, _v_camera),
    "vitals": (EventClass.TELEMETRY, _v_vitals),
    "imu": (EventClass.TELEMETRY, _v_imu),
}
EVENT_TYPES: Final = frozenset(_TYPES)


def event_class(event_type: str) -> EventClass:
    return _TYPES[event_type][0]


class Uplink(NamedTuple):
    """One validated uplink event. ``body`` is the decoded JSON object, ``raw`` the bytes.

    Immutable; a NamedTuple rather than a frozen dataclass because the gateway builds one
    per message and a frozen dataclass's ``__init__`` cost ~1.5x the whole JSON decode.
    """

    device_id: str
    msg_id: str
    type: str
    cls: EventClass
    device_ts: datetime
    received_at: datetime
    clock_skew: bool
    body: Mapping[str, Any]
    raw: bytes

    @property
    def time(self) -> datetime:
        """The time that counts: the device's, unless its clock is off."""
        return self.received_at if self.clock_skew else self.device_ts

    @property
    def canonical(self) -> bytes:
        """The body re-serialised (sorted keys): what is stored, never the device's bytes,
        so the database only ever parses JSON that orjson wrote (audit C1)."""
        return orjson.dumps(self.body, option=orjson.OPT_SORT_KEYS)

    @property
    def is_alarm(self) -> bool:
        return self.cls is EventClass.ALARM


_new_tuple: Final = tuple.__new__

# (received_at, latest, earliest) of the last receive time seen; swapped as one tuple, so
# threads sharing it see a consistent triple.
_skew_bounds: tuple[datetime | None, datetime, datetime] = (None, datetime.max, datetime.min)


def _skew_bounds_for(received_at: datetime) -> tuple[datetime | None, datetime, datetime]:
    global _skew_bounds
    _skew_bounds = (received_at, received_at + FUTURE_SKEW, received_at - PAST_SKEW)
    return _skew_bounds


def _parse_ts(value: object) -> datetime:
    if not isinstance(value, str) or not _RFC3339_RE.match(value):
        raise _Bad("ts must be an RFC 3339 time with an offset, e.g. 2026-01-31T08:00:00+08:00")
    # The pattern above is the validation. Python 3.11's fromisoformat reads every form it
    # lets through (space or T, Z, up to 9 fractional digits, rounded down to
    # microseconds) except a lower-case t or z; upper() touches nothing else in it.
    try:
        return datetime.fromisoformat(value.upper())
    except ValueError as exc:
        raise _Bad(f"ts is not a valid time: {exc}") from None


def _check_number(text: str) -> float:
    d = Decimal(text)
    exponent = d.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -MAX_DECIMAL_PLACES:
        raise _Bad(f"numbers may have at most {MAX_DECIMAL_PLACES} decimal places")
    value = float(d)
    if value == 0.0 and d != 0:
        raise _Bad("a number is too small to represent (it would become 0)")
    return value


def _check_numbers(payload: bytes) -> None:
    """Refuse numbers a double cannot hold. orjson turns ``1e-20000`` into 0.0 silently,
    and PostgreSQL refuses it outright (display scale over 16383, audit C1)."""
    json.loads(payload, parse_float=_check_number)


def parse_uplink(device_id: str, payload: bytes, received_at: datetime) -> Uplink:
    """Validate one ``up`` payload from ``device_id``; raise ProtocolError with the nack reason."""
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ProtocolError(
            Reason.TOO_LARGE.value, f"{len(payload)} bytes; the limit is {MAX_PAYLOAD_BYTES}"
        )
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(Reason.MALFORMED_JSON.value, f"not UTF-8 JSON: {exc}") from None
    if not isinstance(body, dict):
        raise ProtocolError(Reason.SCHEMA.value, "the message must be a JSON object")
    msg_id = body.get("id")
    good_id = msg_id if _short_str(msg_id) else None
    try:
        # memchr for a backslash first: most payloads have none, and the six-byte search
        # cost as much as the JSON decode.
        if b"\\" in payload and b"\\u0000" in payload:
            # PostgreSQL text and jsonb cannot hold NUL; refuse rather than mangle.
            raise _Bad("strings may not contain the NUL character (\\u0000)")
        # Two memchr-speed searches first: the regex scan costs as much as the JSON decode.
        if (b"e-" in payload or b"E-" in payload) and _LONG_EXPONENT.search(payload):
            _check_numbers(payload)
        v = body.get("v")
        if v != PROTOCOL_VERSION or type(v) is not int:
            raise _Bad(f"v must be the integer {PROTOCOL_VERSION}")
        if good_id is None:
            raise _Bad("id is required: a string of 1-64 characters")
        device_ts = _parse_ts(body.get("ts"))
        etype = body.get("type")
        if not isinstance(etype, str) or not etype:
            raise _Bad("type is required: a string")
    except _Bad as exc:
        raise ProtocolError(Reason.SCHEMA.value, str(exc), good_id) from None
    spec = _TYPES.get(etype)
    if spec is None:
        shown = etype if len(etype) <= 40 else etype[:40] + "..."
        raise ProtocolError(Reason.UNKNOWN_TYPE.value, f"unknown event type {shown!r}", good_id)
    cls, validate = spec
    try:
        validate(body)
    except _Bad as exc:
        raise ProtocolError(Reason.SCHEMA.value, f"{etype}: {exc}", good_id) from None
    bounds = _skew_bounds
    if bounds[0] is not received_at:  # one receive time per read: add once, not per message
        bounds = _skew_bounds_for(received_at)
    skew = device_ts > bounds[1] or device_ts < bounds[2]
    # tuple.__new__ directly: a NamedTuple's own __new__ is a Python-level wrapper.
    return _new_tuple(
        Uplink, (device_id, good_id, etype, cls, device_ts, received_at, skew, body, payload)
    )


def parse_state(payload: bytes) -> bool:
    """The retained ``state`` topic: True for ``online``, False for ``offline``."""
    text = payload.strip()
    if text == b"online":
        return True
    if text == b"offline":
        return False
    raise ProtocolError(Reason.SCHEMA.value, "state must be 'online' or 'offline'")


# ---- downlink ----


def ack(ack_id: str, alarm_id: str) -> bytes:
    return orjson.dumps({"v": 1, "type": "ack", "ack_id": ack_id, "alarm_id": alarm_id})


def nack(ack_id: str | None, reason: str, detail: str) -> bytes:
    return orjson.dumps(
        {"v": 1, "type": "nack", "ack_id": ack_id, "reason": reason, "detail": detail[:500]}
    )


def alarm_status(alarm_id: str, status: str) -> bytes:
    if status not in ALARM_STATUSES:
        raise ValueError(f"not a device-visible alarm status: {status}")
    return orjson.dumps({"v": 1, "type": "alarm_status", "alarm_id": alarm_id, "status": status})


def uplink(msg_id: str, event_type: str, ts: datetime, **fields: Any) -> bytes:
    """Build an uplink payload (the device side; used by simulators and tests)."""
    return orjson.dumps(
        {
            "v": 1,
            "id": msg_id,
            "ts": ts.isoformat(timespec="milliseconds"),
            "type": event_type,
            **fields,
        }
    )
