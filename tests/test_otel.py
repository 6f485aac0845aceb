"""With OpenTelemetry configured, a consume -> publish hop makes linked CONSUMER/PRODUCER spans."""

from __future__ import annotations

from typing import Any

import pytest
from jetplug import ACK, ConsumerSpec, StreamSpec, hookimpl
from jetplug.message import Message
from jetplug.testing import running_host, wait_until

otel_trace = pytest.importorskip("opentelemetry.trace")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
export = pytest.importorskip("opentelemetry.sdk.trace.export")
in_memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")

EXPORTER = in_memory.InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def provider() -> None:
    tp = sdk_trace.TracerProvider()
    tp.add_span_processor(export.SimpleSpanProcessor(EXPORTER))
    otel_trace.set_tracer_provider(tp)


class Relay:
    host: Any = None

    @hookimpl
    def register_streams(self) -> list[StreamSpec]:
        return [StreamSpec("OTEL_IN", ("otel_in.>",)), StreamSpec("OTEL_OUT", ("otel_out.>",))]

    @hookimpl
    def register_consumers(self) -> list[ConsumerSpec]:
        return [ConsumerSpec("OTEL_IN", "relay")]

    @hookimpl
    def startup(self, host: Any) -> None:
        self.host = host

    @hookimpl
    async def handle_message(self, msg: Message) -> Any:
        await self.host.publisher.publish("otel_out.x", msg.data)
        return ACK


async def test_spans_link_a_consume_publish_hop(nats_server, nc) -> None:
    incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    EXPORTER.clear()
    async with running_host(("relay", Relay()), server=nats_server) as h:
        await nc.jetstream().publish("otel_in.a", b"x", headers={"traceparent": incoming})

        def finished() -> list[Any]:
            names = [s.name for s in EXPORTER.get_finished_spans()]
            return ["otel_in.a process" in names and "otel_out.x publish" in names]

        await wait_until(lambda: finished()[0])
        out = await nc.jetstream().get_last_msg("OTEL_OUT", "otel_out.x")
    spans = {s.name: s for s in EXPORTER.get_finished_spans()}
    consumer, producer = spans["otel_in.a process"], spans["otel_out.x publish"]
    assert (
        consumer.kind == otel_trace.SpanKind.CONSUMER
        and producer.kind == otel_trace.SpanKind.PRODUCER
    )
    assert format(consumer.context.trace_id, "032x") == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert (
        consumer.parent is not None
        and format(consumer.parent.span_id, "016x") == "00f067aa0ba902b7"
    )
    assert producer.parent is not None and producer.parent.span_id == consumer.context.span_id
    assert producer.attributes["messaging.nats.stream_seq"] == out.seq
    assert out.headers["traceparent"].split("-")[2] == format(producer.context.span_id, "016x")
    del h


async def test_a_handler_that_waits_ends_its_span_in_its_own_context(
    nats_server, nc, caplog
) -> None:
    """A handler that suspends resumes in a task: the span's context token must stay valid
    (OpenTelemetry logs "Failed to detach context" when it is detached in another context)."""
    import asyncio
    import logging

    class Waiter(Relay):
        @hookimpl
        def register_streams(self) -> list[StreamSpec]:
            return [StreamSpec("OTEL_WAIT", ("otel_wait.>",))]

        @hookimpl
        def register_consumers(self) -> list[ConsumerSpec]:
            return [ConsumerSpec("OTEL_WAIT", "waiter")]

        @hookimpl
        async def handle_message(self, msg: Message) -> Any:
            await asyncio.sleep(0.05)
            return ACK

    EXPORTER.clear()
    caplog.set_level(logging.ERROR, logger="opentelemetry.context")
    async with running_host(("waiter", Waiter()), server=nats_server) as h:
        ack = await h.publish("otel_wait.a", b"x")
        handled = await h.outcome(ack.seq)
        assert handled.outcome == "ack"
        await wait_until(
            lambda: any(s.name == "otel_wait.a process" for s in EXPORTER.get_finished_spans())
        )
    failed = [r for r in caplog.records if "detach" in r.getMessage().lower()]
    assert failed == [], "the span's context was detached in the context it was attached in"
