"""Hook implementations of the CAF simulator (opt-in: it stays off unless named)."""

from __future__ import annotations

from typing import Any

from jetplug import ACK, ConsumerSpec, hookimpl
from jetplug.config import Config
from jetplug.host import Host
from jetplug.message import Message

from . import cli as demo_cli
from .config import SimulatorSettings
from .executor import SimulatedExecutor

#: never on by accident: enable with [plugins.caf_simulator] enabled = true or -p caf_simulator
JETPLUG_OPT_IN = True
NAME = "caf_simulator"


class _State:
    settings = SimulatorSettings()
    executor: SimulatedExecutor | None = None


_state = _State()


@hookimpl
def register_config_schema() -> type[SimulatorSettings]:
    """The ``[plugins.caf_simulator]`` table."""
    return SimulatorSettings


@hookimpl
def configure(config: Config) -> None:
    """Keep the simulator's settings."""
    _state.settings = config.plugin(NAME)


@hookimpl
def register_consumers(config: Config) -> list[ConsumerSpec]:
    """One durable pull consumer on the assignments (the stream is caf_adapter's)."""
    s: SimulatorSettings = config.plugin(NAME)
    return [
        ConsumerSpec(s.assignment_stream, s.durable, (s.assignment_subject,), in_flight=s.in_flight)
    ]


@hookimpl
def startup(host: Host) -> None:
    """Start answering with the host's publisher."""
    _state.executor = SimulatedExecutor(_state.settings, host.publisher)


@hookimpl
async def handle_message(msg: Message) -> Any:
    """Work on one assignment, then ack it (a malformed assignment is acked and ignored)."""
    if msg.consumer.owner != NAME or _state.executor is None:
        return None
    await _state.executor.work(msg.data, msg.headers)
    return ACK


@hookimpl
def register_commands(cli: Any) -> None:
    """``jetplug caf demo``."""
    demo_cli.register(cli)
