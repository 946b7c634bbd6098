"""Users, bcrypt password hashes and short-lived JWTs; who may do what."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import bcrypt
import jwt
import psycopg
from psycopg.rows import dict_row

from eldercare.config import Settings
from eldercare.errors import AuthError, InvalidInput, PermissionDenied
from eldercare.storage import db

ROLES: Final = (
    "operator",
    "supervisor",
    "facility_staff",
    "admin",
    # The platform layer (issue 8, design §2.3 "Roles"):
    "civil_affairs",  # 民政: publishes policies, decides anomalies, approves settlements
    "assessor",  # ability assessments (GB/T 42195)
    "provider_admin",  # a service provider's back office, limited to its own provider
    "provider_worker",  # a provider's care worker, limited to its own orders
)
# Provider users are outsiders to the monitoring desk: they never see alarms, the live
# feed or residents' records, only the work orders of their own provider.
PROVIDER_ROLES: Final = ("provider_admin", "provider_worker")
MONITORING_ROLES: Final = tuple(r for r in ROLES if r not in PROVIDER_ROLES)
ALGORITHM: Final = "HS256"
# Checked against when the username is unknown, so both paths cost one bcrypt.
_DUMMY_HASH: Final = bcrypt.hashpw(b"not-a-password", bcrypt.gensalt(rounds=12))
# bcrypt reads at most 72 bytes; longer passwords are refused, never cut (audit H5).
MAX_PASSWORD_BYTES: Final = 72
_LOGIN_COLUMNS: Final = "username, role, facility_id, responder_id, provider_id, worker_id, active"


@dataclass(frozen=True, slots=True)
class Actor:
    username: str
    role: str
    facility_id: int | None = None
    responder_id: int | None = None
    provider_id: int | None = None
    worker_id: int | None = None
    # From the token it came with (None for the platform's own actors): what logout
    # revokes and when an open websocket must close (audit M5).
    token_id: str | None = None
    expires_at: int | None = None

    @property
    def scoped(self) -> bool:
        """Facility staff see only their own facility."""
        return self.role == "facility_staff"

    @property
    def provider_scoped(self) -> bool:
        """Provider users see only their own provider's work orders (404 outside)."""
        return self.role in PROVIDER_ROLES

    def require(self, *roles: str) -> None:
        if self.role not in roles:
            raise PermissionDenied(f"role {self.role} may not do this")


SYSTEM: Final = Actor("system", "admin")


def check_password_length(password: str) -> bytes:
    """The password's bytes; over 72 (UTF-8) is refused rather than silently truncated."""
    raw = password.encode()
    if len(raw) > MAX_PASSWORD_BYTES:
        raise InvalidInput(
            f"passwords are at most {MAX_PASSWORD_BYTES} bytes (UTF-8); this one is {len(raw)}"
        )
    return raw


def hash_password(password: str) -> str:
    return bcrypt.hashpw(check_password_length(password), bcrypt.gensalt(rounds=12)).decode()


def create_user(
    conn: psycopg.Connection,
    username: str,
    password: str,
    role: str,
    facility_id: int | None = None,
    responder_id: int | None = None,
    provider_id: int | None = None,
    worker_id: int | None = None,
) -> dict[str, Any]:
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}; one of {', '.join(ROLES)}")
    if role == "facility_staff" and facility_id is None:
        raise InvalidInput("facility_staff users need --facility")
    if len(password) < 8:
        raise InvalidInput("passwords need at least 8 characters")
    check_password_length(password)
    if username == SYSTEM.username:
        # "system" is the platform's own actor (hooks, auto-verify); no login may pose as it.
        raise InvalidInput(f"the username {username!r} is reserved")
    if role == "provider_worker" and worker_id is None:
        raise InvalidInput("provider_worker users need --worker")
    if worker_id is not None and role != "provider_worker":
        raise InvalidInput("--worker is only for provider_worker users")
    if role in PROVIDER_ROLES and provider_id is None and worker_id is not None:
        # A worker belongs to exactly one provider; take it from there.
        provider_id = int(
            db.one(
                conn,
                "SELECT provider_id FROM workers WHERE id = %s",
                (worker_id,),
                missing=f"worker {worker_id} not found",
            )["provider_id"]
        )
    if role in PROVIDER_ROLES and provider_id is None:
        raise InvalidInput(f"{role} users need --provider")
    if provider_id is not None and role not in PROVIDER_ROLES:
        raise InvalidInput("--provider is only for provider_admin and provider_worker users")
    return db.one(
        conn,
        "INSERT INTO users (username, password_hash, role, facility_id, responder_id,"
        " provider_id, worker_id) VALUES (%s, %s, %s, %s, %s, %s, %s)"
        " RETURNING id, username, role, facility_id, responder_id, provider_id, worker_id, active",
        (
            username,
            hash_password(password),
            role,
            facility_id,
            responder_id,
            provider_id,
            worker_id,
        ),
    )


def login_row(conn: psycopg.Connection, username: str) -> dict[str, Any] | None:
    """The stored hash and what a token says of a login; the caller releases the
    connection before :func:`verify` spends a bcrypt on it (audit H5)."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            f"SELECT password_hash, {_LOGIN_COLUMNS} FROM users WHERE username = %s",
            (username,),
        )
        return cur.fetchone()


def verify(row: dict[str, Any] | None, password: str) -> Actor:
    """bcrypt (CPU only, no database): the actor, or AuthError. An unknown user costs the
    same bcrypt as a known one."""
    raw = check_password_length(password)
    stored = row["password_hash"].encode() if row else _DUMMY_HASH
    ok = bcrypt.checkpw(raw, stored)
    if row is None or not ok or not row["active"]:
        raise AuthError("incorrect username or password")
    return Actor(
        row["username"],
        row["role"],
        row["facility_id"],
        row["responder_id"],
        row["provider_id"],
        row["worker_id"],
    )


def authenticate(conn: psycopg.Connection, username: str, password: str) -> Actor:
    return verify(login_row(conn, username), password)


def make_token(settings: Settings, actor: Actor, now: datetime) -> str:
    claims = {
        "sub": actor.username,
        "role": actor.role,
        "fac": actor.facility_id,
        "rsp": actor.responder_id,
        "prv": actor.provider_id,
        "wrk": actor.worker_id,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=settings.token_minutes)).timestamp()),
        "jti": secrets.token_urlsafe(16),
    }
    return jwt.encode(claims, settings.secret_key, algorithm=ALGORITHM)


def read_token(settings: Settings, token: str, now: datetime) -> Actor:
    """Who a token belongs to, from its signature alone; :func:`ensure_live` then asks the
    database whether it still stands."""
    try:
        # The engine's clock decides expiry, so frozen-clock tests stay deterministic.
        claims = jwt.decode(
            token,
            settings.secret_key,
            algorithms=[ALGORITHM],
            options={
                "verify_exp": False,
                "verify_iat": False,
                "require": ["sub", "exp", "iat", "jti"],
            },
        )
    except jwt.PyJWTError as exc:
        raise AuthError("not authenticated") from exc
    exp, iat = int(claims["exp"]), int(claims["iat"])
    if exp <= int(now.timestamp()):
        raise AuthError("token expired")
    # Longer than this API ever issues: not one of ours (audit H9).
    if exp - iat > settings.token_minutes * 60 or claims.get("role") not in ROLES:
        raise AuthError("not authenticated")
    return Actor(
        str(claims["sub"]),
        claims["role"],
        claims.get("fac"),
        claims.get("rsp"),
        claims.get("prv"),
        claims.get("wrk"),
        token_id=str(claims["jti"]),
        expires_at=exp,
    )


def _stands(actor: Actor, row: dict[str, Any] | None) -> bool:
    # A disabled login, or one whose role or scope changed, needs a new token.
    return (
        row is not None
        and row["active"]
        and not row["revoked"]
        and (row["role"], row["facility_id"], row["responder_id"])
        == (actor.role, actor.facility_id, actor.responder_id)
        and (row["provider_id"], row["worker_id"]) == (actor.provider_id, actor.worker_id)
    )


def dead_tokens(conn: psycopg.Connection, actors: Iterable[Actor]) -> set[str]:
    """The token ids among ``actors`` that no longer stand: logged out, the user disabled,
    or their role or scope changed since the token was issued (audit M5)."""
    wanted = {a.token_id: a for a in actors if a.token_id}
    if not wanted:
        return set()
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT t.jti, u.role, u.facility_id, u.responder_id, u.provider_id, u.worker_id,"
            " COALESCE(u.active, false) AS active,"
            " EXISTS (SELECT 1 FROM revoked_tokens r WHERE r.jti = t.jti) AS revoked"
            " FROM unnest(%s::text[], %s::text[]) AS t(jti, username)"
            " LEFT JOIN users u ON u.username = t.username",
            (list(wanted), [a.username for a in wanted.values()]),
        )
        found = {r["jti"]: r for r in cur.fetchall()}
    return {jti for jti, a in wanted.items() if not _stands(a, found.get(jti))}


def ensure_live(conn: psycopg.Connection, actor: Actor) -> Actor:
    """The actor of a request, if its token still stands; AuthError otherwise."""
    if dead_tokens(conn, [actor]):
        raise AuthError("token revoked")
    return actor


def revoke(conn: psycopg.Connection, actor: Actor, now: datetime) -> None:
    """Logout: this token stops working everywhere (API and websocket); the user's other
    sign-ins stand. Kept until the token would have expired anyway."""
    if actor.token_id is None or actor.expires_at is None:
        return
    conn.execute(
        "INSERT INTO revoked_tokens (jti, username, revoked_at, expires_at)"
        " VALUES (%s, %s, %s, %s) ON CONFLICT (jti) DO NOTHING",
        (actor.token_id, actor.username, now, datetime.fromtimestamp(actor.expires_at, UTC)),
    )
