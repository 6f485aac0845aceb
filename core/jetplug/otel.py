"""OpenTelemetry spans for consumed and published messages, when OpenTelemetry is installed.

Install the ``jetplug[otel]`` extra (or any ``opentelemetry-api``) and configure a tracer
provider as usual; the host then creates a CONSUMER span around every handled message (its
parent taken from the message's ``traceparent``) and a PRODUCER span for every publish (ended at
the pub-ack, with the error recorded on failure), and writes the producer span's context as the
publish's ``traceparent``. Without OpenTelemetry, :mod:`jetplug.trace` still carries the W3C
trace across hops. ``JETPLUG_OTEL=0`` switches the spans off.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

try:  # optional dependency
    from opentelemetry import context as _context
    from opentelemetry import propagate as _propagate
    from opentelemetry import trace as _trace
except ImportError:  # pragma: no cover - exercised when the extra is not installed
    _trace = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from .message import Message

INSTALLED = _trace is not None and os.environ.get("JETPLUG_OTEL", "1") != "0"
_tracer: Any = None


def active() -> bool:
    """Whether to make spans: OpenTelemetry is installed and a tracer provider is configured.

    With only the API installed (no provider), spans would be no-ops that still cost time on
    every message, so the host skips them.
    """
    if not INSTALLED:
        return False
    if _tracer is not None:
        return True
    assert _trace is not None
    provider = _trace.get_tracer_provider()
    return not isinstance(provider, _trace.ProxyTracerProvider | _trace.NoOpTracerProvider)


def _get_tracer() -> Any:
    global _tracer
    if _tracer is None:
        assert _trace is not None
        _tracer = _trace.get_tracer("jetplug")
    return _tracer


def start_consumer_span(msg: Message) -> tuple[Any, Any]:
    """Start the CONSUMER span of ``msg`` and make it current; returns ``(span, token)``."""
    assert _trace is not None
    parent = _propagate.extract(msg.headers)
    span = _get_tracer().start_span(
        f"{msg.subject} process",
        context=parent,
        kind=_trace.SpanKind.CONSUMER,
        attributes={
            "messaging.system": "nats",
            "messaging.operation.type": "process",
            "messaging.destination.name": msg.subject,
            "messaging.consumer.group.name": msg.consumer.durable,
            "messaging.nats.stream": msg.stream,
            "messaging.nats.stream_seq": msg.stream_seq,
            "messaging.nats.deliveries": msg.deliveries,
        },
    )
    token = _context.attach(_trace.set_span_in_context(span, parent))
    return span, token


def end_consumer_span(span: Any, token: Any) -> None:
    """End a CONSUMER span (the outcome is in the MessageHandled event) and restore the context."""
    span.end()
    _context.detach(token)


def start_producer_span(subject: str, headers: dict[str, str]) -> Any:
    """Start a PRODUCER span (child of the current span) and write its traceparent."""
    assert _trace is not None
    span = _get_tracer().start_span(
        f"{subject} publish",
        kind=_trace.SpanKind.PRODUCER,
        attributes={
            "messaging.system": "nats",
            "messaging.operation.type": "publish",
            "messaging.destination.name": subject,
        },
    )
    _propagate.inject(headers, context=_trace.set_span_in_context(span))
    return span


def end_producer_span(span: Any, error: BaseException | None = None, seq: int = 0) -> None:
    """End a PRODUCER span at the pub-ack (``seq``) or with the error that ended the publish."""
    assert _trace is not None
    if error is not None:
        span.record_exception(error)
        span.set_status(_trace.Status(_trace.StatusCode.ERROR, str(error)))
    else:
        span.set_attribute("messaging.nats.stream_seq", seq)
    span.end()
