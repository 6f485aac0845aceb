"""The engine: provisioning, one runner per declared consumer, the publisher, shutdown order."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from .. import otel
from ..events import Event
from ..settings import JetStreamSettings
from .advisories import AdvisoryListener
from .consumer import ConsumerRunner
from .jsapi import JsApi
from .outcomes import Outcomes
from .provisioning import NS, Change, Declarations, provision
from .publisher import Publisher

if TYPE_CHECKING:
    from ..connection import Connection
    from ..plugins import Plugins

log = logging.getLogger("jetplug.engine")


def dlq_stream_config(settings: JetStreamSettings) -> dict[str, Any]:
    """Server JSON of the host-owned dead-letter stream."""
    dlq = settings.dlq
    return {
        "name": dlq.stream,
        "subjects": [f"{dlq.subject_prefix}.>"],
        "storage": "file",
        "num_replicas": 1,
        "retention": "limits",
        "max_age": int(dlq.max_age * NS),
        "max_msgs": -1,
        "max_bytes": -1,
        "max_msg_size": -1,
        # the server refuses a duplicate window longer than max_age
        "duplicate_window": int(min(120.0, dlq.max_age or 120.0) * NS),
        "discard": "old",
        "description": "jetplug dead letters",
    }


class Engine:
    """Owns the consumers and the publisher of one host."""

    def __init__(
        self,
        connection: Connection,
        settings: JetStreamSettings,
        plugins: Plugins | None,
        emit: Callable[[Event], None],
    ) -> None:
        self.connection = connection
        self.settings = settings
        self.plugins = plugins
        self.emit = emit
        self.api = JsApi(connection.client, settings.domain, timeout=settings.publish_timeout)
        self.publisher = Publisher(
            connection,
            self.api,
            plugins,
            emit,
            timeout=settings.publish_timeout,
            attempts=settings.publish_attempts,
            retry_wait=settings.publish_retry_wait,
            retry_max_wait=settings.publish_retry_max_wait,
            window=settings.publish_window,
        )
        self.outcomes = Outcomes(self)
        self.advisories = AdvisoryListener(self)
        #: make OpenTelemetry consumer spans; decided once per host (not per message)
        self.spans = otel.active()
        self.runners: dict[str, ConsumerRunner] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self.plan: list[Change] = []

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background, keeping a reference until it ends."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def host_streams(self) -> list[tuple[str, dict[str, Any]]]:
        """Streams the host itself needs (the DLQ when enabled)."""
        if self.settings.dlq.enabled:
            return [("jetplug", dlq_stream_config(self.settings))]
        return []

    async def provision(self, decl: Declarations) -> list[Change]:
        """Provision according to ``[jetstream] provision``; see :mod:`.provisioning`."""
        self.plan = await provision(
            self.api, self.settings.provision, decl, self.emit, self.host_streams()
        )
        return self.plan

    async def start(self, decl: Declarations) -> None:
        """Start the publisher and one runner per declared consumer."""
        await self.publisher.start()
        self.outcomes = Outcomes(self)
        self.connection.on_reconnect.append(self._on_reconnect)
        for spec in decl.consumers:
            runner = ConsumerRunner(spec, self)
            self.runners[spec.key] = runner
        await self.advisories.start(list(decl.consumers))
        for runner in self.runners.values():
            await runner.start()

    async def start_publisher(self) -> None:
        """Start only the publisher (commands that publish without consuming)."""
        await self.publisher.start()

    def _on_reconnect(self) -> None:
        for runner in self.runners.values():
            runner.on_reconnected()

    async def stop(self, timeout: float) -> dict[str, int]:
        """Stop intake, let handlers finish within ``timeout``, cancel the rest.

        :return: ``{"cancelled": n}``: handlers still running at the deadline (their messages are
            not acked and come back after ack wait).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        for runner in self.runners.values():
            await runner.stop_intake(max(0.1, deadline - loop.time()))
        await self.advisories.stop()
        for runner in self.runners.values():
            await runner.wait_idle(max(0.0, deadline - loop.time()))
        cancelled = 0
        for runner in self.runners.values():
            cancelled += await runner.close()
        if cancelled:
            log.warning(
                "%d handler(s) still running after %gs were cancelled; their messages "
                "will be redelivered",
                cancelled,
                timeout,
            )
        # let the last acks and background work (releases, dead letters) go out
        if self._background:
            await asyncio.wait(list(self._background), timeout=2)
        return {"cancelled": cancelled}

    async def close(self) -> None:
        """Close the publisher (after plugins' shutdown hooks, which may still publish)."""
        await self.publisher.close()
        try:
            await asyncio.wait_for(self.connection.client.flush(), 2)
        except Exception:
            log.debug("final flush failed", exc_info=True)

    def status(self) -> list[dict[str, Any]]:
        """Every consumer's state (health and ``jetplug status``)."""
        return [r.status() for r in self.runners.values()]
