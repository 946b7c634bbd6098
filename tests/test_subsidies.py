"""The pure subsidy module: policy rules, payer waterfall, funding split (design §2.5-§2.7)."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eldercare.errors import InvalidInput
from eldercare.platform import subsidies as s

# PV-c of the design (§2.5), every number from seed 001.
TEKUN_CARE = [
    {
        "code": "care_by_level",
        "when": {"category": "tekun"},
        "formula": {
            "type": "table",
            "key": "ability_level",
            "table_fen": {
                "complete": 165600,
                "severe": 165600,
                "moderate": 82800,
                "mild": 41400,
                "intact": 20700,
            },
        },
        "modifiers": [{"when": {"support_mode": "dispersed"}, "multiply": 0.5}],
    }
]
VOUCHER = [
    {
        "code": "voucher",
        "when": {"age_min": 60, "ability_level_in": ["moderate", "severe", "complete"]},
        "formula": {
            "type": "voucher",
            "ratio_by_setting": {"home": 0.5, "community": 0.5, "institution": 0.4},
            "monthly_cap_fen": 80000,
            "after": "ltc",
            "first_month": "full",
            "stop": "next_month",
        },
    }
]
EAST = {"by_fiscal_region": {"east": {"central": 0.85, "local": 0.15}}}


def tekun(mode: str, level: str | None) -> s.Facts:
    return s.Facts(frozenset({"tekun"}), mode, level, 80)


@pytest.mark.parametrize(
    ("level", "centralised", "dispersed"),
    [
        ("complete", 165600, 82800),
        ("severe", 165600, 82800),
        ("moderate", 82800, 41400),
        ("mild", 41400, 20700),
        ("intact", 20700, 10350),
    ],
)
def test_shengzhou_care_fee_table_and_dispersed_half(
    level: str, centralised: int, dispersed: int
) -> None:
    rules = s.validate_rules(TEKUN_CARE)
    assert s.evaluate(rules, tekun("centralised", level)).amount_fen == centralised
    assert s.evaluate(rules, tekun("dispersed", level)).amount_fen == dispersed


def test_reasons_for_nothing_in_precedence_order() -> None:
    assert s.evaluate(TEKUN_CARE, s.Facts()).reason == "not_eligible"
    assert s.evaluate(TEKUN_CARE, tekun("centralised", None)).reason == "assessment_expired"
    young = s.Facts(frozenset(), None, "moderate", 58, "home")
    assert s.evaluate(VOUCHER, young).reason == "age_below_min"
    mild = s.Facts(frozenset(), None, "mild", 76, "home")
    assert s.evaluate(VOUCHER, mild).reason == "ability_level"
    lapsed = s.Facts(frozenset(), None, None, 78, "home")
    assert s.evaluate(VOUCHER, lapsed).reason == "assessment_expired"
    # Death wins over a lapsed assessment (design 3.7 check 7.9).
    dead = s.Facts(frozenset(), None, None, 78, "home", status="deceased")
    assert s.evaluate(VOUCHER, dead).reason == "deceased"


def test_voucher_outcome_carries_cap_and_setting_ratio() -> None:
    home = s.evaluate(VOUCHER, s.Facts(frozenset(), None, "moderate", 76, "home"))
    assert (home.amount_fen, home.cap_fen, home.ratio) == (80000, 80000, Fraction(1, 2))
    inst = s.evaluate(VOUCHER, s.Facts(frozenset(), None, "complete", 87, "institution"))
    assert inst.ratio == Fraction(2, 5)


def test_design_quotes_q1_to_q4() -> None:
    half = Fraction(1, 2)
    q1 = s.waterfall(12000, ratio=half, cap_left_fen=80000)
    assert (q1.voucher_fen, q1.copay_fen) == (6000, 6000)
    q2 = s.waterfall(9999, ratio=half, cap_left_fen=80000)
    assert (q2.voucher_fen, q2.copay_fen) == (4999, 5000)  # floor of 4999.5
    q3 = s.waterfall(100000, ltc_fen=60000, ratio=half, cap_left_fen=80000)
    assert (q3.voucher_fen, q3.copay_fen) == (20000, 20000)
    q4 = s.waterfall(510000, ratio=Fraction(2, 5), cap_left_fen=80000)
    assert (q4.voucher_fen, q4.copay_fen) == (80000, 430000)  # Guiyang: 5100 -> 800 -> 4300


def test_funding_split_floors_central_and_local_takes_the_rest() -> None:
    shares = s.funding_shares(EAST, "east")
    assert s.split_funding(12000, shares) == {"central": 10200, "local": 1800}
    assert s.split_funding(7500, shares) == {"central": 6375, "local": 1125}
    assert s.split_funding(-6000, shares) == {"central": -5100, "local": -900}
    assert s.split_funding(101, shares) == {"central": 85, "local": 16}
    assert s.funding_shares({}, "east") == {"local": 1}


@pytest.mark.parametrize(
    ("rules", "needle"),
    [
        ([], "non-empty"),
        ([{"code": "x", "formula": {"type": "magic"}}], "formula.type"),
        ([{"code": "x", "formula": {"type": "fixed", "amount_fen": 1.5}}], "whole fen"),
        ([{"code": "x", "formula": {"type": "fixed", "amount_fen": -1}}], "whole fen"),
        (
            [
                {
                    "code": "x",
                    "when": {"colour": "red"},
                    "formula": {"type": "fixed", "amount_fen": 1},
                }
            ],
            "unknown condition",
        ),
        (
            [
                {
                    "code": "x",
                    "formula": {"type": "table", "key": "ability_level", "table_fen": {"mild": 1}},
                }
            ],
            "table_fen",
        ),
        (
            [
                {
                    "code": "x",
                    "formula": {
                        "type": "voucher",
                        "ratio_by_setting": {"home": 1.5},
                        "monthly_cap_fen": 1,
                    },
                }
            ],
            "between 0 and 1",
        ),
    ],
)
def test_malformed_rules_are_refused_with_the_place(rules: object, needle: str) -> None:
    with pytest.raises(InvalidInput, match=needle):
        s.validate_rules(rules)


def test_band_table_checked_against_band_with_source_quote() -> None:
    rules = [
        {
            "code": "grade",
            "formula": {
                "type": "band_table",
                "bands": {
                    "day_care": {
                        "band": [1000000, 3000000],
                        "levels": {"1": 1000000, "5": 3500000},
                        "source_quote": "日间照料中心和农村幸福院每年1-3万元的差异化奖补",
                    }
                },
            },
        }
    ]
    problems = s.band_violations(s.validate_rules(rules), None)
    assert len(problems) == 1
    assert "1000000-3000000" in problems[0] and "1-3万元" in problems[0]
    facts = s.Facts(facility_kind="day_care", rating_level=1)
    assert s.evaluate(rules, facts).amount_fen == 1000000
    assert s.evaluate(rules, s.Facts(facility_kind="day_care")).reason == "not_rated"


fen = st.integers(min_value=0, max_value=10**9)
ratios = st.fractions(min_value=0, max_value=1, max_denominator=1000)


@given(price=fen, ltc_part=st.fractions(0, 1), credit=fen, ratio=ratios, cap=fen)
def test_waterfall_parts_always_sum_to_the_price(
    price: int, ltc_part: Fraction, credit: int, ratio: Fraction, cap: int
) -> None:
    ltc = int(price * ltc_part)
    split = s.waterfall(price, ltc_fen=ltc, credit_left_fen=credit, ratio=ratio, cap_left_fen=cap)
    assert split.ltc_fen + split.credit_fen + split.voucher_fen + split.copay_fen == price
    assert min(split.credit_fen, split.voucher_fen, split.copay_fen) >= 0
    # the voucher never exceeds what is left of the cap nor its ratio of the unpaid part
    assert split.voucher_fen <= cap
    assert split.voucher_fen <= (price - ltc - split.credit_fen) * ratio


@given(
    prices=st.lists(st.integers(0, 200000), max_size=40), ratio=ratios, cap=st.integers(0, 200000)
)
def test_a_month_of_services_never_draws_more_than_the_cap(
    prices: list[int], ratio: Fraction, cap: int
) -> None:
    # The allocation the verify hook makes, order by order; a new month starts from the full
    # cap again (no carry-over), which is the same loop with a fresh ``left``.
    left = cap
    for price in prices:
        split = s.waterfall(price, ratio=ratio, cap_left_fen=left)
        left -= split.voucher_fen
        assert left >= 0
    assert cap - left <= cap


@given(amount=st.integers(-(10**10), 10**10), central=st.fractions(0, 1, max_denominator=10000))
def test_funding_split_adds_up_and_clawback_mirrors(amount: int, central: Fraction) -> None:
    shares = {"central": central, "local": 1 - central}
    parts = s.split_funding(amount, shares)
    assert sum(parts.values()) == amount
    assert s.split_funding(-amount, shares) == {k: -v for k, v in parts.items()}


@given(
    level=st.sampled_from(s.LEVELS),
    mode=st.sampled_from(["centralised", "dispersed"]),
    factor=st.sampled_from([0.5, 0.25, 0.333, 1]),
)
def test_modifiers_floor_to_the_fen_and_never_exceed_the_table(
    level: str, mode: str, factor: float
) -> None:
    rules = [
        {
            **TEKUN_CARE[0],
            "modifiers": [{"when": {"support_mode": "dispersed"}, "multiply": factor}],
        }
    ]
    out = s.evaluate(s.validate_rules(rules), tekun(mode, level)).amount_fen
    table = TEKUN_CARE[0]["formula"]["table_fen"][level]  # type: ignore[index]
    assert out <= table
    if mode == "centralised":
        assert out == table
