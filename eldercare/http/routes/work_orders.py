"""Work orders (工单), their lifecycle and revisits (design §2.4, §2.11).

Create, check-in and check-out accept an ``Idempotency-Key`` header: a mobile client that
retries after a lost answer gets the first answer again, and the same key with another body
is refused (409).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Header, Query, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from psycopg.types.json import Jsonb
from pydantic import BaseModel

from eldercare.errors import ConflictError, InvalidInput, PermissionDenied, RateLimited
from eldercare.http.deps import AnyUser, Conn, Now, platform_env
from eldercare.platform import lifecycle, visitaddress
from eldercare.platform import workorders as wo
from eldercare.platform.schemas import (
    AcceptRequest,
    CheckOut,
    DispatchRequest,
    GeoPoint,
    ReasonRequest,
    RejectClaim,
    RevisitCreate,
    VerifyRequest,
    VisitAddress,
    WorkOrderCreate,
)
from eldercare.registry.auth import Actor
from eldercare.storage import db

router = APIRouter(prefix="/api")
log = logging.getLogger(__name__)
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=200)]


def idempotent(
    conn: psycopg.Connection,
    request: Request,
    user: Actor,
    key: str | None,
    body: BaseModel,
    now: datetime,
    code: int,
    run: Callable[[], Any],
) -> JSONResponse:
    """Run ``run`` in one transaction, once per (key, user); replay the stored answer."""
    content: Any
    with conn.transaction():
        if key is None:
            content = jsonable_encoder(run())
            return JSONResponse(content, status_code=code)
        if not key.strip():
            raise InvalidInput("Idempotency-Key is blank")
        where = f"{request.method} {request.url.path}"
        digest = hashlib.sha256(
            (where + "\n" + body.model_dump_json(by_alias=True)).encode()
        ).hexdigest()
        seen = db.rows(
            conn,
            "SELECT method_path, request_sha256, status_code, response FROM idempotency_keys"
            " WHERE key = %s AND username = %s FOR UPDATE",
            (key, user.username),
        )
        if seen:
            if seen[0]["request_sha256"] != digest:
                raise ConflictError("Idempotency-Key was used for a different request")
            return JSONResponse(seen[0]["response"], status_code=seen[0]["status_code"])
        # The first answer is served as stored (jsonb orders keys its own way), so a replay
        # is byte-identical to it.
        content = db.one(
            conn,
            "INSERT INTO idempotency_keys (key, username, method_path, request_sha256,"
            " status_code, response, at) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING response",
            (key, user.username, where, digest, code, Jsonb(jsonable_encoder(run())), now),
        )["response"]
    return JSONResponse(content, status_code=code)


@router.post("/work-orders", status_code=status.HTTP_201_CREATED, tags=["work orders"])
def create_work_order(
    request: Request,
    body: WorkOrderCreate,
    user: AnyUser,
    conn: Conn,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    env = platform_env(request)
    return idempotent(
        conn,
        request,
        user,
        idempotency_key,
        body,
        now,
        201,
        lambda: wo.create(conn, user, body, now, env),
    )


@router.get("/work-orders", tags=["work orders"])
def work_orders(
    user: AnyUser,
    conn: Conn,
    status: str | None = None,
    provider: int | None = None,
    resident: int | None = None,
    worker: int | None = None,
    district: str | None = None,
    alarm_id: str | None = None,
    item: str | None = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None,
    to: datetime | None = None,
    limit: int = 500,
) -> list[dict[str, Any]]:
    if status is not None and status not in lifecycle.STATUSES:
        # An empty list would read as "none in that state" for a typo.
        raise InvalidInput(f"status: one of {', '.join(lifecycle.STATUSES)}")
    return wo.search(
        conn,
        user,
        status=status,
        provider=provider,
        resident=resident,
        worker=worker,
        district=district,
        alarm_id=alarm_id,
        item=item,
        since=from_,
        until=to,
        limit=max(1, min(limit, 5000)),
    )


@router.get("/work-orders/{order_id}", tags=["work orders"])
def work_order(order_id: str, user: AnyUser, conn: Conn) -> dict[str, Any]:
    return wo.detail(conn, user, order_id)


@router.get("/work-orders/{order_id}/events", tags=["work orders"])
def work_order_events(order_id: str, user: AnyUser, conn: Conn) -> list[dict[str, Any]]:
    return wo.events(conn, user, order_id)


@router.post("/work-orders/{order_id}/reveal", response_model=VisitAddress, tags=["work orders"])
def reveal_visit_address(
    request: Request, order_id: str, user: AnyUser, conn: Conn, now: Now
) -> dict[str, Any]:
    """The visit address (and access notes, and one contact's phone) for the worker assigned
    to this order or its provider's admin, while it is accepted or checked in; recorded in
    the reveals audit with the order as the reason, throttled like every reveal."""
    try:
        return visitaddress.reveal(
            conn, user, order_id, now, request.app.state.settings.reveals_per_hour
        )
    except (PermissionDenied, ConflictError, RateLimited) as exc:
        # Ids only: the address itself never reaches a log.
        log.warning("visit address of order %s refused for %s: %s", order_id, user.username, exc)
        raise


def _act(
    request: Request,
    user: Actor,
    conn: psycopg.Connection,
    now: datetime,
    order_id: str,
    action: str,
    body: BaseModel,
    key: str | None = None,
) -> JSONResponse:
    env = platform_env(request)
    return idempotent(
        conn,
        request,
        user,
        key,
        body,
        now,
        200,
        lambda: wo.act(conn, user, order_id, action, body, now, env),
    )


@router.post("/work-orders/{order_id}/dispatch", tags=["work orders"])
def dispatch(
    request: Request, order_id: str, body: DispatchRequest, user: AnyUser, conn: Conn, now: Now
) -> JSONResponse:
    return _act(request, user, conn, now, order_id, "dispatch", body)


@router.post("/work-orders/{order_id}/accept", tags=["work orders"])
def accept(
    request: Request, order_id: str, body: AcceptRequest, user: AnyUser, conn: Conn, now: Now
) -> JSONResponse:
    return _act(request, user, conn, now, order_id, "accept", body)


@router.post("/work-orders/{order_id}/reject", tags=["work orders"])
def reject(
    request: Request, order_id: str, body: ReasonRequest, user: AnyUser, conn: Conn, now: Now
) -> JSONResponse:
    return _act(request, user, conn, now, order_id, "reject", body)


@router.post("/work-orders/{order_id}/check-in", tags=["work orders"])
def check_in(
    request: Request,
    order_id: str,
    body: GeoPoint,
    user: AnyUser,
    conn: Conn,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    return _act(request, user, conn, now, order_id, "check_in", body, idempotency_key)


@router.post("/work-orders/{order_id}/check-out", tags=["work orders"])
def check_out(
    request: Request,
    order_id: str,
    body: CheckOut,
    user: AnyUser,
    conn: Conn,
    now: Now,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    return _act(request, user, conn, now, order_id, "check_out", body, idempotency_key)


@router.post("/work-orders/{order_id}/verify", tags=["work orders"])
def verify(
    request: Request,
    order_id: str,
    user: AnyUser,
    conn: Conn,
    now: Now,
    body: VerifyRequest | None = None,
) -> JSONResponse:
    return _act(request, user, conn, now, order_id, "verify", body or VerifyRequest())


@router.post("/work-orders/{order_id}/cancel", tags=["work orders"])
def cancel(
    request: Request, order_id: str, body: ReasonRequest, user: AnyUser, conn: Conn, now: Now
) -> JSONResponse:
    return _act(request, user, conn, now, order_id, "cancel", body)


@router.post("/work-orders/{order_id}/reject-claim", tags=["work orders"])
def reject_claim(
    request: Request, order_id: str, body: RejectClaim, user: AnyUser, conn: Conn, now: Now
) -> JSONResponse:
    return _act(request, user, conn, now, order_id, "reject_claim", body)


@router.post(
    "/work-orders/{order_id}/revisits", status_code=status.HTTP_201_CREATED, tags=["revisits"]
)
def add_revisit(
    order_id: str, body: RevisitCreate, user: AnyUser, conn: Conn, now: Now
) -> dict[str, Any]:
    with conn.transaction():
        return wo.add_revisit(conn, user, order_id, body, now)


@router.get("/revisits", tags=["revisits"])
def revisits(
    user: AnyUser,
    conn: Conn,
    due_before: datetime | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    user.require("operator", "supervisor", "admin", "civil_affairs")
    if status not in (None, "pending", "done"):
        raise InvalidInput("status is pending or done")
    return wo.revisits(conn, due_before, status)
