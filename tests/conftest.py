"""Shared fixtures: databases (SQLite files and a throwaway PostgreSQL),
a real CEIR server on a free port, and clients per organisation."""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from ceir.api.server import RunningServer, ServerConfig, create_server
from ceir.service.clock import ManualClock
from ceir.service.orgs import add_organisation
from ceir.storage.database import Database

from .helpers import ORGS, Client
from .pgserver import PostgresServer

SKIP_POSTGRES = os.environ.get("CEIR_SKIP_POSTGRES") == "1"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    if SKIP_POSTGRES:
        pytest.skip("CEIR_SKIP_POSTGRES=1")
    server = PostgresServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database: a SQLite file, then a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ceir.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.new_database()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'ceir.db'}"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def tokens(db_url: str) -> dict[str, str]:
    db = Database(db_url)
    db.migrate()
    try:
        return {
            name: add_organisation(db, name, kind, codes) for name, (kind, codes) in ORGS.items()
        }
    finally:
        db.dispose()


@pytest.fixture
def server(db_url: str, tokens: dict[str, str], clock: ManualClock) -> Iterator[RunningServer]:
    running = create_server(
        ServerConfig(
            db=db_url,
            address="127.0.0.1:0",
            clock=clock,
            access_log=False,
            follow_interval=0.2,
            insecure=True,
            ephemeral_signing_key=True,  # checkpoints on every feed, as in production
        )
    )
    yield running
    running.stop(grace=1)
    gc.collect()  # surface a leaked connection here, in the test that leaked it


@pytest.fixture
def channel(server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield channel


@pytest.fixture
def clients(channel: grpc.Channel, tokens: dict[str, str]) -> dict[str, Client]:
    return {name: Client(channel, token) for name, token in tokens.items()}
