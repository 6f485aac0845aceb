"""The assignment record and how facts merge into it.

A record is a set of facts — published, acknowledged, result, expired — each written once by
whichever plugin learns it, in any order (a result may arrive before its ack, and before the
adapter wrote ``published``). The status is derived from the facts, so it can never move
backwards:

``published`` -> ``accepted`` | ``rejected`` | ``error`` -> ``completed`` | ``failed`` |
``timed_out`` | ``cancelled``; ``expired`` when a non-rejected assignment has no result by its
deadline. ``rejected`` is final (a result after a rejection is recorded and billed, but the status
stays ``rejected``). A result that arrives after expiry is recorded (and billed); the status then
shows the result and ``expired_at`` stays as evidence that it was late.

Every merge function is pure: it takes the current record (or None) and returns the new record,
or None when nothing changes (a duplicate). That is what a compare-and-set loop needs.
"""

from __future__ import annotations

import msgspec

RESULT_STATUS = {
    "success": "completed",
    "error": "failed",
    "timeout": "timed_out",
    "cancelled": "cancelled",
}
FINAL = frozenset({"rejected", "completed", "failed", "timed_out", "cancelled", "expired"})


class AssignmentRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One assignment's shared state (times are Unix milliseconds)."""

    assignment_id: str
    tenant_id: str | None = None
    request_id: str | None = None
    provider_id: str | None = None
    job_type: str | None = None
    trace_id: str | None = None
    published_at: int | None = None
    deadline_ms: int | None = None
    stream_seq: int | None = None
    ack_status: str | None = None
    ack_message: str | None = None
    acked_at: int | None = None
    result_status: str | None = None
    result_at: int | None = None
    usage_billed: bool = False
    expired_at: int | None = None

    @property
    def status(self) -> str:
        """The status the facts add up to."""
        if self.ack_status == "rejected":
            return "rejected"  # final: a result after a rejection is recorded, not a new status
        if self.result_status is not None:
            return RESULT_STATUS.get(self.result_status, self.result_status)
        if self.expired_at is not None:
            return "expired"
        if self.ack_status is not None:
            return self.ack_status
        if self.published_at is not None:
            return "published"
        return "unknown"

    @property
    def deadline_at(self) -> int | None:
        """When the executor's deadline passes, if known."""
        if self.published_at is None or self.deadline_ms is None:
            return None
        return self.published_at + self.deadline_ms

    @property
    def ack_latency_ms(self) -> int | None:
        """Published -> ack, when both are known."""
        if self.published_at is None or self.acked_at is None:
            return None
        return self.acked_at - self.published_at

    @property
    def end_to_end_ms(self) -> int | None:
        """Published -> result, when both are known."""
        if self.published_at is None or self.result_at is None:
            return None
        return self.result_at - self.published_at


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(AssignmentRecord)


def encode(record: AssignmentRecord) -> bytes:
    """The record as stored in the bucket."""
    return _encoder.encode(record)


def decode(data: bytes) -> AssignmentRecord:
    """A stored record."""
    return _decoder.decode(data)


def _fill(record: AssignmentRecord, **facts: object) -> AssignmentRecord:
    """Fill fields that are still empty; known values are never overwritten."""
    changes = {
        k: v for k, v in facts.items() if v is not None and getattr(record, k) in (None, False)
    }
    return msgspec.structs.replace(record, **changes) if changes else record


def published(
    current: AssignmentRecord | None,
    *,
    assignment_id: str,
    published_at: int,
    tenant_id: str,
    request_id: str,
    provider_id: str,
    job_type: str | None,
    trace_id: str | None,
    deadline_ms: int | None,
    stream_seq: int,
) -> AssignmentRecord | None:
    """Merge the adapter's "published" fact; None if it is already recorded."""
    base = current or AssignmentRecord(assignment_id=assignment_id)
    if base.published_at is not None:
        return None
    return _fill(
        base,
        published_at=published_at,
        tenant_id=tenant_id,
        request_id=request_id,
        provider_id=provider_id,
        job_type=job_type,
        trace_id=trace_id,
        deadline_ms=deadline_ms,
        stream_seq=stream_seq,
    )


def acknowledged(
    current: AssignmentRecord | None,
    *,
    assignment_id: str,
    status: str,
    at: int,
    message: str | None = None,
    tenant_id: str | None = None,
    request_id: str | None = None,
    trace_id: str | None = None,
) -> AssignmentRecord | None:
    """Merge an ack; None when it is a duplicate or arrives too late to matter.

    The first ack sets the status. A later, different ack replaces ``accepted`` with
    ``rejected`` or ``error`` (the executor changed its mind) as long as no result is known;
    ``rejected`` is final; anything else is ignored.
    """
    base = current or AssignmentRecord(assignment_id=assignment_id)
    previous = base.ack_status
    if previous == status:
        return None
    if previous is not None and not (previous == "accepted" and base.result_status is None):
        return None
    updated = msgspec.structs.replace(
        base, ack_status=status, ack_message=message, acked_at=base.acked_at or at
    )
    return _fill(updated, tenant_id=tenant_id, request_id=request_id, trace_id=trace_id)


def resulted(
    current: AssignmentRecord | None,
    *,
    assignment_id: str,
    status: str,
    at: int,
    tenant_id: str | None = None,
    request_id: str | None = None,
    provider_id: str | None = None,
    job_type: str | None = None,
    trace_id: str | None = None,
) -> AssignmentRecord | None:
    """Merge a result and mark its usage billed; None when a result is already recorded."""
    base = current or AssignmentRecord(assignment_id=assignment_id)
    if base.result_status is not None:
        return None
    updated = msgspec.structs.replace(base, result_status=status, result_at=at, usage_billed=True)
    return _fill(
        updated,
        tenant_id=tenant_id,
        request_id=request_id,
        provider_id=provider_id,
        job_type=job_type,
        trace_id=trace_id,
    )


def expire(
    current: AssignmentRecord | None, *, now: int, grace_ms: int = 0
) -> AssignmentRecord | None:
    """Mark expired when the deadline (plus grace) passed without a result; None otherwise."""
    if current is None or current.status in FINAL:
        return None
    deadline = current.deadline_at
    if deadline is None or now < deadline + grace_ms:
        return None
    return msgspec.structs.replace(current, expired_at=now)
