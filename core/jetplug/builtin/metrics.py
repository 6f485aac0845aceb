"""Built-in plugin: the host's Prometheus metrics (``jetplug_*``) on ``host.metrics.registry``.

Two sources, one collector (:class:`HostCollector`) registered on the host's registry:

* telemetry events (``track_event``) update plain counters in :class:`HostStats`: per message a
  dict lookup, an integer increment and a bucket index (a ``bisect``), no locks and no
  prometheus-client objects on the hot path;
* at scrape time the collector turns those counters into counter and histogram families and
  reads the rest from the host: connection state, consumer state and in-flight (the runners),
  lag / ack pending / redelivered / waiting (the consumer info the host checks every
  ``[http] check_interval``), stream sizes, event-loop lag and readiness.

Everything runs on the host's event loop, scrapes included, so the counters need no lock. Every
label has bounded cardinality (stream and consumer names, outcomes, reasons, kinds); message ids
and subjects never become labels. docs/metrics.md lists every metric.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..events import (
    ConnectionChanged,
    ConsumerStateChanged,
    Event,
    MessageDeadLettered,
    MessageRedelivered,
    PublishFailed,
    listens_to,
)
from ..hookspecs import hookimpl
from ..stats import DURATION_BUCKETS, Latency, PublishStats

if TYPE_CHECKING:
    from ..host import Host

#: consumer states (one label value each in ``jetplug_consumer_state``)
CONSUMER_STATES = ("starting", "running", "stalled", "recovering", "stopping", "stopped")
#: connection states (one label value each in ``jetplug_connection_state``)
CONNECTION_STATES = ("connected", "reconnecting", "disconnected", "closed")
#: distinct dead-letter reasons (and publish-failure kinds) kept; further ones count as "other"
MAX_REASONS = 32


class ConsumerStats:
    """Event counts of one (stream, consumer)."""

    __slots__ = ("dead", "duration", "outcomes", "redeliveries", "states")

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = {}
        self.duration = Latency()
        self.redeliveries = 0
        self.dead: dict[str, int] = {}
        self.states: dict[str, int] = {}


class HostStats:
    """Everything the events move, as plain numbers (read by :class:`HostCollector`)."""

    def __init__(self) -> None:
        self.consumers: dict[tuple[str, str], ConsumerStats] = {}
        self.publish_failures: dict[str, int] = {}
        self.reconnects = 0
        self.disconnects = 0
        self.connection_errors = 0

    def consumer(self, stream: str, consumer: str) -> ConsumerStats:
        """The stats of one consumer, created on first use."""
        key = (stream, consumer)
        stats = self.consumers.get(key)
        if stats is None:
            stats = self.consumers[key] = ConsumerStats()
        return stats

    def track(self, event: Event) -> None:
        """Count one event (runs for every message and publish: keep it cheap)."""
        cls = type(event)
        e: Any = event
        if cls is MessageRedelivered:
            self.consumer(e.stream, e.consumer).redeliveries += 1
        elif cls is MessageDeadLettered:
            _bump(self.consumer(e.stream, e.consumer).dead, e.reason or "unknown")
        elif cls is PublishFailed:
            _bump(self.publish_failures, e.kind or "unknown")
        elif cls is ConsumerStateChanged:
            _bump(self.consumer(e.stream, e.consumer).states, e.state)
        elif cls is ConnectionChanged:
            if e.state == "reconnected":
                self.reconnects += 1
            elif e.state == "disconnected":
                self.disconnects += 1
            elif e.state == "error":
                self.connection_errors += 1


def _bump(counts: dict[str, int], key: str) -> None:
    if key not in counts and len(counts) >= MAX_REASONS:
        key = "other"
    counts[key] = counts.get(key, 0) + 1


_SC = ["stream", "consumer"]
#: (key, kind, name, help, labels) of every family, in exposition order
FAMILIES: list[tuple[str, str, str, str, list[str]]] = [
    (
        "handled",
        "counter",
        "jetplug_messages_handled",
        "Messages that reached an outcome (ack, nak, term, dropped, released)",
        [*_SC, "outcome"],
    ),
    (
        "duration",
        "histogram",
        "jetplug_handler_duration_seconds",
        "Time from delivery to the outcome being sent (handlers and settling)",
        _SC,
    ),
    (
        "redeliveries",
        "counter",
        "jetplug_redeliveries",
        "Deliveries with a delivery count above 1",
        _SC,
    ),
    (
        "dead",
        "counter",
        "jetplug_dead_letters",
        "Messages stored in the dead-letter stream, by reason",
        [*_SC, "reason"],
    ),
    (
        "state_changes",
        "counter",
        "jetplug_consumer_state_changes",
        "Consumer state transitions, by the state entered",
        [*_SC, "state"],
    ),
    (
        "state",
        "gauge",
        "jetplug_consumer_state",
        "1 for the consumer's current state, 0 for the others",
        [*_SC, "state"],
    ),
    ("in_flight", "gauge", "jetplug_consumer_in_flight", "Messages being handled now", _SC),
    (
        "pending",
        "gauge",
        "jetplug_consumer_pending",
        "Messages not yet delivered: the consumer lag (server num_pending)",
        _SC,
    ),
    (
        "ack_pending",
        "gauge",
        "jetplug_consumer_ack_pending",
        "Delivered, not yet acknowledged (server num_ack_pending)",
        _SC,
    ),
    (
        "redelivered",
        "gauge",
        "jetplug_consumer_redelivered",
        "Delivered more than once, not yet acknowledged (server num_redelivered)",
        _SC,
    ),
    (
        "waiting",
        "gauge",
        "jetplug_consumer_waiting",
        "Open pull requests on the server (num_waiting)",
        _SC,
    ),
    (
        "silent",
        "gauge",
        "jetplug_consumer_seconds_since_activity",
        "Seconds since the last message or heartbeat",
        _SC,
    ),
    (
        "stream_messages",
        "gauge",
        "jetplug_stream_messages",
        "Messages in a stream the host uses",
        ["stream"],
    ),
    (
        "stream_bytes",
        "gauge",
        "jetplug_stream_bytes",
        "Bytes in a stream the host uses",
        ["stream"],
    ),
    ("dlq", "gauge", "jetplug_dlq_messages", "Messages in the dead-letter stream", []),
    (
        "publishes",
        "counter",
        "jetplug_publishes",
        "Publishes that got a pub-ack; result is stored or duplicate",
        ["stream", "result"],
    ),
    (
        "publish_retries",
        "counter",
        "jetplug_publish_retries",
        "Extra publish attempts after a retryable failure",
        ["stream"],
    ),
    (
        "publish_failures",
        "counter",
        "jetplug_publish_failures",
        "Publishes that failed for good, by PublishError kind",
        ["kind"],
    ),
    (
        "publish_duration",
        "histogram",
        "jetplug_publish_duration_seconds",
        "Time from publish to pub-ack, retries included",
        ["stream"],
    ),
    (
        "connection",
        "gauge",
        "jetplug_connection_state",
        "1 for the current connection state, 0 for the others",
        ["state"],
    ),
    ("reconnects", "counter", "jetplug_reconnects", "Reconnects to NATS", []),
    ("disconnects", "counter", "jetplug_disconnects", "Losses of the NATS connection", []),
    (
        "connection_errors",
        "counter",
        "jetplug_connection_errors",
        "Errors the NATS client reported",
        [],
    ),
    ("lag", "gauge", "jetplug_event_loop_lag_seconds", "Worst event-loop lag of the last ~2 s", []),
    ("ready", "gauge", "jetplug_ready", "1 when /readyz would answer 200", []),
]
_KINDS: dict[str, Any] = {
    "counter": CounterMetricFamily,
    "gauge": GaugeMetricFamily,
    "histogram": HistogramMetricFamily,
}


def families() -> dict[str, Any]:
    """A fresh, empty family per metric, by key."""
    return {
        key: _KINDS[kind](name, doc, labels=labels) for key, kind, name, doc, labels in FAMILIES
    }


class HostCollector(Collector):
    """Turns :class:`HostStats` and the host's live state into metric families at scrape time."""

    def __init__(self, host: Host | None, stats: HostStats) -> None:
        self.host = host
        self.stats = stats

    def describe(self) -> list[Metric]:
        """Names only (registration checks them for clashes without reading the host)."""
        return list(families().values())

    def collect(self) -> Iterator[Metric]:
        """One sample set per scrape."""
        f = families()
        self._events(f)
        if self.host is not None:
            self._live(f, self.host)
        yield from f.values()

    def _events(self, f: dict[str, Any]) -> None:
        stats = self.stats
        runners = self.host.engine.runners if self.host and self.host.engine else {}
        for runner in runners.values():  # counted by the engine itself (no event per message)
            handled = runner.handled_stats
            labels = [runner.spec.stream, runner.spec.durable]
            for outcome, n in handled.outcomes.items():
                f["handled"].add_metric([*labels, outcome], float(n))
            if handled.outcomes:
                f["duration"].add_metric(labels, handled.duration.buckets(), handled.duration.total)
        for (stream, consumer), c in stats.consumers.items():
            labels = [stream, consumer]
            f["redeliveries"].add_metric(labels, float(c.redeliveries))
            for reason, n in c.dead.items():
                f["dead"].add_metric([*labels, reason], float(n))
            for state, n in c.states.items():
                f["state_changes"].add_metric([*labels, state], float(n))
        publishes: dict[str, PublishStats] = {}
        if self.host is not None and self.host.engine is not None:
            publishes = self.host.engine.publisher.stats  # counted by the publisher itself
        for stream, p in publishes.items():
            f["publishes"].add_metric([stream, "stored"], float(p.stored))
            f["publishes"].add_metric([stream, "duplicate"], float(p.duplicate))
            f["publish_retries"].add_metric([stream], float(p.retries))
            f["publish_duration"].add_metric([stream], p.duration.buckets(), p.duration.total)
        for kind, n in stats.publish_failures.items():
            f["publish_failures"].add_metric([kind], float(n))
        f["reconnects"].add_metric([], float(stats.reconnects))
        f["disconnects"].add_metric([], float(stats.disconnects))
        f["connection_errors"].add_metric([], float(stats.connection_errors))

    @staticmethod
    def _live(f: dict[str, Any], host: Host) -> None:
        nc = host.connection.nc if host.connection is not None else None
        if nc is None or nc.is_closed:
            current = "closed" if nc is not None else "disconnected"
        elif nc.is_connected:
            current = "connected"
        elif nc.is_reconnecting:
            current = "reconnecting"
        else:
            current = "disconnected"
        for state in CONNECTION_STATES:
            f["connection"].add_metric([state], 1.0 if state == current else 0.0)
        health = host.health
        runners = host.engine.runners if host.engine is not None else {}
        for key, runner in runners.items():
            labels = [runner.spec.stream, runner.spec.durable]
            for state in CONSUMER_STATES:
                f["state"].add_metric([*labels, state], 1.0 if runner.state == state else 0.0)
            status = runner.status()
            f["in_flight"].add_metric(labels, float(status["in_flight"]))
            f["silent"].add_metric(labels, float(status["seconds_since_activity"]))
            info = health.consumer_info(key)
            if info is not None:
                f["pending"].add_metric(labels, float(info.get("num_pending", 0)))
                f["ack_pending"].add_metric(labels, float(info.get("num_ack_pending", 0)))
                f["redelivered"].add_metric(labels, float(info.get("num_redelivered", 0)))
                f["waiting"].add_metric(labels, float(info.get("num_waiting", 0)))
        dlq = host.config.core.jetstream.dlq
        for name in health.stream_names():
            info = health.stream_info(name)
            if info is None:
                continue
            state = info.get("state", {})
            f["stream_messages"].add_metric([name], float(state.get("messages", 0)))
            f["stream_bytes"].add_metric([name], float(state.get("bytes", 0)))
            if dlq.enabled and name == dlq.stream:
                f["dlq"].add_metric([], float(state.get("messages", 0)))
        f["lag"].add_metric([], health.loop_lag)
        f["ready"].add_metric([], 0.0 if health.readiness() else 1.0)


class MetricsPlugin:
    """One per host (see :func:`make_plugin`): counts events, exposes them once started."""

    def __init__(self) -> None:
        self.stats = HostStats()

    @hookimpl(tryfirst=True)
    def startup(self, host: Host) -> None:
        """Register the host's collector before any other plugin starts."""
        stats = self.stats
        host.metrics.shared("jetplug.host", lambda reg: _register(reg, HostCollector(host, stats)))

    @hookimpl
    @listens_to(
        MessageRedelivered,
        MessageDeadLettered,
        PublishFailed,
        ConsumerStateChanged,
        ConnectionChanged,
    )
    def track_event(self, event: Event) -> None:
        """Count one event (cheap: it runs for every message)."""
        self.stats.track(event)


def _register(registry: Any, collector: HostCollector) -> HostCollector:
    registry.register(collector)
    return collector


def make_plugin() -> MetricsPlugin:
    """A fresh plugin object: discovery registers one per host, never a shared module."""
    return MetricsPlugin()


__all__ = [
    "CONNECTION_STATES",
    "CONSUMER_STATES",
    "DURATION_BUCKETS",
    "FAMILIES",
    "HostCollector",
    "HostStats",
    "MetricsPlugin",
    "make_plugin",
]
