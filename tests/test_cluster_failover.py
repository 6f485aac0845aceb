"""Scale-out on a real three-node cluster: two hosts share a durable pull consumer on a
three-replica stream while the stream's leader is killed mid-stream; nothing pub-acked is lost.

This is the architecture's scale claim, on loopback: several hosts, a three-node cluster, a
server killed mid-stream (SIGKILL, no clean shutdown). The publisher has to ride out the stream's
leader election (``no_responders`` and timeouts are retried with the same msg-id), the hosts
connected to the killed server reconnect to another one, and the consumer goes on from its
replicated state.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest
from jetplug import ACK, ConsumerSpec, StreamSpec, hookimpl
from jetplug.embedded import EmbeddedServer, free_port
from jetplug.events import MessageHandled
from jetplug.message import Message
from jetplug.testing import running_host, wait_until

N = 600
STREAM, SUBJECT, DURABLE = "CLUSTERED", "clustered.x", "clustered-workers"


class Cluster:
    """Three nats-servers with JetStream, routed to each other on 127.0.0.1."""

    def __init__(self, root: Path) -> None:
        cluster_ports = [free_port() for _ in range(3)]
        routes = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in cluster_ports)
        self.servers = [
            EmbeddedServer(
                store_dir=root / f"n{i + 1}",
                name=f"n{i + 1}",
                extra_config=(
                    "cluster {\n"
                    '  name: "jetplug-test"\n'
                    f'  listen: "127.0.0.1:{cport}"\n'
                    f"  routes: [{routes}]\n"
                    "}"
                ),
            )
            for i, cport in enumerate(cluster_ports)
        ]

    @property
    def urls(self) -> list[str]:
        return [s.url for s in self.servers]

    def named(self, name: str) -> EmbeddedServer:
        return next(s for s in self.servers if s.name == name)

    def start(self) -> None:
        for server in self.servers:
            server.start()

    def stop(self) -> None:
        for server in self.servers:
            server.stop()

    async def wait_for_jetstream(self, timeout: float = 30.0) -> None:
        """Until the cluster has elected its JetStream meta leader (API requests answered)."""
        nc = await nats.connect(servers=self.urls)
        try:

            async def ready() -> bool:
                try:
                    info = await nc.request("$JS.API.INFO", b"", timeout=1)
                except Exception:  # no responders until the meta leader exists
                    return False
                return b'"error"' not in info.data

            await wait_until(ready, timeout=timeout, interval=0.2, message="JetStream meta leader")
        finally:
            await nc.close()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    c = Cluster(tmp_path)
    try:
        c.start()
        yield c
    finally:
        c.stop()  # by pid, every server, also the one the test killed and restarted


class Worker:
    """One host's share of the work: counts what it handled, acks at once."""

    def __init__(self) -> None:
        self.handled: Counter[int] = Counter()

    @hookimpl
    def register_streams(self) -> list[StreamSpec]:
        return [StreamSpec(STREAM, (SUBJECT,), replicas=3)]

    @hookimpl
    def register_consumers(self) -> list[ConsumerSpec]:
        # no replica count: a consumer has as many replicas as its stream unless told otherwise
        return [ConsumerSpec(STREAM, DURABLE, in_flight=64, ack_wait=5)]

    @hookimpl
    def handle_message(self, msg: Message) -> Any:
        self.handled[msg.stream_seq] += 1
        return ACK


def _config(urls: list[str]) -> str:
    servers = ", ".join(f'"{u}"' for u in urls)
    # the publish retry settings are the defaults: they must ride out a leader election (4-9 s
    # with production Raft timers); quicker heartbeats only make the consumers notice sooner
    return f"""
[nats]
servers = [{servers}]
reconnect_wait = 0.1
[jetstream]
idle_heartbeat = 0.25
pull_expires = 1.0
"""


@pytest.mark.slow
@pytest.mark.timeout(180)
async def test_two_hosts_lose_nothing_when_the_stream_leader_is_killed(
    cluster: Cluster, capsys: pytest.CaptureFixture[str]
) -> None:
    await cluster.wait_for_jetstream()
    config = _config(cluster.urls)
    a, b = Worker(), Worker()
    async with (
        running_host(("worker", a), config=config) as ha,
        running_host(("worker", b), config=config) as hb,
    ):
        api = ha.host.engine.api  # type: ignore[union-attr]
        acked: dict[int, str] = {}
        killed: list[str] = []
        longest = 0.0  # the slowest single publish: the stall the leader election caused

        async def publisher() -> None:
            nonlocal longest
            for i in range(N):
                started = time.monotonic()
                ack = await ha.publish(SUBJECT, str(i).encode(), msg_id=f"c-{i}")
                longest = max(longest, time.monotonic() - started)
                acked[ack.seq] = f"c-{i}"

        async def kill_the_leader() -> None:
            await wait_until(lambda: len(acked) >= N // 3, timeout=60)
            leader = (await api.stream_info(STREAM))["cluster"]["leader"]
            killed.append(leader)
            cluster.named(leader).kill()

        await asyncio.gather(publisher(), kill_the_leader())

        # every publish was pub-acked, each with a sequence of its own
        assert len(acked) == N, "every publish eventually got a pub-ack"
        assert len(set(acked.values())) == N

        def all_handled() -> bool:
            done = set(a.handled) | set(b.handled)
            return set(acked) <= done

        await wait_until(all_handled, timeout=60, message="every pub-acked message handled")

        async def settled() -> bool:
            info = await api.consumer_info(STREAM, DURABLE)
            return bool(info["num_pending"] == 0 and info["num_ack_pending"] == 0)

        await wait_until(settled, timeout=60, message="the consumer acked everything")
        stream = await api.stream_info(STREAM)
        acks = {e.stream_seq for h in (ha, hb) for e in h.events_of(MessageHandled, outcome="ack")}
        retries = sum(s.retries for s in ha.host.engine.publisher.stats.values())  # type: ignore[union-attr]

    assert stream["state"]["messages"] == N, "nothing stored twice despite the retries"
    assert set(acked) <= acks, "every pub-acked message was acked by one of the hosts"
    assert a.handled and b.handled, "both hosts took a share of the work"
    handled = a.handled + b.handled
    twice = sum(count - 1 for count in handled.values())
    with capsys.disabled():
        print(
            f"\n[cluster] killed stream leader {killed[0]}; published={N} stored="
            f"{stream['state']['messages']} host_a={len(a.handled)} host_b={len(b.handled)} "
            f"handled_twice={twice} publish_retries={retries} "
            f"slowest_publish={longest:.2f}s"
        )
