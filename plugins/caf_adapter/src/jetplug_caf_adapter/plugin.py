"""Hook implementations of ``caf_adapter`` (thin: the logic lives in sibling modules)."""

from __future__ import annotations

from jetplug import hookimpl

from .config import CafAdapterSettings


@hookimpl
def register_config_schema() -> type[CafAdapterSettings]:
    """The ``[plugins.caf_adapter]`` table."""
    return CafAdapterSettings
