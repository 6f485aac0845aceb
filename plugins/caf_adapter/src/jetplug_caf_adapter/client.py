"""A one-off adapter on a client connection (no consumers, no startup hooks): what the CLI uses."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from jetplug.engine.provisioning import Declarations
from jetplug.host import Host

from .adapter import Adapter
from .config import PLUGIN, settings_of
from .specs import kv_spec, stream_spec

if TYPE_CHECKING:
    from jetplug.config import Config
    from jetplug.plugins import Plugins


@asynccontextmanager
async def client_adapter(config: Config, plugins: Plugins) -> AsyncIterator[Adapter]:
    """Connect like ``jetplug publish`` does, provision the adapter's own stream and bucket
    (as ``[jetstream] provision`` says: manage creates, verify checks, off trusts), and yield an
    adapter without expiry or request-reply. The connection closes when the block ends."""
    settings = settings_of(config)
    host = Host(config, plugins)
    try:
        engine = await host.open_client()
        await engine.provision(
            Declarations(
                streams=[(PLUGIN, stream_spec(settings))], buckets=[(PLUGIN, kv_spec(settings))]
            )
        )
        yield Adapter(host, settings)
    finally:
        await host.shutdown()
