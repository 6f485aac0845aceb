"""Test kit for jetplug plugins: a real nats-server, a host running your plugins, and helpers.

Opt in from a ``conftest.py`` with ``pytest_plugins = ["jetplug.testing"]`` (install
``jetplug[testing]``). Everything runs against a real nats-server with JetStream on a free
127.0.0.1 port; nothing is mocked.

Fixtures: ``nats_server`` (session scoped), ``fresh_server`` (per test, for restarts), ``nc`` (a
plain nats-py client). Helpers: :func:`running_host`, :class:`HostHarness`, :func:`wait_until`.
"""

from __future__ import annotations

import asyncio
import inspect
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from .config import build_config, parse_toml
from .embedded import EmbeddedServer
from .events import Event, MessageHandled
from .hookspecs import hookimpl
from .host import Host
from .plugins import Selection, discover
from .types import PubAck


async def wait_until(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01, message: str = ""
) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy; return that value.

    Raises AssertionError after ``timeout`` seconds, with ``message`` if given.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(message or f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


class _Recorder:
    """Internal plugin that records every telemetry event."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.changed = asyncio.Event()

    @hookimpl
    def track_event(self, event: Event) -> None:
        self.events.append(event)
        self.changed.set()


class HostHarness:
    """A running host plus what a test needs to drive and observe it."""

    def __init__(self, host: Host, recorder: _Recorder) -> None:
        self.host = host
        self._recorder = recorder

    @property
    def events(self) -> list[Event]:
        """Every telemetry event so far, in order."""
        return self._recorder.events

    def events_of(self, kind: type[Event]) -> list[Any]:
        """Events of one class."""
        return [e for e in self._recorder.events if isinstance(e, kind)]

    async def publish(self, subject: str, data: bytes, headers: Mapping[str, str] | None = None,
                      msg_id: str = "") -> PubAck:
        """Publish through the host's publisher and return the pub-ack."""
        return await self.host.publisher.publish(subject, data, headers=dict(headers or {}), msg_id=msg_id)

    async def wait_event(self, predicate: Callable[[Any], bool], timeout: float = 10.0) -> Any:
        """The first recorded event (past or future) for which ``predicate`` is true."""
        def find() -> Any:
            return next((e for e in self._recorder.events if predicate(e)), None)

        return await wait_until(find, timeout, message="no matching event")

    async def outcome(self, stream_seq: int, consumer: str = "", timeout: float = 10.0,
                      final: bool = True) -> MessageHandled:
        """The :class:`MessageHandled` of a stream sequence; with ``final``, ack or term only."""
        finals = ("ack", "term") if final else ("ack", "term", "nak", "dropped", "released")

        def match(e: Any) -> bool:
            return (isinstance(e, MessageHandled) and e.stream_seq == stream_seq
                    and (not consumer or e.consumer == consumer) and e.outcome in finals)

        result: MessageHandled = await self.wait_event(match, timeout)
        return result


def _config_data(config: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(config, str):
        return parse_toml(config)
    import copy

    return copy.deepcopy(dict(config))


@asynccontextmanager
async def running_host(
    *plugins: object | tuple[str, object],
    config: str | Mapping[str, Any] = "",
    server: EmbeddedServer | None = None,
    autoload: bool = False,
    environ: Mapping[str, str] | None = None,
) -> AsyncIterator[HostHarness]:
    """Run a host with ``plugins`` (objects, or ``(name, object)``) until the block ends.

    :param config: TOML text or a dict, validated like a real config file.
    :param server: the nats-server to use; ``[nats] servers`` is set to it.
    :param autoload: also load installed entry-point plugins (off: only the ones given).
    """
    data = _config_data(config)
    if server is not None:
        data.setdefault("nats", {})["servers"] = [server.url]
    data.setdefault("host", {}).setdefault("data_dir", tempfile.mkdtemp(prefix="jetplug-test-"))
    named = [p if isinstance(p, tuple) else (getattr(p, "__name__", type(p).__name__).split(".")[-1], p)
             for p in plugins]
    recorder = _Recorder()
    registry = discover(Selection(), extra=[*named, ("test_recorder", recorder)], autoload=autoload)
    models = registry.config_schemas()
    cfg = build_config(data, models, environ=environ or {}, known_plugins=set(registry.records))
    problems = registry.validate_config(cfg)
    if problems:
        from .errors import ConfigError

        raise ConfigError(problems)
    host = Host(cfg, registry)
    try:
        await host.start()
        yield HostHarness(host, recorder)
    finally:
        await host.shutdown()


# --- pytest fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """One nats-server with JetStream for the whole session; use unique stream names per test."""
    server = EmbeddedServer(store_dir=tmp_path_factory.mktemp("nats-session"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A nats-server of this test alone (kill, restart, other settings)."""
    server = EmbeddedServer(store_dir=tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def nc(nats_server: EmbeddedServer) -> AsyncIterator[Any]:
    """A plain nats-py client connected to ``nats_server``: the test's own view of the broker."""
    import nats

    client = await nats.connect(nats_server.url)
    yield client
    await client.close()


Predicate = Callable[[], "bool | Awaitable[bool]"]

__all__ = ["HostHarness", "running_host", "wait_until"]
