"""A message that reaches a host after it stopped taking messages is handed back once, not lost.

Found by the test kit's conformance check (shutdown_loses_nothing): a pull consumer that stopped
intake still has its last pull request open on the server. A message delivered to it is
released (nak without delay), the server redelivers it at once to the same open request, the
host releases it again, and so on until ``max_deliver`` is used up. The server then never
delivers it again, and no host dead-letters it: the message is lost. The engine now
unsubscribes the pull inbox in ``stop_intake``, so the server drops the open requests.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
from jetplug import ACK, ConsumerSpec, StreamSpec, hookimpl
from jetplug.events import MessageHandled
from jetplug.message import Message
from jetplug.testing import running_host, wait_until

MAX_DELIVER = 4


class Slow:
    def __init__(self) -> None:
        tok = uuid.uuid4().hex[:8]
        self.stream, self.subject, self.durable = f"REL_{tok}", f"rel.{tok}", f"rel-{tok}"
        self.started = asyncio.Event()

    @hookimpl
    def register_streams(self) -> list[StreamSpec]:
        return [StreamSpec(self.stream, (self.subject,))]

    @hookimpl
    def register_consumers(self) -> list[ConsumerSpec]:
        return [
            ConsumerSpec(
                self.stream, self.durable, max_deliver=MAX_DELIVER, ack_wait=2, retry_delays=(0.1,)
            )
        ]

    @hookimpl
    async def handle_message(self, msg: Message) -> Any:
        if msg.consumer.owner != "slow":
            return None
        if msg.data == b"slow":
            self.started.set()
            await asyncio.sleep(1.0)  # keeps the stopping host draining, connected
        return ACK


@pytest.mark.timeout(30)
async def test_a_message_released_at_shutdown_reaches_the_next_host(nats_server, nc) -> None:
    plugin = Slow()
    async with running_host(("slow", plugin), server=nats_server) as h:
        await h.publish(plugin.subject, b"slow")
        await asyncio.wait_for(plugin.started.wait(), 5)
        assert h.host.engine is not None
        for runner in h.host.engine.runners.values():
            await runner.stop_intake()  # the first step of every shutdown
        late = await nc.jetstream().publish(plugin.subject, b"late")
        await asyncio.sleep(0.5)  # room for the bounce this test guards against (no event to await)
        released = [
            e.deliveries
            for e in h.events_of(MessageHandled, outcome="released")
            if e.stream_seq == late.seq
        ]
    async with running_host(("slow", plugin), server=nats_server) as h2:

        def handled() -> bool:
            acked = h2.events_of(MessageHandled, outcome="ack")
            return any(e.stream_seq == late.seq for e in acked)

        try:
            await wait_until(handled, timeout=6)
        except AssertionError:
            raise AssertionError(
                f"the message that arrived after stop_intake was released {len(released)} times "
                f"(deliveries {released}, max_deliver {MAX_DELIVER}) and never reached the next "
                "host"
            ) from None
    assert len(released) <= 1, f"released {len(released)} times: deliveries {released}"
