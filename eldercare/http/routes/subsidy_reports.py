"""Supervisor reports on money and coverage (design §2.13), as JSON or ``?format=csv``."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from eldercare.http.deps import AnyUser, Conn
from eldercare.platform import reports
from eldercare.platform.subsidy_schemas import MONTH, month_start
from eldercare.registry.schemas import DISTRICT_CODE

router = APIRouter(prefix="/api/reports")
READERS = ("admin", "civil_affairs", "supervisor")
Format = Literal["json", "csv"]


def csv_or_json(report: dict[str, Any], fmt: Format, kind: str, name: str) -> Any:
    """The report as JSON, or its rows as a CSV download (``?format=csv``)."""
    if fmt == "csv":
        return Response(
            reports.to_csv(report, kind),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )
    return report


@router.get("/subsidy-spend", tags=["reports"])
def subsidy_spend(
    user: AnyUser,
    conn: Conn,
    month: str = Query(pattern=MONTH),
    district: str = Query(pattern=DISTRICT_CODE),
    group_by: str = Query(default="programme", max_length=100),
    format: Format = "json",
) -> Any:
    user.require(*READERS)
    report = reports.subsidy_spend(conn, month_start(month), district, group_by)
    return csv_or_json(report, format, "subsidy-spend", f"subsidy-spend-{district}-{month}")


@router.get("/coverage", tags=["reports"])
def coverage(
    request: Request,
    user: AnyUser,
    conn: Conn,
    programme: str = Query(min_length=1, max_length=63),
    month: str = Query(pattern=MONTH),
    district: str = Query(pattern=DISTRICT_CODE),
    format: Format = "json",
) -> Any:
    user.require(*READERS)
    tz = request.app.state.settings.tz
    report = reports.coverage(conn, programme, month_start(month), district, tz)
    return csv_or_json(report, format, "coverage", f"coverage-{programme}-{district}-{month}")


@router.get("/tekun", tags=["reports"])
def tekun(
    user: AnyUser,
    conn: Conn,
    on: date,
    district: str = Query(pattern=DISTRICT_CODE),
    unable_self_care_levels: str = Query(default=",".join(reports.UNABLE_DEFAULT), max_length=100),
    format: Format = "json",
) -> Any:
    user.require(*READERS)
    levels = tuple(x.strip() for x in unable_self_care_levels.split(",") if x.strip())
    report = reports.tekun(conn, on, district, levels)
    return csv_or_json(report, format, "tekun", f"tekun-{district}-{on}")


@router.get("/anomalies", tags=["reports"])
def anomalies(
    request: Request,
    user: AnyUser,
    conn: Conn,
    month: str = Query(pattern=MONTH),
    district: str = Query(pattern=DISTRICT_CODE),
    provider: int | None = None,
    format: Format = "json",
) -> Any:
    user.require(*READERS)
    tz = request.app.state.settings.tz
    report = reports.anomalies(conn, month_start(month), district, provider, tz)
    return csv_or_json(report, format, "anomalies", f"anomalies-{district}-{month}")


@router.get("/providers", tags=["reports"])
def providers(
    request: Request,
    user: AnyUser,
    conn: Conn,
    month: str = Query(pattern=MONTH),
    district: str = Query(pattern=DISTRICT_CODE),
    provider: int | None = None,
    format: Format = "json",
) -> Any:
    user.require(*READERS)
    tz = request.app.state.settings.tz
    report = reports.providers(conn, month_start(month), district, provider, tz)
    return csv_or_json(report, format, "providers", f"providers-{district}-{month}")


@router.get("/visits", tags=["reports"])
def visits(
    request: Request,
    user: AnyUser,
    conn: Conn,
    month: str = Query(pattern=MONTH),
    district: str = Query(pattern=DISTRICT_CODE),
    groups: str = Query(default=",".join(reports.VISIT_GROUPS), max_length=100),
    format: Format = "json",
) -> Any:
    user.require(*READERS)
    tz = request.app.state.settings.tz
    wanted = tuple(g.strip() for g in groups.split(",") if g.strip())
    report = reports.visits(conn, month_start(month), district, wanted, tz)
    return csv_or_json(report, format, "visits", f"visits-{district}-{month}")
