"""What the console and staff page need to know about the engine's rules, so they keep no
copies: the open statuses, the dispositions, the actions, and each policy's acknowledgement
target. (Per alarm, ``allowed_actions`` in AlarmPublic says what may be done now.)"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from eldercare.alerts import policies, rules
from eldercare.http.deps import Conn, User
from eldercare.http.schemas import ConsoleMeta

router = APIRouter(prefix="/api")


@router.get("/console/meta", response_model=ConsoleMeta, tags=["console"])
def console_meta(user: User, conn: Conn) -> dict[str, Any]:
    return {
        "open_statuses": list(rules.ACTIVE),
        "terminal_statuses": list(rules.TERMINAL),
        "dispositions": list(rules.DISPOSITIONS),
        "actions": list(rules.MOVES),
        "ack_target_s": policies.ack_targets(conn, user.facility_id if user.scoped else None),
    }
