"""Property-based bad input against the running gateway: every refusal gets the right
reason code, lands in the dead-letter table with its raw bytes, and the gateway stays up.

Each example is built together with the reason it must be refused for (the oracle is
the generator, not the parser under test).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from eldercare.protocol import EVENT_TYPES, MAX_PAYLOAD_BYTES
from harness.services import wait_for

VALID: dict[str, dict] = {
    "sos": {"press": "long"},
    "fall": {"confidence": 0.8, "room": "101"},
    "heartbeat": {"battery": 50, "interval_s": 60, "rssi": -70},
    "camera_status": {"camera_id": "c1", "status": "online", "recording": True},
    "cancel": {"ref": "abc"},
    "vitals": {"heart_rate": 70},
    "imu": {"hz": 25, "acc": [[0, 0, 1]]},
    "bed_exit": {"duration_s": 30},
}
REQUIRED = {
    "fall": ["confidence"],
    "heartbeat": ["battery", "interval_s"],
    "camera_status": ["camera_id", "status"],
    "cancel": ["ref"],
    "imu": ["hz", "acc"],
}
WRONG: dict[str, dict[str, list[Any]]] = {
    "fall": {"confidence": [1.5, -0.1, "high", True, None]},
    "heartbeat": {
        "battery": [101, -1, 50.5, "full", False],
        "interval_s": [0, -5, "60", 1.5],
        "rssi": ["strong", 1.5],
    },
    "camera_status": {
        "status": ["broken", 1, ""],
        "camera_id": ["", 7, "x" * 65],
        "recording": ["yes", 1],
    },
    "sos": {"press": ["triple", 1]},
    "cancel": {"ref": ["", 5, "r" * 65]},
    "imu": {"acc": [[[0, 0]], [], "xyz", [[0, 0, "a"]]], "hz": [0, "25"]},
    "vitals": {"heart_rate": ["fast", -1, 1e9]},
    "bed_exit": {"duration_s": [-1, "long", 2.5]},
}


def envelope(etype: str, msg_id: str) -> dict:
    return {
        "v": 1,
        "id": msg_id,
        "ts": datetime.now(UTC).isoformat(),
        "type": etype,
        **VALID[etype],
    }


def dumps(obj: object) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


ids = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)


@st.composite
def bad_message(draw) -> tuple[bytes, str, str | None]:
    """(payload, expected reason, expected ack_id)."""
    msg_id = "h-" + draw(ids)
    kind = draw(
        st.sampled_from(
            ["json", "notobj", "envelope", "field", "missing", "large", "type", "nul", "utf8"]
        )
    )
    etype = draw(st.sampled_from(sorted(VALID)))
    base = envelope(etype, msg_id)
    if kind == "json":
        text = dumps(base)
        cut = draw(st.integers(1, len(text) - 1))
        return text[:cut], "malformed_json", None
    if kind == "utf8":
        return b'{"v":1,"id":"' + msg_id.encode() + b'\xff\xfe"}', "malformed_json", None
    if kind == "notobj":
        value = draw(
            st.one_of(
                st.lists(st.integers(), max_size=3),
                st.integers(),
                st.text(max_size=10),
                st.none(),
                st.booleans(),
            )
        )
        return dumps(value), "schema", None
    if kind == "envelope":
        key = draw(st.sampled_from(["v", "id", "ts", "type"]))
        bad = {
            "v": [2, "1", 1.0, True, None],
            "id": ["", "x" * 65, 12, None],
            "ts": [
                "yesterday",
                "2026-01-01",
                "2026-01-01T00:00:00",
                1700000000,
                "2026-13-01T00:00:00Z",
                "2026-01-01T25:00:00+08:00",
            ],
            "type": [7, "", None],
        }[key]
        base[key] = draw(st.sampled_from(bad))
        expected_id = msg_id if key != "id" else None
        return dumps(base), "schema", expected_id
    if kind == "missing":
        if etype not in REQUIRED:
            del base["id"]
            return dumps(base), "schema", None
        del base[draw(st.sampled_from(REQUIRED[etype]))]
        return dumps(base), "schema", msg_id
    if kind == "field":
        field = draw(st.sampled_from(sorted(WRONG[etype])))
        base[field] = draw(st.sampled_from(WRONG[etype][field]))
        return dumps(base), "schema", msg_id
    if kind == "large":
        base["pad"] = "x" * draw(st.integers(MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES * 3))
        return dumps(base), "too_large", None
    if kind == "type":
        # NUL is refused before the type is looked at; the "nul" case covers it.
        name = draw(
            st.text(min_size=1, max_size=30).filter(
                lambda t: t not in EVENT_TYPES and "\x00" not in t
            )
        )
        base["type"] = name
        return dumps(base), "unknown_type", msg_id
    # A NUL inside a string: valid JSON, but PostgreSQL text cannot hold it.
    base["room"] = "a\u0000b"
    base["type"] = "fall"
    base["confidence"] = 0.5
    return json.dumps(base).encode(), "schema", msg_id


@pytest.fixture(scope="module")
def device(gateway, make_device):
    return make_device()


@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(case=bad_message())
def test_bad_input_is_refused_with_reason_and_kept(case, device, gateway, settings_db):
    payload, reason, ack_id = case

    def nacks() -> list[dict]:
        return [d for d in device.downlinks if d.get("type") == "nack"]

    before = len(nacks())
    device.publish_raw(payload)
    wait_for(lambda: len(nacks()) > before, timeout=5, what="nack")
    nack = nacks()[before]
    assert (nack["reason"], nack["ack_id"]) == (reason, ack_id), nack["detail"]
    assert nack["detail"]
    row = settings_db.execute(
        "SELECT reason, payload FROM dead_letters WHERE device_id=%s ORDER BY id DESC LIMIT 1",
        (device.device_id,),
    ).fetchone()
    assert row[0] == reason and bytes(row[1]) == payload


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(room=st.text(max_size=30).filter(lambda t: "\x00" not in t), confidence=st.floats(0, 1))
def test_unicode_and_edge_values_are_accepted(room, confidence, device, settings_db):
    msg_id = device.raise_alarm("fall", room=room, confidence=confidence)
    device.ack_for(msg_id)
    stored = settings_db.execute(
        "SELECT payload->>'room', (payload->>'confidence')::float8 FROM device_events"
        " WHERE device_id=%s AND msg_id=%s",
        (device.device_id, msg_id),
    ).fetchone()
    assert stored == (room, confidence)


def test_gateway_survived_and_still_acks(device, gateway):
    assert gateway.client.is_connected()
    assert device.ack_for(device.raise_alarm("sos"))["alarm_id"]


@pytest.fixture(scope="module")
def settings_db(settings):
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        yield conn
