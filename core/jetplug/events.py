"""Telemetry events: one frozen struct per fact, named in the past tense.

Every event reaches plugins through the ``track_event`` hook. ``Event.name`` is a stable snake
case identifier used in logs and metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar, TypeVar

import msgspec

#: attribute :func:`listens_to` sets on a ``track_event`` implementation
EVENTS_ATTRIBUTE = "jetplug_events"

F = TypeVar("F", bound=Callable[..., Any])


def listens_to(*classes: type[Event]) -> Callable[[F], F]:
    """Deliver only these event classes (and their subclasses) to a ``track_event`` hook.

    Put it under ``@hookimpl``. Without it an implementation receives every event; with it,
    the host skips the call for other classes, which matters for per-message events.
    """

    def mark(fn: F) -> F:
        setattr(fn, EVENTS_ATTRIBUTE, classes)
        return fn

    return mark


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every telemetry event (a frozen ``msgspec.Struct``: cheap to build per message).

    Subclass it for a plugin's own events, with ``frozen=True, kw_only=True`` and a ``name``.
    """

    name: ClassVar[str] = "event"
    at: float = msgspec.field(default_factory=time.time)


class ConnectionChanged(Event, frozen=True, kw_only=True):
    """The NATS connection changed state.

    ``state`` is one of ``connected``, ``disconnected``, ``reconnected``, ``lame_duck``,
    ``closed``, ``error``; ``detail`` is a secret-free description (server URL or error text).
    """

    name: ClassVar[str] = "connection_changed"
    state: str
    detail: str = ""


class MessageHandled(Event, frozen=True, kw_only=True):
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


class MessageRedelivered(Event, frozen=True, kw_only=True):
    """A message arrived with a delivery count above 1."""

    name: ClassVar[str] = "message_redelivered"
    consumer: str
    stream: str
    stream_seq: int
    deliveries: int


class MessageDeadLettered(Event, frozen=True, kw_only=True):
    """A message was copied to the dead-letter stream (``reason`` is a short code)."""

    name: ClassVar[str] = "message_dead_lettered"
    consumer: str
    stream: str
    stream_seq: int
    deliveries: int
    reason: str
    error: str = ""
    plugin: str = ""


class Published(Event, frozen=True, kw_only=True):
    """A publish got its pub-ack (``duplicate`` = the server had it already)."""

    name: ClassVar[str] = "published"
    subject: str
    stream: str
    seq: int
    duplicate: bool
    duration: float
    attempts: int = 1
    plugin: str = ""


class PublishFailed(Event, frozen=True, kw_only=True):
    """A publish failed for good; ``kind`` is the PublishError kind."""

    name: ClassVar[str] = "publish_failed"
    subject: str
    kind: str
    error: str
    attempts: int = 1
    plugin: str = ""


class ConsumerStateChanged(Event, frozen=True, kw_only=True):
    """A consumer moved to ``running``, ``stalled``, ``recovering`` or ``stopped``."""

    name: ClassVar[str] = "consumer_state_changed"
    consumer: str
    stream: str
    state: str
    reason: str = ""


class ProvisioningDrift(Event, frozen=True, kw_only=True):
    """A declared stream/consumer differs from the server (``applied`` = manage mode fixed it)."""

    name: ClassVar[str] = "provisioning_drift"
    kind: str
    target: str
    field_name: str
    current: str
    wanted: str
    applied: bool = False
