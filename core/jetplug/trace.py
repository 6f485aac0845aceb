"""W3C trace context across jetplug hops, without plugin code.

When a message carries a ``traceparent`` header, its handler runs with that trace as the current
one; every publish made while handling it (through the host's publisher) gets a ``traceparent``
that continues the trace with a new span id. A publish outside any trace starts a new trace.
A ``traceparent`` the caller set explicitly is kept.
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


def new_trace_id() -> str:
    """32 random hex digits."""
    return os.urandom(16).hex()


def outgoing(explicit: str | None = None) -> str:
    """The traceparent to write on a publish: the caller's, a child of the current trace, or new."""
    if explicit and parse(explicit):
        return explicit
    ctx = current.get()
    if ctx is not None:
        trace_id, _, flags = ctx
        return f"00-{trace_id}-{new_span_id()}-{flags}"
    ids = os.urandom(24).hex()  # one call for both ids: this runs on every publish
    return f"00-{ids[:32]}-{ids[32:]}-01"


def enter(headers: dict[str, str]) -> None:
    """Make the message's trace (if any) current in this context."""
    current.set(parse(headers.get(HEADER)) if headers else None)
