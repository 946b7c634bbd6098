"""The demo's service simulator (issue 8 part 7): orders through the real lifecycle, a few
frauds, the month's entitlement run; on a private database so nothing else sees its data."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime

import psycopg
import pytest
from fastapi.testclient import TestClient

from eldercare.app import create_app
from eldercare.config import Settings
from eldercare.platform import settlement
from eldercare.registry.auth import Actor
from eldercare.simulators import services
from eldercare.storage.db import connect
from harness.services import create_database, drop_database, migrate_database
from tests.alarm_support import FrozenClock, RecordingPublisher, one_row


@pytest.fixture
def private_db(settings: Settings) -> Iterator[tuple[Settings, psycopg.Connection]]:
    url = create_database()
    try:
        app = migrate_database(url)  # the simulator runs as the app's role, as in production
        with connect(app, autocommit=True) as conn:
            yield settings.model_copy(update={"database_url": app, "owner_database_url": url}), conn
    finally:
        drop_database(url)


def test_simulated_month_of_services(private_db: tuple[Settings, psycopg.Connection]) -> None:
    settings, conn = private_db
    now = datetime(2026, 3, 20, 6, 0, tzinfo=UTC)  # 14:00 in Shanghai
    report = services.simulate(conn, settings, now, seed=3)
    assert not report.reused
    assert report.created == 19 and report.frauds == 5
    assert report.verified + report.blocked == report.created
    assert report.verified >= 10
    # each planted fraud is found by the visit checks and holds its order back
    assert report.findings == {
        "duration_out_of_range": 1,
        "gps_far": 1,
        "resident_inactive": 1,
        "worker_overlap": 2,
    }
    # Held back: the GPS and duration findings (soft: a revisit first), the hospital visit and
    # the second of the overlapping pair (hard). The first of the pair was verified before the
    # second checked in; its finding arrives afterwards, for the batch to exclude.
    assert report.blocked == 4
    # and for the worker page, the rest of today: one accepted by the demo worker, two offered
    assert report.today == 3 and report.worker_password == services.WORKER_LOGIN[1]
    counts: dict[str, int] = dict(
        conn.execute(
            "SELECT status, count(*) FROM work_orders GROUP BY status ORDER BY status"
        ).fetchall()
    )
    assert counts.get("verified") == report.verified
    assert (counts.get("accepted"), counts.get("dispatched")) == (1, 2)
    assert sum(counts.values()) == report.created + report.today
    # every verified order had its voucher allocated (a debit row, possibly zero)
    debits = one_row(conn.execute("SELECT count(*) FROM subsidy_ledger WHERE kind = 'debit'"))
    assert debits[0] == report.verified
    # the month's run: the two dispersed 特困 residents (moderate, severe) and the vouchers
    assert report.month == "2026-03"
    assert report.entitled_fen["tekun_living"] == 2 * 138300
    assert report.entitled_fen["tekun_care"] == 82800 // 2 + 165600 // 2
    # again: nothing new is created, the run is repeated with the same amounts
    again = services.simulate(conn, settings, now, seed=3)
    assert again.reused and again.created == 0 and again.today == 0
    assert again.entitled_fen == report.entitled_fen
    assert again.worker_password == services.WORKER_LOGIN[1]
    total = report.created + report.today
    assert one_row(conn.execute("SELECT count(*) FROM work_orders"))[0] == total
    # The provider's batch leaves out every order with an open hard finding, also the one
    # verified before its finding arrived.
    provider = one_row(
        conn.execute("SELECT id FROM providers WHERE name = %s", (services.PROVIDER_NAME,))
    )[0]
    with conn.transaction():
        batch = settlement.create(
            conn, Actor("ca", "civil_affairs"), provider, date(2026, 3, 1), now, settings.tz
        )
    held = {x["reason"] for x in batch["excluded"]}
    assert {"worker_overlap", "resident_inactive"} <= held
    overlapped = one_row(
        conn.execute("SELECT count(*) FROM anomalies WHERE rule_code = 'worker_overlap'")
    )[0]
    assert sum(x["reason"] == "worker_overlap" for x in batch["excluded"]) == overlapped
    assert len(batch["lines"]) == report.verified - 1

    # The demo worker does today's visit through the API the /worker page uses.
    app = create_app(
        settings, clock=FrozenClock(now), publisher=RecordingPublisher(), background=False
    )
    with TestClient(app) as client:
        user, password = services.WORKER_LOGIN
        tok = client.post("/api/auth/token", data={"username": user, "password": password})
        client.headers["Authorization"] = f"Bearer {tok.json()['access_token']}"
        mine = client.get("/api/work-orders", params={"status": "accepted"}).json()
        offers = client.get("/api/work-orders", params={"status": "dispatched"}).json()
        assert len(mine) == 1 and len(offers) == 2
        visit = mine[0]
        at_home = {
            "lat": visit["ref_lat"],
            "lon": visit["ref_lon"],
            "accuracy_m": 10,
            "client_time": now.isoformat(),
        }
        r = client.post(f"/api/work-orders/{visit['id']}/check-in", json=at_home)
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "checked_in" and r.json()["check_in"]["distance_m"] == 0
        r = client.post(f"/api/work-orders/{offers[0]['id']}/accept", json={})
        assert r.status_code == 200 and r.json()["status"] == "accepted"
