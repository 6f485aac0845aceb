"""Shared fixtures: real nats-servers on free loopback ports, fresh plugin sets, CLI runner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NATS

from jetplug.embedded import EmbeddedServer


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """One JetStream server for the whole session (tests use unique stream names)."""
    server = EmbeddedServer(store_dir=tmp_path_factory.mktemp("nats-session"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A JetStream server of this test alone (for kills, restarts, config changes)."""
    server = EmbeddedServer(store_dir=tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def nc(nats_server: EmbeddedServer) -> AsyncIterator[NATS]:
    """A plain nats-py client on the session server (the test's own view of the broker)."""
    client = await nats.connect(nats_server.url)
    yield client
    await client.close()


async def wait_for(predicate, timeout: float = 10.0, interval: float = 0.02) -> None:  # type: ignore[no-untyped-def]
    """Wait until ``predicate()`` (sync or async) is true; fail the test after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)
