"""Telemetry events of the CAF plugins (``track_event`` receives them like the host's own)."""

from __future__ import annotations

from typing import ClassVar

from jetplug.events import Event


class AssignmentPublished(Event, frozen=True, kw_only=True):
    """An assignment got its pub-ack (``duplicate``: the server already had this id)."""

    name: ClassVar[str] = "caf_assignment_published"
    assignment_id: str
    tenant_id: str
    stream: str
    seq: int
    duplicate: bool
    attempts: int


class AssignmentRetried(Event, frozen=True, kw_only=True):
    """A publish attempt failed with a retryable error and will be tried again."""

    name: ClassVar[str] = "caf_assignment_retried"
    assignment_id: str
    attempt: int
    kind: str


class AssignmentFailed(Event, frozen=True, kw_only=True):
    """An assignment was not published (``kind``: ``invalid`` or a PublishError kind)."""

    name: ClassVar[str] = "caf_assignment_failed"
    assignment_id: str
    kind: str
    error: str


class AssignmentBlocked(Event, frozen=True, kw_only=True):
    """The tenant is not in the allow-list; nothing was published."""

    name: ClassVar[str] = "caf_assignment_blocked"
    tenant_id: str
    reason: str = "tenant_not_allowed"


class AssignmentSkipped(Event, frozen=True, kw_only=True):
    """Assignments are switched off; nothing was published."""

    name: ClassVar[str] = "caf_assignment_skipped"
    reason: str = "disabled"


class AssignmentExpired(Event, frozen=True, kw_only=True):
    """An assignment passed its deadline without a result."""

    name: ClassVar[str] = "caf_assignment_expired"
    assignment_id: str
    tenant_id: str


class AckProcessed(Event, frozen=True, kw_only=True):
    """An ack was processed; ``outcome``: ``applied``, ``duplicate``, ``stale`` (too late to change
    the record, e.g. after ``rejected``) or ``unknown_assignment``."""

    name: ClassVar[str] = "caf_ack_processed"
    status: str
    outcome: str
    latency_ms: int | None = None


class ResultProcessed(Event, frozen=True, kw_only=True):
    """A result was processed; ``outcome``: ``applied``, ``duplicate`` or ``unknown_assignment``."""

    name: ClassVar[str] = "caf_result_processed"
    status: str
    outcome: str
    latency_ms: int | None = None


class UsageEmitted(Event, frozen=True, kw_only=True):
    """A usage event was stored (``duplicate``: the server already had it, so nothing is billed
    twice)."""

    name: ClassVar[str] = "caf_usage_emitted"
    assignment_id: str
    duplicate: bool
