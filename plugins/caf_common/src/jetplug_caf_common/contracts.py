"""The Router <-> CAF message contracts as msgspec types, and one validating decoder.

:func:`decode` turns raw bytes plus NATS headers into a typed message in one pass, or raises
:class:`ContractError` whose ``reason`` is a short DLQ code and whose text names the field path
(``status: expected one of "success", "error", "timeout", "cancelled", got "done"``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, NoReturn, TypeVar

import msgspec

HEADER_FIELDS = ("tenant_id", "trace_id", "version")
MAX_TENANT_BYTES = 256
SUPPORTED_VERSION = "1"

TenantId = Annotated[str, msgspec.Meta(min_length=1, max_length=256)]
ProviderId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
Percent = Annotated[int, msgspec.Meta(ge=0, le=100)]
NonNegative = Annotated[float, msgspec.Meta(ge=0)]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
TraceId = Annotated[str, msgspec.Meta(min_length=1, max_length=128)]


class ContractError(ValueError):
    """A message breaks the contract. ``reason`` is the DLQ code, the text names the field."""

    def __init__(self, reason: str, error: str, field: str = "") -> None:
        self.reason = reason
        self.error = error
        self.field = field
        super().__init__(error)


class Message(msgspec.Struct, kw_only=True):
    """Base of the wire messages: unknown fields are tolerated (executors may add some)."""


# --- ExecAssignment (router -> CAF) --------------------------------------------------------------


class Executor(Message, kw_only=True):
    provider_id: ProviderId
    channel: Literal["nats", "grpc"] = "nats"
    endpoint: str | None = None


class RetryOptions(Message, kw_only=True):
    max_attempts: Annotated[int, msgspec.Meta(ge=1)] = 2
    backoff_ms: Annotated[int, msgspec.Meta(ge=0)] = 200


class Options(Message, kw_only=True):
    priority: Percent | None = None
    deadline_ms: Annotated[int, msgspec.Meta(ge=1)] | None = None
    retry: RetryOptions = msgspec.field(default_factory=RetryOptions)


class Correlation(Message, kw_only=True):
    trace_id: str | None = None


class Decision(Message, kw_only=True):
    provider_id: ProviderId
    priority: Percent
    expected_latency_ms: Annotated[int, msgspec.Meta(ge=0, le=3_600_000)]
    expected_cost: NonNegative
    reason: Literal["weighted", "sticky", "fallback", "best_score"]
    metadata: dict[str, Any] | None = None


class ExecAssignment(Message, kw_only=True):
    """What the router hands to an executor; ``assignment_id`` is also the ``Nats-Msg-Id``."""

    version: Literal["1"] = "1"
    assignment_id: NonEmpty
    request_id: NonEmpty
    tenant_id: TenantId
    executor: Executor
    job: dict[str, Any]
    options: Options = msgspec.field(default_factory=Options)
    correlation: Correlation = msgspec.field(default_factory=Correlation)
    decision: Decision
    metadata: dict[str, Any] = msgspec.field(default_factory=dict)


# --- ExecAssignmentAck (CAF -> router) -----------------------------------------------------------


class ExecAssignmentAck(Message, kw_only=True):
    """The executor accepted, rejected or failed to take an assignment."""

    assignment_id: NonEmpty
    status: Literal["accepted", "rejected", "error"]
    tenant_id: TenantId
    message: str | None = None
    request_id: str | None = None
    trace_id: str | None = None
    acknowledged_at: int | None = None
    version: Literal["1"] | None = None


# --- ExecResult (CAF -> router) ------------------------------------------------------------------


class ResultJob(Message, kw_only=True):
    type: str | None = None


class ExecResult(Message, kw_only=True):
    """The outcome of an executed assignment."""

    assignment_id: NonEmpty
    status: Literal["success", "error", "timeout", "cancelled"]
    tenant_id: TenantId
    request_id: str | None = None
    provider_id: str | None = None
    job: ResultJob | None = None
    latency_ms: NonNegative | None = None
    cost: NonNegative | None = None
    trace_id: TraceId | None = None
    timestamp: int | None = None
    error_code: str | None = None
    error_message: str | None = None
    run_id: str | None = None
    flow_id: str | None = None
    step_id: str | None = None
    version: Literal["1"] | None = None

    def __post_init__(self) -> None:
        present = [n for n in ("run_id", "flow_id", "step_id") if getattr(self, n) is not None]
        if present and len(present) != 3:
            missing = sorted({"run_id", "flow_id", "step_id"} - set(present))
            raise ValueError(
                f"run_id, flow_id and step_id come together; missing {', '.join(missing)}"
            )


# --- UsageEvent (router -> billing) --------------------------------------------------------------


class UsageEvent(Message, kw_only=True):
    """One billed result; absent values are omitted, never written as "undefined"."""

    version: Literal["1"]
    tenant_id: str
    assignment_id: str
    status: str
    timestamp: int
    provider_id: str | None = None
    event_type: str | None = None
    latency_ms: float | None = None
    cost: float | None = None
    trace_id: str | None = None
    request_id: str | None = None


T = TypeVar("T", bound=Message)

_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_decoder = msgspec.json.Decoder()
_encoder = msgspec.json.Encoder()


def field_path(raw_path: str) -> str:
    """``.executor.provider_id`` / ``[0]`` from msgspec into ``executor.provider_id``."""
    return raw_path.lstrip(".")


def explain(exc: msgspec.ValidationError) -> tuple[str, str]:
    """``(field path, message)`` from a msgspec validation error, in the project's wording."""
    text = str(exc)
    match = _AT.search(text)
    path = field_path(match.group("path")) if match else ""
    detail = text[: match.start()] if match else text
    detail = detail.replace("`", "")
    if detail.startswith("Object missing required field"):
        name = detail.split("field", 1)[1].strip()
        path = f"{path}.{name}" if path else name
        return path, f"{path}: required field is missing"
    if detail.startswith("Expected"):
        detail = "e" + detail[1:]
    if detail.startswith("Invalid enum value"):
        detail = "not an allowed value: " + detail.split("value", 1)[1].strip()
    return path, f"{path or 'payload'}: {detail}"


def decode(
    data: bytes, kind: type[T], headers: Mapping[str, str] | None = None, max_bytes: int = 0
) -> T:
    """Validate ``data`` as ``kind``; header values of tenant_id/trace_id/version win.

    :raises ContractError: ``too_large``, or ``invalid_payload`` naming the field path;
        an unknown version is ``unsupported_version``.
    """
    if max_bytes and len(data) > max_bytes:
        raise ContractError("too_large", f"payload is {len(data)} bytes, the limit is {max_bytes}")
    try:
        obj = _decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise ContractError("invalid_payload", f"payload: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ContractError(
            "invalid_payload", f"payload: expected a JSON object, got {type(obj).__name__}"
        )
    if headers:
        for name in HEADER_FIELDS:
            value = headers.get(name)
            if value is not None and name in kind.__struct_fields__:
                obj[name] = value
    version = obj.get("version")
    if version is not None and version != SUPPORTED_VERSION:
        raise ContractError(
            "unsupported_version",
            f'version: expected "1", got {msgspec.json.encode(version).decode()}',
            "version",
        )
    try:
        message = msgspec.convert(obj, kind)
    except msgspec.ValidationError as exc:
        path, text = explain(exc)
        _raise(text, path)
    tenant = getattr(message, "tenant_id", None)
    if isinstance(tenant, str) and len(tenant.encode()) > MAX_TENANT_BYTES:
        _raise(
            f"tenant_id: at most {MAX_TENANT_BYTES} bytes, got {len(tenant.encode())}", "tenant_id"
        )
    return message


def _raise(message: str, path: str) -> NoReturn:
    raise ContractError("invalid_payload", message, path)


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def encode(message: Message) -> bytes:
    """Compact JSON of a contract message: every set value, absent (None) ones omitted, never
    written as "undefined"."""
    return _encoder.encode(_drop_none(msgspec.to_builtins(message)))
