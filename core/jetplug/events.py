"""Telemetry events: one frozen dataclass per fact, named in the past tense.

Every event reaches plugins through the ``track_event`` hook. ``Event.name`` is a stable snake
case identifier used in logs and metrics.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import ClassVar


@dataclass(frozen=True)
class Event:
    """Base of every telemetry event."""

    name: ClassVar[str] = "event"
    at: float = field(default_factory=time.time, kw_only=True)


@dataclass(frozen=True)
class ConnectionChanged(Event):
    """The NATS connection changed state.

    ``state`` is one of ``connected``, ``disconnected``, ``reconnected``, ``lame_duck``,
    ``closed``, ``error``; ``detail`` is a secret-free description (server URL or error text).
    """

    name: ClassVar[str] = "connection_changed"
    state: str
    detail: str = ""


@dataclass(frozen=True)
class MessageHandled(Event):
    """A message reached its outcome (``ack``, ``nak``, ``term``, ``dropped``) after
    ``duration`` s."""

    name: ClassVar[str] = "message_handled"
    consumer: str
    stream: str
    stream_seq: int
    deliveries: int
    outcome: str
    duration: float
    plugin: str = ""
    reason: str = ""
    error: str = ""


@dataclass(frozen=True)
class MessageRedelivered(Event):
    """A message arrived with a delivery count above 1."""

    name: ClassVar[str] = "message_redelivered"
    consumer: str
    stream: str
    stream_seq: int
    deliveries: int


@dataclass(frozen=True)
class MessageDeadLettered(Event):
    """A message was copied to the dead-letter stream (``reason`` is a short code)."""

    name: ClassVar[str] = "message_dead_lettered"
    consumer: str
    stream: str
    stream_seq: int
    deliveries: int
    reason: str
    error: str = ""
    plugin: str = ""


@dataclass(frozen=True)
class Published(Event):
    """A publish got its pub-ack (``duplicate`` = the server had it already)."""

    name: ClassVar[str] = "published"
    subject: str
    stream: str
    seq: int
    duplicate: bool
    duration: float
    attempts: int = 1
    plugin: str = ""


@dataclass(frozen=True)
class PublishFailed(Event):
    """A publish failed for good; ``kind`` is the PublishError kind."""

    name: ClassVar[str] = "publish_failed"
    subject: str
    kind: str
    error: str
    attempts: int = 1
    plugin: str = ""


@dataclass(frozen=True)
class ConsumerStateChanged(Event):
    """A consumer moved to ``running``, ``stalled``, ``recovering`` or ``stopped``."""

    name: ClassVar[str] = "consumer_state_changed"
    consumer: str
    stream: str
    state: str
    reason: str = ""


@dataclass(frozen=True)
class ProvisioningDrift(Event):
    """A declared stream/consumer differs from the server (``applied`` = manage mode fixed it)."""

    name: ClassVar[str] = "provisioning_drift"
    kind: str
    target: str
    field_name: str
    current: str
    wanted: str
    applied: bool = False
