"""Users, bcrypt password hashes and short-lived JWTs; who may do what."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
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


@dataclass(frozen=True, slots=True)
class Actor:
    username: str
    role: str
    facility_id: int | None = None
    responder_id: int | None = None
    provider_id: int | None = None
    worker_id: int | None = None

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


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=12)).decode()


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


def authenticate(conn: psycopg.Connection, username: str, password: str) -> Actor:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(
            "SELECT username, password_hash, role, facility_id, responder_id, provider_id,"
            " worker_id, active FROM users WHERE username = %s",
            (username,),
        )
        row = cur.fetchone()
    stored = row["password_hash"].encode() if row else _DUMMY_HASH
    ok = bcrypt.checkpw(password.encode(), stored)
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
    }
    return jwt.encode(claims, settings.secret_key, algorithm=ALGORITHM)


def read_token(settings: Settings, token: str, now: datetime) -> Actor:
    try:
        # The engine's clock decides expiry, so frozen-clock tests stay deterministic.
        claims = jwt.decode(
            token,
            settings.secret_key,
            algorithms=[ALGORITHM],
            options={"verify_exp": False, "verify_iat": False, "require": ["sub", "exp"]},
        )
    except jwt.PyJWTError as exc:
        raise AuthError("not authenticated") from exc
    if int(claims["exp"]) <= int(now.timestamp()):
        raise AuthError("token expired")
    if claims.get("role") not in ROLES:
        raise AuthError("not authenticated")
    return Actor(
        str(claims["sub"]),
        claims["role"],
        claims.get("fac"),
        claims.get("rsp"),
        claims.get("prv"),
        claims.get("wrk"),
    )
