"""Operating jetplug: /healthz, /readyz, /metrics and `jetplug status`, against real servers."""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import _opsplugin
import pytest
from _cli import jetplug_env, run_cli_async
from jetplug import ACK, ConsumerSpec, Nak, StreamSpec, Term, hookimpl
from jetplug.engine.jsapi import JsApi
from jetplug.engine.provisioning import consumer_config, stream_config
from jetplug.errors import StartupError
from jetplug.http import get
from jetplug.message import Message
from jetplug.testing import HostHarness, running_host, wait_until
from prometheus_client import Counter
from prometheus_client.parser import text_string_to_metric_families

FAST = """
[jetstream]
idle_heartbeat = 0.2
pull_expires = 1.0

[http]
enabled = true
port = 0
check_interval = 0.2
"""


class Worker:
    """ack -> Ack; nak -> Nak on the first delivery, Ack on the next; term -> Term(bad_input)."""

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.counter: Any = None

    @hookimpl
    def register_streams(self) -> list[StreamSpec]:
        return [StreamSpec(self.stream, (f"{self.stream.lower()}.>",))]

    @hookimpl
    def register_consumers(self) -> list[ConsumerSpec]:
        return [ConsumerSpec(self.stream, "worker", retry_delays=(0.05,))]

    @hookimpl
    def startup(self, host: Any) -> None:
        self.counter = Counter(
            "testplugin_seen", "Messages the test plugin saw", registry=host.metrics.registry
        )

    @hookimpl
    def handle_message(self, msg: Message) -> Any:
        self.counter.inc()
        if msg.data == b"nak" and msg.deliveries == 1:
            return Nak(0)
        if msg.data == b"term":
            return Term("bad_input", "rejected by the test")
        return ACK


async def http(h: HostHarness, path: str) -> tuple[int, Any]:
    port = h.host.http_port
    assert port
    status, body = await get("127.0.0.1", port, path)
    if path == "/metrics":
        return status, body.decode()
    return status, json.loads(body)


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def sample(
    values: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float | None:
    return values.get((name, frozenset(labels.items())))


async def ready(h: HostHarness) -> bool:
    status, _ = await http(h, "/readyz")
    return status == 200


async def not_ready(h: HostHarness, needle: str) -> list[str] | None:
    status, body = await http(h, "/readyz")
    if status == 503 and any(needle in p for p in body["problems"]):
        return list(body["problems"])
    return None


# --- endpoints -----------------------------------------------------------------------------------


async def test_endpoints_answer_and_refuse_what_they_do_not_serve(nats_server) -> None:
    async with running_host(("worker", Worker("HEALTH_EP")), server=nats_server, config=FAST) as h:
        status, body = await http(h, "/healthz")
        assert status == 200 and body["alive"] is True
        assert await wait_until(lambda: ready(h), timeout=10)
        status, body = await http(h, "/readyz")
        assert body == {"ready": True, "problems": [], "consumers": {"HEALTH_EP/worker": "running"}}
        status, _ = await http(h, "/nothing")
        assert status == 404
        port = h.host.http_port

        def raw(request: bytes) -> bytes:
            import socket

            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
                sock.sendall(request)
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
                return b"".join(chunks)

        post = await asyncio.to_thread(raw, b"POST /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert post.startswith(b"HTTP/1.1 405 ")
        big = b"GET /readyz HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n"
        huge = await asyncio.to_thread(raw, big)
        assert huge.startswith(b"HTTP/1.1 431 ")
        head = await asyncio.to_thread(raw, b"HEAD /healthz HTTP/1.1\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
        assert b"Connection: close" in head
    # stopped with the host
    with pytest.raises(OSError):
        await get("127.0.0.1", port, "/healthz")


async def test_healthz_is_503_while_the_loop_is_blocked(nats_server) -> None:
    config = FAST + "max_loop_lag = 0.3\n"
    worker = Worker("HEALTH_LAG")
    async with running_host(("worker", worker), server=nats_server, config=config) as h:
        url = f"http://127.0.0.1:{h.host.http_port}/healthz"

        def fetch() -> tuple[int, dict[str, Any]]:
            try:
                with urllib.request.urlopen(url, timeout=10) as resp:
                    return resp.status, json.loads(resp.read())
            except urllib.error.HTTPError as err:
                return err.code, json.loads(err.read())

        loop = asyncio.get_running_loop()
        pending = loop.run_in_executor(None, fetch)
        time.sleep(1.0)  # a handler that blocks the event loop
        status, body = await pending
        assert status == 503, body
        assert body["alive"] is False and "event loop: lag" in body["problems"][0]

        # alive again once the lag window has passed
        async def healthy() -> bool:
            return (await asyncio.to_thread(fetch))[0] == 200

        assert await wait_until(healthy, timeout=10)


async def test_http_port_in_use_is_a_startup_error(nats_server) -> None:
    config = f"[http]\nenabled = true\nport = {nats_server.port}\n"
    with pytest.raises(StartupError, match=r"\[http\] cannot listen on 127.0.0.1:\d+"):
        async with running_host(("w", Worker("HEALTH_PORT")), server=nats_server, config=config):
            pass


# --- readiness -----------------------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_readyz_is_503_while_the_server_is_down_and_200_after_restart(fresh_server) -> None:
    worker = Worker("HEALTH_KILL")
    async with running_host(("worker", worker), server=fresh_server, config=FAST) as h:
        assert await wait_until(lambda: ready(h), timeout=10)
        fresh_server.kill()
        problems = await wait_until(lambda: not_ready(h, "connection:"), timeout=10)
        assert any(p.startswith("connection: ") for p in problems), problems
        status, _ = await http(h, "/healthz")
        assert status == 200  # alive, only not ready
        fresh_server.start()
        assert await wait_until(lambda: ready(h), timeout=20)
        # and it works again
        ack = await h.publish("health_kill.a", b"ack")
        await h.outcome(ack.seq, timeout=10)


async def test_a_deleted_consumer_is_not_ready_until_it_is_recreated(nats_server) -> None:
    stream = "HEALTH_DEL"
    worker = Worker(stream)
    async with running_host(("worker", worker), server=nats_server, config=FAST):
        pass  # provisioned (manage mode); now run with provision = "off" so nothing re-creates it
    config = FAST + "\n[jetstream.dlq]\nenabled = true\n"
    config = config.replace("[jetstream]\n", '[jetstream]\nprovision = "off"\n')
    async with running_host(("worker", worker), server=nats_server, config=config) as h:
        assert await wait_until(lambda: ready(h), timeout=10)
        api = h.host.engine.api
        await api.delete_consumer(stream, "worker")
        problems = await wait_until(lambda: not_ready(h, f"consumer {stream}/worker"), timeout=10)
        assert any(f"consumer {stream}/worker: " in p for p in problems), problems
        # it stays not ready: nobody re-creates it (a duration to watch, not a condition to await)
        for _ in range(5):
            await asyncio.sleep(0.3)
            assert await not_ready(h, f"consumer {stream}/worker"), "ready without the consumer"
        spec = next(iter(h.host.engine.runners.values())).spec
        await api.create_consumer(stream, consumer_config(spec))
        assert await wait_until(lambda: ready(h), timeout=15)
        ack = await h.publish("health_del.a", b"ack")
        await h.outcome(ack.seq, timeout=10)


# --- metrics -------------------------------------------------------------------------------------


async def test_metrics_move_as_expected_after_acks_naks_and_terms(nats_server) -> None:
    stream = "HEALTH_METRICS"
    async with running_host(("worker", Worker(stream)), server=nats_server, config=FAST) as h:
        seqs = []
        for data in (b"ack", b"nak", b"ack", b"term", b"nak", b"ack"):
            seqs.append((await h.publish("health_metrics.x", data)).seq)
        for seq in seqs:
            await h.outcome(seq)

        labels = {"stream": stream, "consumer": "worker"}

        async def settled() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
            _, text = await http(h, "/metrics")
            values = samples(text)
            lag = sample(values, "jetplug_consumer_pending", **labels)
            unacked = sample(values, "jetplug_consumer_ack_pending", **labels)
            stored = sample(values, "jetplug_stream_messages", stream=stream)
            dead = sample(values, "jetplug_dlq_messages") or 0
            return values if (lag, unacked, stored) == (0, 0, 6) and dead >= 1 else None

        values = await wait_until(settled, timeout=10)
        v = lambda name, **extra: sample(values, name, **labels, **extra)  # noqa: E731
        assert v("jetplug_messages_handled_total", outcome="ack") == 5
        assert v("jetplug_messages_handled_total", outcome="nak") == 2
        assert v("jetplug_messages_handled_total", outcome="term") == 1
        assert v("jetplug_handler_duration_seconds_count") == 8
        assert v("jetplug_redeliveries_total") == 2
        assert v("jetplug_dead_letters_total", reason="bad_input") == 1
        assert v("jetplug_consumer_in_flight") == 0
        assert v("jetplug_consumer_redelivered") == 0
        assert v("jetplug_consumer_state", state="running") == 1
        assert v("jetplug_consumer_state", state="stalled") == 0
        assert sample(values, "jetplug_publishes_total", stream=stream, result="stored") == 6
        assert sample(values, "jetplug_publishes_total", stream="JETPLUG_DLQ", result="stored") == 1
        assert sample(values, "jetplug_publish_duration_seconds_count", stream=stream) == 6
        assert sample(values, "jetplug_connection_state", state="connected") == 1
        assert sample(values, "jetplug_connection_state", state="reconnecting") == 0
        assert sample(values, "jetplug_ready") == 1
        assert sample(values, "testplugin_seen_total") == 8  # a plugin's own metric
        assert not any(name.startswith("python_") for name, _ in values)  # not the global registry


async def test_each_host_counts_only_its_own_messages(nats_server) -> None:
    async with (
        running_host(("worker", Worker("HEALTH_A")), server=nats_server, config=FAST) as a,
        running_host(("worker", Worker("HEALTH_B")), server=nats_server, config=FAST) as b,
    ):
        await a.outcome((await a.publish("health_a.x", b"ack")).seq)
        for _ in range(2):
            await b.outcome((await b.publish("health_b.x", b"ack")).seq)
        _, text_a = await http(a, "/metrics")
        _, text_b = await http(b, "/metrics")
        handled = "jetplug_messages_handled_total"
        acked = {"consumer": "worker", "outcome": "ack"}
        assert sample(samples(text_a), handled, stream="HEALTH_A", **acked) == 1
        assert sample(samples(text_b), handled, stream="HEALTH_B", **acked) == 2
        assert "HEALTH_B" not in text_a


# --- jetplug status ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ops_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _opsplugin.install(tmp_path_factory.mktemp("opsplugin"))


async def status_cli(config: Path, plugin: Path, *args: str) -> tuple[int, str, str]:
    return await run_cli_async(
        "--log-level",
        "warning",
        "status",
        "-c",
        str(config),
        "-p",
        "opstest",
        *args,
        cwd=config.parent,
        env=jetplug_env(PYTHONPATH=str(plugin)),
    )


async def test_status_json_matches_the_servers_consumer_info(
    nats_server, nc, ops_plugin, tmp_path
) -> None:
    stream = "OPS_STATUS"
    api = JsApi(nc)
    await api.create_stream(stream_config(StreamSpec(stream, ("ops_status.>",))))
    await api.create_consumer(stream, consumer_config(ConsumerSpec(stream, "worker", ack_wait=60)))
    js = nc.jetstream()
    for i in range(7):
        await js.publish(f"ops_status.{i}", b"x" * (10 + i))
    sub = await js.pull_subscribe_bind("worker", stream)
    fetched = await sub.fetch(3, timeout=5)
    await fetched[0].ack_sync()  # 1 acked, 2 left unacked, 4 never delivered
    config = tmp_path / "jetplug.toml"
    config.write_text(
        f'[nats]\nservers = ["{nats_server.url}"]\n\n[plugins.opstest]\nstream = "{stream}"\n'
    )

    code, out, err = await status_cli(config, ops_plugin, "--json")
    assert code == 0, err
    status = json.loads(out)
    info = await api.consumer_info(stream, "worker")
    sinfo = (await api.stream_info(stream))["state"]

    (consumer,) = status["consumers"]
    assert consumer == {
        "stream": stream,
        "consumer": "worker",
        "owner": "opstest",
        "mode": "pull",
        "exists": True,
        "num_pending": info["num_pending"],
        "num_ack_pending": info["num_ack_pending"],
        "num_redelivered": info["num_redelivered"],
        "num_waiting": info["num_waiting"],
        "delivered_stream_seq": info["delivered"]["stream_seq"],
        "ack_floor_stream_seq": info["ack_floor"]["stream_seq"],
        "last_active": info["delivered"]["last_active"],
    }
    assert (consumer["num_pending"], consumer["num_ack_pending"]) == (4, 2)
    (row,) = [s for s in status["streams"] if s["name"] == stream]
    assert (row["owner"], row["exists"], row["subjects"]) == ("opstest", True, ["ops_status.>"])
    assert (row["messages"], row["bytes"], row["first_seq"], row["last_seq"]) == (
        sinfo["messages"],
        sinfo["bytes"],
        sinfo["first_seq"],
        sinfo["last_seq"],
    )
    assert row["messages"] == 7
    conn = status["connection"]
    assert conn["server"] == nats_server.url and conn["connected"] is True
    assert conn["version"][0].isdigit() and conn["rtt_ms"] is not None
    assert status["dlq"]["stream"] == "JETPLUG_DLQ"
    assert status["host"] is None  # [http] is off in this config

    code, text, err = await status_cli(config, ops_plugin)
    assert code == 0, err
    assert f"connection  {nats_server.url}" in text
    line = next(ln for ln in text.splitlines() if ln.startswith(f"{stream}/worker"))
    assert line.split()[:6] == [f"{stream}/worker", "pull", "4", "2", "0", str(info["num_waiting"])]
    assert "dead letters:" in text


async def test_status_reports_missing_consumer_and_a_running_hosts_readiness(
    nats_server, nc, ops_plugin, tmp_path
) -> None:
    stream = "OPS_STATUS_RUN"
    config = tmp_path / "jetplug.toml"
    from jetplug.embedded import free_port

    port = free_port()
    config.write_text(
        f'[nats]\nservers = ["{nats_server.url}"]\n\n[http]\nenabled = true\nport = {port}\n\n'
        f'[plugins.opstest]\nstream = "{stream}"\n'
    )
    code, out, _ = await status_cli(config, ops_plugin, "--json")
    status = json.loads(out)
    assert code == 1  # nothing provisioned, no host running
    assert status["consumers"][0]["exists"] is False
    assert status["host"]["reachable"] is False
    # a host serving the same config on that port
    async with running_host(
        ("worker", Worker(stream)),
        server=nats_server,
        config=FAST.replace("port = 0", f"port = {port}"),
    ) as h:
        assert await wait_until(lambda: ready(h), timeout=10)
        code, out, err = await status_cli(config, ops_plugin, "--json")
        assert code == 0, out + err
        status = json.loads(out)
        assert status["host"] == {
            "url": f"http://127.0.0.1:{port}/readyz",
            "reachable": True,
            "ready": True,
            "problems": [],
        }


def test_latency_buckets_count_each_observation_in_every_bucket_at_or_above_it() -> None:
    from jetplug.stats import HandledStats

    stats = HandledStats()
    for seconds in (0.001, 0.0011, 0.3, 100.0):
        stats.count("ack", seconds)
    buckets = dict(stats.duration.buckets())
    wanted = ("0.0005", "0.001", "0.0025", "0.25", "0.5", "60.0", "+Inf")
    assert [buckets[le] for le in wanted] == [0, 1, 2, 2, 3, 3, 4]
    assert stats.duration.total == pytest.approx(100.3021)
    assert stats.outcomes == {"ack": 4}


# --- docs ----------------------------------------------------------------------------------------


def test_every_host_metric_is_in_the_docs_table() -> None:
    from jetplug.builtin.metrics import FAMILIES

    names = {name + ("_total" if kind == "counter" else "") for _, kind, name, _, _ in FAMILIES}
    doc = (Path(__file__).resolve().parent.parent / "docs" / "metrics.md").read_text()
    table = set(re.findall(r"^\| `(jetplug_[a-z_]+)` \|", doc, flags=re.M))
    assert names - table == set(), "metrics missing from docs/metrics.md"
    host_rows = {n for n in table if not n.startswith("jetplug_caf_")}
    assert host_rows - names == set(), "documented in docs/metrics.md but not registered"


@pytest.mark.timeout(60)
async def test_status_watches_a_running_host_on_its_embedded_server(ops_plugin, tmp_path) -> None:
    from _cli import EMBEDDED_PID, Spawned, embedded_config
    from jetplug.embedded import free_port

    http_port = free_port()
    extra = f'[http]\nenabled = true\nport = {http_port}\n\n[plugins.opstest]\nstream = "EMB"\n'
    config, port = embedded_config(tmp_path, extra)
    env = jetplug_env(PYTHONPATH=str(ops_plugin))
    host = Spawned("run", "-c", str(config), "-p", "opstest", cwd=tmp_path, env=env)
    try:
        started = lambda: "jetplug is running" in host.output() or host.proc.poll() is not None  # noqa: E731
        await wait_until(started, timeout=20)
        match = EMBEDDED_PID.search(host.output())
        assert match, host.output()
        host.children.append(int(match.group(1)))
        code, out, err = await status_cli(config, ops_plugin, "--json")
        assert code == 0, out + err
        status = json.loads(out)
        assert status["connection"]["server"] == f"nats://127.0.0.1:{port}"
        assert status["connection"]["embedded"] is False  # it looked at the running one
        assert status["consumers"][0]["exists"] is True
        assert status["host"]["ready"] is True
        host.signal()
        assert await asyncio.to_thread(host.proc.wait, 20) == 0
    finally:
        host.cleanup()
