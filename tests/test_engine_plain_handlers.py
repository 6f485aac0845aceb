"""Plain ``def`` handlers run inline in the consumer's callback; every outcome still holds.

When every ``handle_message`` implementation is a plain function (and no OpenTelemetry spans are
made), the engine decides in the subscription callback without a coroutine per message and acks
at once; anything but an ack takes the full path. These tests pin down that the shortcut keeps
the engine's contract: the chain order, every decision, failures, awaitables returned by a plain
function, and one context per message.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

import pytest
from jetplug import ACK, ConsumerSpec, Nak, StreamSpec, Term, hookimpl, trace
from jetplug.engine.publisher import _Window
from jetplug.events import MessageHandled
from jetplug.message import Message
from jetplug.testing import running_host, wait_until

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
leaked: contextvars.ContextVar[str] = contextvars.ContextVar("leaked", default="")


class PlainOwner:
    """A consumer plugin with a plain ``def`` handler; ``decide`` scripts each decision."""

    def __init__(self, stream: str, decide: Any, **consumer: Any) -> None:
        self.stream = stream
        self.decide = decide
        self.consumer = consumer
        self.seen: list[tuple[int, int]] = []  # (stream_seq, deliveries)
        self.traces: list[tuple[str, tuple[str, str, str] | None, str]] = []

    @hookimpl
    def register_streams(self) -> list[StreamSpec]:
        return [StreamSpec(self.stream, (f"{self.stream.lower()}.>",))]

    @hookimpl
    def register_consumers(self) -> list[ConsumerSpec]:
        return [ConsumerSpec(self.stream, f"{self.stream.lower()}-worker", **self.consumer)]

    @hookimpl
    def handle_message(self, msg: Message) -> Any:
        self.seen.append((msg.stream_seq, msg.deliveries))
        # what this message's context holds before the handler changes it
        self.traces.append((msg.subject, trace.current.get(), leaked.get()))
        leaked.set(msg.subject)
        return self.decide(msg)


class PlainInterceptor:
    """Runs first and passes every message on (returns None)."""

    def __init__(self) -> None:
        self.seen = 0

    @hookimpl(tryfirst=True)
    def handle_message(self, msg: Message) -> Any:
        self.seen += 1
        return None


def _runner(h: Any) -> Any:
    return next(iter(h.host.engine.runners.values()))


async def test_plain_chain_runs_inline_in_order_and_acks(nats_server) -> None:
    owner = PlainOwner("PLAIN_ACK", lambda msg: ACK)
    spy = PlainInterceptor()
    async with running_host(("owner", owner), ("spy", spy), server=nats_server) as h:
        assert _runner(h)._inline, "every handler is a plain def: the inline path is taken"
        acks = [await h.publish("plain_ack.x", b"%d" % i) for i in range(20)]
        for ack in acks:
            handled = await h.outcome(ack.seq)
            assert handled.outcome == "ack" and handled.plugin == "owner"
        assert spy.seen == 20, "the interceptor saw every message before the owner"
        api = h.host.engine.api

        async def settled() -> bool:
            info = await api.consumer_info("PLAIN_ACK", "plain_ack-worker")
            return info["num_ack_pending"] == 0 and info["ack_floor"]["stream_seq"] == 20

        await wait_until(settled)
        assert _runner(h).handled_stats.outcomes == {"ack": 20}
        assert _runner(h).handled == 20


async def test_an_async_handler_in_the_chain_turns_the_inline_path_off(nats_server) -> None:
    class AsyncSpy:
        @hookimpl(tryfirst=True)
        async def handle_message(self, msg: Message) -> Any:
            return None

    owner = PlainOwner("PLAIN_MIXED", lambda msg: ACK)
    async with running_host(("owner", owner), ("spy", AsyncSpy()), server=nats_server) as h:
        assert not _runner(h)._inline
        ack = await h.publish("plain_mixed.x", b"x")
        assert (await h.outcome(ack.seq)).outcome == "ack"


async def test_plain_nak_redelivers_after_the_delay(nats_server) -> None:
    owner = PlainOwner("PLAIN_NAK", lambda msg: Nak(delay=0.3) if msg.deliveries == 1 else ACK)
    async with running_host(("owner", owner), server=nats_server) as h:
        ack = await h.publish("plain_nak.x", b"x")
        await wait_until(lambda: h.events_of(MessageHandled, stream_seq=ack.seq, outcome="ack"))
        assert [d for s, d in owner.seen if s == ack.seq] == [1, 2]
        nak = h.events_of(MessageHandled, stream_seq=ack.seq, outcome="nak")[0]
        assert nak.plugin == "owner" and nak.reason == "nak"


async def test_plain_term_dead_letters(nats_server, nc) -> None:
    owner = PlainOwner("PLAIN_TERM", lambda msg: Term("invalid_payload", "field y: missing"))
    async with running_host(("owner", owner), server=nats_server) as h:
        ack = await h.publish("plain_term.x", b"bad")
        handled = await h.outcome(ack.seq)
        assert handled.outcome == "term" and handled.reason == "invalid_payload"
    dead = await nc.jetstream().get_last_msg(
        "JETPLUG_DLQ", "jetplug.dlq.PLAIN_TERM.plain_term-worker"
    )
    assert dead.data == b"bad"
    assert dead.headers["Jetplug-Dlq-Error"] == "field y: missing"
    assert dead.headers["Jetplug-Plugin"] == "owner"


async def test_plain_handler_failure_naks_and_names_the_plugin(nats_server) -> None:
    def decide(msg: Message) -> Any:
        if msg.deliveries == 1:
            raise ValueError("first try fails")
        return ACK

    owner = PlainOwner("PLAIN_EXC", decide, retry_delays=(0.1,))
    async with running_host(("owner", owner), server=nats_server) as h:
        ack = await h.publish("plain_exc.x", b"x")
        await wait_until(lambda: h.events_of(MessageHandled, stream_seq=ack.seq, outcome="ack"))
        failed = h.events_of(MessageHandled, stream_seq=ack.seq, outcome="nak")[0]
        assert failed.reason == "error" and "first try fails" in failed.error
        assert failed.plugin == "owner"


async def test_no_plain_handler_deciding_is_a_nak_naming_the_owner(nats_server) -> None:
    owner = PlainOwner("PLAIN_NONE", lambda msg: None if msg.deliveries == 1 else ACK)
    owner.consumer["retry_delays"] = (0.1,)
    async with running_host(("owner", owner), server=nats_server) as h:
        ack = await h.publish("plain_none.x", b"x")
        await wait_until(lambda: h.events_of(MessageHandled, stream_seq=ack.seq, outcome="ack"))
        undecided = h.events_of(MessageHandled, stream_seq=ack.seq, outcome="nak")[0]
        assert "no plugin decided" in undecided.error and undecided.plugin == "owner"


async def test_an_awaitable_from_a_plain_def_is_awaited(nats_server) -> None:
    async def later(decision: Any) -> Any:
        await asyncio.sleep(0.01)
        return decision

    owner = PlainOwner("PLAIN_AWAIT", lambda msg: later(Term("late", "decided after a wait")))
    async with running_host(("owner", owner), server=nats_server) as h:
        assert _runner(h)._inline
        ack = await h.publish("plain_await.x", b"x")
        handled = await h.outcome(ack.seq)
        assert handled.outcome == "term" and handled.reason == "late"


async def test_an_awaitable_giving_none_passes_the_message_on(nats_server) -> None:
    async def nothing() -> None:
        await asyncio.sleep(0)

    class AwaitingSpy:
        @hookimpl(tryfirst=True)
        def handle_message(self, msg: Message) -> Any:
            return nothing()

    owner = PlainOwner("PLAIN_PASS", lambda msg: ACK)
    async with running_host(("owner", owner), ("spy", AwaitingSpy()), server=nats_server) as h:
        ack = await h.publish("plain_pass.x", b"x")
        handled = await h.outcome(ack.seq)
        assert handled.outcome == "ack" and handled.plugin == "owner"


@pytest.mark.parametrize("first_traced", [True, False])
async def test_each_plain_handled_message_has_its_own_context(nats_server, first_traced) -> None:
    owner = PlainOwner("PLAIN_CTX", lambda msg: ACK)
    async with running_host(("owner", owner), server=nats_server) as h:
        first = {"traceparent": TRACEPARENT} if first_traced else None
        second = None if first_traced else {"traceparent": TRACEPARENT}
        a = await h.publish("plain_ctx.a", b"a", headers=first)
        await h.outcome(a.seq)
        b = await h.publish("plain_ctx.b", b"b", headers=second)
        await h.outcome(b.seq)
    (_, trace_a, leaked_a), (_, trace_b, leaked_b) = owner.traces
    traced, untraced = (trace_a, trace_b) if first_traced else (trace_b, trace_a)
    assert traced is not None and traced[0] == TRACEPARENT.split("-")[1]
    assert untraced is None, "no trace leaks from one message into the next"
    assert leaked_a == "" and leaked_b == "", "a value a handler sets stays in its message"


# --- the publisher's window (no broker needed) ------------------------------------------------


async def test_window_hands_slots_to_waiters_in_order() -> None:
    window = _Window(1)
    window.free -= 1  # the first sender took the only slot
    order: list[str] = []

    async def sender(name: str) -> None:
        await window.wait()
        order.append(name)

    first = asyncio.ensure_future(sender("first"))
    second = asyncio.ensure_future(sender("second"))
    await wait_until(lambda: len(window.waiters) == 2)
    assert not order
    window.release()
    await first
    assert order == ["first"] and window.free == 0
    window.release()
    await second
    assert order == ["first", "second"] and window.free == 0
    window.release()
    assert window.free == 1, "with nobody waiting the slot goes back to the counter"


async def test_window_slot_handed_to_a_cancelled_sender_is_passed_on() -> None:
    window = _Window(1)
    window.free -= 1
    gave_up = asyncio.ensure_future(window.wait())
    patient = asyncio.ensure_future(window.wait())
    await wait_until(lambda: len(window.waiters) == 2)
    window.release()  # hands the slot to gave_up ...
    gave_up.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await gave_up
    await asyncio.wait_for(patient, 1)
    assert window.free == 0, "the slot went on to the next sender, not lost or doubled"
    window.release()
    assert window.free == 1
