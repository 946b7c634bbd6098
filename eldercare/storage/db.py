"""The psycopg edge: connections, the pool, the row helpers and the one map from
psycopg's errors to :mod:`eldercare.errors`.

Every psycopg error that leaves the storage layer goes through :func:`translate`
(``raise ... from exc``, so the cause stays visible): :func:`rows` and :func:`one` use it,
the HTTP request connection (``eldercare.http.deps.get_conn``) is wrapped in it, and so is
every ``eldercare`` command. A constraint the database enforces is therefore a 409 or 422
to an API client, never a 500.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Final, TypeVar

import psycopg
from psycopg import errors as pg
from psycopg.rows import class_row, dict_row
from psycopg_pool import ConnectionPool

from eldercare.errors import (
    ConflictError,
    DatabaseFault,
    EldercareError,
    InvalidInput,
    NotFoundError,
    StorageError,
)

Row = dict[str, Any]
T = TypeVar("T")

# Checked in order; the first class the error is an instance of wins.
PG_ERRORS: Final[Sequence[tuple[type[psycopg.Error], type[EldercareError]]]] = (
    (pg.UniqueViolation, ConflictError),
    (pg.ExclusionViolation, ConflictError),
    (pg.ForeignKeyViolation, NotFoundError),  # a DELETE of a referenced row: see below
    (pg.CheckViolation, InvalidInput),
    (pg.NotNullViolation, InvalidInput),
    (pg.DataError, InvalidInput),  # out of range, bad text representation, ...
    (pg.OperationalError, StorageError),  # unreachable, shutting down, pool timeout
)


def error_for(exc: psycopg.Error) -> EldercareError:
    """The eldercare error for a psycopg error (the caller raises it ``from exc``)."""
    diag = exc.diag
    detail = (diag.message_detail or "").strip()
    where = diag.constraint_name or diag.table_name or ""
    for pg_class, ours in PG_ERRORS:
        if not isinstance(exc, pg_class):
            continue
        if ours is ConflictError:
            return ConflictError(f"already exists: {detail or where}")
        if ours is NotFoundError:
            if "still referenced" in detail:
                # Deleting or re-keying something others point at is a conflict, not a 404.
                return ConflictError(f"still in use: {detail}")
            return NotFoundError(f"refers to a missing object: {detail or where}")
        if ours is InvalidInput:
            return InvalidInput(f"refused by the database: {diag.message_primary or where}")
        return StorageError(f"database unavailable: {type(exc).__name__}")
    if isinstance(exc, psycopg.InterfaceError):
        return StorageError(f"database unavailable: {type(exc).__name__}")
    # Anything else (a programming error, a missing grant, an internal error) is ours to
    # fix, not the database being down; the message may quote data, so only the SQLSTATE,
    # the class and the primary line (kept for the log) travel.
    return DatabaseFault(exc.sqlstate, type(exc).__name__, diag.message_primary)


@contextmanager
def translate() -> Iterator[None]:
    """Wrap a block of database work so psycopg's errors leave as eldercare errors."""
    try:
        yield
    except psycopg.Error as exc:
        raise error_for(exc) from exc


def rows(conn: psycopg.Connection, sql: str, params: Any = None) -> list[Row]:
    """All rows of a query, as dicts."""
    with translate(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(sql, params)
        return cur.fetchall() if cur.description is not None else []


def rows_as(conn: psycopg.Connection, cls: type[T], sql: str, params: Any = None) -> list[T]:
    """All rows of a query as ``cls`` instances (psycopg's ``class_row``: the columns are
    its keyword arguments, so a column the class does not name is an error, not a surprise)."""
    with translate(), conn.cursor(row_factory=class_row(cls)) as cur:
        cur.execute(sql, params)
        return cur.fetchall()


def one(
    conn: psycopg.Connection, sql: str, params: Any = None, *, missing: str = "not found"
) -> Row:
    """The first row of a query, or NotFoundError(``missing``) when there is none."""
    found = rows(conn, sql, params)
    if not found:
        raise NotFoundError(missing)
    return found[0]


def sql_list(values: Iterable[str]) -> str:
    """``('a', 'b')`` for an ``IN`` list written into SQL text from one of the engine's
    enums (so a partial index with the same predicate still applies). Only plain
    lower-case words are accepted: this is for vocabularies, never for input."""
    words = list(values)
    for w in words:
        if not re.fullmatch(r"[a-z_]+", w):
            raise ValueError(f"not a vocabulary word: {w!r}")
    return "(" + ", ".join(f"'{w}'" for w in words) + ")"


def connect(conninfo: str, *, autocommit: bool = False) -> psycopg.Connection:
    try:
        return psycopg.connect(conninfo, autocommit=autocommit, connect_timeout=10)
    except psycopg.Error as exc:
        raise StorageError(f"cannot connect to the database: {exc}") from exc


def make_pool(conninfo: str, *, min_size: int = 1, max_size: int = 10) -> ConnectionPool:
    """An opened pool of autocommit connections with dict rows (transactions are explicit)."""
    pool = ConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        kwargs={"autocommit": True, "row_factory": dict_row},
        open=False,
        check=ConnectionPool.check_connection,
    )
    try:
        pool.open(wait=True, timeout=30)
    except psycopg.Error as exc:
        raise StorageError(f"cannot open the database pool: {exc}") from exc
    return pool
