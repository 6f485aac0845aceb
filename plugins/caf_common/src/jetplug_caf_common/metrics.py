"""Prometheus metrics of the CAF plugins (``jetplug_caf_*``), fed from their telemetry events.

The CAF plugins send their events through :func:`emitter`, which counts each event on the
host's registry (registered once per registry, however many CAF plugins share it) and then
hands it to ``host.emit`` like any other telemetry event::

    from jetplug_caf_common.metrics import emitter

    emit = emitter(host)          # in startup
    emit(AckProcessed(...))       # counted once, then delivered to every track_event

Labels are bounded: statuses, outcomes and kinds, never assignment, tenant or request ids.
docs/metrics.md lists every metric.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from jetplug.events import Event
from prometheus_client import CollectorRegistry, Counter, Histogram

from . import events as caf

if TYPE_CHECKING:
    from jetplug.host import Host

#: ack and end-to-end latencies, in seconds (executors may take minutes)
LATENCY_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1800.0,
)

_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, CafMetrics] = weakref.WeakKeyDictionary()
_LOCK = threading.Lock()


class CafMetrics:
    """The ``jetplug_caf_*`` instruments on one registry, and :meth:`track` to feed them."""

    def __init__(self, registry: CollectorRegistry) -> None:
        """Register every CAF metric on ``registry`` (use :meth:`on` to share one set)."""

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, labels, registry=registry)

        def histogram(name: str, doc: str) -> Histogram:
            return Histogram(name, doc, ("status",), buckets=LATENCY_BUCKETS, registry=registry)

        self.published = counter(
            "jetplug_caf_assignments_published", "Assignments stored in the stream (first time)"
        )
        self.retried = counter(
            "jetplug_caf_assignment_retries",
            "Assignment publish attempts that failed retryably and were tried again",
            ("kind",),
        )
        self.failed = counter(
            "jetplug_caf_assignments_failed",
            "Assignments not published: validation or a PublishError kind",
            ("kind",),
        )
        self.blocked = counter(
            "jetplug_caf_assignments_blocked",
            "Assignments refused by the tenant allow-list",
            ("reason",),
        )
        self.skipped = counter(
            "jetplug_caf_assignments_skipped",
            "Assignments not sent because sending is off",
            ("reason",),
        )
        self.expired = counter(
            "jetplug_caf_assignments_expired",
            "Assignments that passed their deadline without a result",
        )
        self.acks = counter(
            "jetplug_caf_acks",
            "Executor acks processed, by ack status and outcome "
            "(applied, duplicate, stale, unknown_assignment)",
            ("status", "outcome"),
        )
        self.results = counter(
            "jetplug_caf_results",
            "Executor results processed, by result status and outcome "
            "(applied, duplicate, unknown_assignment)",
            ("status", "outcome"),
        )
        self.usage = counter(
            "jetplug_caf_usage_events", "Usage events stored (billed once; duplicates not counted)"
        )
        self.duplicates = counter(
            "jetplug_caf_duplicates",
            "Duplicates recognised and not applied again, by kind (assignment, ack, result, usage)",
            ("kind",),
        )
        self.unknown = counter(
            "jetplug_caf_unknown_assignments",
            "Acks and results for assignments this side never published, by kind (ack, result)",
            ("kind",),
        )
        self.ack_latency = histogram(
            "jetplug_caf_ack_latency_seconds", "From assignment publish to the executor's ack"
        )
        self.end_to_end = histogram(
            "jetplug_caf_end_to_end_latency_seconds", "From assignment publish to the result"
        )

    @classmethod
    def on(cls, registry: CollectorRegistry) -> CafMetrics:
        """The metric set of ``registry``, registering it the first time (idempotent)."""
        with _LOCK:
            found = _BY_REGISTRY.get(registry)
            if found is None:
                found = _BY_REGISTRY[registry] = cls(registry)
            return found

    def track(self, event: Event) -> None:
        """Count one CAF event; other events are ignored."""
        e: Any = event
        cls = type(event)
        if cls is caf.AssignmentPublished:
            if e.duplicate:
                self.duplicates.labels("assignment").inc()
            else:
                self.published.inc()
        elif cls is caf.AssignmentRetried:
            self.retried.labels(e.kind).inc()
        elif cls is caf.AssignmentFailed:
            self.failed.labels(e.kind).inc()
        elif cls is caf.AssignmentBlocked:
            self.blocked.labels(e.reason).inc()
        elif cls is caf.AssignmentSkipped:
            self.skipped.labels(e.reason).inc()
        elif cls is caf.AssignmentExpired:
            self.expired.inc()
        elif cls is caf.AckProcessed:
            self._processed(e, "ack", self.acks, self.ack_latency)
        elif cls is caf.ResultProcessed:
            self._processed(e, "result", self.results, self.end_to_end)
        elif cls is caf.UsageEmitted:
            if e.duplicate:
                self.duplicates.labels("usage").inc()
            else:
                self.usage.inc()

    def _processed(self, e: Any, kind: str, total: Counter, latency: Histogram) -> None:
        total.labels(e.status, e.outcome).inc()
        if e.outcome == "duplicate":
            self.duplicates.labels(kind).inc()
            return
        if e.outcome == "unknown_assignment":
            self.unknown.labels(kind).inc()
        if e.latency_ms is not None and e.latency_ms >= 0:
            latency.labels(e.status).observe(e.latency_ms / 1000.0)


def emitter(host: Host) -> Callable[[Event], None]:
    """A function that counts a CAF event on ``host``'s metrics, then emits it as telemetry."""
    metrics = CafMetrics.on(host.metrics.registry)

    def emit(event: Event) -> None:
        metrics.track(event)
        host.emit(event)

    return emit


__all__ = ["LATENCY_BUCKETS", "CafMetrics", "emitter"]
