"""GB/T 42195-2022 ability levels from assessment scores (design §3.1, §4 Q28). Pure: no I/O.

The standard scores 26 items out of 90 in total. Bands (design §1b, from public
implementations; the standard's own text was not at hand):

    能力完好 intact 90 · 轻度 mild 66-89 · 中度 moderate 46-65
    重度 severe 30-45 · 完全丧失 complete 0-29

Adjustments worsen the preliminary level: coma makes it ``complete`` outright; a diagnosed
dementia or other mental/behavioural disorder, or >= 2 care-risk events (fall, choking,
suicide, self-harm, wandering off) in the last 30 days, make it one level worse. However many
of those triggers hold, the level moves by one at most (Q28: the strongest rule, applied once).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Final

from eldercare.errors import InvalidInput

# Best to worst; a level's index is how far it is from intact.
LEVELS: Final = ("intact", "mild", "moderate", "severe", "complete")
MAX_SCORE: Final = 90
ITEMS: Final = 26
# Lowest total of each level, best first (intact is exactly 90).
_FLOORS: Final = ((90, "intact"), (66, "mild"), (46, "moderate"), (30, "severe"), (0, "complete"))
RISK_EVENTS_THRESHOLD: Final = 2


def level_of_score(total: int) -> str:
    """The preliminary level of a total score 0..90."""
    if not 0 <= total <= MAX_SCORE:
        raise InvalidInput(f"total_score must be 0..{MAX_SCORE}, got {total}")
    for floor, level in _FLOORS:
        if total >= floor:
            return level
    raise AssertionError("unreachable: the last floor is 0")


def worse(level: str, steps: int = 1) -> str:
    return LEVELS[min(LEVELS.index(level) + steps, len(LEVELS) - 1)]


@dataclass(frozen=True, slots=True)
class Adjustments:
    coma: bool = False
    dementia: bool = False  # F00-F03
    mental_disorder: bool = False  # F04-F99
    risk_events_30d: int = 0

    def triggers(self) -> list[str]:
        """The adjustment rules that apply, in the standard's order."""
        found = []
        if self.coma:
            found.append("coma")
        if self.dementia:
            found.append("dementia")
        if self.mental_disorder:
            found.append("mental_disorder")
        if self.risk_events_30d >= RISK_EVENTS_THRESHOLD:
            found.append("risk_events_30d")
        return found


@dataclass(frozen=True, slots=True)
class Score:
    total_score: int
    preliminary_level: str
    final_level: str
    applied: tuple[str, ...]  # the adjustment rules that moved (or confirmed) the level


def total_of_items(items: Mapping[str, int]) -> int:
    """The total of item-by-item scores: exactly 26 non-negative items, at most 90 together."""
    if len(items) != ITEMS:
        raise InvalidInput(f"item_scores needs all {ITEMS} items, got {len(items)}")
    if any(v < 0 for v in items.values()):
        raise InvalidInput("item scores cannot be negative")
    total = sum(items.values())
    if total > MAX_SCORE:
        raise InvalidInput(f"item scores add up to {total}, more than {MAX_SCORE}")
    return total


def score(
    total_score: int | None = None,
    adjustments: Adjustments | None = None,
    item_scores: Mapping[str, int] | None = None,
) -> Score:
    """The preliminary and final level of an assessment."""
    if item_scores is not None:
        from_items = total_of_items(item_scores)
        if total_score is not None and total_score != from_items:
            raise InvalidInput(
                f"total_score {total_score} differs from the items' sum {from_items}"
            )
        total_score = from_items
    if total_score is None:
        raise InvalidInput("give total_score or the 26 item_scores")
    adj = adjustments or Adjustments()
    preliminary = level_of_score(total_score)
    applied = adj.triggers()
    if adj.coma:
        final = "complete"
    elif applied:
        final = worse(preliminary)
    else:
        final = preliminary
    return Score(total_score, preliminary, final, tuple(applied))


@dataclass(frozen=True, slots=True)
class Assessment:
    """What :func:`level_on` needs of a stored assessment."""

    id: int
    final_level: str
    effective_from: date
    valid_until: date | None
    status: str = "final"


def current(assessments: Iterable[Assessment], day: date) -> Assessment | None:
    """The assessment in force on ``day``: the latest final one that has started and not
    lapsed (latest by ``effective_from``, then by id, so a same-day correction wins)."""
    live = [
        a
        for a in assessments
        if a.status == "final"
        and a.effective_from <= day
        and (a.valid_until is None or a.valid_until >= day)
    ]
    return max(live, key=lambda a: (a.effective_from, a.id), default=None)


def level_on(assessments: Iterable[Assessment], day: date) -> str | None:
    found = current(assessments, day)
    return found.final_level if found else None


# Alarm dispositions that make a closed fall/SOS alarm a care-risk event (design §2.8, §2.9):
# a fall that happened, or a genuine emergency. Tests, accidental presses and false sensor
# alarms do not count.
RISK_DISPOSITIONS: Final = frozenset({"genuine_emergency", "fall_without_injury"})
RISK_KINDS: Final = frozenset({"fall", "sos"})


def reassessment_due(risk_events_30d: int) -> bool:
    """>= 2 risk events in 30 days raise the level by one under GB/T 42195, so the resident's
    assessment no longer holds: they are due for reassessment."""
    return risk_events_30d >= RISK_EVENTS_THRESHOLD
