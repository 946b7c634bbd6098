from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from eldercare.config import Settings
from eldercare.storage.migrate import migrate
from tests.support import Broker, create_database, drop_database, make_settings


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = create_database()
    migrate(url)
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
    from eldercare.platform.registry import sync_broker

    with psycopg.connect(s.database_url) as conn:
        sync_broker(conn, s)
    return s


@pytest.fixture
def db(settings: Settings) -> Iterator[psycopg.Connection]:
    with psycopg.connect(settings.database_url, autocommit=True) as conn:
        yield conn


@pytest.fixture
def logdir(tmp_path: Path) -> Path:
    return tmp_path
