"""A message that reaches a host after it stopped taking messages is handed back once, not lost.

Found by the test kit's conformance check (shutdown_loses_nothing): a pull consumer that stopped
intake still has its last pull request open on the server. A message delivered to it is
released (nak without delay), the server redelivers it at once to the same open request, the
host releases it again, and so on until ``max_deliver`` is used up. The server then never
delivers it again, and no host dead-letters it: the message is lost. The engine now
unsubscribes the pull inbox in ``stop_intake``, so the server drops the open requests.

Found by the shutdown benchmark (bench/shutdown.py): messages the server had already sent when
the host unsubscribed were dropped by the client and came back only after ``ack_wait``.
``stop_intake`` now drains the subscription (UNSUB, round trip, then the queued messages are
released at once).
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from typing import Any

import nats
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


class Counting:
    def __init__(self, tok: str) -> None:
        self.stream, self.subject, self.durable = f"QUE_{tok}", f"que.{tok}", f"que-{tok}"
        self.handled: list[int] = []

    @hookimpl
    def register_streams(self) -> list[StreamSpec]:
        return [StreamSpec(self.stream, (self.subject,))]

    @hookimpl
    def register_consumers(self) -> list[ConsumerSpec]:
        # ack_wait far beyond the test's bounds: a message left unacked cannot come back in time
        return [ConsumerSpec(self.stream, self.durable, in_flight=32, ack_wait=60)]

    @hookimpl
    def handle_message(self, msg: Message) -> Any:
        self.handled.append(msg.stream_seq)
        return ACK


def _publish_while_the_host_is_frozen(url: str, plugin: Counting, count: int) -> None:
    """From another thread: publish ``count`` messages and wait until the server has delivered
    them all to the (frozen) host, so they sit unread in its socket."""

    async def main() -> None:
        nc = await nats.connect(url)
        try:
            js = nc.jetstream()
            for i in range(count):
                await js.publish(plugin.subject, b"%d" % i)
            for _ in range(500):
                info = await js.consumer_info(plugin.stream, plugin.durable)
                if info.num_ack_pending >= count:
                    return
                await asyncio.sleep(0.01)
            raise AssertionError(f"server delivered only {info.num_ack_pending}/{count}")
        finally:
            await nc.close()

    asyncio.run(main())


@pytest.mark.timeout(40)
async def test_messages_arriving_during_the_stop_are_handed_back_at_once(nats_server) -> None:
    tok = uuid.uuid4().hex[:8]
    first = Counting(tok)
    async with running_host(("counting", first), server=nats_server) as h:
        assert h.host.engine is not None
        runner = next(iter(h.host.engine.runners.values()))
        await wait_until(lambda: runner.outstanding > 0)
        await h.host.nc.flush()  # the pull request has reached the server; the stream is empty
        # freeze this event loop (the host cannot read) while another thread publishes; the
        # server delivers to the open pull request and the messages wait in the socket
        failures: list[BaseException] = []

        def publish() -> None:
            try:
                _publish_while_the_host_is_frozen(nats_server.url, first, 10)
            except BaseException as exc:  # reported by the test below
                failures.append(exc)

        worker = threading.Thread(target=publish)
        worker.start()
        worker.join(20)
        assert not worker.is_alive() and not failures, failures
        # the stop starts before the loop reads them: they arrive while intake is stopping
        await runner.stop_intake()
        await wait_until(lambda: len(h.events_of(MessageHandled, outcome="released")) >= 10)
    assert not first.handled, "nothing was started after the stop"

    second = Counting(tok)
    async with running_host(("counting", second), server=nats_server):
        # with ack_wait = 60 s, only a message handed back at once can reach this host in time
        await wait_until(
            lambda: len(second.handled) >= 10,
            timeout=10,
            message="the messages that arrived during the stop reached the next host at once",
        )
    assert sorted(second.handled) == list(range(1, 11))
