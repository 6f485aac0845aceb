"""Hook implementations of ``caf_adapter`` (thin: the logic lives in sibling modules)."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

import jetplug_caf_common.hookspecs
from jetplug import KeyValueSpec, StreamSpec, hookimpl

from .adapter import Adapter, attach, detach
from .cli import register
from .config import CafAdapterSettings, problems, settings_of
from .specs import kv_spec, stream_spec

if TYPE_CHECKING:
    import click
    from jetplug.config import Config
    from jetplug.host import Host


@hookimpl
def register_config_schema() -> type[CafAdapterSettings]:
    """The ``[plugins.caf_adapter]`` table."""
    return CafAdapterSettings


@hookimpl
def validate_config(config: Config) -> list[str]:
    """Rules spanning several keys (deadline bounds, duplicate window vs retries, ...)."""
    return problems(settings_of(config), config.core.jetstream.publish_timeout)


@hookimpl
def register_hookspecs() -> ModuleType:
    """The CAF hooks (``caf_assignment_published``, ``caf_assignment_expired``, ...)."""
    return jetplug_caf_common.hookspecs


@hookimpl
def register_commands(cli: click.Group) -> None:
    """``jetplug caf assign FILE|-`` (joining a ``caf`` group another CAF plugin made, if any)."""
    register(cli)


@hookimpl
def register_streams(config: Config) -> list[StreamSpec]:
    """The assignment stream."""
    return [stream_spec(settings_of(config))]


@hookimpl
def register_kv_buckets(config: Config) -> list[KeyValueSpec]:
    """The shared assignment-record bucket."""
    return [kv_spec(settings_of(config))]


@hookimpl
async def startup(host: Host) -> None:
    """Start expiry and request-reply; make the adapter reachable through publish_assignment."""
    adapter = Adapter(host, settings_of(host.config))
    await adapter.start()
    attach(adapter)


@hookimpl
async def shutdown(host: Host) -> None:
    """Stop taking requests, finish in-flight ones, stop expiry."""
    adapter = detach(host)
    if adapter is not None:
        await adapter.stop()
