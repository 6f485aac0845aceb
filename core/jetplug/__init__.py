"""jetplug: a plugin host for NATS JetStream integrations.

Plugins import everything they need from here: the ``hookimpl`` marker, declaration types,
decisions and errors.
"""

from __future__ import annotations

from .errors import (
    ConfigError,
    ConnectError,
    JetplugError,
    PluginLoadError,
    PublishError,
    StartupError,
)
from .hookspecs import hookimpl, hookspec
from .types import (
    ACK,
    Ack,
    ConsumerSpec,
    Decision,
    KeyValueSpec,
    Nak,
    PubAck,
    Publish,
    StreamSpec,
    Term,
)

__version__ = "0.1.0"

__all__ = [
    "ACK",
    "Ack",
    "ConfigError",
    "ConnectError",
    "ConsumerSpec",
    "Decision",
    "JetplugError",
    "KeyValueSpec",
    "Nak",
    "PluginLoadError",
    "PubAck",
    "Publish",
    "PublishError",
    "StartupError",
    "StreamSpec",
    "Term",
    "__version__",
    "hookimpl",
    "hookspec",
]
