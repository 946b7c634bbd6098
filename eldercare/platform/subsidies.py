"""Subsidy policies as data (design platform-layer.md §2.5-§2.7, §4 Q1-Q8, Q13, Q24). Pure.

A published policy version's ``rules`` are JSON; this module reads them for the facts of one
resident-month and returns an amount in fen with the reason it is what it is. It also holds
the payer waterfall (insurance -> service credit -> voucher -> copay) and the central/local
funding split. No I/O and no clock: callers gather the facts as of the month's first day
(``as_of = month_start``, §4 Q5) and pass them in, so changes of level, category, death or
moving away take effect the following month without any special case here.

Money is integer fen throughout. Ratios and multipliers come from JSON as numbers and are
turned into exact fractions through their decimal text, never multiplied as floats: 0.85 is
85/100, not 0.84999... Every ratio line is floored to the fen (§4 Q4) so a subsidy never
exceeds its ratio; caps apply after rounding; a funding split floors the central share and the
local share takes the remainder, so shares always add up to the amount.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from math import floor
from typing import Any, Final

from eldercare.errors import InvalidInput

LEVELS: Final = ("intact", "mild", "moderate", "severe", "complete")
SETTINGS: Final = ("home", "community", "institution")
FORMULAS: Final = ("fixed", "table", "voucher", "band_table")
WHEN_KEYS: Final = (
    "category",
    "support_mode",
    "ability_level_in",
    "age_min",
    "age_max",
    "setting",
)
# Why an amount is zero, in the order they are checked: the first that applies is reported
# (7.9: death takes precedence over a lapsed assessment).
STOPPED: Final = ("deceased", "moved_out")


@dataclass(frozen=True, slots=True)
class Facts:
    """One resident on the ``as_of`` day of a month (or a preview's hypothetical resident).

    ``ability_level`` None means no valid assessment that day. ``status`` is the life event
    in force then (deceased, moved_out) or None.
    """

    categories: frozenset[str] = frozenset()
    support_mode: str | None = None
    ability_level: str | None = None
    age: int | None = None
    setting: str | None = None
    status: str | None = None
    facility_kind: str | None = None
    rating_level: int | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one policy gives one resident for one month."""

    amount_fen: int
    reason: str | None = None  # None when the amount is positive
    rule_code: str | None = None
    formula: str | None = None
    ratio: Fraction | None = None  # voucher: the offset ratio for the resident's setting
    cap_fen: int | None = None  # voucher: the monthly cap
    basis: dict[str, Any] = field(default_factory=dict)


def exact(value: Any, what: str) -> Fraction:
    """A JSON number (or numeric string) as an exact fraction, via its decimal text."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidInput(f"{what}: expected a number, got {value!r}"[:200])
    try:
        return Fraction(Decimal(str(value)))
    except (InvalidOperation, ValueError) as exc:
        raise InvalidInput(f"{what}: not a number: {value!r}"[:200]) from exc


def floor_fen(value: Fraction) -> int:
    return floor(value)


def _fen(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidInput(f"{what}: amounts are whole fen >= 0, got {value!r}"[:200])
    return value


# ------------------------------------------------------------------ validation (at draft time)


def validate_rules(rules: Any) -> list[dict[str, Any]]:
    """Refuse a malformed rules document with a 422 that says where; returns the rules."""
    if not isinstance(rules, list) or not rules:
        raise InvalidInput("rules: a non-empty list of rules")
    codes: set[str] = set()
    for i, rule in enumerate(rules):
        where = f"rules[{i}]"
        if not isinstance(rule, dict):
            raise InvalidInput(f"{where}: an object")
        code = rule.get("code")
        if not isinstance(code, str) or not code:
            raise InvalidInput(f"{where}.code: a non-empty string")
        if code in codes:
            raise InvalidInput(f"{where}.code: {code!r} appears twice")
        codes.add(code)
        _validate_when(rule.get("when", {}), f"{where}.when")
        formula = rule.get("formula")
        if not isinstance(formula, dict) or formula.get("type") not in FORMULAS:
            raise InvalidInput(f"{where}.formula.type: one of {', '.join(FORMULAS)}")
        _validate_formula(formula, f"{where}.formula")
        mods = rule.get("modifiers", [])
        if not isinstance(mods, list):
            raise InvalidInput(f"{where}.modifiers: a list")
        for j, mod in enumerate(mods):
            if not isinstance(mod, dict) or "multiply" not in mod:
                raise InvalidInput(f"{where}.modifiers[{j}]: {{when, multiply}}")
            _validate_when(mod.get("when", {}), f"{where}.modifiers[{j}].when")
            factor = exact(mod["multiply"], f"{where}.modifiers[{j}].multiply")
            if factor < 0:
                raise InvalidInput(f"{where}.modifiers[{j}].multiply: not negative")
    return rules


def _validate_when(when: Any, where: str) -> None:
    if not isinstance(when, dict):
        raise InvalidInput(f"{where}: an object")
    unknown = sorted(set(when) - set(WHEN_KEYS))
    if unknown:
        raise InvalidInput(
            f"{where}: unknown condition {unknown[0]!r}; known: {', '.join(WHEN_KEYS)}"
        )
    levels = when.get("ability_level_in")
    if levels is not None and (
        not isinstance(levels, list) or not levels or set(levels) - set(LEVELS)
    ):
        raise InvalidInput(f"{where}.ability_level_in: a list of {', '.join(LEVELS)}")
    for key in ("age_min", "age_max"):
        if key in when and (not isinstance(when[key], int) or isinstance(when[key], bool)):
            raise InvalidInput(f"{where}.{key}: whole years")


def _validate_formula(f: dict[str, Any], where: str) -> None:
    kind = f["type"]
    if kind == "fixed":
        _fen(f.get("amount_fen"), f"{where}.amount_fen")
    elif kind == "table":
        if f.get("key") != "ability_level":
            raise InvalidInput(f"{where}.key: 'ability_level'")
        table = f.get("table_fen")
        if not isinstance(table, dict) or set(table) != set(LEVELS):
            raise InvalidInput(f"{where}.table_fen: one amount for each of {', '.join(LEVELS)}")
        for level, amount in table.items():
            _fen(amount, f"{where}.table_fen.{level}")
    elif kind == "voucher":
        ratios = f.get("ratio_by_setting")
        if not isinstance(ratios, dict) or not ratios or set(ratios) - set(SETTINGS):
            raise InvalidInput(f"{where}.ratio_by_setting: ratios for {', '.join(SETTINGS)}")
        for setting, ratio in ratios.items():
            r = exact(ratio, f"{where}.ratio_by_setting.{setting}")
            if not 0 <= r <= 1:
                raise InvalidInput(f"{where}.ratio_by_setting.{setting}: between 0 and 1")
        _fen(f.get("monthly_cap_fen"), f"{where}.monthly_cap_fen")
        if f.get("after", "ltc") not in ("ltc", "nothing"):
            raise InvalidInput(f"{where}.after: 'ltc' or 'nothing'")
        if f.get("first_month", "full") not in ("full", "next_month"):
            raise InvalidInput(f"{where}.first_month: 'full' or 'next_month'")
        if f.get("stop", "next_month") != "next_month":
            raise InvalidInput(f"{where}.stop: 'next_month'")
    elif kind == "band_table":
        bands = f.get("bands")
        if not isinstance(bands, dict) or not bands:
            raise InvalidInput(f"{where}.bands: an object by facility kind")
        for kind_name, band in bands.items():
            w = f"{where}.bands.{kind_name}"
            if not isinstance(band, dict):
                raise InvalidInput(f"{w}: {{band, levels}}")
            lo_hi = band.get("band")
            if not (isinstance(lo_hi, list) and len(lo_hi) == 2):
                raise InvalidInput(f"{w}.band: [min_fen, max_fen]")
            lo, hi = _fen(lo_hi[0], f"{w}.band"), _fen(lo_hi[1], f"{w}.band")
            if lo > hi:
                raise InvalidInput(f"{w}.band: min above max")
            levels = band.get("levels")
            if not isinstance(levels, dict) or not levels:
                raise InvalidInput(f"{w}.levels: amounts by rating level")
            for level, amount in levels.items():
                if not str(level).isdigit():
                    raise InvalidInput(f"{w}.levels: rating levels are whole numbers")
                _fen(amount, f"{w}.levels.{level}")


def band_violations(rules: Sequence[Mapping[str, Any]], fallback_quote: str | None) -> list[str]:
    """Award amounts outside their published band (§4 Q13: checked when a policy is
    published). Each message names the band and the source quote it comes from."""
    out: list[str] = []
    for rule in rules:
        formula = rule["formula"]
        if formula["type"] != "band_table":
            continue
        for kind_name, band in formula["bands"].items():
            lo, hi = band["band"]
            quote = band.get("source_quote") or fallback_quote or ""
            for level, amount in sorted(band["levels"].items()):
                if not lo <= amount <= hi:
                    out.append(
                        f"{kind_name} level {level} = {amount} fen is outside the band"
                        f" {lo}-{hi} fen (source: {quote})"
                    )
    return out


# ------------------------------------------------------------------ evaluation


def _matches(when: Mapping[str, Any], facts: Facts) -> str | None:
    """None when the facts meet every condition, else the reason they do not."""
    if "category" in when and when["category"] not in facts.categories:
        return "not_eligible"
    if "support_mode" in when and when["support_mode"] != facts.support_mode:
        return "not_eligible"
    if "setting" in when and when["setting"] != facts.setting:
        return "setting"
    if "age_min" in when and (facts.age is None or facts.age < when["age_min"]):
        return "age_below_min"
    if "age_max" in when and (facts.age is None or facts.age > when["age_max"]):
        return "age_above_max"
    if "ability_level_in" in when:
        if facts.ability_level is None:
            return "assessment_expired"
        if facts.ability_level not in when["ability_level_in"]:
            return "ability_level"
    return None


def evaluate(rules: Sequence[Mapping[str, Any]], facts: Facts) -> Outcome:
    """The amount one policy version gives for one resident-month.

    The first rule whose conditions hold decides; if none holds, the reason of the first rule
    is reported. A resident deceased or moved out on the ``as_of`` day gets nothing, whatever
    else is true (stop from the following month, §2.6).
    """
    if facts.status in STOPPED:
        return Outcome(0, facts.status, basis={"reason": facts.status})
    first_reason: str | None = None
    for rule in rules:
        why = _matches(rule.get("when", {}), facts)
        if why is not None:
            first_reason = first_reason or why
            continue
        return _apply(rule, facts)
    reason = first_reason or "not_eligible"
    return Outcome(0, reason, basis={"reason": reason})


def _apply(rule: Mapping[str, Any], facts: Facts) -> Outcome:
    formula = rule["formula"]
    kind = formula["type"]
    code = rule["code"]
    ratio: Fraction | None = None
    cap: int | None = None
    if kind == "fixed":
        base = int(formula["amount_fen"])
    elif kind == "table":
        if facts.ability_level is None:
            return Outcome(
                0, "assessment_expired", code, kind, basis={"reason": "assessment_expired"}
            )
        base = int(formula["table_fen"][facts.ability_level])
    elif kind == "voucher":
        # The month's credit is the cap; what a service may draw is ratio x price (quote()).
        cap = int(formula["monthly_cap_fen"])
        base = cap
        setting = facts.setting or "home"
        ratio = exact(formula["ratio_by_setting"].get(setting, 0), "ratio")
    else:  # band_table
        band = formula["bands"].get(facts.facility_kind or "")
        if band is None or facts.rating_level is None:
            return Outcome(0, "not_rated", code, kind, basis={"reason": "not_rated"})
        amount = band["levels"].get(str(facts.rating_level))
        if amount is None:
            return Outcome(
                0, "level_not_in_table", code, kind, basis={"reason": "level_not_in_table"}
            )
        base = int(amount)
    amount_q = Fraction(base)
    applied: list[str] = []
    for mod in rule.get("modifiers", []):
        if _matches(mod.get("when", {}), facts) is None:
            amount_q *= exact(mod["multiply"], "multiply")
            applied.append(str(mod["multiply"]))
    amount = floor_fen(amount_q)
    basis: dict[str, Any] = {"rule": code, "formula": kind, "base_fen": base}
    if applied:
        basis["modifiers"] = applied
    return Outcome(amount, None if amount > 0 else "zero", code, kind, ratio, cap, basis)


# ------------------------------------------------------------------ payer waterfall


@dataclass(frozen=True, slots=True)
class Split:
    """Who pays what of one service's price (§2.6): the parts always add up to the price."""

    price_fen: int
    ltc_fen: int
    credit_fen: int
    voucher_fen: int
    copay_fen: int


def waterfall(
    price_fen: int,
    *,
    ltc_fen: int = 0,
    credit_left_fen: int = 0,
    ratio: Fraction = Fraction(0),
    cap_left_fen: int = 0,
) -> Split:
    """Insurance first, then service credit, then the voucher on what is still unpaid
    (``floor(rest x ratio)``, capped by what is left of the month's cap), then the copay."""
    if price_fen < 0 or ltc_fen < 0 or credit_left_fen < 0 or cap_left_fen < 0:
        raise InvalidInput("amounts are whole fen >= 0")
    if ltc_fen > price_fen:
        raise InvalidInput("ltc_fen cannot exceed price_fen")
    if not 0 <= ratio <= 1:
        raise InvalidInput("ratio must be between 0 and 1")
    rest = price_fen - ltc_fen
    credit = min(rest, credit_left_fen)
    rest -= credit
    voucher = min(floor_fen(rest * ratio), cap_left_fen)
    return Split(price_fen, ltc_fen, credit, voucher, rest - voucher)


# ------------------------------------------------------------------ funding split


def funding_shares(funding: Mapping[str, Any], fiscal_region: str | None) -> dict[str, Fraction]:
    """The shares a policy's ``funding`` gives a district's fiscal region; everything local
    when the policy names none (a county paying its own 特困 fees)."""
    by_region = funding.get("by_fiscal_region") if funding else None
    shares = None
    if isinstance(by_region, Mapping) and fiscal_region is not None:
        shares = by_region.get(fiscal_region)
    if shares is None and funding:
        shares = funding.get("shares")
    if not shares:
        return {"local": Fraction(1)}
    out = {str(k): exact(v, f"funding.{k}") for k, v in shares.items()}
    if sum(out.values()) != 1 or any(v < 0 for v in out.values()):
        raise InvalidInput("funding shares must be >= 0 and add up to 1")
    return out


def validate_funding(funding: Any) -> dict[str, Any]:
    if not isinstance(funding, dict):
        raise InvalidInput("funding: an object")
    by_region = funding.get("by_fiscal_region", {})
    if not isinstance(by_region, dict):
        raise InvalidInput("funding.by_fiscal_region: an object by east/central/west")
    for region in by_region:
        if region not in ("east", "central", "west"):
            raise InvalidInput(f"funding.by_fiscal_region: unknown region {region!r}")
        funding_shares(funding, region)
    if "shares" in funding:
        funding_shares({"shares": funding["shares"]}, None)
    return funding


def split_funding(amount_fen: int, shares: Mapping[str, Fraction]) -> dict[str, int]:
    """Floor every share but the last-named remainder holder ("local" if present), which takes
    what is left, so the parts add up exactly. A negative amount (a clawback) is the exact
    negative of the positive split, so a clawback undoes its line to the fen."""
    if amount_fen < 0:
        return {k: -v for k, v in split_funding(-amount_fen, shares).items()}
    names = sorted(shares, key=lambda k: (k == "local", k))
    out: dict[str, int] = {}
    for name in names[:-1]:
        out[name] = floor_fen(amount_fen * shares[name])
    out[names[-1]] = amount_fen - sum(out.values())
    return out
