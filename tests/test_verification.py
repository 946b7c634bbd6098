"""The pure visit-verification rules (design §2.8), on plain values: the §3.7 numbers, and
properties over generated visits (hypothesis)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from eldercare.platform import verification as v

T0 = datetime(2026, 1, 6, 2, 0, tzinfo=UTC)  # 10:00 Asia/Shanghai
HB1 = (29.58800, 120.82100)
HH1 = (29.59000, 120.83000)
HH2 = (29.66000, 120.82100)


def visit(
    start: datetime = T0,
    minutes: float | None = 45,
    at: tuple[float, float] = HB1,
    *,
    order_id: str = "me",
    ref: tuple[float, float] = HB1,
    accuracy: float = 10,
    **kw: object,
) -> v.Visit:
    fix_in = v.Fix(start, at[0], at[1], accuracy, start)
    fix_out = None
    if minutes is not None:
        end = start + timedelta(minutes=minutes)
        fix_out = v.Fix(end, at[0], at[1], accuracy, end)
    base = v.Visit(
        order_id=order_id,
        resident_id=5,
        worker_id=2,
        service_item_code="bath_home",
        check_in=fix_in,
        check_out=fix_out,
        ref=ref,
        area="town",
        scheduled_start=start,
        min_duration_min=30,
        max_duration_min=120,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def facts(vis: v.Visit, phase: v.Phase = "check_out", **kw: object) -> v.Facts:
    return v.Facts(visit=vis, phase=phase, now=vis.check_in.at + timedelta(hours=3), **kw)  # type: ignore[arg-type]


def other(
    order_id: str,
    start: datetime,
    minutes: float,
    at: tuple[float, float] = HB1,
    *,
    resident: int = 5,
    item: str = "bath_home",
) -> v.OtherVisit:
    return v.OtherVisit(
        order_id=order_id,
        resident_id=resident,
        worker_id=2,
        service_item_code=item,
        start=start,
        end=start + timedelta(minutes=minutes),
        ref=at,
        start_point=at,
        end_point=at,
    )


def codes(found: list[v.Finding]) -> dict[str, v.Finding]:
    return {f.rule_code: f for f in found}


def test_a_clean_visit_has_no_findings() -> None:
    assert v.check(facts(visit())) == []
    assert v.check(facts(visit(minutes=None), "check_in")) == []


def test_gps_far_at_one_kilometre_and_not_at_189_m() -> None:
    far = codes(v.check(facts(visit(at=(29.59700, 120.82100)))))["gps_far"]
    assert far.severity == "soft" and far.needs_revisit
    assert round(far.evidence["distance_m"]) == 1001
    assert far.evidence["threshold_m"] == 200
    near = v.check(facts(visit(at=(29.58970, 120.82100))))
    assert "gps_far" not in codes(near)


def test_gps_far_for_a_vague_or_missing_point() -> None:
    vague = codes(v.check(facts(visit(accuracy=150))))["gps_far"]
    assert vague.evidence["reasons"] == ["accuracy"]
    blind = visit(check_in=v.Fix(T0))
    assert codes(v.check(facts(blind, "check_in")))["gps_far"].evidence["reason"] == "no_point"


def test_remote_area_allows_500_m() -> None:
    at = (29.59200, 120.82100)  # ~445 m north
    assert "gps_far" in codes(v.check(facts(visit(at=at))))
    assert "gps_far" not in codes(v.check(facts(visit(at=at, area="remote"))))


def test_worker_overlap_is_hard_on_both_unless_same_household() -> None:
    wo5 = other("WO5", T0, 60)
    mine = visit(T0 + timedelta(minutes=30), 60, HH1, ref=HH1)
    found = codes(v.check(facts(mine, worker_visits=[wo5])))["worker_overlap"]
    assert found.severity == "hard" and found.blocks_verification
    assert found.evidence == {"related": "WO5", "overlap_min": 30.0}
    assert found.also_order_id == "WO5"
    # at check-in the instant inside the other visit is already an overlap
    at_in = v.check(
        facts(
            visit(T0 + timedelta(minutes=30), None, HH1, ref=HH1), "check_in", worker_visits=[wo5]
        )
    )
    assert "worker_overlap" in codes(at_in)
    # a couple served together in one household
    bath = other("R3bath", T0, 60, HH1, resident=3)
    meal = visit(T0 + timedelta(minutes=10), 10, HH1, ref=HH1, service_item_code="meal_delivery")
    assert "worker_overlap" not in codes(v.check(facts(meal, worker_visits=[bath])))


def test_impossible_travel_96_kmh() -> None:
    wo7 = other("WO7", T0 + timedelta(minutes=-45), 45)  # 13:15-14:00 shifted
    wo8 = visit(T0 + timedelta(minutes=5), 45, HH2, ref=HH2)
    found = codes(v.check(facts(wo8, worker_visits=[wo7])))["impossible_travel"]
    assert found.severity == "soft"
    assert round(found.evidence["distance_m"]) == 8006
    assert found.evidence["speed_kmh"] == 96.1
    slow = visit(T0 + timedelta(minutes=15), 45, HH2, ref=HH2)
    assert "impossible_travel" not in codes(v.check(facts(slow, worker_visits=[wo7])))


def test_dup_claim_names_the_earlier_order() -> None:
    wo1 = v.OtherVisit("WO1", 5, 1, "bath_home", T0, T0 + timedelta(minutes=45), HB1)
    wo9 = visit(T0 + timedelta(minutes=5), 35)
    found = codes(v.check(facts(wo9, resident_visits=[wo1])))["dup_claim"]
    assert (found.severity, found.evidence["related"]) == ("hard", "WO1")
    meal = replace(wo1, service_item_code="meal_delivery")
    assert "dup_claim" not in codes(v.check(facts(wo9, resident_visits=[meal])))


def test_duration_out_of_range() -> None:
    found = codes(v.check(facts(visit(minutes=10))))["duration_out_of_range"]
    assert (found.severity, found.evidence["duration_min"]) == ("soft", 10.0)
    assert "duration_out_of_range" not in codes(v.check(facts(visit(minutes=30))))


def test_hospitalised_deceased_and_away() -> None:
    hosp = v.StatusPeriod("hospitalised", T0 - timedelta(days=2), T0 + timedelta(days=3))
    found = codes(v.check(facts(visit(minutes=None), "check_in", status_periods=[hosp])))
    assert found["resident_inactive"].severity == "hard"
    dead = v.StatusPeriod("deceased", T0 - timedelta(days=1), None)
    assert (
        codes(v.check(facts(visit(), status_periods=[dead])))["resident_inactive"].evidence[
            "status"
        ]
        == "deceased"
    )
    away = v.StatusPeriod("away", T0 - timedelta(days=1), T0 + timedelta(days=1))
    assert (
        codes(v.check(facts(visit(), status_periods=[away, hosp])))["resident_inactive"].severity
        == "hard"
    )
    assert (
        codes(v.check(facts(visit(), status_periods=[away])))["resident_inactive"].severity
        == "soft"
    )
    before = v.StatusPeriod("hospitalised", T0 - timedelta(days=5), T0 - timedelta(days=1))
    assert v.check(facts(visit(), status_periods=[before])) == []


def test_alarm_open_at_check_in_and_unanswered() -> None:
    fall = v.AlarmFact("A1", "fall", "raised", T0 - timedelta(minutes=5), None)
    at_in = codes(v.check(facts(visit(minutes=None), "check_in", alarms=[fall])))
    assert at_in["alarm_open_at_check_in"].evidence["alarm_id"] == "A1"
    at_out = codes(v.check(facts(visit(), alarms=[fall])))
    assert at_out["alarm_unanswered_during_visit"].severity == "soft"
    taken = replace(fall, worker_accepted=True)
    assert "alarm_unanswered_during_visit" not in codes(v.check(facts(visit(), alarms=[taken])))
    over = replace(fall, status="resolved", resolved_at=T0 - timedelta(minutes=1))
    assert v.check(facts(visit(), alarms=[over])) == []
    later = v.AlarmFact("A2", "fall", "raised", T0 + timedelta(hours=2), None)
    assert v.check(facts(visit(minutes=None), "check_in", alarms=[later])) == []


def test_inactivity_covering_the_visit() -> None:
    quiet = v.DeviceEvent("i-1", "inactivity", T0 + timedelta(hours=1, minutes=45), 7200)
    found = codes(v.check(facts(visit(T0, 60), device_events=[quiet])))["no_presence_evidence"]
    assert found.evidence["coverage"] == 1.0 and found.evidence["msg_id"] == "i-1"
    short = v.DeviceEvent("i-2", "inactivity", T0 + timedelta(minutes=20), 1200)
    assert "no_presence_evidence" not in codes(v.check(facts(visit(T0, 60), device_events=[short])))
    meal = visit(T0, 60, requires_presence=False)
    assert "no_presence_evidence" not in codes(v.check(facts(meal, device_events=[quiet])))


def test_clock_skew_is_info() -> None:
    skewed = visit(minutes=None, check_in=v.Fix(T0, *HB1, 10, T0 + timedelta(minutes=6)))
    found = codes(v.check(facts(skewed, "check_in")))["clock_skew"]
    assert found.severity == "info" and not found.blocks_verification


# ---------------------------------------------------------------- properties

minutes = st.integers(min_value=0, max_value=600)
offsets = st.integers(min_value=-600, max_value=600)
metres = st.floats(min_value=0, max_value=20000, allow_nan=False)


@given(offsets, minutes)
def test_a_visit_never_overlaps_itself(offset: int, length: int) -> None:
    mine = visit(T0 + timedelta(minutes=offset), length)
    assert mine.check_out is not None
    me = v.OtherVisit("me", 5, 2, "bath_home", mine.check_in.at, mine.check_out.at, HH1)
    found = v.check(facts(mine, worker_visits=[me], resident_visits=[me]))
    assert not {"worker_overlap", "dup_claim"} & set(codes(found))


def _north(m: float) -> tuple[float, float]:
    return HB1[0] + m / 111195.0, HB1[1]


def _gps(m: float) -> float:
    found = codes(v.check(facts(visit(at=_north(m))))).get("gps_far")
    return found.evidence["distance_m"] if found else 0.0


@given(metres, st.floats(min_value=0, max_value=5000, allow_nan=False))
def test_moving_a_check_in_farther_never_lowers_the_gps_finding(d: float, more: float) -> None:
    assert _gps(d + more) >= _gps(d)


@given(offsets, minutes, offsets, minutes)
def test_overlap_is_symmetric_and_bounded(a0: int, al: int, b0: int, bl: int) -> None:
    a = (T0 + timedelta(minutes=a0), T0 + timedelta(minutes=a0 + al))
    b = (T0 + timedelta(minutes=b0), T0 + timedelta(minutes=b0 + bl))
    s = v.overlap_s(a, b)
    assert s == v.overlap_s(b, a)
    assert 0 <= s <= min(al, bl) * 60


@given(st.integers(min_value=1, max_value=300), st.integers(min_value=1, max_value=30000))
def test_a_slower_trip_is_never_flagged_when_a_faster_one_is_not(gap: int, dist: int) -> None:
    def flagged(gap_min: int) -> bool:
        prev = other("prev", T0 - timedelta(minutes=60), 60)
        here = _north(dist)
        mine = visit(T0 + timedelta(minutes=gap_min), 40, here, ref=here)
        return "impossible_travel" in codes(v.check(facts(mine, worker_visits=[prev])))

    if flagged(gap + 10):
        assert flagged(gap)


@given(st.sampled_from(["check_in", "check_out"]), offsets, minutes)
def test_severities_are_known_and_one_finding_per_rule(phase: v.Phase, off: int, ln: int) -> None:
    mine = visit(T0 + timedelta(minutes=off), None if phase == "check_in" else ln, HH2)
    fall = v.AlarmFact("A1", "fall", "raised", T0, None)
    found = v.check(facts(mine, phase, alarms=[fall], worker_visits=[other("o", T0, 60)]))
    assert all(f.severity in ("info", "soft", "hard") for f in found)
    own = [f.rule_code for f in found if f.also_order_id is None]
    assert len(own) == len(set(own))
