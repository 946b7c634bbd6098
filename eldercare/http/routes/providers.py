"""The service catalogue, providers, workers, contracts and care agreements (design §2.11)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status

from eldercare.http.deps import AnyUser, Conn, Now
from eldercare.platform import providers as prov
from eldercare.platform.schemas import (
    AgreementCreate,
    ContractCreate,
    ProviderCreate,
    ProviderStatus,
    ServiceItemCreate,
    ServiceItemUpdate,
    WorkerCreate,
)

router = APIRouter(prefix="/api")
CREATED = status.HTTP_201_CREATED
BACK_OFFICE = ("admin", "civil_affairs")


@router.get("/service-items", tags=["catalogue"])
def service_items(user: AnyUser, conn: Conn, active: int = 0) -> list[dict[str, Any]]:
    return prov.items(conn, bool(active))


@router.post("/service-items", status_code=CREATED, tags=["catalogue"])
def create_service_item(body: ServiceItemCreate, user: AnyUser, conn: Conn) -> dict[str, Any]:
    user.require("admin")
    with conn.transaction():
        return prov.create_item(conn, body)


@router.patch("/service-items/{code}", tags=["catalogue"])
def update_service_item(
    code: str, body: ServiceItemUpdate, user: AnyUser, conn: Conn
) -> dict[str, Any]:
    user.require("admin")
    with conn.transaction():
        return prov.update_item(conn, code, body)


@router.get("/providers", tags=["providers"])
def providers(user: AnyUser, conn: Conn) -> list[dict[str, Any]]:
    user.require(*BACK_OFFICE, "operator", "supervisor", "provider_admin", "provider_worker")
    return prov.providers(conn, user)


@router.post("/providers", status_code=CREATED, tags=["providers"])
def create_provider(body: ProviderCreate, user: AnyUser, conn: Conn) -> dict[str, Any]:
    user.require(*BACK_OFFICE)
    with conn.transaction():
        return prov.create_provider(conn, body)


@router.get("/providers/{provider_id}", tags=["providers"])
def provider(provider_id: int, user: AnyUser, conn: Conn) -> dict[str, Any]:
    user.require(*BACK_OFFICE, "operator", "supervisor", "provider_admin", "provider_worker")
    return prov.provider(conn, user, provider_id)


@router.post("/providers/{provider_id}/status", tags=["providers"])
def provider_status(
    provider_id: int, body: ProviderStatus, user: AnyUser, conn: Conn
) -> dict[str, Any]:
    user.require(*BACK_OFFICE)
    with conn.transaction():
        return prov.set_status(conn, provider_id, body)


@router.get("/providers/{provider_id}/workers", tags=["providers"])
def workers(provider_id: int, user: AnyUser, conn: Conn) -> list[dict[str, Any]]:
    user.require(*BACK_OFFICE, "operator", "supervisor", "provider_admin")
    prov.provider(conn, user, provider_id)
    return prov.workers(conn, provider_id)


@router.post("/providers/{provider_id}/workers", status_code=CREATED, tags=["providers"])
def create_worker(
    provider_id: int, body: WorkerCreate, user: AnyUser, conn: Conn
) -> dict[str, Any]:
    user.require(*BACK_OFFICE, "provider_admin")
    prov.scope_provider(user, provider_id)
    with conn.transaction():
        return prov.create_worker(conn, provider_id, body)


@router.get("/providers/{provider_id}/contracts", tags=["providers"])
def contracts(provider_id: int, user: AnyUser, conn: Conn) -> list[dict[str, Any]]:
    user.require(*BACK_OFFICE, "supervisor", "provider_admin")
    prov.provider(conn, user, provider_id)
    return prov.contracts(conn, provider_id)


@router.post("/providers/{provider_id}/contracts", status_code=CREATED, tags=["providers"])
def create_contract(
    provider_id: int, body: ContractCreate, user: AnyUser, conn: Conn, now: Now
) -> dict[str, Any]:
    user.require(*BACK_OFFICE)
    with conn.transaction():
        return prov.create_contract(conn, provider_id, body, user.username, now)


@router.get("/care-agreements", tags=["providers"])
def agreements(
    user: AnyUser, conn: Conn, resident: int | None = None, provider: int | None = None
) -> list[dict[str, Any]]:
    user.require("civil_affairs", "admin", "supervisor", "operator", "provider_admin")
    return prov.agreements(conn, user, resident, provider)


@router.post("/care-agreements", status_code=CREATED, tags=["providers"])
def create_agreement(body: AgreementCreate, user: AnyUser, conn: Conn, now: Now) -> dict[str, Any]:
    user.require("civil_affairs", "admin", "provider_admin")
    with conn.transaction():
        return prov.create_agreement(conn, user, body, now)
