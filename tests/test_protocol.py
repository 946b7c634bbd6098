"""parse_uplink and the liveness rule as pure functions: the same generated bad input the
gateway test sends over MQTT (tests/test_bad_input.py), here in milliseconds and with more
examples, plus what a valid message becomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings

from eldercare.errors import ProtocolError
from eldercare.gateway.liveness import DeviceLiveness, is_online
from eldercare.protocol import EventClass, event_class, parse_uplink
from tests.test_bad_input import VALID, bad_message, dumps, envelope

NOW = datetime(2030, 1, 1, 8, 0, tzinfo=UTC)


@settings(max_examples=500, deadline=None)
@given(case=bad_message())
def test_bad_input_is_refused_with_the_reason_and_id_the_nack_carries(
    case: tuple[bytes, str, str | None],
) -> None:
    payload, reason, ack_id = case
    with pytest.raises(ProtocolError) as err:
        parse_uplink("dev-1", payload, NOW)
    assert (err.value.reason, err.value.msg_id) == (reason, ack_id), err.value.detail
    assert err.value.detail


@pytest.mark.parametrize("etype", sorted(VALID))
def test_every_valid_type_parses_once_into_a_frozen_uplink(etype: str) -> None:
    body = envelope(etype, "m-1")
    payload = dumps(body)
    up = parse_uplink("dev-1", payload, NOW)
    assert (up.device_id, up.msg_id, up.type, up.raw) == ("dev-1", "m-1", etype, payload)
    assert up.cls == event_class(etype) and isinstance(up.cls, EventClass)
    assert dict(up.body) == body
    with pytest.raises(AttributeError):
        up.type = "sos"  # type: ignore[misc]


def test_liveness_needs_the_state_and_a_recent_message() -> None:
    seen = NOW - timedelta(seconds=100)
    assert not is_online(DeviceLiveness(None, seen, 60), NOW, 2.0)
    assert not is_online(DeviceLiveness(False, NOW, 60), NOW, 2.0)
    # Online by state alone until it declares a heartbeat interval.
    assert is_online(DeviceLiveness(True, None, None), NOW, 2.0)
    assert is_online(DeviceLiveness(True, seen, None), NOW, 2.0)
    # factor x interval: 100 s ago is within 2 x 60 s, not within 1.5 x 60 s.
    assert is_online(DeviceLiveness(True, seen, 60), NOW, 2.0)
    assert not is_online(DeviceLiveness(True, seen, 60), NOW, 1.5)
    assert not is_online(DeviceLiveness(True, NOW - timedelta(seconds=120), 60), NOW, 2.0)
