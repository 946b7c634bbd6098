"""Alarms: the queue, one alarm, and every action an operator, responder or the system
takes on it (the state machine itself is alerts.rules.MOVES)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request

from eldercare.alerts import dispatch, notify, rules
from eldercare.alerts import lifecycle as alarms
from eldercare.http.deps import Conn, Now, User, platform_env
from eldercare.http.schemas import (
    AlarmDetail,
    AlarmPublic,
    CloseCreate,
    DeclineCreate,
    DispatchCreate,
    EmergencyCreate,
    NoteCreate,
    NoteOptional,
    NotificationPublic,
    OfferAnswer,
)
from eldercare.platform import followups

router = APIRouter(prefix="/api")


@router.get("/alarms", response_model=list[AlarmPublic], tags=["alarms"])
def list_alarms(
    user: User,
    conn: Conn,
    status_: Annotated[list[str] | None, Query(alias="status")] = None,
    priority: Annotated[int | None, Query(ge=1, le=4)] = None,
    facility: int | None = None,
    since: datetime | None = None,
    category: Literal["alarm", "health"] | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    *,
    now: Now,
) -> list[dict[str, Any]]:
    allowed = {"open", *rules.ACTIVE, *rules.TERMINAL}
    bad = [s for s in status_ or [] if s not in allowed]
    if bad:
        from fastapi import HTTPException

        raise HTTPException(
            422,
            [{"loc": ["query", "status"], "msg": f"unknown status {bad}", "type": "value_error"}],
        )
    return alarms.list_alarms(
        conn,
        user,
        statuses=status_,
        priority=priority,
        facility=facility,
        since=since,
        category=category,
        limit=limit,
        now=now,
    )


@router.get("/alarms/{alarm_id}", response_model=AlarmDetail, tags=["alarms"])
def get_alarm(alarm_id: uuid.UUID, user: User, conn: Conn, now: Now) -> dict[str, Any]:
    return alarms.detail(conn, alarm_id, user, now)


@router.post("/alarms/{alarm_id}/acknowledge", response_model=AlarmPublic, tags=["alarms"])
def acknowledge(
    alarm_id: uuid.UUID, user: User, conn: Conn, now: Now, body: NoteOptional | None = None
) -> dict[str, Any]:
    return alarms.act(conn, alarm_id, "acknowledge", user, now, note=body.note if body else None)


@router.post("/alarms/{alarm_id}/dispatch", response_model=AlarmPublic, tags=["alarms"])
def dispatch_alarm(
    alarm_id: uuid.UUID, user: User, conn: Conn, now: Now, body: DispatchCreate | None = None
) -> dict[str, Any]:
    body = body or DispatchCreate(responder_ids=None, note=None)
    return dispatch.dispatch(
        conn, alarm_id, user, now, responder_ids=body.responder_ids, note=body.note
    )


@router.post("/alarms/{alarm_id}/accept", response_model=AlarmPublic, tags=["alarms"])
def accept(
    alarm_id: uuid.UUID, user: User, conn: Conn, now: Now, body: OfferAnswer | None = None
) -> dict[str, Any]:
    return dispatch.accept(conn, alarm_id, user, now, offer_id=body.offer_id if body else None)


@router.post("/alarms/{alarm_id}/decline", response_model=AlarmPublic, tags=["alarms"])
def decline(
    alarm_id: uuid.UUID, user: User, conn: Conn, now: Now, body: DeclineCreate | None = None
) -> dict[str, Any]:
    body = body or DeclineCreate(offer_id=None, reason=None)
    return dispatch.decline(conn, alarm_id, user, now, offer_id=body.offer_id, reason=body.reason)


@router.post("/alarms/{alarm_id}/on-site", response_model=AlarmPublic, tags=["alarms"])
def on_site(
    alarm_id: uuid.UUID, user: User, conn: Conn, now: Now, body: NoteOptional | None = None
) -> dict[str, Any]:
    return alarms.act(conn, alarm_id, "on_site", user, now, note=body.note if body else None)


@router.post("/alarms/{alarm_id}/resolve", response_model=AlarmPublic, tags=["alarms"])
def resolve(
    alarm_id: uuid.UUID, user: User, conn: Conn, now: Now, body: NoteOptional | None = None
) -> dict[str, Any]:
    return alarms.act(conn, alarm_id, "resolve", user, now, note=body.note if body else None)


@router.post("/alarms/{alarm_id}/close", response_model=AlarmPublic, tags=["alarms"])
def close(
    request: Request, alarm_id: uuid.UUID, body: CloseCreate, user: User, conn: Conn, now: Now
) -> dict[str, Any]:
    """Close with a disposition; one that calls for a visit creates its work order in the
    same transaction (design §2.9), so a close never lands without its follow-up."""
    follow_up = (
        followups.FollowUp(body.follow_up.service_item_code, body.follow_up.due_by)
        if body.follow_up
        else None
    )
    followups.require_follow_up(body.disposition, follow_up)
    with conn.transaction():
        alarms.act(conn, alarm_id, "close", user, now, note=body.note, disposition=body.disposition)
        followups.on_close(
            conn, str(alarm_id), body.disposition, follow_up, user, now, platform_env(request)
        )
    return alarms.summary(conn, alarm_id, user)


@router.post("/alarms/{alarm_id}/note", response_model=AlarmPublic, tags=["alarms"])
def note(alarm_id: uuid.UUID, body: NoteCreate, user: User, conn: Conn, now: Now) -> dict[str, Any]:
    return alarms.add_note(conn, alarm_id, user, now, body.text)


@router.post("/alarms/{alarm_id}/emergency", response_model=AlarmPublic, tags=["alarms"])
def emergency(
    alarm_id: uuid.UUID, body: EmergencyCreate, user: User, conn: Conn, now: Now
) -> dict[str, Any]:
    return dispatch.call_emergency(conn, alarm_id, user, now, service=body.service, note=body.note)


@router.get(
    "/alarms/{alarm_id}/notifications", response_model=list[NotificationPublic], tags=["alarms"]
)
def alarm_notifications(alarm_id: uuid.UUID, user: User, conn: Conn) -> list[dict[str, Any]]:
    alarms.summary(conn, alarm_id, user)  # 404 for unknown / other facility
    return notify.history(conn, str(alarm_id))
