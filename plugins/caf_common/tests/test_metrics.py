"""CAF metrics: every event moves the documented series; registering and feeding are idempotent."""

from __future__ import annotations

import pytest
from jetplug.events import MessageHandled
from jetplug_caf_common import events as caf
from jetplug_caf_common.metrics import CafMetrics
from prometheus_client import CollectorRegistry


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def published(aid: str, seq: int, duplicate: bool = False) -> caf.AssignmentPublished:
    return caf.AssignmentPublished(
        assignment_id=aid, tenant_id="t", stream="S", seq=seq, duplicate=duplicate, attempts=1
    )


def test_every_event_moves_its_series() -> None:
    reg = CollectorRegistry()
    m = CafMetrics.on(reg)
    for event in [
        published("a1", 1),
        published("a2", 2),
        published("a1", 1, duplicate=True),
        caf.AssignmentRetried(assignment_id="a2", attempt=1, kind="timeout"),
        caf.AssignmentFailed(assignment_id="a3", kind="validation", error="bad"),
        caf.AssignmentFailed(assignment_id="a4", kind="no_stream", error="none"),
        caf.AssignmentBlocked(tenant_id="evil"),
        caf.AssignmentSkipped(),
        caf.AssignmentExpired(assignment_id="a2", tenant_id="t"),
        caf.AckProcessed(status="accepted", outcome="applied", latency_ms=120),
        caf.AckProcessed(status="rejected", outcome="applied", latency_ms=3000),
        caf.AckProcessed(status="accepted", outcome="duplicate"),
        caf.AckProcessed(status="accepted", outcome="unknown_assignment"),
        caf.ResultProcessed(status="success", outcome="applied", latency_ms=4500),
        caf.ResultProcessed(status="error", outcome="unknown_assignment", latency_ms=None),
        caf.ResultProcessed(status="success", outcome="duplicate", latency_ms=4500),
        caf.UsageEmitted(assignment_id="a1", duplicate=False),
        caf.UsageEmitted(assignment_id="a1", duplicate=True),
        MessageHandled(
            consumer="c", stream="S", stream_seq=1, deliveries=1, outcome="ack", duration=0.1
        ),
    ]:
        m.track(event)

    v = lambda name, **labels: value(reg, name, **labels)  # noqa: E731
    assert v("jetplug_caf_assignments_published_total") == 2
    assert v("jetplug_caf_duplicates_total", kind="assignment") == 1
    assert v("jetplug_caf_assignment_retries_total", kind="timeout") == 1
    assert v("jetplug_caf_assignments_failed_total", kind="validation") == 1
    assert v("jetplug_caf_assignments_failed_total", kind="no_stream") == 1
    assert v("jetplug_caf_assignments_blocked_total", reason="tenant_not_allowed") == 1
    assert v("jetplug_caf_assignments_skipped_total", reason="disabled") == 1
    assert v("jetplug_caf_assignments_expired_total") == 1
    assert v("jetplug_caf_acks_total", status="accepted", outcome="applied") == 1
    assert v("jetplug_caf_acks_total", status="rejected", outcome="applied") == 1
    assert v("jetplug_caf_acks_total", status="accepted", outcome="duplicate") == 1
    assert v("jetplug_caf_acks_total", status="accepted", outcome="unknown_assignment") == 1
    assert v("jetplug_caf_duplicates_total", kind="ack") == 1
    assert v("jetplug_caf_unknown_assignments_total", kind="ack") == 1
    assert v("jetplug_caf_results_total", status="success", outcome="applied") == 1
    assert v("jetplug_caf_results_total", status="error", outcome="unknown_assignment") == 1
    assert v("jetplug_caf_duplicates_total", kind="result") == 1
    assert v("jetplug_caf_unknown_assignments_total", kind="result") == 1
    assert v("jetplug_caf_usage_events_total") == 1
    assert v("jetplug_caf_duplicates_total", kind="usage") == 1
    # latencies: the duplicate and the one without a latency are not observed
    assert v("jetplug_caf_ack_latency_seconds_count", status="accepted") == 1
    assert v("jetplug_caf_ack_latency_seconds_sum", status="accepted") == pytest.approx(0.12)
    assert v("jetplug_caf_ack_latency_seconds_bucket", status="rejected", le="2.5") == 0
    assert v("jetplug_caf_ack_latency_seconds_bucket", status="rejected", le="5.0") == 1
    assert v("jetplug_caf_end_to_end_latency_seconds_count", status="success") == 1
    assert v("jetplug_caf_end_to_end_latency_seconds_sum", status="success") == pytest.approx(4.5)
    assert v("jetplug_caf_end_to_end_latency_seconds_count", status="error") == 0


def test_registering_is_idempotent_per_registry() -> None:
    reg = CollectorRegistry()
    assert CafMetrics.on(reg) is CafMetrics.on(reg)
    other = CollectorRegistry()
    assert CafMetrics.on(other) is not CafMetrics.on(reg)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        CafMetrics(reg)  # the constructor registers; on() is the shared way


def test_emitter_counts_each_event_once_and_forwards_it() -> None:
    """The three CAF plugins each build an emitter on one host: one registry, counted once."""
    from types import SimpleNamespace

    from jetplug_caf_common.metrics import emitter

    reg = CollectorRegistry()
    delivered: list[object] = []
    host = SimpleNamespace(metrics=SimpleNamespace(registry=reg), emit=delivered.append)
    adapter, acks, results = emitter(host), emitter(host), emitter(host)  # type: ignore[arg-type]
    results(caf.UsageEmitted(assignment_id="a1", duplicate=False))
    results(caf.UsageEmitted(assignment_id="a2", duplicate=True))
    adapter(caf.AssignmentExpired(assignment_id="x", tenant_id="t"))
    assert value(reg, "jetplug_caf_usage_events_total") == 1
    assert value(reg, "jetplug_caf_assignments_expired_total") == 1
    assert len(delivered) == 3, "every event still reaches the host's telemetry"
    assert acks is not adapter


def test_separate_registries_keep_separate_numbers() -> None:
    a, b = CollectorRegistry(), CollectorRegistry()
    CafMetrics.on(a).track(caf.AssignmentExpired(assignment_id="x", tenant_id="t"))
    assert value(a, "jetplug_caf_assignments_expired_total") == 1
    assert value(b, "jetplug_caf_assignments_expired_total") == 0


def test_every_caf_metric_is_in_the_docs_table() -> None:
    import re
    from pathlib import Path

    reg = CollectorRegistry()
    CafMetrics.on(reg)
    names = {f.name + ("_total" if f.type == "counter" else "") for f in reg.collect()}
    doc = Path(__file__).resolve().parents[3] / "docs" / "metrics.md"
    table = set(re.findall(r"^\| `(jetplug_caf_[a-z_]+)` \|", doc.read_text(), flags=re.M))
    assert names == table
