"""The service catalogue, providers (服务商), their workers and contracts, and care agreements."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg.types.range import Range

from eldercare.errors import ConflictError, InvalidInput, NotFoundError
from eldercare.platform.schemas import (
    AgreementCreate,
    ContractCreate,
    ProviderCreate,
    ProviderStatus,
    ServiceItemCreate,
    ServiceItemUpdate,
    WorkerCreate,
)
from eldercare.registry.auth import Actor
from eldercare.storage import db

Row = dict[str, Any]

_ITEM_COLS = (
    "code, name_zh, category, setting, unit, min_duration_min, max_duration_min,"
    " requires_presence, required_qualification, active"
)


def create_item(conn: psycopg.Connection, item: ServiceItemCreate) -> Row:
    return db.one(
        conn,
        f"INSERT INTO service_items ({_ITEM_COLS}) VALUES (%(code)s, %(name_zh)s, %(category)s,"
        " %(setting)s, %(unit)s, %(min_duration_min)s, %(max_duration_min)s,"
        f" %(requires_presence)s, %(required_qualification)s, %(active)s) RETURNING {_ITEM_COLS}",
        item.model_dump(),
    )


def update_item(conn: psycopg.Connection, code: str, changes: ServiceItemUpdate) -> Row:
    data = changes.model_dump(exclude_unset=True)
    current = db.one(
        conn,
        f"SELECT {_ITEM_COLS} FROM service_items WHERE code = %s FOR UPDATE",
        (code,),
        missing=f"service item {code} not found",
    )
    if not data:
        return current
    lo = data.get("min_duration_min", current["min_duration_min"])
    hi = data.get("max_duration_min", current["max_duration_min"])
    if lo is not None and hi is not None and hi < lo:
        # Named here: the table's CHECK would only say "service_items_check".
        raise InvalidInput(f"max_duration_min {hi} is below min_duration_min {lo}")
    sets = ", ".join(f"{k} = %({k})s" for k in data)  # keys are the model's own field names
    return db.one(
        conn,
        f"UPDATE service_items SET {sets} WHERE code = %(code)s RETURNING {_ITEM_COLS}",
        {**data, "code": code},
    )


def items(conn: psycopg.Connection, active_only: bool) -> list[Row]:
    return db.rows(
        conn,
        f"SELECT {_ITEM_COLS} FROM service_items WHERE NOT %s OR active ORDER BY code",
        (active_only,),
    )


def item(conn: psycopg.Connection, code: str) -> Row:
    return db.one(
        conn,
        f"SELECT {_ITEM_COLS} FROM service_items WHERE code = %s",
        (code,),
        missing=f"service item {code} not found",
    )


# ---------------------------------------------------------------- providers

_PROVIDER_COLS = (
    "id, name, credit_code, kind, facility_id, district_code, status, status_reason, created_at"
)


def create_provider(conn: psycopg.Connection, p: ProviderCreate) -> Row:
    return db.one(
        conn,
        "INSERT INTO providers (name, credit_code, kind, facility_id, district_code)"
        " VALUES (%(name)s, %(credit_code)s, %(kind)s, %(facility_id)s, %(district_code)s)"
        f" RETURNING {_PROVIDER_COLS}",
        p.model_dump(),
    )


def scope_provider(actor: Actor, provider_id: int) -> None:
    """Provider users only ever see their own provider; another one does not exist for them."""
    if actor.provider_scoped and actor.provider_id != provider_id:
        raise NotFoundError(f"provider {provider_id} not found")


def provider(conn: psycopg.Connection, actor: Actor, provider_id: int) -> Row:
    scope_provider(actor, provider_id)
    return db.one(
        conn,
        f"SELECT {_PROVIDER_COLS} FROM providers WHERE id = %s",
        (provider_id,),
        missing=f"provider {provider_id} not found",
    )


def providers(conn: psycopg.Connection, actor: Actor) -> list[Row]:
    mine = actor.provider_id if actor.provider_scoped else None
    return db.rows(
        conn,
        f"SELECT {_PROVIDER_COLS} FROM providers WHERE %(p)s::bigint IS NULL OR id = %(p)s"
        " ORDER BY id",
        {"p": mine},
    )


def set_status(conn: psycopg.Connection, provider_id: int, s: ProviderStatus) -> Row:
    return db.one(
        conn,
        f"UPDATE providers SET status = %s, status_reason = %s WHERE id = %s"
        f" RETURNING {_PROVIDER_COLS}",
        (s.status, s.reason, provider_id),
        missing=f"provider {provider_id} not found",
    )


_WORKER_COLS = "id, provider_id, name, qualifications, responder_id, active, created_at"


def create_worker(conn: psycopg.Connection, provider_id: int, w: WorkerCreate) -> Row:
    """A worker, optionally with a responder of kind ``provider`` so the alert engine can send
    a worker who is on site (design §2.9). The phone is stored, never listed."""
    prov = db.one(
        conn,
        "SELECT facility_id FROM providers WHERE id = %s",
        (provider_id,),
        missing=f"provider {provider_id} not found",
    )
    responder_id = w.responder_id
    if w.responder_lat is not None:
        responder_id = db.one(
            conn,
            "INSERT INTO responders (kind, name, phone, facility_id, lat, lon)"
            " VALUES ('provider', %s, %s, %s, %s, %s) RETURNING id",
            (w.name, w.phone, prov["facility_id"], w.responder_lat, w.responder_lon),
        )["id"]
    return db.one(
        conn,
        "INSERT INTO workers (provider_id, name, phone, qualifications, responder_id)"
        f" VALUES (%s, %s, %s, %s, %s) RETURNING {_WORKER_COLS}",
        (provider_id, w.name, w.phone, w.qualifications, responder_id),
    )


def workers(conn: psycopg.Connection, provider_id: int) -> list[Row]:
    return db.rows(
        conn,
        f"SELECT {_WORKER_COLS} FROM workers WHERE provider_id = %s ORDER BY id",
        (provider_id,),
    )


def _range_row(r: Row) -> Row:
    valid: Range[date] = r.pop("valid")
    return {**r, "valid_from": valid.lower, "valid_to": valid.upper}


_CONTRACT_COLS = (
    "id, provider_id, district_code, programme_code, valid, price_list, created_by, created_at"
)


def create_contract(
    conn: psycopg.Connection, provider_id: int, c: ContractCreate, user: str, now: datetime
) -> Row:
    db.one(
        conn,
        "SELECT 1 FROM providers WHERE id = %s",
        (provider_id,),
        missing=f"provider {provider_id} not found",
    )
    unknown = db.rows(
        conn,
        "SELECT code FROM unnest(%s::text[]) code"
        " WHERE code NOT IN (SELECT code FROM service_items)",
        (sorted(c.price_list),),
    )
    if unknown:
        raise NotFoundError(
            "price list names unknown service items: " + ", ".join(u["code"] for u in unknown)
        )
    row = db.one(
        conn,
        "INSERT INTO provider_contracts (provider_id, district_code, programme_code, valid,"
        " price_list, created_by, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        f" RETURNING {_CONTRACT_COLS}",
        (
            provider_id,
            c.district_code,
            c.programme_code,
            Range(c.valid_from, c.valid_to, "[)"),
            Jsonb(c.price_list),
            user,
            now,
        ),
    )
    return _range_row(row)


def contracts(conn: psycopg.Connection, provider_id: int) -> list[Row]:
    return [
        _range_row(r)
        for r in db.rows(
            conn,
            f"SELECT {_CONTRACT_COLS} FROM provider_contracts WHERE provider_id = %s ORDER BY id",
            (provider_id,),
        )
    ]


def unit_price(
    conn: psycopg.Connection, provider_id: int, district_code: str, item_code: str, on: date
) -> int | None:
    """The contracted price of an item for a district on a day: from the contract of the
    nearest district at or above the order's (a county contract covers its streets)."""
    found = db.rows(
        conn,
        "SELECT (c.price_list ->> %(item)s)::bigint AS price FROM provider_contracts c"
        " JOIN district_ancestors(%(d)s) a ON a.code = c.district_code"
        " WHERE c.provider_id = %(p)s AND c.valid @> %(on)s::date AND c.price_list ? %(item)s"
        " ORDER BY a.depth, c.id DESC LIMIT 1",
        {"item": item_code, "d": district_code, "p": provider_id, "on": on},
    )
    return int(found[0]["price"]) if found else None


_AGREEMENT_COLS = (
    "id, resident_id, provider_id, kind, package, valid, signed_on, doc_ref, created_by, created_at"
)


def create_agreement(
    conn: psycopg.Connection, actor: Actor, a: AgreementCreate, now: datetime
) -> Row:
    scope_provider(actor, a.provider_id)
    clash = db.rows(
        conn,
        "SELECT id FROM care_agreements WHERE resident_id = %s AND provider_id = %s"
        " AND kind = %s AND valid && %s",
        (a.resident_id, a.provider_id, a.kind, Range(a.valid_from, a.valid_to, "[)")),
    )
    if clash:
        raise ConflictError(
            f"an agreement of this kind already covers that period ({clash[0]['id']})"
        )
    row = db.one(
        conn,
        "INSERT INTO care_agreements (resident_id, provider_id, kind, package, valid, signed_on,"
        f" doc_ref, created_by, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
        f" RETURNING {_AGREEMENT_COLS}",
        (
            a.resident_id,
            a.provider_id,
            a.kind,
            Jsonb(a.package),
            Range(a.valid_from, a.valid_to, "[)"),
            a.signed_on,
            a.doc_ref,
            actor.username,
            now,
        ),
    )
    return _range_row(row)


def agreements(
    conn: psycopg.Connection, actor: Actor, resident_id: int | None, provider_id: int | None
) -> list[Row]:
    if actor.provider_scoped:
        provider_id = actor.provider_id
    return [
        _range_row(r)
        for r in db.rows(
            conn,
            f"SELECT {_AGREEMENT_COLS} FROM care_agreements"
            " WHERE (%(r)s::bigint IS NULL OR resident_id = %(r)s)"
            " AND (%(p)s::bigint IS NULL OR provider_id = %(p)s) ORDER BY id LIMIT 5000",
            {"r": resident_id, "p": provider_id},
        )
    ]
