"""W3C trace context across jetplug hops, without plugin code.

When a message carries a ``traceparent`` header, its handler runs with that trace as the current
one; every publish made while handling it (through the host's publisher) gets a ``traceparent``
that continues the trace with a new span id. A ``traceparent`` the caller set explicitly is
kept. A publish outside any trace gets none (with OpenTelemetry configured, see
:mod:`jetplug.otel`, the producer span's context is written instead).
"""

from __future__ import annotations

import contextvars
import os
import re

HEADER = "traceparent"
_VALID = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

#: ``(trace_id, parent span id, flags)`` of the message being handled, if it had one
current: contextvars.ContextVar[tuple[str, str, str] | None] = contextvars.ContextVar(
    "jetplug_trace", default=None
)


def parse(value: str | None) -> tuple[str, str, str] | None:
    """``(trace_id, span_id, flags)`` of a valid traceparent, else None (all-zero ids are
    invalid)."""
    if not value:
        return None
    match = _VALID.match(value.strip().lower())
    if not match or match.group(1) == "ff":
        return None
    _, trace_id, span_id, flags = match.groups()
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return trace_id, span_id, flags


def new_span_id() -> str:
    """16 random hex digits."""
    return os.urandom(8).hex()


def outgoing(explicit: str | None = None) -> str | None:
    """The traceparent to write on a publish: the caller's, a child of the current trace, or
    None when there is no trace to continue (nothing is invented for untraced work)."""
    if explicit and parse(explicit):
        return explicit
    ctx = current.get()
    if ctx is not None:
        trace_id, _, flags = ctx
        return f"00-{trace_id}-{new_span_id()}-{flags}"
    return None


def enter(headers: dict[str, str]) -> None:
    """Make the message's trace (if any) current in this context."""
    current.set(parse(headers.get(HEADER)) if headers else None)
