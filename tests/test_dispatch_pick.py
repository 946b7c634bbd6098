"""Whom a dispatch step asks, as a pure function of what the database said (no database)."""

from __future__ import annotations

from eldercare.alerts import rules
from eldercare.alerts.dispatch import Candidate, StepSnapshot, pick

# A facility at (31.23, 121.47); responders at increasing distances, one without a place.
HERE = (31.23, 121.47)
POOL = (
    {"id": 1, "name": "far", "phone": "1", "lat": 31.40, "lon": 121.47},
    {"id": 2, "name": "near", "phone": "2", "lat": 31.231, "lon": 121.47},
    {"id": 3, "name": "nowhere", "phone": "3", "lat": None, "lon": None},
    {"id": 4, "name": "middle", "phone": "4", "lat": 31.30, "lon": 121.47},
)


def names(found: list[Candidate]) -> list[str | None]:
    return [c.name for c in found]


def test_responders_nearest_first_unknown_place_last_and_count_capped() -> None:
    snap = StepSnapshot(*HERE, pool=POOL)
    assert names(pick(rules.Step("provider", 4), snap)) == ["near", "middle", "far", "nowhere"]
    two = pick(rules.Step("facility_staff", 2), snap)
    assert names(two) == ["near", "middle"]
    assert two[0].responder_kind == "facility_staff" and two[0].responder_id == 2
    assert two[0].distance_m is not None and two[0].distance_m < 200


def test_nobody_already_asked_is_asked_again() -> None:
    snap = StepSnapshot(*HERE, asked_ids=frozenset({2, 4}), pool=POOL)
    assert names(pick(rules.Step("outreach", 2), snap)) == ["far", "nowhere"]
    # Without a location for the alarm every distance is unknown: ids decide, stably.
    assert [c.responder_id for c in pick(rules.Step("provider", 3), StepSnapshot(pool=POOL))] == [
        1,
        2,
        3,
    ]


def test_family_skips_numbers_already_called_and_emergency_needs_no_data() -> None:
    contacts = (
        {"name": "Daughter", "phone": "13800000001"},
        {"name": "Son", "phone": "13800000002"},
        {"name": "Niece", "phone": "13900000003"},
    )
    snap = StepSnapshot(asked_phones=frozenset({"13800000001"}), contacts=contacts)
    family = pick(rules.Step("family", 1), snap)
    assert family == [Candidate(None, "family", "Son", "13800000002")]
    assert pick(rules.Step("emergency", 1, number="119"), StepSnapshot()) == [
        Candidate(None, "emergency", "119", "119")
    ]
    assert pick(rules.Step("emergency", 1), StepSnapshot())[0].phone == "120"
