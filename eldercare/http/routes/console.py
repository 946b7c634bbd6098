"""What the console and staff page need to know about the engine's rules, so they keep no
copies: the open statuses, the dispositions, the actions, and each policy's acknowledgement
target. (Per alarm, ``allowed_actions`` in AlarmPublic says what may be done now.)"""

from __future__ import annotations

from typing import Any, get_args

from fastapi import APIRouter

from eldercare.alerts import rules
from eldercare.http.deps import Conn, User
from eldercare.http.schemas import ConsoleMeta
from eldercare.registry.schemas import Area
from eldercare.storage import db

router = APIRouter(prefix="/api")


@router.get("/console/meta", response_model=ConsoleMeta, tags=["console"])
def console_meta(user: User, conn: Conn) -> dict[str, Any]:
    policies = db.rows(conn, "SELECT * FROM response_policies")
    by_facility = {
        p["facility_id"]: p["ack_target_s"]
        for p in policies
        if p["facility_id"] is not None
        and (not user.scoped or p["facility_id"] == user.facility_id)
    }
    # rules.choose_policy, per area: the area's policy, else the built-in default.
    by_area = {
        area: rules.choose_policy(policies, None, area).ack_target_s for area in get_args(Area)
    }
    return {
        "open_statuses": list(rules.ACTIVE),
        "terminal_statuses": list(rules.TERMINAL),
        "dispositions": list(rules.DISPOSITIONS),
        "actions": list(rules.MOVES),
        "ack_target_s": {
            "facility": by_facility,
            "area": by_area,
            "default": rules.Policy(None, None, None, "default").ack_target_s,
        },
    }
