"""The work-order (工单) lifecycle as data (design §2.4), like ``alerts.rules.MOVES``. Pure.

created -> dispatched -> accepted -> checked_in -> checked_out -> verified -> settled, with the
side exits cancelled and rejected. Going back is never allowed, except a provider's ``reject``
that returns the order to ``created`` for re-dispatch (待改派).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final
from zoneinfo import ZoneInfo

from eldercare.errors import ConflictError, PermissionDenied

STATUSES: Final = (
    "created",
    "dispatched",
    "accepted",
    "checked_in",
    "checked_out",
    "verified",
    "settled",
    "cancelled",
    "rejected",
)
# Not yet done with: still to be dispatched, served or verified (the console's default list).
UNFINISHED: Final = ("created", "dispatched", "accepted", "checked_in", "checked_out")
DESK: Final = ("operator", "supervisor", "admin")
PROVIDER: Final = ("provider_admin", "provider_worker")
SYSTEM_ROLE: Final = "system"  # the auto-verify job, alarm and hotline hooks


@dataclass(frozen=True, slots=True)
class Move:
    allowed: frozenset[str]  # statuses the action may start from
    to: str
    stamp: str | None  # the clock column the move sets
    roles: tuple[str, ...]  # who may do it (SYSTEM_ROLE for internal callers)


CREATE_ROLES: Final = (*DESK, "provider_admin", SYSTEM_ROLE)

MOVES: Final[Mapping[str, Move]] = {
    "dispatch": Move(
        frozenset({"created", "dispatched"}), "dispatched", "dispatched_at", (*DESK, SYSTEM_ROLE)
    ),
    "accept": Move(frozenset({"dispatched"}), "accepted", "accepted_at", PROVIDER),
    "reject": Move(frozenset({"dispatched", "accepted"}), "created", None, PROVIDER),
    "check_in": Move(frozenset({"accepted"}), "checked_in", "checked_in_at", ("provider_worker",)),
    "check_out": Move(
        frozenset({"checked_in"}), "checked_out", "checked_out_at", ("provider_worker",)
    ),
    "verify": Move(
        frozenset({"checked_out"}),
        "verified",
        "verified_at",
        ("civil_affairs", "supervisor", SYSTEM_ROLE),
    ),
    "settle": Move(
        frozenset({"verified"}), "settled", "settled_at", ("civil_affairs", SYSTEM_ROLE)
    ),
    "cancel": Move(
        frozenset({"created", "dispatched", "accepted"}),
        "cancelled",
        "cancelled_at",
        (*DESK, "provider_admin"),
    ),
    "reject_claim": Move(
        frozenset({"checked_out", "verified", "settled"}),
        "rejected",
        "rejected_at",
        ("civil_affairs",),
    ),
}
# Which verbs travel in URLs (``/work-orders/{id}/check-in``) and which in MOVES.
ACTIONS: Final = {name.replace("_", "-"): name for name in MOVES}


def check_move(action: str, status: str, role: str) -> Move:
    """The move for ``action`` by ``role`` from ``status``; 403 for the wrong role, 409 when the
    order is not in a state the action may start from."""
    move = MOVES[action]
    if role not in move.roles:
        raise PermissionDenied(f"role {role} may not {action.replace('_', '-')} a work order")
    if status not in move.allowed:
        need = " or ".join(sorted(move.allowed))
        raise ConflictError(
            f"cannot {action.replace('_', '-')}: work order is {status} (needs {need})"
        )
    return move


# Roles that record revisits (回访), and the statuses a revisit may follow: a delivered service.
REVISIT_ROLES: Final = (*DESK, "civil_affairs")
REVISIT_AFTER: Final = frozenset({"checked_out", "verified", "settled"})


def allowed_actions(status: str, role: str) -> list[str]:
    """What ``role`` may do to an order in ``status`` now, in MOVES order, plus ``revisit``:
    what a page enables, so no page keeps its own copy of the state machine. Checks that need
    the database (a contract for dispatch, a blocker for verify, the assigned worker) still
    happen on the move itself."""
    out = [
        name.replace("_", "-")
        for name, move in MOVES.items()
        if name != "settle" and role in move.roles and status in move.allowed
    ]
    if role in REVISIT_ROLES and status in REVISIT_AFTER:
        out.append("revisit")
    return out


def number(district_code: str, at: datetime, tz: ZoneInfo, seq: int) -> str:
    """WO-<county 6 digits>-<yyyymmdd in local time>-<seq, at least 6 digits>."""
    return f"WO-{district_code[:6]}-{at.astimezone(tz):%Y%m%d}-{seq:06d}"


# The six EVV elements (21st Century Cures Act §12006, design §2.4): service, resident, date,
# location at both ends, worker, start and end times.
def evv_missing(order: Mapping[str, Any]) -> list[str]:
    missing = []
    if not order.get("service_item_code"):
        missing.append("service")
    if not order.get("resident_id"):
        missing.append("resident")
    if not order.get("worker_id"):
        missing.append("worker")
    if not order.get("checked_in_at") or not order.get("checked_out_at"):
        missing.append("times")
    for end in ("check_in", "check_out"):
        point = order.get(end) or {}
        if point.get("lat") is None or point.get("lon") is None:
            missing.append(f"{end}_location")
    return missing


def evv_complete(order: Mapping[str, Any]) -> bool:
    return not evv_missing(order)


@dataclass(frozen=True, slots=True)
class Gate:
    """What an order's verification depends on."""

    revisit_required: bool
    open_hard_anomalies: tuple[str, ...]  # rule codes
    revisits: tuple[tuple[bool | None, bool | None], ...]  # (reached, service_confirmed)


def verify_blocker_codes(gate: Gate) -> list[str]:
    """What blocks verification, as codes: each open hard anomaly's rule code, and
    ``revisit_required``. A hard anomaly blocks until civil affairs decides it; a required
    revisit until one reached the resident and the resident confirmed the service (design
    §2.4, §2.10)."""
    codes = list(gate.open_hard_anomalies)
    if gate.revisit_required and not any(r is True and c is True for r, c in gate.revisits):
        codes.append("revisit_required")
    return codes


def verify_blockers(gate: Gate) -> list[str]:
    """Why the order may not be verified yet, in words (empty: it may)."""
    return [
        c if c == "revisit_required" else f"open hard anomaly {c}"
        for c in verify_blocker_codes(gate)
    ]


def sampled(order_number: str, percent: int) -> bool:
    """Whether an order falls into the random revisit sample (design §2.10, default 10%).

    Derived from the order number rather than a random generator, so a retried check-out and
    a re-run agree on the same orders.
    """
    if percent <= 0:
        return False
    digest = hashlib.sha256(order_number.encode()).digest()
    return int.from_bytes(digest[:4], "big") % 100 < percent
