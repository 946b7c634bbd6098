"""One module per API resource, each with its own ``router`` (the FastAPI template's shape).

``ROUTERS`` is the literal list :func:`eldercare.http.app.build_api` includes, in the order
the OpenAPI document shows them.
"""

from __future__ import annotations

from fastapi import APIRouter

from eldercare.http.routes import (
    alarms,
    anomalies,
    auth,
    console,
    device_health,
    dispatch,
    hotline,
    metrics,
    people,
    providers,
    registry,
    settlement,
    subsidies,
    subsidy_reports,
    webhooks,
    work_orders,
)

ROUTERS: list[APIRouter] = [
    auth.router,
    alarms.router,
    metrics.router,
    registry.router,
    dispatch.router,
    webhooks.router,
    console.router,
    device_health.router,
    # Issue 8 platform layer (platcore):
    people.router,
    providers.router,
    work_orders.router,
    hotline.router,
    # Issue 8 subsidies (subsidy):
    subsidies.router,
    settlement.router,
    subsidy_reports.router,
    # Issue 8 visit verification (platverify):
    anomalies.router,
]
