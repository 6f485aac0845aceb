"""Telemetry events of the CAF plugins (``track_event`` receives them like the host's own)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from jetplug.events import Event


@dataclass(frozen=True)
class AssignmentPublished(Event):
    """An assignment got its pub-ack (``duplicate``: the server already had this id)."""

    name: ClassVar[str] = "caf_assignment_published"
    assignment_id: str
    tenant_id: str
    stream: str
    seq: int
    duplicate: bool
    attempts: int


@dataclass(frozen=True)
class AssignmentRetried(Event):
    """A publish attempt failed with a retryable error and will be tried again."""

    name: ClassVar[str] = "caf_assignment_retried"
    assignment_id: str
    attempt: int
    kind: str


@dataclass(frozen=True)
class AssignmentFailed(Event):
    """An assignment was not published (``kind``: ``invalid`` or a PublishError kind)."""

    name: ClassVar[str] = "caf_assignment_failed"
    assignment_id: str
    kind: str
    error: str


@dataclass(frozen=True)
class AssignmentBlocked(Event):
    """The tenant is not in the allow-list; nothing was published."""

    name: ClassVar[str] = "caf_assignment_blocked"
    tenant_id: str
    reason: str = "tenant_not_allowed"


@dataclass(frozen=True)
class AssignmentSkipped(Event):
    """Assignments are switched off; nothing was published."""

    name: ClassVar[str] = "caf_assignment_skipped"
    reason: str = "disabled"


@dataclass(frozen=True)
class AssignmentExpired(Event):
    """An assignment passed its deadline without a result."""

    name: ClassVar[str] = "caf_assignment_expired"
    assignment_id: str
    tenant_id: str


@dataclass(frozen=True)
class AckProcessed(Event):
    """An ack was processed; ``outcome``: ``applied``, ``duplicate``, ``stale`` (too late to change
    the record, e.g. after ``rejected``) or ``unknown_assignment``."""

    name: ClassVar[str] = "caf_ack_processed"
    status: str
    outcome: str
    latency_ms: int | None = None


@dataclass(frozen=True)
class ResultProcessed(Event):
    """A result was processed; ``outcome``: ``applied``, ``duplicate`` or ``unknown_assignment``."""

    name: ClassVar[str] = "caf_result_processed"
    status: str
    outcome: str
    latency_ms: int | None = None


@dataclass(frozen=True)
class UsageEmitted(Event):
    """A usage event was stored (``duplicate``: the server already had it, so nothing is billed
    twice)."""

    name: ClassVar[str] = "caf_usage_emitted"
    assignment_id: str
    duplicate: bool
