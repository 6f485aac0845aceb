"""Hook implementations of ``ack_consumer`` (thin: the logic lives in sibling modules)."""

from __future__ import annotations

from jetplug import hookimpl

from .config import AckConsumerSettings


@hookimpl
def register_config_schema() -> type[AckConsumerSettings]:
    """The ``[plugins.ack_consumer]`` table."""
    return AckConsumerSettings
