"""Plain data types that plugins return to the host or receive from it.

Declarations (:class:`StreamSpec`, :class:`ConsumerSpec`, :class:`KeyValueSpec`) and decisions
(:class:`Ack`, :class:`Nak`, :class:`Term`) are frozen; :class:`Publish` is deliberately mutable so
``before_publish`` hooks can add headers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import msgspec

Storage = Literal["file", "memory"]
Retention = Literal["limits", "interest", "workqueue"]


@dataclass(frozen=True)
class StreamSpec:
    """A stream a plugin needs. Durations are seconds; 0 or -1 mean "no limit" as on the server."""

    name: str
    subjects: tuple[str, ...]
    storage: Storage = "file"
    replicas: int = 1
    retention: Retention = "limits"
    max_age: float = 0.0
    max_msgs: int = -1
    max_bytes: int = -1
    max_msg_size: int = -1
    #: window in which a repeated ``Nats-Msg-Id`` is dropped; must cover the publish retry horizon
    duplicate_window: float = 120.0
    discard: Literal["old", "new"] = "old"
    description: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.subjects, str | list):
            subjects = (self.subjects,) if isinstance(self.subjects, str) else tuple(self.subjects)
            object.__setattr__(self, "subjects", subjects)


@dataclass(frozen=True)
class ConsumerSpec:
    """A durable consumer a plugin needs, and how the host runs it.

    ``in_flight`` is the one budget that bounds messages fetched but not finished, concurrent
    handlers and the server's ``max_ack_pending`` together. ``retry_delays`` are nak delays the host
    applies by delivery count (the last one repeats); they are not sent to the server as
    ``backoff`` because the server would then replace ``ack_wait`` with the first step.
    """

    stream: str
    durable: str
    filter_subjects: tuple[str, ...] = ()
    mode: Literal["pull", "push"] = "pull"
    #: push only: deliver group (queue) so several hosts share the work
    deliver_group: str = ""
    ack_wait: float = 30.0
    max_deliver: int = 5
    retry_delays: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)
    in_flight: int = 64
    deliver_policy: Literal["all", "new", "last", "last_per_subject"] = "all"
    #: send in-progress after this fraction of ack_wait, and every such interval after
    progress_fraction: float = 0.5
    #: stop sending in-progress after this many seconds of one handler run (0 = ack_wait * 10)
    max_progress: float = 0.0
    description: str = ""
    #: the plugin that declared the consumer; set by the host
    owner: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.filter_subjects, str | list):
            fs = self.filter_subjects
            object.__setattr__(self, "filter_subjects", (fs,) if isinstance(fs, str) else tuple(fs))
        if isinstance(self.retry_delays, list):
            object.__setattr__(self, "retry_delays", tuple(self.retry_delays))

    @property
    def key(self) -> str:
        """``stream/durable``, unique per server."""
        return f"{self.stream}/{self.durable}"

    def retry_delay(self, deliveries: int) -> float:
        """Nak delay for a message that has been delivered ``deliveries`` times (1 = first)."""
        if not self.retry_delays:
            return 0.0
        return self.retry_delays[min(max(deliveries, 1), len(self.retry_delays)) - 1]


@dataclass(frozen=True)
class KeyValueSpec:
    """A key-value bucket a plugin needs (provisioned like streams)."""

    bucket: str
    #: seconds a key lives; 0 = for ever
    ttl: float = 0.0
    history: int = 1
    storage: Storage = "file"
    replicas: int = 1
    description: str = ""


@dataclass(frozen=True, slots=True)
class Ack:
    """Decision: the message is done; acknowledge it."""


@dataclass(frozen=True, slots=True)
class Nak:
    """Decision: redeliver the message, after ``delay`` seconds (None = the consumer's retry
    delay)."""

    delay: float | None = None


@dataclass(frozen=True, slots=True)
class Term:
    """Decision: never redeliver; the host copies the message to the dead-letter stream.

    ``reason`` is a short code (``invalid_payload``, ``tenant_not_allowed`` ...), ``error`` the
    human-readable cause (for validation errors, naming the field path).
    """

    reason: str = "terminated"
    error: str = ""


Decision = Ack | Nak | Term
ACK = Ack()


@dataclass
class Publish:
    """One publish on its way to JetStream; ``before_publish`` hooks may change headers and
    msg_id."""

    subject: str
    data: bytes
    headers: dict[str, str] = field(default_factory=dict)
    #: ``Nats-Msg-Id``; generated when empty so a retry can never be stored twice
    msg_id: str = ""
    #: refuse the publish unless this stream stores the subject (``Nats-Expected-Stream``)
    expected_stream: str = ""
    #: name of the plugin publishing, for telemetry ("" = the host itself)
    plugin: str = ""


class PubAck(msgspec.Struct, frozen=True, gc=False):
    """The server's answer to a stored publish (immutable; built once per publish, so a cheap
    struct rather than a frozen dataclass, and not tracked by the cyclic garbage collector: its
    fields are scalars, and callers often keep thousands of them in a result list)."""

    stream: str
    seq: int
    duplicate: bool = False
    domain: str = ""
