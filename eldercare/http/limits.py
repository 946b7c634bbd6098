"""Sign-in throttling (audit H5): failed sign-ins counted per username and per client
address in a sliding window, and bcrypt run off the event loop with bounded concurrency
and without a database connection held.

The counters live in the API process: one ``eldercare serve`` serves the API, so that is
where every sign-in arrives. They are pure (the clock is passed in) and bounded in size.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
from psycopg_pool import ConnectionPool

from eldercare.config import Settings
from eldercare.errors import AuthError, RateLimited
from eldercare.registry import auth
from eldercare.registry.auth import Actor
from eldercare.storage import db

Monotonic = Callable[[], float]


@dataclass(slots=True)
class FailureWindow:
    """At most ``limit`` failures per key within ``window_s`` seconds; the oldest keys are
    forgotten first beyond ``max_keys`` (a flood of invented usernames stays bounded)."""

    limit: int
    window_s: float
    clock: Monotonic = time.monotonic
    max_keys: int = 100_000
    _hits: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)

    def _recent(self, key: str, now: float) -> deque[float] | None:
        hits = self._hits.get(key)
        if hits is None:
            return None
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        if not hits:
            del self._hits[key]
            return None
        return hits

    def retry_after(self, key: str) -> int | None:
        """Seconds until ``key`` may try again, or None when it may now."""
        now = self.clock()
        hits = self._recent(key, now)
        if hits is None or len(hits) < self.limit:
            return None
        return max(1, math.ceil(hits[-self.limit] + self.window_s - now))

    def fail(self, key: str) -> None:
        now = self.clock()
        hits = self._recent(key, now) or deque(maxlen=self.limit)
        hits.append(now)
        self._hits[key] = hits
        self._hits.move_to_end(key)
        while len(self._hits) > self.max_keys:
            self._hits.popitem(last=False)

    def clear(self, key: str) -> None:
        self._hits.pop(key, None)


class LoginGate:
    """What stands between ``POST /api/auth/token`` and bcrypt."""

    def __init__(self, settings: Settings, clock: Monotonic = time.monotonic) -> None:
        window = float(settings.login_window_s)
        # A username is locked per address, so someone guessing from one place cannot
        # lock an operator out of the desk elsewhere; guessing spread over many addresses
        # meets the username's total.
        self.user_at = FailureWindow(settings.login_failures_per_user, window, clock)
        self.users = FailureWindow(settings.login_failures_per_user_total, window, clock)
        self.addresses = FailureWindow(settings.login_failures_per_address, window, clock)
        # Created on first use, inside the event loop.
        self.slots = anyio.CapacityLimiter(settings.login_concurrency)
        self.queue = settings.login_queue

    def _keys(self, username: str, address: str) -> tuple[tuple[FailureWindow, str], ...]:
        return (
            (self.user_at, f"{username}\x00{address}"),
            (self.users, username),
            (self.addresses, address),
        )

    def check(self, username: str, address: str) -> None:
        """Before any work: 429 when this user or this address failed too often."""
        waits = [
            w for window, key in self._keys(username, address) if (w := window.retry_after(key))
        ]
        if waits:
            raise RateLimited("too many failed sign-ins; try again later", max(waits))
        if self.slots.statistics().tasks_waiting >= self.queue:
            # Many different users and addresses at once: shed load instead of queueing.
            raise RateLimited("too many sign-ins at once; try again shortly", 1)

    async def sign_in(
        self, pool: ConnectionPool, username: str, password: str, address: str
    ) -> Actor:
        auth.check_password_length(password)
        self.check(username, address)
        row = await anyio.to_thread.run_sync(_login_row, pool, username)
        try:
            # The pool connection is back before bcrypt starts; a few hashes at a time
            # in their own threads, so the API's worker threads stay free.
            actor = await anyio.to_thread.run_sync(auth.verify, row, password, limiter=self.slots)
        except AuthError:
            for window, key in self._keys(username, address):
                window.fail(key)
            raise
        self.user_at.clear(f"{username}\x00{address}")
        return actor


def _login_row(pool: ConnectionPool, username: str) -> dict[str, Any] | None:
    with db.translate(), pool.connection() as conn:
        return auth.login_row(conn, username)
