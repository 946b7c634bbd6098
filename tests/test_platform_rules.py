"""The platform layer's pure rules: GB/T 42195 levels and the work-order state machine."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from eldercare.errors import ConflictError, InvalidInput, PermissionDenied
from eldercare.platform import ability, lifecycle
from eldercare.platform.ability import Adjustments, Assessment
from eldercare.platform.schemas import CheckOut, GeoPoint

# ---------------------------------------------------------------- GB/T 42195 bands (§3.1)


@pytest.mark.parametrize(
    ("total", "level"),
    [
        (90, "intact"),
        (89, "mild"),
        (66, "mild"),
        (65, "moderate"),
        (46, "moderate"),
        (45, "severe"),
        (30, "severe"),
        (29, "complete"),
        (0, "complete"),
    ],
)
def test_band_edges(total: int, level: str) -> None:
    assert ability.score(total).final_level == level


@pytest.mark.parametrize("total", [91, -1, 1000])
def test_out_of_range_totals_are_refused(total: int) -> None:
    with pytest.raises(InvalidInput):
        ability.score(total)


@pytest.mark.parametrize(
    ("total", "adj", "preliminary", "final"),
    [
        (70, Adjustments(dementia=True), "mild", "moderate"),
        (70, Adjustments(risk_events_30d=2), "mild", "moderate"),
        (70, Adjustments(risk_events_30d=1), "mild", "mild"),
        (70, Adjustments(dementia=True, risk_events_30d=2), "mild", "moderate"),
        (85, Adjustments(coma=True), "mild", "complete"),
        (20, Adjustments(dementia=True), "complete", "complete"),
    ],
)
def test_adjustments(total: int, adj: Adjustments, preliminary: str, final: str) -> None:
    s = ability.score(total, adj)
    assert (s.preliminary_level, s.final_level) == (preliminary, final)


@given(
    st.integers(0, 90),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.integers(0, 10),
)
def test_adjustments_worsen_by_one_level_at_most_except_coma(
    total: int, coma: bool, dementia: bool, mental: bool, risks: int
) -> None:
    s = ability.score(total, Adjustments(coma, dementia, mental, risks))
    pre, fin = ability.LEVELS.index(s.preliminary_level), ability.LEVELS.index(s.final_level)
    assert fin >= pre  # never better
    if coma:
        assert s.final_level == "complete"
    else:
        assert fin - pre <= 1
        assert (fin > pre) == (bool(s.applied) and pre < len(ability.LEVELS) - 1)


@given(st.integers(0, 89))
def test_a_higher_score_is_never_a_worse_level(total: int) -> None:
    lower = ability.LEVELS.index(ability.level_of_score(total))
    higher = ability.LEVELS.index(ability.level_of_score(total + 1))
    assert higher <= lower


def test_item_scores_must_be_complete_and_agree_with_the_total() -> None:
    items = {f"item{i:02d}": 3 for i in range(26)}  # 78
    assert ability.score(item_scores=items).final_level == "mild"
    with pytest.raises(InvalidInput, match="differs"):
        ability.score(77, item_scores=items)
    with pytest.raises(InvalidInput, match="26"):
        ability.score(item_scores={"a": 3})
    with pytest.raises(InvalidInput, match="more than 90"):
        ability.score(item_scores={f"i{i}": 4 for i in range(26)})
    with pytest.raises(InvalidInput):
        ability.score()


def test_level_on_a_day_follows_the_dated_history() -> None:
    # Fixture F3's R2: moderate from 2022-07-01, complete from 2022-08-15.
    history = [
        Assessment(1, "moderate", date(2022, 7, 1), None),
        Assessment(2, "complete", date(2022, 8, 15), None),
    ]
    assert ability.level_on(history, date(2022, 6, 30)) is None
    assert ability.level_on(history, date(2022, 8, 14)) == "moderate"
    assert ability.level_on(history, date(2022, 8, 15)) == "complete"
    lapsed = [Assessment(3, "moderate", date(2026, 1, 1), date(2026, 1, 31))]
    assert ability.level_on(lapsed, date(2026, 1, 31)) == "moderate"
    assert ability.level_on(lapsed, date(2026, 2, 1)) is None
    revoked = [*history, Assessment(4, "intact", date(2022, 9, 1), None, status="revoked")]
    assert ability.level_on(revoked, date(2022, 9, 2)) == "complete"


def test_two_risk_events_make_a_resident_due() -> None:
    assert not ability.reassessment_due(1)
    assert ability.reassessment_due(2)


# ---------------------------------------------------------------- work-order moves (§2.4)

HAPPY = [
    ("dispatch", "operator"),
    ("accept", "provider_worker"),
    ("check_in", "provider_worker"),
    ("check_out", "provider_worker"),
    ("verify", "civil_affairs"),
    ("settle", "civil_affairs"),
]


def test_the_happy_path() -> None:
    status = "created"
    seen = [status]
    for action, role in HAPPY:
        status = lifecycle.check_move(action, status, role).to
        seen.append(status)
    assert seen == [
        "created",
        "dispatched",
        "accepted",
        "checked_in",
        "checked_out",
        "verified",
        "settled",
    ]


def test_check_in_before_accept_is_a_conflict_and_roles_are_enforced() -> None:
    with pytest.raises(ConflictError, match="needs accepted"):
        lifecycle.check_move("check_in", "dispatched", "provider_worker")
    with pytest.raises(PermissionDenied):
        lifecycle.check_move("check_in", "accepted", "operator")
    with pytest.raises(PermissionDenied):
        lifecycle.check_move("verify", "checked_out", "provider_admin")
    with pytest.raises(PermissionDenied):
        lifecycle.check_move("reject_claim", "verified", "supervisor")


ORDER = {s: i for i, s in enumerate(lifecycle.STATUSES[:7])}


@given(st.sampled_from(sorted(lifecycle.MOVES)), st.sampled_from(lifecycle.STATUSES))
def test_no_move_goes_back_except_a_provider_reject(action: str, status: str) -> None:
    move = lifecycle.MOVES[action]
    role = move.roles[0]
    try:
        to = lifecycle.check_move(action, status, role).to
    except ConflictError:
        assert status not in move.allowed
        return
    assert status in move.allowed
    assert status not in ("cancelled", "rejected")  # terminal
    if action == "reject":
        assert to == "created"
    elif to in ORDER and status in ORDER:
        assert ORDER[to] >= ORDER[status]


def test_order_numbers_use_the_county_and_the_local_day() -> None:
    tz = ZoneInfo("Asia/Shanghai")
    # 2026-01-05 17:00 UTC is already 2026-01-06 in Shanghai.
    at = datetime(2026, 1, 5, 17, 0, tzinfo=UTC)
    n = lifecycle.number("330683001", at, tz, 42)
    assert n == "WO-330683-20260106-000042"
    assert re.fullmatch(r"WO-330683-\d{8}-\d{6}", n)


def test_evv_needs_all_six_elements() -> None:
    now = datetime(2026, 1, 6, 2, tzinfo=UTC)
    order = {
        "service_item_code": "bath_home",
        "resident_id": 5,
        "worker_id": 1,
        "checked_in_at": now,
        "checked_out_at": now + timedelta(minutes=45),
        "check_in": {"lat": 29.588, "lon": 120.821},
        "check_out": {"lat": 29.588, "lon": 120.821},
    }
    assert lifecycle.evv_complete(order)
    assert lifecycle.evv_missing({**order, "check_out": None}) == ["check_out_location"]
    assert lifecycle.evv_missing({**order, "worker_id": None}) == ["worker"]


def test_a_check_in_point_is_a_whole_fix_or_a_stated_reason_for_none() -> None:
    t = datetime(2026, 1, 6, 2, tzinfo=UTC)
    fix = GeoPoint(lat=29.588, lon=120.821, accuracy_m=8, client_time=t)
    assert fix.no_fix is None
    blind = GeoPoint(client_time=t, no_fix="denied")
    assert (blind.lat, blind.lon, blind.accuracy_m) == (None, None, None)
    # The worker's page sends one or the other; anything in between is refused (422).
    for bad in (
        {"lat": 29.588, "lon": 120.821},  # no accuracy
        {"lat": 29.588, "accuracy_m": 8},  # no longitude
        {},  # no point and no reason
        {"lat": 29.588, "lon": 120.821, "accuracy_m": 8, "no_fix": "denied"},
        {"no_fix": "lost"},
    ):
        with pytest.raises(ValidationError):
            GeoPoint.model_validate({"client_time": t, **bad})


def test_a_service_record_is_bounded() -> None:
    t = datetime(2026, 1, 6, 2, tzinfo=UTC)
    point = {"lat": 29.588, "lon": 120.821, "accuracy_m": 8, "client_time": t}
    ok = CheckOut.model_validate(
        {**point, "record": {"tasks": ["洗浴", "bathing"], "notes": "好", "photos": ["a" * 64]}}
    )
    assert ok.record.tasks == ["洗浴", "bathing"] and ok.record.photos == ["a" * 64]
    assert CheckOut.model_validate(point).record.model_dump(exclude_defaults=True) == {}
    for bad in (
        {"tasks": ["x"] * 31},
        {"tasks": [""]},
        {"notes": "x" * 2001},
        {"photos": ["not-a-hash"]},
        {"vitals_and_more": 1},  # unknown fields are refused, not stored
    ):
        with pytest.raises(ValidationError):
            CheckOut.model_validate({**point, "record": bad})


def test_verification_gate() -> None:
    gate = lifecycle.Gate
    assert lifecycle.verify_blockers(gate(False, (), ())) == []
    assert lifecycle.verify_blockers(gate(True, (), ())) == ["revisit_required"]
    assert lifecycle.verify_blockers(gate(True, (), ((False, None),))) == ["revisit_required"]
    assert lifecycle.verify_blockers(gate(True, (), ((True, False),))) == ["revisit_required"]
    assert lifecycle.verify_blockers(gate(True, (), ((False, None), (True, True)))) == []
    assert lifecycle.verify_blockers(gate(False, ("worker_overlap",), ())) == [
        "open hard anomaly worker_overlap"
    ]


@given(st.text(min_size=1, max_size=30))
def test_sampling_is_stable_and_bounded(number: str) -> None:
    assert lifecycle.sampled(number, 10) == lifecycle.sampled(number, 10)
    assert not lifecycle.sampled(number, 0)
    assert lifecycle.sampled(number, 100)


# ---------------------------------------------------------------- level drives priority


def test_a_frail_residents_bed_exit_and_inactivity_rank_higher() -> None:
    from eldercare.alerts import rules

    for kind in ("bed_exit", "inactivity"):
        base = rules.PRIORITY[kind]
        assert rules.alarm_priority(kind, None) == base
        assert rules.alarm_priority(kind, "moderate") == base
        assert rules.alarm_priority(kind, "severe") == base - 1
        assert rules.alarm_priority(kind, "complete") == base - 1
    # Already the top priority, and device health is about the device, not the person.
    assert rules.alarm_priority("fall", "complete") == 1
    assert rules.alarm_priority("water_leak", "complete") == rules.PRIORITY["water_leak"]
