"""Hook implementations of ``result_consumer`` (thin: the logic lives in :mod:`.handler`)."""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

import jetplug_caf_common.hookspecs
from jetplug import ConsumerSpec, Decision, KeyValueSpec, StreamSpec, hookimpl
from jetplug_caf_common.metrics import emitter
from jetplug_caf_common.store import AssignmentStore

from .config import ResultConsumerSettings
from .handler import ResultHandler

if TYPE_CHECKING:
    from jetplug.config import Config
    from jetplug.host import Host
    from jetplug.message import Message

NAME = "result_consumer"

_handler: ResultHandler | None = None


def _settings(config: Config) -> ResultConsumerSettings:
    settings: ResultConsumerSettings = config.plugin(NAME, ResultConsumerSettings)
    return settings


@hookimpl
def register_config_schema() -> type[ResultConsumerSettings]:
    """The ``[plugins.result_consumer]`` table."""
    return ResultConsumerSettings


@hookimpl
def register_hookspecs() -> ModuleType:
    """The CAF hooks (``caf_assignment_completed`` is fired here)."""
    return jetplug_caf_common.hookspecs


@hookimpl
def register_streams(config: Config) -> list[StreamSpec]:
    """The result stream (``CAF_RESULT`` on ``caf.exec.result.v1``) and the usage stream
    (``USAGE`` on ``beamline.usage.v1.metered``, 1 h duplicate window)."""
    return _settings(config).stream_specs()


@hookimpl
def register_consumers(config: Config) -> list[ConsumerSpec]:
    """The durable ``router-results`` consumer."""
    return [_settings(config).consumer_spec()]


@hookimpl
def register_kv_buckets(config: Config) -> list[KeyValueSpec]:
    """The shared assignment-state bucket."""
    return [_settings(config).bucket_spec()]


@hookimpl
def startup(host: Host) -> None:
    """Build the handler on the running host's store, publisher, telemetry and hooks."""
    global _handler
    settings = _settings(host.config)
    store = AssignmentStore(host, settings.bucket)
    _handler = ResultHandler(settings, store, host.publisher, emitter(host), host.plugins.notify)


@hookimpl
def shutdown(host: Host) -> None:
    """Drop the handler (in-flight messages have finished)."""
    global _handler
    _handler = None


@hookimpl
async def handle_message(msg: Message) -> Decision | None:
    """Decide the fate of a result delivered to this plugin's consumer."""
    if msg.consumer.owner != NAME:
        return None
    assert _handler is not None, "result_consumer: message before startup"
    return await _handler.handle(msg.data, msg.headers, msg.timestamp_ns // 1_000_000)
