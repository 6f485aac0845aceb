"""Each outcome of a handler decision, against a real server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from jetplug import ACK, ConsumerSpec, Nak, StreamSpec, Term, hookimpl
from jetplug.events import MessageDeadLettered, MessageHandled
from jetplug.message import Message
from jetplug.testing import running_host, wait_until


class Recorder:
    """A consumer plugin whose decision per message is scripted by the test."""

    def __init__(self, stream: str, *, decide: Any = None, **consumer: Any) -> None:
        self.stream = stream
        self.decide = decide or (lambda msg: ACK)
        self.consumer = dict(consumer)
        self.seen: list[tuple[int, int, float]] = []  # (stream_seq, deliveries, monotonic)

    @hookimpl
    def register_streams(self) -> list[StreamSpec]:
        return [StreamSpec(self.stream, (f"{self.stream.lower()}.>",))]

    @hookimpl
    def register_consumers(self) -> list[ConsumerSpec]:
        return [ConsumerSpec(self.stream, f"{self.stream.lower()}-worker", **self.consumer)]

    @hookimpl
    async def handle_message(self, msg: Message) -> Any:
        if msg.consumer.owner != "rec":
            return None
        self.seen.append((msg.stream_seq, msg.deliveries, time.monotonic()))
        result = self.decide(msg)
        if asyncio.iscoroutine(result):
            result = await result
        return result


async def test_ack_is_final(nats_server) -> None:
    rec = Recorder("OUT_ACK")
    async with running_host(("rec", rec), server=nats_server) as h:
        ack = await h.publish("out_ack.x", b"hello")
        handled = await h.outcome(ack.seq)
        assert handled.outcome == "ack" and handled.plugin == "rec"
        api = h.host.engine.api

        async def settled() -> bool:
            info = await api.consumer_info("OUT_ACK", "out_ack-worker")
            return info["num_ack_pending"] == 0 and info["ack_floor"]["stream_seq"] == ack.seq

        await wait_until(settled)


async def test_nak_with_delay_redelivers_after_the_delay(nats_server) -> None:
    def decide(msg: Message) -> Any:
        return Nak(delay=0.6) if msg.deliveries == 1 else ACK

    rec = Recorder("OUT_NAK", decide=decide)
    async with running_host(("rec", rec), server=nats_server) as h:
        ack = await h.publish("out_nak.x", b"x")
        await h.outcome(ack.seq)
        (_s1, d1, t1), (_s2, d2, t2) = rec.seen
        assert (d1, d2) == (1, 2)
        assert t2 - t1 >= 0.55


async def test_term_dead_letters_with_context_headers(nats_server, nc) -> None:
    rec = Recorder("OUT_TERM", decide=lambda m: Term("invalid_payload", "field x: missing"))
    async with running_host(("rec", rec), server=nats_server) as h:
        ack = await h.publish("out_term.x", b"bad", headers={"tenant_id": "acme"})
        handled = await h.outcome(ack.seq)
        assert handled.outcome == "term" and handled.reason == "invalid_payload"
        dead = h.events_of(MessageDeadLettered)[0]
        assert dead.stream_seq == ack.seq
    js = nc.jetstream()
    info = await js.stream_info("JETPLUG_DLQ")
    msg = await js.get_last_msg("JETPLUG_DLQ", "jetplug.dlq.OUT_TERM.out_term-worker")
    assert msg.data == b"bad"
    assert msg.headers["tenant_id"] == "acme"
    assert msg.headers["Jetplug-Dlq-Reason"] == "invalid_payload"
    assert msg.headers["Jetplug-Dlq-Error"] == "field x: missing"
    assert msg.headers["Jetplug-Original-Subject"] == "out_term.x"
    assert msg.headers["Jetplug-Original-Stream"] == "OUT_TERM"
    assert msg.headers["Jetplug-Original-Seq"] == str(ack.seq)
    assert msg.headers["Jetplug-Consumer"] == "out_term-worker"
    assert msg.headers["Jetplug-Deliveries"] == "1"
    assert msg.headers["Jetplug-Plugin"] == "rec"
    assert "Jetplug-Dlq-Time" in msg.headers
    assert info.state.messages >= 1


async def test_exception_backs_off_then_dead_letters_at_max_deliver(nats_server, nc) -> None:
    def decide(msg: Message) -> Any:
        raise RuntimeError("downstream unavailable")

    rec = Recorder("OUT_EXC", decide=decide, max_deliver=3, retry_delays=(0.2, 0.5))
    async with running_host(("rec", rec), server=nats_server) as h:
        ack = await h.publish("out_exc.x", b"x")
        handled = await h.outcome(ack.seq)
        assert handled.outcome == "term" and handled.reason == "max_deliver"
        assert [d for _, d, _ in rec.seen] == [1, 2, 3]
        gaps = [rec.seen[i + 1][2] - rec.seen[i][2] for i in range(2)]
        assert gaps[0] >= 0.18 and gaps[1] >= 0.45
        naks = [e for e in h.events_of(MessageHandled) if e.outcome == "nak"]
        assert len(naks) == 2 and "downstream unavailable" in naks[0].error
    msg = await nc.jetstream().get_last_msg("JETPLUG_DLQ", "jetplug.dlq.OUT_EXC.out_exc-worker")
    assert msg.headers["Jetplug-Dlq-Reason"] == "max_deliver"
    assert "downstream unavailable" in msg.headers["Jetplug-Dlq-Error"]
    assert msg.headers["Jetplug-Deliveries"] == "3"


@pytest.mark.timeout(30)
async def test_in_progress_keeps_a_long_handler_from_redelivery(nats_server) -> None:
    async def slow(msg: Message) -> Any:
        await asyncio.sleep(3.0)
        return ACK

    rec = Recorder("OUT_WPI", decide=slow, ack_wait=1.0)
    async with running_host(("rec", rec), server=nats_server) as h:
        ack = await h.publish("out_wpi.x", b"x")
        handled = await h.outcome(ack.seq, timeout=15)
        assert handled.outcome == "ack" and handled.duration >= 3.0
        assert [d for _, d, _ in rec.seen] == [1]
        info = await h.host.engine.api.consumer_info("OUT_WPI", "out_wpi-worker")
        assert info["num_redelivered"] == 0


@pytest.mark.timeout(30)
async def test_last_delivery_timing_out_is_dead_lettered_from_the_advisory(nats_server, nc) -> None:
    async def hang(msg: Message) -> Any:
        await asyncio.sleep(60)

    # progress keep-alive capped below ack_wait, so the server's max_deliver is what ends it
    rec = Recorder("OUT_ADV", decide=hang, ack_wait=0.5, max_deliver=2, max_progress=0.1)
    async with running_host(
        ("rec", rec), server=nats_server, config="[host]\nshutdown_timeout = 0.2"
    ) as h:
        ack = await h.publish("out_adv.x", b"slow")
        dead = await h.wait_event(lambda e: isinstance(e, MessageDeadLettered), timeout=15)
        assert dead.stream_seq == ack.seq and dead.reason == "max_deliver" and dead.plugin == "rec"
    msg = await nc.jetstream().get_last_msg("JETPLUG_DLQ", "jetplug.dlq.OUT_ADV.out_adv-worker")
    assert msg.data == b"slow"
    assert msg.headers["Jetplug-Dlq-Reason"] == "max_deliver"
    assert msg.headers["Jetplug-Original-Subject"] == "out_adv.x"


async def test_dead_letter_of_a_conditional_publish_is_stored(nats_server, nc) -> None:
    """Nats-Expected-* headers of the original must not make the DLQ publish fail."""
    rec = Recorder("OUT_COND", decide=lambda m: Term("invalid_payload", "bad"))
    async with running_host(("rec", rec), server=nats_server) as h:
        ack = await h.host.publisher.publish("out_cond.x", b"x", expected_stream="OUT_COND")
        handled = await h.outcome(ack.seq)
        assert handled.outcome == "term"
    msg = await nc.jetstream().get_last_msg("JETPLUG_DLQ", "jetplug.dlq.OUT_COND.out_cond-worker")
    assert msg.headers["Jetplug-Original-Nats-Expected-Stream"] == "OUT_COND"
    assert "Nats-Expected-Stream" not in msg.headers
