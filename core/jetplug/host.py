"""The host: embedded server, connection, provisioning, plugins' startup, consumers, shutdown.

``jetplug run`` builds a :class:`Host` and awaits :meth:`Host.serve`. The order is:

1. start the embedded nats-server when ``[nats] servers`` is empty;
2. connect (fail fast with an explanation);
3. collect declarations from plugins and provision them (``[jetstream] provision``);
4. run the plugins' ``startup`` hooks;
5. start one runner per declared consumer and serve until a signal or a lost connection;
6. shutdown: stop intake, finish in-flight handlers within ``[host] shutdown_timeout``,
   the plugins' ``shutdown`` hooks, close the connection, stop the embedded server.

With ``[http] enabled = true`` the health and metrics server (:mod:`.http`) starts first, so
``/healthz`` answers while the host connects and ``/readyz`` says what it is still waiting for,
and stops last.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from nats.aio.client import Client as NATS

from .config import Config
from .connection import Connection
from .embedded import EmbeddedServer
from .engine.engine import Engine
from .engine.provisioning import Declarations, collect
from .engine.publisher import Publisher, retry_horizon
from .errors import ConnectionLostError, StartupError
from .events import Event
from .health import Health
from .http import HttpServer
from .kv import KeyValue
from .logs import register_secret
from .metrics import Metrics
from .plugins import Plugins

log = logging.getLogger("jetplug.host")


class Host:
    """One running jetplug process."""

    def __init__(self, config: Config, plugins: Plugins) -> None:
        self.config = config
        self.plugins = plugins
        self.embedded: EmbeddedServer | None = None
        self.connection: Connection | None = None
        self.engine: Engine | None = None
        self.declarations = Declarations()
        self.stop_requested = asyncio.Event()
        self.started = asyncio.Event()
        self._buckets: dict[str, KeyValue] = {}
        #: this host's Prometheus registry (``host.metrics.registry``); plugins add their metrics
        self.metrics = Metrics()
        #: loop lag, cached stream/consumer info, liveness and readiness (``/healthz``, ``/readyz``)
        self.health = Health(self)
        #: the health and metrics server while ``[http] enabled``
        self.http: HttpServer | None = None
        #: set when :meth:`shutdown` begins (``/readyz`` answers 503 from then on)
        self.stopping = False
        auth = config.core.nats.auth
        for secret in (auth.token, auth.password):
            register_secret(secret)

    # --- what plugins use ------------------------------------------------------------------------

    @property
    def publisher(self) -> Publisher:
        """The host's publisher (pub-ack, msg-id, retries, pipelining)."""
        assert self.engine is not None, "the host is not started"
        return self.engine.publisher

    @property
    def nc(self) -> NATS:
        """The raw nats-py client, for things the host does not wrap (KV, object store).

        Publish through :attr:`publisher`, never through this client.
        """
        assert self.connection is not None, "the host is not connected"
        return self.connection.client

    def kv(self, bucket: str) -> KeyValue:
        """A declared key-value bucket (see :class:`~jetplug.KeyValueSpec`)."""
        assert self.engine is not None, "the host is not started"
        store = self._buckets.get(bucket)
        if store is None:
            store = self._buckets[bucket] = KeyValue(bucket, self.engine.api, self.engine.publisher)
        return store

    def emit(self, event: Event) -> None:
        """Send a telemetry event to every plugin's ``track_event``."""
        self.plugins.track_event(event)

    @property
    def http_port(self) -> int | None:
        """The port the health and metrics server listens on (None when it does not run)."""
        return self.http.port if self.http is not None else None

    # --- lifecycle -------------------------------------------------------------------------------

    def servers(self) -> list[str]:
        """The configured servers, or the embedded server's URL."""
        if self.config.core.nats.servers:
            return list(self.config.core.nats.servers)
        assert self.embedded is not None
        return [self.embedded.url]

    def start_embedded(self) -> None:
        """Start the embedded nats-server when no servers are configured."""
        if self.config.core.nats.servers:
            return
        core = self.config.core
        store = Path(core.host.data_dir) / "nats"
        self.embedded = EmbeddedServer(
            store_dir=store.resolve(),
            port=core.embedded.port,
            http_port=core.embedded.http_port,
            sync_always=core.embedded.sync_always,
        ).start()
        log.info(
            "started embedded nats-server",
            extra={"url": self.embedded.url, "pid": self.embedded.pid, "store_dir": str(store)},
        )

    async def start(self) -> None:
        """Steps 1-5 of the module docstring; raises a JetplugError subclass on failure."""
        self.plugins.check_runnable()
        self.plugins.configure(self.config)
        self.declarations = collect(
            self.plugins.streams(self.config),
            self.plugins.consumers(self.config),
            self.plugins.kv_buckets(self.config),
        )
        self._check_duplicate_windows()
        await self._start_http()
        self.start_embedded()
        self.connection = Connection(self.config.core.nats, self.servers(), self.emit)
        await self.connection.connect()
        self.engine = Engine(self.connection, self.config.core.jetstream, self.plugins, self.emit)
        try:
            await self.engine.api.account_info()
        except Exception as exc:  # noqa: BLE001 - any failure here means no usable JetStream
            raise StartupError(f"JetStream is not available on the server: {exc}") from None
        await self.engine.provision(self.declarations)
        await self.engine.start_publisher()
        await self.plugins.startup(self)
        await self.engine.start(self.declarations)
        self.health.start_checks()
        self.started.set()
        log.info(
            "jetplug is running",
            extra={
                "plugins": ",".join(n for n in self.plugins.enabled_names()),
                "consumers": ",".join(c.key for c in self.declarations.consumers),
            },
        )

    async def open_client(self) -> Engine:
        """Connect for a one-off command: embedded server if needed, connection, publisher.

        No plugin startup and no consumers; call :meth:`shutdown` afterwards.
        """
        self.plugins.configure(self.config)
        self.declarations = collect(
            self.plugins.streams(self.config),
            self.plugins.consumers(self.config),
            self.plugins.kv_buckets(self.config),
        )
        self.start_embedded()
        self.connection = Connection(self.config.core.nats, self.servers(), self.emit)
        await self.connection.connect()
        self.engine = Engine(self.connection, self.config.core.jetstream, self.plugins, self.emit)
        await self.engine.start_publisher()
        return self.engine

    async def _start_http(self) -> None:
        """Start the loop-lag ticker and, with ``[http] enabled``, the HTTP server."""
        self.health.start_ticker()
        if self.config.core.http.enabled:
            self.http = HttpServer(self)
            await self.http.start()

    def _check_duplicate_windows(self) -> None:
        js = self.config.core.jetstream
        horizon = retry_horizon(
            js.publish_timeout,
            js.publish_attempts,
            js.publish_retry_wait,
            js.publish_retry_max_wait,
        )
        for owner, stream in self.declarations.streams:
            window = min(stream.duplicate_window, stream.max_age or stream.duplicate_window)
            if 0 < window < horizon:
                raise StartupError(
                    f"stream {stream.name!r} (plugin {owner!r}): duplicate_window "
                    f"{window:g}s (capped by max_age) is shorter than the publish retry horizon "
                    f"{horizon:g}s, so a retried publish could be stored twice"
                )

    async def serve(self) -> None:
        """Start, then wait for a stop request or a lost connection, then shut down."""
        try:
            await self.start()
            assert self.connection is not None and self.connection.lost is not None
            stop = asyncio.ensure_future(self.stop_requested.wait())
            waiting: set[asyncio.Future[Any]] = {stop, self.connection.lost}
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if self.connection.lost in done:
                stop.cancel()
                raise self.connection.lost.result()
        finally:
            await self.shutdown()

    def request_stop(self) -> None:
        """Ask :meth:`serve` to shut down (the first SIGTERM/SIGINT)."""
        self.stop_requested.set()

    async def shutdown(self) -> dict[str, Any]:
        """Step 6: ordered, time-budgeted; safe to call after a failed start."""
        self.stopping = True
        timeout = self.config.core.host.shutdown_timeout
        result: dict[str, Any] = {}
        lost = (
            self.connection is not None
            and self.connection.lost is not None
            and self.connection.lost.done()
        )
        if self.engine is not None and not lost:
            result = await self.engine.stop(timeout)
        if self.started.is_set() and not lost:
            await self.plugins.shutdown(self, timeout)
        if self.engine is not None:
            await self.engine.close()
        if self.connection is not None:
            await self.connection.close()
        await self.health.stop()
        if self.http is not None:
            await self.http.stop()
        if self.embedded is not None:
            self.embedded.stop()
        return result


def lost_error(host: Host) -> ConnectionLostError | None:
    """The ConnectionLostError that ended ``host``, if any."""
    conn = host.connection
    if conn is not None and conn.lost is not None and conn.lost.done():
        return conn.lost.result()
    return None
