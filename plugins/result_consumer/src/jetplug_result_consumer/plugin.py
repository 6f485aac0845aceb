"""Hook implementations of ``result_consumer`` (thin: the logic lives in sibling modules)."""

from __future__ import annotations

from jetplug import hookimpl

from .config import ResultConsumerSettings


@hookimpl
def register_config_schema() -> type[ResultConsumerSettings]:
    """The ``[plugins.result_consumer]`` table."""
    return ResultConsumerSettings
