"""Connections and pools; psycopg's errors become StorageError here."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool

from eldercare.errors import StorageError


def connect(conninfo: str, *, autocommit: bool = False) -> psycopg.Connection:
    try:
        return psycopg.connect(conninfo, autocommit=autocommit, connect_timeout=10)
    except psycopg.Error as exc:
        raise StorageError(f"cannot connect to the database: {exc}") from exc


def make_pool(conninfo: str, *, min_size: int = 1, max_size: int = 10) -> ConnectionPool:
    pool = ConnectionPool(
        conninfo,
        min_size=min_size,
        max_size=max_size,
        kwargs={"row_factory": dict_row},
        open=False,
        check=ConnectionPool.check_connection,
    )
    try:
        pool.open(wait=True, timeout=30)
    except psycopg.Error as exc:
        raise StorageError(f"cannot open the database pool: {exc}") from exc
    return pool


@contextmanager
def translate() -> Iterator[None]:
    """Wrap a block of database work so psycopg's errors leave as StorageError."""
    try:
        yield
    except psycopg.Error as exc:
        raise StorageError(str(exc).strip()) from exc
