"""From a decide request and a route decision to the ExecAssignment, its headers and deadline.

Pure functions, no I/O: everything here runs before anything is published, so every invalid input
is rejected with :class:`InvalidInput` naming the field path (``request.tenant_id``,
``decision.expected_latency_ms``) and nothing reaches the stream.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import msgspec
from jetplug_caf_common.contracts import ExecAssignment, explain

from .config import CafAdapterSettings

VERSION = "1"
#: ``request_id`` values that are what a missing value turns into in sloppy encoders
PLACEHOLDER_IDS = frozenset({"undefined", "null", "none", "nil"})
_HEX32 = re.compile(r"[0-9a-f]{32}")
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_UUID4 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")

Percent = Annotated[int, msgspec.Meta(ge=0, le=100)]


class InvalidInput(ValueError):
    """The request or decision breaks the contract; ``field`` is the path of the culprit."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}" if field else problem)


# --- the shapes of the input, for one-pass validation -------------------------------------------


class _Task(msgspec.Struct, kw_only=True):
    type: Annotated[str, msgspec.Meta(min_length=1)]
    payload_ref: str | None = None


class _Retry(msgspec.Struct, kw_only=True):
    max_attempts: Annotated[int, msgspec.Meta(ge=1)] | None = None
    backoff_ms: Annotated[int, msgspec.Meta(ge=0)] | None = None


class _Options(msgspec.Struct, kw_only=True):
    priority: Percent | None = None
    deadline_ms: Annotated[int, msgspec.Meta(ge=1)] | None = None
    retry: _Retry | None = None


class _Request(msgspec.Struct, kw_only=True):
    tenant_id: str
    request_id: str
    task: _Task
    options: _Options | None = None
    trace_id: Annotated[str, msgspec.Meta(min_length=1, max_length=128)] | None = None
    metadata: dict[str, Any] | None = None


class _Decision(msgspec.Struct, kw_only=True):
    provider_id: str
    priority: Percent
    expected_latency_ms: Annotated[int, msgspec.Meta(ge=0, le=3_600_000)]
    expected_cost: Annotated[float, msgspec.Meta(ge=0)]
    reason: Literal["weighted", "sticky", "fallback", "best_score"]
    metadata: dict[str, Any] | None = None


@dataclass(frozen=True)
class Built:
    """An assignment ready to publish."""

    #: the validated message
    assignment: ExecAssignment
    #: its JSON, every field explicit (``version`` included)
    data: bytes
    #: NATS headers (``Nats-Msg-Id`` is added by the publisher from ``assignment_id``)
    headers: dict[str, str]
    deadline_ms: int

    @property
    def assignment_id(self) -> str:
        """The assignment's id (also its ``Nats-Msg-Id``)."""
        return self.assignment.assignment_id

    @property
    def tenant_id(self) -> str:
        """The tenant the assignment belongs to."""
        return self.assignment.tenant_id


# --- rules ---------------------------------------------------------------------------------------


def compute_deadline(
    expected_latency_ms: int, multiplier: float = 5.0, min_ms: int = 5000, max_ms: int = 60000
) -> int:
    """``clamp(expected_latency_ms * multiplier, min_ms, max_ms)`` in whole milliseconds.

    With the defaults: 100 -> 5000, 1000 -> 5000, 2000 -> 10000, 5000 -> 25000, 15000 -> 60000.
    """
    return int(min(max_ms, max(min_ms, expected_latency_ms * multiplier)))


def merge_options(
    request_options: _Options | None,
    decision_priority: int,
    deadline_ms: int,
    settings: CafAdapterSettings,
) -> dict[str, Any]:
    """The assignment's ``options``: defaults, with every key the request sets winning.

    Defaults are ``priority`` (the decision's), ``deadline_ms`` (computed) and ``retry``
    (``executor_max_attempts`` / ``executor_backoff_ms``). ``retry`` merges key by key, so a
    request that sets only ``retry.max_attempts`` keeps the default ``backoff_ms``.
    """
    opts = request_options or _Options()
    retry = opts.retry or _Retry()
    return {
        "priority": decision_priority if opts.priority is None else opts.priority,
        "deadline_ms": deadline_ms if opts.deadline_ms is None else opts.deadline_ms,
        "retry": {
            "max_attempts": settings.executor_max_attempts
            if retry.max_attempts is None
            else retry.max_attempts,
            "backoff_ms": settings.executor_backoff_ms
            if retry.backoff_ms is None
            else retry.backoff_ms,
        },
    }


def trace_id_for_traceparent(trace_id: str | None) -> str:
    """The 32-hex W3C trace id: the request's trace id when it is one (32 hex chars, or a UUID
    whose dashes are dropped), else a new random one. All zeros is invalid in W3C, so it is
    replaced too."""
    if trace_id:
        candidate = trace_id.lower()
        if _UUID.fullmatch(candidate):
            candidate = candidate.replace("-", "")
        if _HEX32.fullmatch(candidate) and candidate != "0" * 32:
            return candidate
    return _nonzero_hex(16)


def traceparent(trace_id: str | None) -> str:
    """A W3C ``traceparent`` header value: ``00-<32 hex trace>-<16 hex span>-01``."""
    return f"00-{trace_id_for_traceparent(trace_id)}-{_nonzero_hex(8)}-01"


def _nonzero_hex(size: int) -> str:
    while True:
        value = os.urandom(size).hex()
        if value != "0" * (2 * size):
            return value


def is_uuid4(value: str) -> bool:
    """Whether ``value`` is a lowercase or uppercase UUID version 4 in its canonical form."""
    return bool(_UUID4.fullmatch(value.lower()))


# --- validation ---------------------------------------------------------------------------------


def _convert(value: Any, model: type[Any], prefix: str) -> Any:
    if not isinstance(value, Mapping):
        raise InvalidInput(prefix, f"expected an object, got {_kind(value)}")
    try:
        return msgspec.convert(dict(value), model, strict=True)
    except msgspec.ValidationError as exc:
        path, message = explain(exc)
        detail = message[len(path) + 2 :] if path else message.split(": ", 1)[-1]
        raise InvalidInput(f"{prefix}.{path}" if path else prefix, detail) from None


def _kind(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _check_bytes(value: str, field: str, most: int) -> None:
    size = len(value.encode("utf-8"))
    if not 1 <= size <= most:
        raise InvalidInput(field, f"must be 1-{most} bytes, got {size}")


def _check_header_safe(value: str, field: str) -> None:
    """Header values cannot carry control characters (a CR/LF would forge headers)."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise InvalidInput(field, "must not contain control characters (it is sent as a header)")


def _check_json(value: Any, field: str) -> None:
    try:
        msgspec.json.encode(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidInput(field, f"not representable as JSON ({exc})") from None


def validate(request: Any, decision: Any) -> tuple[_Request, _Decision]:
    """Check both inputs against the contract; :class:`InvalidInput` names the first problem."""
    req: _Request = _convert(request, _Request, "request")
    dec: _Decision = _convert(decision, _Decision, "decision")
    _check_bytes(req.tenant_id, "request.tenant_id", 256)
    _check_header_safe(req.tenant_id, "request.tenant_id")
    if req.trace_id is not None:
        _check_header_safe(req.trace_id, "request.trace_id")
    if not req.request_id.strip():
        raise InvalidInput("request.request_id", "must not be empty")
    if req.request_id.strip().lower() in PLACEHOLDER_IDS:
        raise InvalidInput("request.request_id", f"{req.request_id!r} is a placeholder, not an id")
    _check_bytes(dec.provider_id, "decision.provider_id", 128)
    _check_json(dict(request["task"]), "request.task")
    if req.metadata is not None:
        _check_json(req.metadata, "request.metadata")
    if dec.metadata is not None:
        _check_json(dec.metadata, "decision.metadata")
    return req, dec


def build(
    request: Mapping[str, Any],
    decision: Mapping[str, Any],
    settings: CafAdapterSettings,
    assignment_id: str,
) -> Built:
    """Validate, compute the deadline, merge options and produce the message and its headers.

    :param assignment_id: a UUID v4 (new per assignment; a caller retrying passes the same one).
    :raises InvalidInput: naming the field; nothing has been published.
    """
    if not isinstance(assignment_id, str) or not is_uuid4(assignment_id):
        raise InvalidInput("assignment_id", f"expected a UUID v4, got {assignment_id!r}")
    req, dec = validate(request, decision)
    computed = compute_deadline(
        dec.expected_latency_ms,
        settings.deadline_multiplier,
        settings.deadline_min_ms,
        settings.deadline_max_ms,
    )
    options = merge_options(req.options, dec.priority, computed, settings)
    executor: dict[str, Any] = {
        "provider_id": dec.provider_id,
        "channel": settings.executor_channel,
    }
    if settings.executor_endpoint:
        executor["endpoint"] = settings.executor_endpoint
    decision_out: dict[str, Any] = {
        "provider_id": dec.provider_id,
        "priority": dec.priority,
        "expected_latency_ms": dec.expected_latency_ms,
        "expected_cost": dec.expected_cost,
        "reason": dec.reason,
    }
    if dec.metadata:
        decision_out["metadata"] = dec.metadata
    wire: dict[str, Any] = {
        "version": VERSION,
        "assignment_id": assignment_id.lower(),
        "request_id": req.request_id,
        "tenant_id": req.tenant_id,
        "executor": executor,
        "job": dict(request["task"]),
        "options": options,
        "correlation": {"trace_id": req.trace_id} if req.trace_id else {},
        "decision": decision_out,
        "metadata": dict(req.metadata or {}),
    }
    try:
        assignment = msgspec.convert(wire, ExecAssignment)
    except msgspec.ValidationError as exc:  # a rule of the shared contract the input checks missed
        path, message = explain(exc)
        raise InvalidInput(f"assignment.{path}" if path else "assignment", message) from None
    headers = {
        "tenant_id": req.tenant_id,
        "version": VERSION,
        "traceparent": traceparent(req.trace_id),
    }
    if req.trace_id:
        headers["trace_id"] = req.trace_id
    return Built(assignment, msgspec.json.encode(wire), headers, int(options["deadline_ms"]))
