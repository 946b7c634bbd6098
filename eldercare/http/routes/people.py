"""Districts, households, eligibility categories, status periods, death records and ability
assessments (design §2.11). Writes are one transaction per request."""

from __future__ import annotations

from datetime import date
from typing import Any

import psycopg
from fastapi import APIRouter, Request, status

from eldercare.errors import NotFoundError
from eldercare.http.deps import AnyUser, Conn, Now, User
from eldercare.platform import people
from eldercare.platform.schemas import (
    AssessmentCreate,
    CategoryCreate,
    DeathRecords,
    DistrictCreate,
    HouseholdCreate,
    RevokeRequest,
    ScoreRequest,
    StatusPeriodCreate,
)
from eldercare.registry.auth import Actor
from eldercare.storage import db

router = APIRouter(prefix="/api")
CREATED = status.HTTP_201_CREATED


def in_scope(conn: psycopg.Connection, user: Actor, resident_id: int) -> None:
    """Facility staff see only their facility's residents; anyone else sees 404 for them."""
    found = db.rows(
        conn, "SELECT facility_id FROM resident_places WHERE resident_id = %s", (resident_id,)
    )
    if not found or (user.scoped and found[0]["facility_id"] != user.facility_id):
        raise NotFoundError(f"resident {resident_id} not found")


@router.get("/districts", tags=["districts"])
def districts(user: AnyUser, conn: Conn, under: str | None = None) -> list[dict[str, Any]]:
    return people.list_districts(conn, under)


@router.post("/districts", status_code=CREATED, tags=["districts"])
def create_district(body: DistrictCreate, user: User, conn: Conn) -> dict[str, Any]:
    user.require("admin")
    with conn.transaction():
        return people.create_district(conn, body)


@router.get("/households", tags=["registry"])
def households(user: User, conn: Conn, district: str | None = None) -> list[dict[str, Any]]:
    user.require("admin", "civil_affairs", "operator", "supervisor")
    return people.list_households(conn, district)


@router.post("/households", status_code=CREATED, tags=["registry"])
def create_household(body: HouseholdCreate, user: User, conn: Conn) -> dict[str, Any]:
    user.require("admin", "civil_affairs")
    with conn.transaction():
        return people.create_household(conn, body)


@router.post("/residents/{resident_id}/categories", status_code=CREATED, tags=["residents"])
def add_category(
    resident_id: int, body: CategoryCreate, user: User, conn: Conn, now: Now
) -> dict[str, Any]:
    user.require("admin", "civil_affairs")
    with conn.transaction():
        return people.add_category(conn, resident_id, body, user.username, now)


@router.get("/residents/{resident_id}/categories", tags=["residents"])
def categories(resident_id: int, user: User, conn: Conn) -> list[dict[str, Any]]:
    in_scope(conn, user, resident_id)
    return people.categories(conn, resident_id)


@router.post("/residents/{resident_id}/status-periods", status_code=CREATED, tags=["residents"])
def add_status_period(
    resident_id: int, body: StatusPeriodCreate, user: User, conn: Conn, now: Now
) -> dict[str, Any]:
    user.require("admin", "civil_affairs", "operator", "supervisor")
    with conn.transaction():
        return people.add_status_period(conn, resident_id, body, user.username, now)


@router.get("/residents/{resident_id}/status-periods", tags=["residents"])
def status_periods(resident_id: int, user: User, conn: Conn) -> list[dict[str, Any]]:
    in_scope(conn, user, resident_id)
    return people.status_periods(conn, resident_id)


@router.post("/integrations/death-records", tags=["residents"])
def death_records(body: DeathRecords, user: User, conn: Conn, now: Now) -> dict[str, Any]:
    user.require("admin", "civil_affairs")
    with conn.transaction():
        return people.death_records(conn, body, user.username, now)


@router.post("/assessments/score", tags=["assessments"])
def score(body: ScoreRequest, user: AnyUser) -> dict[str, Any]:
    """GB/T 42195 scoring only; nothing is stored."""
    return people.score_public(people.score(body))


@router.post("/residents/{resident_id}/assessments", status_code=CREATED, tags=["assessments"])
def add_assessment(
    request: Request, resident_id: int, body: AssessmentCreate, user: User, conn: Conn, now: Now
) -> dict[str, Any]:
    user.require("assessor", "civil_affairs")
    with conn.transaction():
        return people.add_assessment(
            conn, resident_id, body, user.username, now, request.app.state.settings.tz
        )


@router.get("/residents/{resident_id}/assessments", tags=["assessments"])
def assessments(resident_id: int, user: User, conn: Conn) -> list[dict[str, Any]]:
    in_scope(conn, user, resident_id)
    return people.assessments(conn, resident_id)


@router.get("/residents/{resident_id}/ability", tags=["assessments"])
def ability_on(
    request: Request, resident_id: int, user: User, conn: Conn, now: Now, on: date | None = None
) -> dict[str, Any]:
    in_scope(conn, user, resident_id)
    day = on or now.astimezone(request.app.state.settings.tz).date()
    return people.level_on(conn, resident_id, day)


@router.post("/assessments/{assessment_id}/revoke", tags=["assessments"])
def revoke(
    request: Request,
    assessment_id: int,
    body: RevokeRequest,
    user: User,
    conn: Conn,
    now: Now,
) -> dict[str, Any]:
    user.require("assessor", "civil_affairs")
    with conn.transaction():
        return people.revoke_assessment(
            conn, assessment_id, user.username, now, request.app.state.settings.tz
        )


@router.get("/reports/assessments", tags=["reports"])
def assessments_report(
    request: Request,
    user: User,
    conn: Conn,
    now: Now,
    district: str | None = None,
    due: int = 0,
) -> dict[str, Any]:
    user.require("supervisor", "civil_affairs", "admin", "assessor")
    return people.assessments_report(conn, now, request.app.state.settings.tz, district, bool(due))
