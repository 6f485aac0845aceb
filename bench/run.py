"""jetplug throughput benchmark: the engine and the host's publisher against raw nats-py.

One run starts ONE embedded nats-server (file storage, fresh temporary store directory, 127.0.0.1
only), runs every contender against it with the same settings, prints a table and the ratios the
engine issue sets as targets, and stops the server by its pid.

Consume + ack (``--messages`` N messages pre-published to one stream; every contender run gets
its own durable consumer on that stream, created with the same settings as the engine's,
``max_ack_pending`` = ``--budget``):

* ``raw-push``           nats-py ``js.subscribe(..., cb=..., manual_ack=True)``, ``await msg.ack()``
* ``raw-pull``           nats-py ``js.pull_subscribe``; loop ``fetch(budget)``; ``await msg.ack()``
* ``engine-pull``        a jetplug host, no-op plugin (plain ``def handle_message`` -> ACK), pull
* ``engine-push``        the same plugin, ``ConsumerSpec(mode="push")``
* ``engine-pull-async``  pull with an ``async def`` no-op handler

Publish with pub-ack (``--publishes`` M messages, one fresh stream per contender run, each
message with a unique ``Nats-Msg-Id`` like the host adds, unless ``--no-raw-msg-id``):

* ``raw-inbox``          core ``nc.publish(subject, reply=<inbox>.<n>)``, one wildcard inbox
                         subscription collecting the pub-acks, a window of in-flight publishes
* ``raw-publish-async``  nats-py ``js.publish_async`` + ``js.publish_async_completed()``
* ``raw-gather``         many concurrent ``js.publish`` coroutines, ``asyncio.gather`` per window
* ``host-publish-many``  ``host.publisher.publish_many([Publish, ...])`` through the host's window
* ``host-publish-async`` ``host.publisher.publish_async`` futures, awaited at the end

Timing covers only the work: from subscribing/starting intake (consume) or the first publish
until the last ack was sent and flushed (consume) or the last pub-ack arrived (publish). Stream
creation, pre-publishing, connecting and host startup are outside it. CPU is
``time.process_time()`` of this process (the server runs in its own process).

Usage: ``.venv/bin/python bench/run.py [--messages N] [--publishes M] [--repeat K] [--json FILE]
[--only NAME[,NAME...]] [--profile FILE] [--callgrind]``
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
import nats.errors
import nats.js
from jetplug import ACK, ConsumerSpec, Publish, PublishError, StreamSpec, hookimpl
from jetplug.config import build_config
from jetplug.embedded import EmbeddedServer
from jetplug.engine.jsapi import ApiError, JsApi
from jetplug.engine.provisioning import consumer_config, stream_config
from jetplug.host import Host
from jetplug.plugins import Selection, discover

CONSUME_STREAM = "BENCH_CONSUME"
CONSUME_SUBJECT = "bench.consume"

CONSUME = ("raw-push", "raw-pull", "engine-pull", "engine-push", "engine-pull-async")
PUBLISH = (
    "raw-inbox",
    "raw-publish-async",
    "raw-gather",
    "host-publish-many",
    "host-publish-async",
)
ALL = CONSUME + PUBLISH

#: (label, numerator, denominator, target)
RATIOS = (
    ("engine push / raw push", "engine-push", "raw-push", 0.6),
    ("engine pull / raw push", "engine-pull", "raw-push", 0.6),
    ("engine pull / raw pull", "engine-pull", "raw-pull", 2.0),
    ("engine pull async / raw push", "engine-pull-async", "raw-push", None),
    ("host publish / raw inbox pattern", "host-publish-many", "raw-inbox", 0.8),
    ("host publish / raw publish_async", "host-publish-many", "raw-publish-async", 0.8),
    ("host publish_async / raw inbox pattern", "host-publish-async", "raw-inbox", None),
)


# --- measuring ---------------------------------------------------------------------------------


@dataclass
class Run:
    """One timed run of one contender."""

    count: int
    wall: float
    cpu: float
    sys: float  # kernel part of cpu (socket syscalls and loopback TCP work done in our context)
    note: str = ""

    @property
    def rate(self) -> float:
        return self.count / self.wall if self.wall > 0 else 0.0

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.count * 1e6 if self.count else 0.0

    @property
    def sys_us(self) -> float:
        return self.sys / self.count * 1e6 if self.count else 0.0


def callgrind(on: bool) -> None:
    """Switch callgrind's instrumentation for this process (``--callgrind``, under valgrind)."""
    subprocess.run(
        ["callgrind_control", "-i", "on" if on else "off", str(os.getpid())],
        check=True,
        stdout=subprocess.DEVNULL,
    )


class Meter:
    """Wall and process CPU time of the timed region; optionally cProfile or callgrind of it."""

    def __init__(self, profiler: cProfile.Profile | None = None, instrument: bool = False) -> None:
        self.profiler = profiler
        self.instrument = instrument
        self.t0 = self.c0 = self.wall = self.cpu = self.sys = 0.0
        self.s0 = 0.0

    def start(self) -> None:
        gc.collect()
        if self.instrument:
            callgrind(True)
        if self.profiler is not None:
            self.profiler.enable()
        self.s0 = resource.getrusage(resource.RUSAGE_SELF).ru_stime
        self.c0 = time.process_time()
        self.t0 = time.perf_counter()

    def stop(self) -> None:
        self.wall = time.perf_counter() - self.t0
        self.cpu = time.process_time() - self.c0
        self.sys = resource.getrusage(resource.RUSAGE_SELF).ru_stime - self.s0
        if self.profiler is not None:
            self.profiler.disable()
        if self.instrument:
            callgrind(False)


@dataclass
class Ctx:
    """What every contender gets: the server, settings, an admin connection."""

    args: argparse.Namespace
    server: EmbeddedServer
    admin: Any
    api: JsApi
    payload: bytes
    data_dir: str
    profiler: cProfile.Profile | None = None
    results: dict[str, list[Run]] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)

    def meter(self) -> Meter:
        return Meter(self.profiler, self.args.callgrind)


async def _bounded(awaitable: Awaitable[Any], timeout: float, what: str) -> Any:
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except asyncio.TimeoutError:
        raise RuntimeError(f"{what}: not finished within {timeout:g}s") from None


async def _connect(ctx: Ctx) -> Any:
    return await nats.connect(ctx.server.url, name="bench-raw", max_reconnect_attempts=0)


def _spec(durable: str, mode: str, budget: int) -> ConsumerSpec:
    return ConsumerSpec(CONSUME_STREAM, durable, mode=mode, in_flight=budget)  # type: ignore[arg-type]


async def _create_raw_consumer(ctx: Ctx, durable: str, mode: str) -> None:
    """The same server config the engine provisions for its own consumers."""
    await ctx.api.create_consumer(
        CONSUME_STREAM, consumer_config(_spec(durable, mode, ctx.args.budget))
    )


async def _check_consumer(ctx: Ctx, durable: str) -> str:
    """After the clock stopped: every message acked on the server, nothing redelivered."""
    n = ctx.args.messages
    info: dict[str, Any] = {}
    for _ in range(100):
        info = await ctx.api.consumer_info(CONSUME_STREAM, durable)
        if info["num_ack_pending"] == 0 and info["ack_floor"]["stream_seq"] >= n:
            break
        await asyncio.sleep(0.05)
    problems = []
    if info["ack_floor"]["stream_seq"] < n or info["num_ack_pending"]:
        problems.append(
            f"ack floor {info['ack_floor']['stream_seq']}/{n}, {info['num_ack_pending']} pending"
        )
    if info.get("num_redelivered"):
        problems.append(f"{info['num_redelivered']} redelivered")
    try:
        await ctx.api.delete_consumer(CONSUME_STREAM, durable)
    except ApiError:
        pass
    return "; ".join(problems)


# --- consume: raw nats-py ----------------------------------------------------------------------


async def raw_push(ctx: Ctx, tag: str) -> Run:
    n, budget = ctx.args.messages, ctx.args.budget
    durable = f"raw-push-{tag}"
    await _create_raw_consumer(ctx, durable, "push")
    nc = await _connect(ctx)
    js = nc.jetstream()
    acked = 0
    done = asyncio.Event()

    async def cb(msg: Any) -> None:
        nonlocal acked
        await msg.ack()
        acked += 1
        if acked == n:
            done.set()

    meter = ctx.meter()
    try:
        meter.start()
        sub = await js.subscribe(
            f"{CONSUME_SUBJECT}.>",
            durable=durable,
            stream=CONSUME_STREAM,
            cb=cb,
            manual_ack=True,
            pending_msgs_limit=budget * 4 + 64,
            pending_bytes_limit=-1,
        )
        await _bounded(done.wait(), ctx.args.timeout, "raw push")
        await nc.flush()
        meter.stop()
        await sub.unsubscribe()
    finally:
        await nc.close()
    return Run(n, meter.wall, meter.cpu, meter.sys, await _check_consumer(ctx, durable))


async def raw_pull(ctx: Ctx, tag: str) -> Run:
    n, budget = ctx.args.messages, ctx.args.budget
    durable = f"raw-pull-{tag}"
    await _create_raw_consumer(ctx, durable, "pull")
    nc = await _connect(ctx)
    js = nc.jetstream()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + ctx.args.timeout
    acked = 0
    meter = ctx.meter()
    try:
        meter.start()
        psub = await js.pull_subscribe(
            f"{CONSUME_SUBJECT}.>", durable=durable, stream=CONSUME_STREAM
        )
        while acked < n:
            if loop.time() > deadline:
                raise RuntimeError(f"raw pull: {acked}/{n} acked after {ctx.args.timeout:g}s")
            try:
                msgs = await psub.fetch(budget, timeout=5)
            except nats.errors.TimeoutError:
                continue
            for msg in msgs:
                await msg.ack()
                acked += 1
        await nc.flush()
        meter.stop()
        await psub.unsubscribe()
    finally:
        await nc.close()
    return Run(n, meter.wall, meter.cpu, meter.sys, await _check_consumer(ctx, durable))


# --- consume: the engine -----------------------------------------------------------------------


class _Gate:
    """Holds the host in ``startup`` (connected, provisioned, no intake yet); counts handled
    messages from the no-op handler, so no telemetry sink asks the engine for an event per
    message (a host with only the built-ins builds none)."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.handled = 0
        self.ready = asyncio.Event()
        self.go = asyncio.Event()
        self.done = asyncio.Event()

    def count(self) -> None:
        self.handled += 1
        if self.handled == self.target:
            self.done.set()  # the ack of this message goes out before the waiter resumes

    @hookimpl
    async def startup(self, host: Host) -> None:
        self.ready.set()
        await self.go.wait()


class NoopConsumer:
    """The benchmark plugin: one stream, one consumer, every message acked at once."""

    def __init__(
        self, spec: ConsumerSpec, streams: list[StreamSpec], gate: _Gate | None = None
    ) -> None:
        self.spec = spec
        self.streams = streams
        self.gate = gate

    @hookimpl
    def register_streams(self) -> list[StreamSpec]:
        return self.streams

    @hookimpl
    def register_consumers(self) -> list[ConsumerSpec]:
        return [self.spec] if self.spec is not None else []

    @hookimpl
    def handle_message(self, msg: Any) -> Any:
        if self.gate is not None:
            self.gate.count()
        return ACK


class AsyncNoopConsumer(NoopConsumer):
    """The same with an ``async def`` handler."""

    @hookimpl
    async def handle_message(self, msg: Any) -> Any:  # type: ignore[override]
        if self.gate is not None:
            self.gate.count()
        return ACK


def make_host(ctx: Ctx, plugins: list[tuple[str, object]]) -> Host:
    """A host on the benchmark server with ``plugins`` (plus the built-ins), as ``jetplug run``."""
    data = {
        "nats": {"servers": [ctx.server.url]},
        "host": {"data_dir": ctx.data_dir},
        "jetstream": {"publish_window": ctx.args.window},
    }
    registry = discover(Selection(), extra=plugins, autoload=False)
    cfg = build_config(
        data, registry.config_schemas(), environ={}, known_plugins=set(registry.records)
    )
    problems = registry.validate_config(cfg)
    if problems:
        raise RuntimeError("; ".join(problems))
    return Host(cfg, registry)


async def _start_gated(host: Host, gate: _Gate, timeout: float) -> asyncio.Task[None]:
    """Start the host in a task and return once it waits in the gate (everything set up)."""
    start = asyncio.get_running_loop().create_task(host.start())
    ready = asyncio.get_running_loop().create_task(gate.ready.wait())
    done, _ = await asyncio.wait(
        {start, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
    )
    if start in done:
        ready.cancel()
        start.result()  # raises the startup error
        raise RuntimeError("host started without passing the gate")
    if ready not in done:
        ready.cancel()
        start.cancel()
        raise RuntimeError(f"host did not start within {timeout:g}s")
    return start


async def engine_consume(ctx: Ctx, tag: str, mode: str, is_async: bool) -> Run:
    n = ctx.args.messages
    durable = f"engine-{mode}{'-async' if is_async else ''}-{tag}"
    spec = _spec(durable, mode, ctx.args.budget)
    stream = StreamSpec(CONSUME_STREAM, (f"{CONSUME_SUBJECT}.>",))
    gate = _Gate(n)
    plugin = (AsyncNoopConsumer if is_async else NoopConsumer)(spec, [stream], gate)
    host = make_host(ctx, [("bench", plugin), ("bench_gate", gate)])
    meter = ctx.meter()
    start: asyncio.Task[None] | None = None
    try:
        start = await _start_gated(host, gate, 30)
        meter.start()
        gate.go.set()  # the host goes on: engine.start() subscribes and sends the first pull
        await _bounded(gate.done.wait(), ctx.args.timeout, f"engine {mode}")
        await host.nc.flush()
        meter.stop()
        await start
    finally:
        if start is not None and not start.done():
            start.cancel()
        await host.shutdown()
    note = await _check_consumer(ctx, durable)
    assert host.engine is not None
    outcomes = next(iter(host.engine.runners.values())).handled_stats.outcomes
    other = sum(v for k, v in outcomes.items() if k != "ack")
    if other:
        note = "; ".join(x for x in (note, f"{other} non-ack outcomes") if x)
    return Run(n, meter.wall, meter.cpu, meter.sys, note)


# --- publish -----------------------------------------------------------------------------------


def _pub_stream(tag: str) -> StreamSpec:
    name = f"BENCH_PUB_{tag}".replace("-", "_").upper()
    return StreamSpec(name, (f"bench.pub.{tag}.>",))


async def _create_pub_stream(ctx: Ctx, tag: str) -> StreamSpec:
    spec = _pub_stream(tag)
    await ctx.api.create_stream(stream_config(spec))
    return spec


async def _check_pub_stream(ctx: Ctx, spec: StreamSpec, errors: int) -> str:
    info = await ctx.api.stream_info(spec.name)
    stored = info["state"]["messages"]
    await ctx.api.request(f"STREAM.DELETE.{spec.name}")
    problems = []
    if errors:
        problems.append(f"{errors} failed")
    if stored != ctx.args.publishes:
        problems.append(f"stored {stored}/{ctx.args.publishes}")
    return "; ".join(problems)


def _msg_id_headers(ctx: Ctx, tag: str) -> Callable[[int], dict[str, str] | None]:
    if not ctx.args.raw_msg_id:
        return lambda i: None
    prefix = f"{tag}-{os.getpid()}"
    return lambda i: {"Nats-Msg-Id": f"{prefix}-{i}"}


async def raw_inbox(ctx: Ctx, tag: str) -> Run:
    m, window = ctx.args.publishes, ctx.args.window
    spec = await _create_pub_stream(ctx, tag)
    subject = f"bench.pub.{tag}.x"
    headers = _msg_id_headers(ctx, tag)
    nc = await _connect(ctx)
    inbox = nc.new_inbox()
    slots = asyncio.Semaphore(window)
    answered = errors = 0
    done = asyncio.Event()

    async def on_ack(msg: Any) -> None:
        nonlocal answered, errors
        if not msg.data or "error" in json.loads(msg.data):
            errors += 1
        answered += 1
        slots.release()
        if answered == m:
            done.set()

    sub = await nc.subscribe(inbox + ".*", cb=on_ack, pending_msgs_limit=-1, pending_bytes_limit=-1)
    await nc.flush()
    payload = ctx.payload
    meter = ctx.meter()
    try:
        meter.start()
        for i in range(m):
            await slots.acquire()
            await nc.publish(subject, payload, reply=f"{inbox}.{i}", headers=headers(i))
        await _bounded(done.wait(), ctx.args.timeout, "raw inbox")
        meter.stop()
        await sub.unsubscribe()
    finally:
        await nc.close()
    return Run(m, meter.wall, meter.cpu, meter.sys, await _check_pub_stream(ctx, spec, errors))


async def raw_publish_async(ctx: Ctx, tag: str) -> Run:
    m, window = ctx.args.publishes, ctx.args.window
    spec = await _create_pub_stream(ctx, tag)
    subject = f"bench.pub.{tag}.x"
    headers = _msg_id_headers(ctx, tag)
    nc = await _connect(ctx)
    js = nc.jetstream(publish_async_max_pending=window)
    payload = ctx.payload
    meter = ctx.meter()
    try:
        meter.start()
        futures = [await js.publish_async(subject, payload, headers=headers(i)) for i in range(m)]
        await _bounded(js.publish_async_completed(), ctx.args.timeout, "raw publish_async")
        errors = sum(1 for f in futures if f.exception() is not None)
        meter.stop()
    finally:
        await nc.close()
    return Run(m, meter.wall, meter.cpu, meter.sys, await _check_pub_stream(ctx, spec, errors))


async def raw_gather(ctx: Ctx, tag: str) -> Run:
    m, window = ctx.args.publishes, ctx.args.window
    spec = await _create_pub_stream(ctx, tag)
    subject = f"bench.pub.{tag}.x"
    headers = _msg_id_headers(ctx, tag)
    nc = await _connect(ctx)
    js = nc.jetstream()
    payload = ctx.payload
    errors = 0
    meter = ctx.meter()
    try:
        meter.start()
        for first in range(0, m, window):
            chunk = [
                js.publish(subject, payload, headers=headers(i))
                for i in range(first, min(first + window, m))
            ]
            results = await _bounded(
                asyncio.gather(*chunk, return_exceptions=True), ctx.args.timeout, "gather"
            )
            errors += sum(1 for r in results if isinstance(r, BaseException))
        meter.stop()
    finally:
        await nc.close()
    return Run(m, meter.wall, meter.cpu, meter.sys, await _check_pub_stream(ctx, spec, errors))


async def host_publish(ctx: Ctx, tag: str, many: bool) -> Run:
    m = ctx.args.publishes
    spec = _pub_stream(tag)  # declared by the plugin, provisioned by the host (untimed)
    subject = f"bench.pub.{tag}.x"
    host = make_host(ctx, [("bench", NoopConsumer(None, [spec]))])  # type: ignore[arg-type]
    payload = ctx.payload
    errors = 0
    meter = ctx.meter()
    try:
        await _bounded(host.start(), 30, "host start")
        publisher = host.publisher
        meter.start()
        if many:
            results = await _bounded(
                publisher.publish_many([Publish(subject, payload) for _ in range(m)]),
                ctx.args.timeout,
                "host publish_many",
            )
            errors = sum(1 for r in results if isinstance(r, PublishError))
        else:

            async def run() -> int:
                futures = [await publisher.publish_async(subject, payload) for _ in range(m)]
                failed = 0
                for fut in futures:
                    try:
                        await fut
                    except PublishError:
                        failed += 1
                return failed

            errors = await _bounded(run(), ctx.args.timeout, "host publish_async")
        meter.stop()
    finally:
        await host.shutdown()
    return Run(m, meter.wall, meter.cpu, meter.sys, await _check_pub_stream(ctx, spec, errors))


CONTENDERS: dict[str, Callable[[Ctx, str], Awaitable[Run]]] = {
    "raw-push": raw_push,
    "raw-pull": raw_pull,
    "engine-pull": lambda ctx, tag: engine_consume(ctx, tag, "pull", False),
    "engine-push": lambda ctx, tag: engine_consume(ctx, tag, "push", False),
    "engine-pull-async": lambda ctx, tag: engine_consume(ctx, tag, "pull", True),
    "raw-inbox": raw_inbox,
    "raw-publish-async": raw_publish_async,
    "raw-gather": raw_gather,
    "host-publish-many": lambda ctx, tag: host_publish(ctx, tag, True),
    "host-publish-async": lambda ctx, tag: host_publish(ctx, tag, False),
}


# --- setup, the run, the report ----------------------------------------------------------------


async def prepublish(ctx: Ctx) -> None:
    """Create the consume stream and fill it with N messages (untimed)."""
    await ctx.api.create_stream(
        stream_config(StreamSpec(CONSUME_STREAM, (f"{CONSUME_SUBJECT}.>",)))
    )
    js = ctx.admin.jetstream(publish_async_max_pending=ctx.args.window)
    n = ctx.args.messages
    for i in range(n):
        await js.publish_async(f"{CONSUME_SUBJECT}.{i % 16}", ctx.payload)
    await _bounded(js.publish_async_completed(), 120, "pre-publish")
    info = await ctx.api.stream_info(CONSUME_STREAM)
    if info["state"]["messages"] != n:
        raise RuntimeError(f"pre-publish stored {info['state']['messages']} of {n} messages")


def has_publish_async() -> bool:
    js_cls = nats.js.JetStreamContext
    return hasattr(js_cls, "publish_async") and hasattr(js_cls, "publish_async_completed")


async def run_all(ctx: Ctx, names: list[str]) -> None:
    if any(n in CONSUME for n in names):
        await prepublish(ctx)
    for rep in range(ctx.args.repeat):
        for name in names:  # round robin over repeats: slow drifts of the server hit everyone alike
            if name == "raw-publish-async" and not has_publish_async():
                ctx.errors.setdefault(name, []).append("nats-py has no js.publish_async")
                continue
            tag = f"{name}-{rep}"
            try:
                run = await CONTENDERS[name](ctx, tag)
            except Exception as exc:
                ctx.errors.setdefault(name, []).append(f"{type(exc).__name__}: {exc}")
                print(f"  {name:<20} run {rep + 1}: FAILED {type(exc).__name__}: {exc}", flush=True)
                continue
            ctx.results.setdefault(name, []).append(run)
            extra = f"  [{run.note}]" if run.note else ""
            print(
                f"  {name:<20} run {rep + 1}: {run.rate:>9,.0f} msgs/s"
                f"  {run.cpu_us:6.1f} µs CPU/msg ({run.sys_us:4.1f} sys)"
                f"  {run.wall:6.3f} s{extra}",
                flush=True,
            )


def machine() -> dict[str, str]:
    try:
        from importlib.metadata import version

        nats_py = version("nats-py")
    except Exception:
        nats_py = "?"
    from jetplug.embedded import find_binary

    try:
        out = subprocess.run(
            [find_binary(), "--version"], capture_output=True, text=True, timeout=10
        )
        server = out.stdout.strip() or out.stderr.strip()
    except Exception:
        server = "?"
    return {
        "jetplug": _git_revision(),
        "nproc": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "nats-py": nats_py,
        "nats-server": server,
    }


def _git_revision() -> str:
    """Commit of the checkout (read-only), with "+dirty" when core/ has uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "core"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except Exception:
        return "?"
    return (rev or "?") + ("+dirty" if dirty else "")


def _load() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def summarize(ctx: Ctx) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, runs in ctx.results.items():
        out[name] = {
            "msgs_per_s": statistics.median(r.rate for r in runs),
            "cpu_us_per_msg": statistics.median(r.cpu_us for r in runs),
            "sys_us_per_msg": statistics.median(r.sys_us for r in runs),
            "wall_s": statistics.median(r.wall for r in runs),
            "notes": sorted({r.note for r in runs if r.note}),
            "runs": [
                {
                    "count": r.count,
                    "wall_s": r.wall,
                    "cpu_s": r.cpu,
                    "msgs_per_s": r.rate,
                    "cpu_us_per_msg": r.cpu_us,
                    "sys_us_per_msg": r.sys_us,
                    "note": r.note,
                }
                for r in runs
            ],
        }
    return out


def ratios(summary: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for label, num, den, target in RATIOS:
        if num in summary and den in summary and summary[den]["msgs_per_s"]:
            value = summary[num]["msgs_per_s"] / summary[den]["msgs_per_s"]
            verdict = "" if target is None else ("PASS" if value >= target else "MISS")
        else:
            value, verdict = None, "n/a"
        out.append({"ratio": label, "value": value, "target": target, "verdict": verdict})
    return out


def print_report(
    ctx: Ctx, info: dict[str, str], summary: dict[str, dict[str, Any]], rat: list[dict[str, Any]]
) -> None:
    a = ctx.args
    print()
    print(
        f"jetplug bench: {a.messages} consumed, {a.publishes} published per contender, "
        f"{a.size}-byte payloads, budget {a.budget}, publish window {a.window}, "
        f"median of {a.repeat} run(s)"
    )
    print(
        f"machine: {info['nproc']} CPUs ({info['cpu']}), Python {info['python']}, "
        f"nats-py {info['nats-py']}, {info['nats-server']}, jetplug {info['jetplug']}"
    )
    print(
        f"load average (1/5/15 min) before {info['load_before']}, after {info['load_after']}"
        " (other processes on the machine skew the numbers)"
    )
    print()
    widths = (20, 9, 10, 9, 7)

    def row(*cells: str) -> None:
        padded = [cells[0].ljust(widths[0])]
        padded += [c.rjust(w) for c, w in zip(cells[1:-1], widths[1:], strict=True)]
        print("| " + " | ".join(padded) + " | " + cells[-1])

    row("contender", "msgs/s", "CPU µs/msg", "of it sys", "wall s", "notes")
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|------")
    for name in ALL:
        if name in summary:
            s = summary[name]
            row(
                name,
                f"{s['msgs_per_s']:,.0f}",
                f"{s['cpu_us_per_msg']:.1f}",
                f"{s['sys_us_per_msg']:.1f}",
                f"{s['wall_s']:.3f}",
                "; ".join(s["notes"]),
            )
        elif name in ctx.errors:
            row(name, "-", "-", "-", "-", ctx.errors[name][-1])
    print()
    print(f"| {'ratio (msgs/s)':<40} | {'value':>6} | {'target':>7} | verdict")
    print(f"|{'-' * 42}|{'-' * 8}|{'-' * 9}|--------")
    for r in rat:
        value = f"{r['value']:.2f}" if r["value"] is not None else "-"
        target = f">= {r['target']:g}" if r["target"] is not None else "-"
        print(f"| {r['ratio']:<40} | {value:>6} | {target:>7} | {r['verdict']}")
    if a.repeat < 3:
        print(
            "\none run per contender: on a shared or busy machine single runs vary by +-20 % or"
            " more;\nuse --repeat 5 (medians) before reading PASS/MISS"
        )


async def amain(args: argparse.Namespace, names: list[str]) -> int:
    info = machine()
    info["load_before"] = _load()
    store = Path(tempfile.mkdtemp(prefix="jetplug-bench-"))
    server = EmbeddedServer(store_dir=store / "nats")
    profiler = cProfile.Profile() if args.profile else None
    try:
        server.start()
        print(f"nats-server pid {server.pid} on {server.url}, store {store}", flush=True)
        admin = await nats.connect(server.url, name="bench-admin", max_reconnect_attempts=0)
        try:
            ctx = Ctx(
                args,
                server,
                admin,
                JsApi(admin),
                os.urandom(args.size),
                str(store / "host"),
                profiler,
            )
            await run_all(ctx, names)
        finally:
            await admin.close()
    finally:
        server.stop()  # by pid: SIGTERM, SIGKILL after 10 s
        shutil.rmtree(store, ignore_errors=True)
    info["load_after"] = _load()
    summary = summarize(ctx)
    rat = ratios(summary)
    print_report(ctx, info, summary, rat)
    if profiler is not None:
        profiler.dump_stats(args.profile)
        print(f"\nprofile of the timed regions written to {args.profile}")
    if args.json:
        doc = {
            "command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
            "machine": info,
            "settings": {
                k: getattr(args, k)
                for k in (
                    "messages",
                    "publishes",
                    "size",
                    "budget",
                    "window",
                    "repeat",
                    "raw_msg_id",
                )
            },
            "results": summary,
            "ratios": rat,
            "errors": ctx.errors,
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        print(f"numbers written to {args.json}")
    return 1 if ctx.errors else 0


def parse_args(argv: list[str] | None = None) -> tuple[argparse.Namespace, list[str]]:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--messages", type=int, default=20000, help="messages consumed per contender (N)"
    )
    p.add_argument(
        "--publishes", type=int, default=20000, help="messages published per contender (M)"
    )
    p.add_argument("--size", type=int, default=128, help="payload bytes")
    p.add_argument(
        "--budget",
        type=int,
        default=512,
        help="in-flight budget = max_ack_pending = raw pull batch for every consumer",
    )
    p.add_argument(
        "--window", type=int, default=1024, help="publishes in flight for every publisher"
    )
    p.add_argument(
        "--repeat", type=int, default=1, help="runs per contender; the median is reported"
    )
    p.add_argument("--timeout", type=float, default=60.0, help="seconds one contender run may take")
    p.add_argument(
        "--raw-msg-id",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="raw publishers send a unique Nats-Msg-Id like the host does (default on)",
    )
    p.add_argument(
        "--only",
        action="append",
        default=[],
        help=f"run only these contenders (repeat or comma-separate): {', '.join(ALL)}",
    )
    p.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    p.add_argument(
        "--profile", metavar="FILE", help="cProfile the timed regions into FILE (pstats)"
    )
    p.add_argument(
        "--callgrind",
        action="store_true",
        help="instrument only the timed regions; run under valgrind --tool=callgrind "
        "--instr-atstart=no (see docs/performance.md)",
    )
    args = p.parse_args(argv)
    names = [n.strip() for part in args.only for n in part.split(",") if n.strip()] or list(ALL)
    unknown = [n for n in names if n not in CONTENDERS]
    if unknown:
        p.error(f"unknown contender(s) {', '.join(unknown)}; choose from {', '.join(ALL)}")
    for key in ("messages", "publishes", "size", "budget", "window", "repeat"):
        if getattr(args, key) < 1:
            p.error(f"--{key} must be >= 1")
    return args, [n for n in ALL if n in names]


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    args, names = parse_args()
    # SIGTERM unwinds like Ctrl-C, so the server started here is stopped (by pid) either way
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return asyncio.run(amain(args, names))
    except KeyboardInterrupt:
        print("interrupted; the nats-server was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
