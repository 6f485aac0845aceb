"""Self-healing: a deleted consumer is re-created, a restarted server is resumed."""

from __future__ import annotations

from typing import Any

import pytest
from jetplug import ACK, ConsumerSpec, StreamSpec, hookimpl
from jetplug.events import ConnectionChanged, ConsumerStateChanged
from jetplug.message import Message
from jetplug.testing import running_host, wait_until

FAST = """
[jetstream]
idle_heartbeat = 0.2
pull_expires = 1.0
"""


class Worker:
    def __init__(self, stream: str, **consumer: Any) -> None:
        self.stream = stream
        self.consumer = consumer
        self.handled: list[int] = []

    @hookimpl
    def register_streams(self) -> list[StreamSpec]:
        return [StreamSpec(self.stream, (f"{self.stream.lower()}.>",))]

    @hookimpl
    def register_consumers(self) -> list[ConsumerSpec]:
        return [ConsumerSpec(self.stream, "worker", **self.consumer)]

    @hookimpl
    def handle_message(self, msg: Message) -> Any:
        self.handled.append(msg.stream_seq)
        return ACK


@pytest.mark.parametrize("mode", ["pull", "push"])
async def test_deleted_consumer_is_recreated_and_resumes(nats_server, mode: str) -> None:
    stream = f"HEAL_DEL_{mode.upper()}"
    worker = Worker(stream, mode=mode)
    async with running_host(("worker", worker), server=nats_server, config=FAST) as h:
        first = await h.publish(f"{stream.lower()}.a", b"1")
        await h.outcome(first.seq)
        await h.host.engine.api.delete_consumer(stream, "worker")
        await h.wait_event(
            lambda e: (
                isinstance(e, ConsumerStateChanged)
                and e.state == "running"
                and e.reason == "recovered"
            ),
            timeout=15,
        )
        second = await h.publish(f"{stream.lower()}.b", b"2")
        await h.outcome(second.seq, timeout=15)
        assert worker.handled.count(second.seq) == 1
        states = [e.state for e in h.events_of(ConsumerStateChanged)]
        assert "recovering" in states


@pytest.mark.timeout(60)
async def test_server_restart_resumes_pull_consumer(fresh_server) -> None:
    worker = Worker("HEAL_RESTART")
    async with running_host(("worker", worker), server=fresh_server, config=FAST) as h:
        first = await h.publish("heal_restart.a", b"1")
        await h.outcome(first.seq)
        fresh_server.restart()
        await h.wait_event(
            lambda e: isinstance(e, ConnectionChanged) and e.state == "reconnected", timeout=20
        )
        second = await h.publish("heal_restart.b", b"2")
        await h.outcome(second.seq, timeout=20)
        assert second.seq in worker.handled
        runner = next(iter(h.host.engine.runners.values()))
        await wait_until(lambda: runner.state == "running", timeout=10)
