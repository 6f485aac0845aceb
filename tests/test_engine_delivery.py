"""Push consumers with a deliver group, and shutdown with work in flight."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from jetplug import ACK, ConsumerSpec, StreamSpec, hookimpl
from jetplug.events import MessageHandled
from jetplug.message import Message
from jetplug.testing import running_host, wait_until


class Worker:
    def __init__(self, stream: str, delay: float = 0.0, **consumer: Any) -> None:
        self.stream = stream
        self.delay = delay
        self.consumer = consumer
        self.started: list[int] = []
        self.finished: list[int] = []

    @hookimpl
    def register_streams(self) -> list[StreamSpec]:
        return [StreamSpec(self.stream, (f"{self.stream.lower()}.>",))]

    @hookimpl
    def register_consumers(self) -> list[ConsumerSpec]:
        return [ConsumerSpec(self.stream, "worker", **self.consumer)]

    @hookimpl
    async def handle_message(self, msg: Message) -> Any:
        self.started.append(msg.stream_seq)
        if self.delay:
            await asyncio.sleep(self.delay)
        self.finished.append(msg.stream_seq)
        return ACK


async def test_push_deliver_group_shares_work_between_two_hosts(nats_server) -> None:
    spec = {"mode": "push", "deliver_group": "workers", "in_flight": 8}
    a, b = Worker("GROUP", delay=0.01, **spec), Worker("GROUP", delay=0.01, **spec)
    async with (
        running_host(("worker", a), server=nats_server) as ha,
        running_host(("worker", b), server=nats_server),
    ):
        acks = [await ha.publish("group.x", str(i).encode()) for i in range(60)]
        seqs = {ack.seq for ack in acks}
        await wait_until(lambda: seqs <= set(a.finished) | set(b.finished), timeout=20)
        assert a.finished and b.finished, "both members of the group got work"
        both = Counter(a.finished + b.finished)
        assert all(both[s] == 1 for s in seqs), "each message handled once"


@pytest.mark.timeout(60)
async def test_shutdown_finishes_in_flight_and_loses_nothing(nats_server) -> None:
    first = Worker("SHUT", delay=0.3, in_flight=4)
    config = "[host]\nshutdown_timeout = 5\n"
    async with running_host(("worker", first), server=nats_server, config=config) as h:
        acks = [await h.publish("shut.x", str(i).encode()) for i in range(20)]
        seqs = {a.seq for a in acks}
        await wait_until(lambda: len(first.started) >= 4)
        events = h.events
    # the block's exit ran the ordered shutdown: every started handler finished and was acked
    acked_first = {
        e.stream_seq for e in events if isinstance(e, MessageHandled) and e.outcome == "ack"
    }
    assert set(first.started) == set(first.finished) == acked_first
    assert acked_first < seqs, "shutdown stopped intake before everything was handled"

    second = Worker("SHUT", in_flight=4)
    async with running_host(("worker", second), server=nats_server):
        await wait_until(lambda: seqs <= acked_first | set(second.finished), timeout=30)
        # released (never started) messages come back at once, not after ack_wait
        assert not (acked_first & set(second.finished)), "nothing acked twice"


@pytest.mark.timeout(60)
async def test_shutdown_budget_cancels_stuck_handlers_without_acking(nats_server) -> None:
    stuck = Worker("STUCK", delay=30, in_flight=2, ack_wait=2)
    config = "[host]\nshutdown_timeout = 0.5\n"
    async with running_host(("worker", stuck), server=nats_server, config=config) as h:
        ack = await h.publish("stuck.x", b"x")
        await wait_until(lambda: ack.seq in stuck.started)
    # the handler was cancelled at the budget, so the message was neither acked nor lost
    assert not stuck.finished
    assert not [e for e in h.events_of(MessageHandled) if e.stream_seq == ack.seq]
    rescuer = Worker("STUCK", in_flight=2, ack_wait=2)
    async with running_host(("worker", rescuer), server=nats_server):
        await wait_until(lambda: ack.seq in rescuer.finished, timeout=20)
