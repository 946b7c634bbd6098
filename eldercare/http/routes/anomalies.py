"""Visit-verification findings (design §2.8, §2.11): list them, and civil_affairs decides."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from eldercare.http.deps import AnyUser, Conn, Now
from eldercare.platform import visitchecks

router = APIRouter(prefix="/api")


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    decision: Literal["confirmed", "dismissed"]
    note: str = Field(min_length=1, max_length=2000)


@router.get("/anomalies", tags=["anomalies"])
def anomalies(
    user: AnyUser,
    conn: Conn,
    status: Literal["open", "dismissed", "confirmed"] | None = None,
    rule: str | None = Query(None, max_length=64),
    provider: int | None = None,
    severity: Literal["info", "soft", "hard"] | None = None,
    work_order: str | None = Query(None, max_length=64),
    limit: int = Query(200, ge=1, le=1000),
) -> list[dict[str, Any]]:
    if user.role == "provider_worker":
        user.require("civil_affairs")  # workers see findings on their orders, not the list
    return visitchecks.search(
        conn,
        user,
        status=status,
        rule=rule,
        provider=provider,
        severity=severity,
        work_order=work_order,
        limit=limit,
    )


class EvidenceFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=200)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class Evidence(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    note: str = Field(min_length=1, max_length=4000)
    files: list[EvidenceFile] = Field(default_factory=list, max_length=20)


@router.get("/anomalies/{anomaly_id}", tags=["anomalies"])
def anomaly(anomaly_id: int, user: AnyUser, conn: Conn) -> dict[str, Any]:
    return visitchecks.visible(conn, user, anomaly_id)


@router.post("/anomalies/{anomaly_id}/evidence", status_code=201, tags=["anomalies"])
def evidence(
    anomaly_id: int, body: Evidence, user: AnyUser, conn: Conn, now: Now
) -> dict[str, Any]:
    files = [f.model_dump() for f in body.files]
    with conn.transaction():
        return visitchecks.add_evidence(conn, user, anomaly_id, body.note, files, now)


@router.post("/anomalies/{anomaly_id}/decide", tags=["anomalies"])
def decide(anomaly_id: int, body: Decision, user: AnyUser, conn: Conn, now: Now) -> dict[str, Any]:
    with conn.transaction():
        return visitchecks.decide(conn, user, anomaly_id, body.decision, body.note, now)
