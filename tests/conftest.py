from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from eldercare.config import Settings
from harness.services import (
    Broker,
    create_database,
    drop_database,
    make_settings,
    migrate_database,
)
from tests.alarm_support import FrozenClock, World, build_world


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """The session database's owner URL; ``settings.database_url`` is the app's role."""
    url = create_database()
    migrate_database(url)
    yield url
    drop_database(url)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    b = Broker(tmp_path_factory.mktemp("mosquitto"))
    b.start()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def settings(database_url: str, broker: Broker) -> Settings:
    s = make_settings(database_url, broker)
    from eldercare.registry.service import sync_broker

    with psycopg.connect(s.database_url) as conn:
        sync_broker(conn, s)
    return s


# ---------------------------------------------------------------- alert engine world
# One frozen clock and one registry world per test module (tests/alarm_support.py);
# test_alarm_engine.py overrides both per test, for tests that need a fresh world.


@pytest.fixture(scope="module")
def clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture(scope="module")
def world(settings: Settings, clock: FrozenClock) -> Iterator[World]:
    w = build_world(settings, clock)
    yield w
    w.retire()


@pytest.fixture
def db(settings: Settings) -> Iterator[psycopg.Connection]:
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def owner_db(settings: Settings) -> Iterator[psycopg.Connection]:
    """The owner's connection, for what the app's role may not do (roles, DDL)."""
    with psycopg.connect(settings.migration_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    return tmp_path


# ---------------------------------------------------------------- gateway and devices


@pytest.fixture(scope="session")
def facility_id(settings: Settings) -> int:
    from eldercare.registry import service as registry
    from eldercare.registry.schemas import FacilityCreate

    with psycopg.connect(settings.database_url) as conn:
        f = registry.create_facility(
            conn,
            FacilityCreate(
                code="T-" + settings.mqtt_client_prefix, name="测试养老院", lat=31.23, lon=121.47
            ),
        )
        conn.commit()
    return int(f["id"])


@pytest.fixture(scope="session")
def gateway(settings: Settings):
    """An in-process gateway worker with short batches and a fast liveness sweep."""
    from eldercare.gateway.worker import GatewayWorker

    # A small per-device burst, so the rate-limit test need not send thousands.
    fast = settings.model_copy(
        update={"batch_max_ms": 5, "liveness_sweep_s": 0.2, "device_burst": 300}
    )
    worker = GatewayWorker(fast, 0)
    worker.start()
    assert worker.wait_connected(10)
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def make_device(settings: Settings, facility_id: int):
    """Provision a device (real credentials in the broker) and connect it."""
    from eldercare.registry import service as registry
    from eldercare.registry.schemas import DeviceCreate, DeviceKind
    from eldercare.simulators.device import SimDevice

    made: list[SimDevice] = []

    def make(
        kind: DeviceKind = "sos_button",
        *,
        connect: bool = True,
        retry_s: float = 1.0,
        cameras: list[str] | None = None,
    ) -> SimDevice:
        with psycopg.connect(settings.database_url) as conn:
            cred = registry.provision_device(
                conn,
                settings,
                DeviceCreate(kind=kind, facility_id=facility_id, cameras=cameras or []),
            )
        dev = SimDevice.from_credentials(cred, retry_s=retry_s)
        dev.credentials = cred  # type: ignore[attr-defined]  # tests impersonate devices
        made.append(dev)
        if connect:
            dev.connect()
        return dev

    yield make
    for dev in made:
        dev.close()
