"""No loss across a crash: publish while nats-server is SIGKILLed and restarted on the same
store."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import pytest
from jetplug import ACK, ConsumerSpec, StreamSpec, hookimpl
from jetplug.events import MessageHandled
from jetplug.message import Message
from jetplug.testing import running_host, wait_until

N = 1500
CONFIG = """
[nats]
reconnect_wait = 0.1
[jetstream]
publish_timeout = 0.5
publish_attempts = 40
publish_retry_wait = 0.05
idle_heartbeat = 0.25
pull_expires = 1.0
"""


class Counting:
    def __init__(self) -> None:
        self.handled: Counter[int] = Counter()

    @hookimpl
    def register_streams(self) -> list[StreamSpec]:
        return [StreamSpec("NOLOSS", ("noloss.>",))]

    @hookimpl
    def register_consumers(self) -> list[ConsumerSpec]:
        return [ConsumerSpec("NOLOSS", "counter", in_flight=64, ack_wait=2)]

    @hookimpl
    def handle_message(self, msg: Message) -> Any:
        self.handled[msg.stream_seq] += 1
        return ACK


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_every_pub_acked_message_is_handled_across_a_server_kill(
    fresh_server, capsys
) -> None:
    plugin = Counting()
    async with running_host(("counting", plugin), server=fresh_server, config=CONFIG) as h:
        acked: dict[int, str] = {}

        async def publisher() -> None:
            for i in range(N):
                ack = await h.publish("noloss.x", str(i).encode(), msg_id=f"m-{i}")
                acked[ack.seq] = f"m-{i}"

        async def crash() -> None:
            await wait_until(lambda: len(acked) >= N // 3, timeout=30)
            fresh_server.kill()
            await asyncio.sleep(
                1.0
            )  # the outage itself: the condition is "server down for a while"
            await asyncio.to_thread(fresh_server.start)

        await asyncio.gather(publisher(), crash())
        assert len(acked) == N, "every publish eventually got a pub-ack"
        assert sorted(set(acked.values())) == sorted(f"m-{i}" for i in range(N)), (
            "no message stored twice"
        )

        def all_acked() -> bool:
            final = {e.stream_seq for e in h.events_of(MessageHandled) if e.outcome == "ack"}
            return set(acked) <= final

        await wait_until(all_acked, timeout=60)
        missing = set(acked) - set(plugin.handled)
        duplicates = sum(c - 1 for c in plugin.handled.values())
        dropped = sum(1 for e in h.events_of(MessageHandled) if e.outcome == "dropped")
        with capsys.disabled():
            print(
                f"\n[no-loss] published={N} stored={len(acked)} missing={len(missing)} "
                f"handled_twice_or_more={duplicates} dropped_stale={dropped}"
            )
        assert not missing
