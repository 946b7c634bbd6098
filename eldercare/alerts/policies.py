"""Response policies in the database: every policy the console lists (the built-in area
defaults filled in), saving one, and each policy's acknowledgement target. Choosing the
policy for an alarm is pure (:func:`eldercare.alerts.rules.choose_policy`)."""

from __future__ import annotations

from datetime import datetime
from typing import Final, get_args

import psycopg
from psycopg.types.json import Jsonb

from eldercare.alerts import rules
from eldercare.registry.schemas import Area
from eldercare.storage import db

AREAS: Final[tuple[str, ...]] = get_args(Area)


def all_policies(conn: psycopg.Connection) -> list[rules.Policy]:
    found = [
        rules.policy_from_row(r)
        for r in db.rows(conn, "SELECT * FROM response_policies ORDER BY id")
    ]
    for area in AREAS:
        if not any(p.facility_id is None and p.area == area for p in found):
            found.append(rules.default_policy(area))
    return found


def save(conn: psycopg.Connection, p: rules.Policy, now: datetime) -> rules.Policy:
    """Create or replace the policy of ``p.facility_id`` (or of ``p.area``)."""
    vals = (
        p.name,
        p.ack_target_s,
        p.ack_target2_s,
        p.on_site_target_s,
        p.supervisor_after_s,
        Jsonb([rules.step_dict(s) for s in p.steps]),
        now,
    )
    with conn.transaction():
        if p.facility_id is not None:
            existing = db.rows(
                conn,
                "SELECT id FROM response_policies WHERE facility_id = %s FOR UPDATE",
                (p.facility_id,),
            )
        else:
            existing = db.rows(
                conn,
                "SELECT id FROM response_policies WHERE facility_id IS NULL"
                " AND area = %s FOR UPDATE",
                (p.area,),
            )
        if existing:
            row = db.one(
                conn,
                "UPDATE response_policies SET name = %s, ack_target_s = %s,"
                " ack_target2_s = %s, on_site_target_s = %s,"
                " supervisor_after_s = %s, steps = %s, updated_at = %s"
                " WHERE id = %s RETURNING *",
                (*vals, existing[0]["id"]),
            )
        else:
            row = db.one(
                conn,
                "INSERT INTO response_policies (name, ack_target_s,"
                " ack_target2_s, on_site_target_s, supervisor_after_s, steps,"
                " updated_at, facility_id, area) VALUES (%s, %s, %s, %s, %s,"
                " %s, %s, %s, %s) RETURNING *",
                (*vals, p.facility_id, p.area),
            )
    return rules.policy_from_row(row)


def ack_targets(conn: psycopg.Connection, facility_id: int | None = None) -> dict[str, object]:
    """Seconds to acknowledge: per facility with its own policy (only ``facility_id``'s
    when given), per area (its policy, else the built-in default), and the default."""
    rows = db.rows(conn, "SELECT * FROM response_policies")
    return {
        "facility": {
            r["facility_id"]: r["ack_target_s"]
            for r in rows
            if r["facility_id"] is not None and facility_id in (None, r["facility_id"])
        },
        "area": {area: rules.choose_policy(rows, None, area).ack_target_s for area in AREAS},
        "default": rules.Policy(None, None, None, "default").ack_target_s,
    }
