"""The pure rules: transitions, policies, escalation order, distances, outage, backoff."""

from __future__ import annotations

from typing import Any

import pytest

from eldercare.alerts import rules
from eldercare.errors import ConflictError


def test_transitions_go_forward_only() -> None:
    assert rules.check_move("acknowledge", "raised", "sos") == "acknowledged"
    assert rules.check_move("resolve", "acknowledged", "sos") == "resolved"
    assert rules.check_move("decline", "dispatched", "sos") == "dispatched"
    for action, status in [
        ("acknowledge", "dispatched"),
        ("on_site", "dispatched"),
        ("accept", "acknowledged"),
        ("close", "on_site"),
        ("dispatch", "raised"),
        ("resolve", "closed"),
    ]:
        with pytest.raises(ConflictError, match=f"alarm is {status}"):
            rules.check_move(action, status, "sos")
    # Health alarms may be closed straight away; life-safety alarms may not.
    assert rules.check_move("close", "raised", "low_battery") == "closed"
    with pytest.raises(ConflictError):
        rules.check_move("close", "raised", "fall")


def test_priorities() -> None:
    p = rules.PRIORITY
    assert p["fall"] == p["sos"] == p["smoke"] == p["gas"] == 1
    assert p["fall"] < p["water_leak"] < p["bed_exit"] == p["inactivity"] < p["device_offline"]


def test_policy_choice_and_step_order() -> None:
    rows: list[dict[str, Any]] = [
        {
            "id": 1,
            "facility_id": None,
            "area": "remote",
            "name": "r",
            "ack_target_s": 60,
            "ack_target2_s": 180,
            "on_site_target_s": 1800,
            "supervisor_after_s": 60,
            "steps": [{"kind": "outreach"}, {"kind": "emergency", "number": "120"}],
        },
        {
            "id": 2,
            "facility_id": 7,
            "area": None,
            "name": "f7",
            "ack_target_s": 30,
            "ack_target2_s": 90,
            "on_site_target_s": 600,
            "supervisor_after_s": 30,
            "steps": [{"kind": "facility_staff", "count": 3}],
        },
    ]
    assert rules.choose_policy(rows, 7, "town").name == "f7"
    assert rules.choose_policy(rows, 8, "remote").name == "r"
    d = rules.choose_policy(rows, 8, "town")
    assert d.id is None and d.on_site_target_s == 900
    assert rules.default_policy("remote").on_site_target_s == 1800
    steps = rules.DEFAULT_STEPS
    # In a facility: staff, family, provider, emergency; at home: outreach first.
    assert rules.next_step(steps, None, at_home=False) == [0, 2, 3, 4]
    assert rules.next_step(steps, None, at_home=True) == [1, 2, 3, 4]
    # After the last step the escalation starts over.
    assert rules.next_step(steps, 4, at_home=False)[0] == 0


def test_nearest_by_distance() -> None:
    pool: list[dict[str, Any]] = [
        {"id": 1, "lat": 31.3, "lon": 121.5},
        {"id": 2, "lat": 31.231, "lon": 121.471},
        {"id": 3, "lat": None, "lon": None},
    ]
    got = rules.nearest(pool, 31.23, 121.47, 3)
    assert [g["id"] for g in got] == [2, 1, 3]
    assert got[0]["distance_m"] < 200 and got[2]["distance_m"] is None
    assert 111_000 < rules.distance_m(0, 0, 1, 0) < 111_400


def test_outage_backoff_signature() -> None:
    assert not rules.is_outage(2, 2)  # too few devices to call it an outage
    assert rules.is_outage(10, 5) and not rules.is_outage(10, 4)
    assert [rules.retry_delay(n) for n in (1, 2, 3, 9, 20)] == [2, 4, 8, 300, 300]
    sig = rules.sign("k" * 16, 1700000000, b"{}")
    assert sig.startswith("sha256=") and rules.verify_signature("k" * 16, 1700000000, b"{}", sig)
    assert not rules.verify_signature("k" * 16, 1700000001, b"{}", sig)
