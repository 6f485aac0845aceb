"""jetplug shutdown benchmark: stopping with work in flight, engine against raw nats-py drain.

What is measured: how long a consumer takes to stop while ``--budget`` handlers are running
(each sleeps ``--handler-ms`` and then acks), and what becomes of their messages: acked,
cancelled, handed back, lost, or acked twice.

Why: the obvious way to stop a nats-py client, ``await nc.drain()``, has a trap with pull
subscriptions (the "30-second drain trap"). Drain waits until the subscription's queue is marked
done; ``fetch()`` leaves a status message that arrives after a timed-out fetch (408) in the queue,
or takes it out without marking it done, so drain waits for its ``drain_timeout`` (30 s by
default) and then reports ``DrainTimeoutError`` only to ``error_cb``: the call itself returns as
if all went well. Without such a leftover, drain does not wait for the fetched messages at all:
it closes the connection at once and the handlers' acks fail. The jetplug engine's ordered
shutdown (``Host.shutdown`` -> ``Engine.stop``) stops intake, waits for the running handlers
within ``[host] shutdown_timeout`` and cancels what is left, so it should take about one handler
duration and ack everything that finished.

One embedded nats-server (127.0.0.1, fresh temporary store, stopped by its pid at the end, also on
Ctrl-C/SIGTERM) holds one stream of ``--messages`` N messages (``run.prepublish``). Each contender
has its own durable pull consumer with the engine's configuration (``max_ack_pending`` =
``--budget``):

* ``raw, idle first``  a nats-py worker loop: ``js.pull_subscribe``, ``fetch(budget - held,
  timeout=0.5)`` until it holds ``budget`` messages, one task per message that sleeps and then
  ``await msg.ack()``; it starts while the stream is still empty, so its first fetch times out as
  any worker's does while it waits for work; then the N messages are published. Then
  ``await nc.drain()`` is timed (nats-py's default ``drain_timeout`` unless ``--drain-timeout``).
* ``engine``  a host built like ``run.make_host`` with an ``async def handle_message`` that sleeps
  and returns ACK, ``[host] shutdown_timeout`` = 10 s. Once ``--budget`` handlers run at the same
  time, ``await host.shutdown()`` is timed.
* ``raw, no idle``  the same worker as the first, started when the messages are already there.

Verification (untimed), for each: a second host (no-op ack handler, the same durable) consumes
until the server reports the consumer's ack floor at N with nothing pending. A message neither
contender nor verifier acked is lost; one the verifier got after the contender had acked it was
acked twice. Messages a contender left unacked come back only after ``ack_wait`` (30 s), which
shows in the verify time. The whole run takes about 70 s, most of it the drain timeout and one
ack_wait.

Usage: ``.venv/bin/python bench/shutdown.py [--messages N] [--budget B] [--handler-ms MS]
[--drain-timeout S] [--json FILE]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nats
import nats.errors
from jetplug import ACK, ConsumerSpec, StreamSpec, hookimpl
from jetplug.embedded import EmbeddedServer
from jetplug.engine.jsapi import JsApi
from jetplug.engine.provisioning import stream_config
from jetplug.events import Event, MessageHandled
from jetplug.message import Message
from jetplug.testing import wait_until

sys.path.insert(0, str(Path(__file__).parent))
import run as bench  # the throughput benchmark: server, host and consumer helpers

SHUTDOWN_TIMEOUT = 10.0


@dataclass
class Result:
    """One contender's stop and what became of its messages."""

    contender: str
    seconds: float = 0.0  # the timed stop: host.shutdown() or nc.drain()
    in_flight: int = 0  # handlers running when the stop began
    acked: int = 0  # of those, acked by the contender
    cancelled: int | None = None
    released: int | None = None
    lost: int | None = None
    acked_twice: int | None = None
    redelivered: int | None = None  # messages the verifier got with deliveries > 1
    verify_seconds: float | None = None
    notes: list[str] = field(default_factory=list)


class Worker(bench.NoopConsumer):
    """``async def handle_message``: sleep ``delay``, then ACK. Counts the running handlers and
    records (from ``MessageHandled`` events) which stream sequences were acked or released."""

    def __init__(
        self, spec: ConsumerSpec, streams: list[StreamSpec], delay: float, running_target: int = 0
    ) -> None:
        super().__init__(spec, streams)
        self.delay = delay
        self.running = 0
        self.running_target = running_target
        self.busy = asyncio.Event()  # set once running_target handlers run at the same time
        self.acked: set[int] = set()
        self.redelivered = 0
        self.released = 0

    @hookimpl
    async def handle_message(self, msg: Message) -> Any:
        self.running += 1
        if self.running_target and self.running >= self.running_target:
            self.busy.set()
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            self.running -= 1
        return ACK

    @hookimpl
    def track_event(self, event: Event) -> None:
        if not isinstance(event, MessageHandled):
            return
        if event.outcome == "ack":
            self.acked.add(event.stream_seq)
            self.redelivered += event.deliveries > 1
        elif event.outcome == "released":
            self.released += 1


def _stream() -> StreamSpec:
    return StreamSpec(bench.CONSUME_STREAM, (f"{bench.CONSUME_SUBJECT}.>",))


async def verify(ctx: bench.Ctx, durable: str, first_acked: set[int], res: Result) -> None:
    """A second host on ``durable`` takes the rest; wait until the server has all N acked."""
    n = ctx.args.messages
    checker = Worker(bench._spec(durable, "pull", ctx.args.budget), [_stream()], 0.0)
    host = bench.make_host(ctx, [("verifier", checker)])

    async def settled() -> bool:
        info = await ctx.api.consumer_info(bench.CONSUME_STREAM, durable)
        return bool(info["num_ack_pending"] == 0 and info["ack_floor"]["stream_seq"] >= n)

    t0 = time.perf_counter()
    try:
        await bench._bounded(host.start(), 30, "verifier start")
        try:
            await wait_until(settled, timeout=ctx.args.timeout, interval=0.05)
        except AssertionError:
            res.notes.append(f"not all acked within {ctx.args.timeout:g}s")
        res.verify_seconds = time.perf_counter() - t0
    finally:
        await host.shutdown()
    problem = await bench._check_consumer(ctx, durable)  # cross-check; deletes the consumer
    if problem:
        res.notes.append(problem)
    res.acked_twice = len(first_acked & checker.acked)
    res.redelivered = checker.redelivered
    res.lost = n - len((first_acked | checker.acked) & set(range(1, n + 1)))


async def engine_contender(ctx: bench.Ctx) -> Result:
    """A host whose ``budget`` handlers run, stopped by ``host.shutdown()``."""
    budget = ctx.args.budget
    await fill(ctx)
    res = Result("engine")
    spec = bench._spec("shutdown-engine", "pull", budget)
    worker = Worker(spec, [_stream()], ctx.args.handler_ms / 1000, running_target=budget)
    host = bench.make_host(ctx, [("bench", worker)])
    host.config.core.host.shutdown_timeout = SHUTDOWN_TIMEOUT  # make_host takes no [host] table
    try:
        await bench._bounded(host.start(), 30, "host start")
        await bench._bounded(worker.busy.wait(), 30, f"{budget} handlers running")
        res.in_flight = worker.running
        acked_before = len(worker.acked)
        t0 = time.perf_counter()
        stopped = await bench._bounded(host.shutdown(), SHUTDOWN_TIMEOUT + 30, "host.shutdown()")
        res.seconds = time.perf_counter() - t0
    except BaseException:
        await host.shutdown()
        raise
    res.acked = len(worker.acked) - acked_before
    res.cancelled = int(stopped.get("cancelled", 0))
    res.released = worker.released
    if acked_before:
        res.notes.append(f"{acked_before} acked before the stop")
    await verify(ctx, spec.durable, worker.acked, res)
    return res


async def fill(ctx: bench.Ctx) -> None:
    """Publish the N messages (``run.prepublish``) unless the stream already holds them."""
    info = await ctx.api.stream_info(bench.CONSUME_STREAM)
    if info["state"]["messages"] == 0:
        await bench.prepublish(ctx)


async def raw_contender(ctx: bench.Ctx, idle: bool) -> Result:
    """A nats-py pull worker holding ``budget`` messages in handlers, stopped by ``nc.drain()``."""
    a = ctx.args
    res = Result("raw drain, idle first" if idle else "raw drain, no idle")
    durable = "shutdown-raw-idle" if idle else "shutdown-raw"
    if not idle:
        await fill(ctx)
    await bench._create_raw_consumer(ctx, durable, "pull")
    errors: list[BaseException] = []

    async def error_cb(exc: BaseException) -> None:
        errors.append(exc)

    options: dict[str, Any] = {} if a.drain_timeout is None else {"drain_timeout": a.drain_timeout}
    nc = await nats.connect(
        ctx.server.url,
        name="bench-raw-shutdown",
        max_reconnect_attempts=0,
        error_cb=error_cb,
        **options,
    )
    drain_timeout = float(nc.options["drain_timeout"])
    acked: set[int] = set()

    async def handle(msg: Any) -> None:
        await asyncio.sleep(a.handler_ms / 1000)
        await msg.ack()
        acked.add(msg.metadata.sequence.stream)

    tasks: list[asyncio.Task[None]] = []
    idle_fetches = 0
    try:
        psub = await nc.jetstream().pull_subscribe(
            f"{bench.CONSUME_SUBJECT}.>", durable=durable, stream=bench.CONSUME_STREAM
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while len(tasks) < a.budget:  # the worker loop: keep `budget` messages in handlers
            if loop.time() > deadline:
                raise RuntimeError(f"raw worker holds {len(tasks)}/{a.budget} messages after 30s")
            try:
                msgs = await psub.fetch(a.budget - len(tasks), timeout=0.5)
            except nats.errors.TimeoutError:
                idle_fetches += 1
                await fill(ctx)  # the work arrives after the worker waited for it
                continue
            tasks += [asyncio.create_task(handle(m)) for m in msgs]
        res.in_flight = sum(not t.done() for t in tasks)
        acked_before = len(acked)
        t0 = time.perf_counter()
        await bench._bounded(nc.drain(), drain_timeout + 30, "nc.drain()")
        res.seconds = time.perf_counter() - t0
    finally:
        if not nc.is_closed:
            await nc.close()
        # handlers still running after the close fail their ack; bounded by one handler duration
        outcomes = await bench._bounded(
            asyncio.gather(*tasks, return_exceptions=True), 30, "raw handlers"
        )
    res.acked = len(acked) - acked_before
    if idle_fetches:
        res.notes.append(f"{idle_fetches} fetch(es) timed out before the work arrived")
    if any(isinstance(e, nats.errors.DrainTimeoutError) for e in errors):
        res.notes.append(f"DrainTimeoutError ({drain_timeout:g} s), only to error_cb")
    others = [type(e).__name__ for e in errors if not isinstance(e, nats.errors.DrainTimeoutError)]
    if others:
        res.notes.append("error_cb: " + ", ".join(others))
    failed = [o for o in outcomes if isinstance(o, BaseException)]
    if failed:
        res.notes.append(f"{len(failed)} acks failed ({type(failed[0]).__name__})")
    await verify(ctx, durable, acked, res)
    return res


# --- the run, the report -----------------------------------------------------------------------


def _cell(value: float | int | None, fmt: str = "{}") -> str:
    return "-" if value is None else fmt.format(value)


def print_report(args: argparse.Namespace, command: str, results: list[Result]) -> None:
    print()
    print(
        f"jetplug shutdown bench: {args.messages} messages, budget {args.budget} in flight, "
        f"handlers {args.handler_ms:g} ms, engine shutdown_timeout {SHUTDOWN_TIMEOUT:g} s"
    )
    print(f"command: {command}")
    print()
    head = ["contender", "shutdown s", "in flight at stop", "acked", "cancelled/released", "lost"]
    head += ["acked twice", "notes"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    for r in results:
        if r.cancelled is None:
            dropped = f"{r.in_flight - r.acked} left unacked"
        else:
            dropped = f"{r.cancelled} / {r.released}"
        notes = list(r.notes)
        if r.verify_seconds is not None:
            notes.append(f"verify took {r.verify_seconds:.2f} s, {r.redelivered} redelivered")
        cells = [r.contender, f"{r.seconds:.3f}", str(r.in_flight), str(r.acked), dropped]
        cells += [_cell(r.lost), _cell(r.acked_twice), "; ".join(notes)]
        print("| " + " | ".join(cells) + " |")


async def amain(args: argparse.Namespace) -> int:
    store = Path(tempfile.mkdtemp(prefix="jetplug-shutdown-bench-"))
    server = EmbeddedServer(store_dir=store / "nats")
    results: list[Result] = []
    errors: dict[str, str] = {}
    try:
        server.start()
        print(f"nats-server pid {server.pid} on {server.url}, store {store}", flush=True)
        admin = await nats.connect(server.url, name="bench-admin", max_reconnect_attempts=0)
        try:
            ctx = bench.Ctx(
                args, server, admin, JsApi(admin), os.urandom(args.size), str(store / "host")
            )
            # empty at first: the idle-first worker starts before the work arrives (see fill)
            await ctx.api.create_stream(stream_config(_stream()))
            contenders: list[tuple[str, Callable[[], Awaitable[Result]]]] = [
                ("raw, idle first", lambda: raw_contender(ctx, idle=True)),
                ("engine", lambda: engine_contender(ctx)),
                ("raw, no idle", lambda: raw_contender(ctx, idle=False)),
            ]
            for name, contender in contenders:
                print(f"  {name}: running", flush=True)
                try:
                    results.append(await contender())
                except Exception as exc:
                    errors[name] = f"{type(exc).__name__}: {exc}"
                    print(f"  {name}: FAILED {errors[name]}", flush=True)
        finally:
            await admin.close()
    finally:
        server.stop()  # by pid: SIGTERM, SIGKILL after 10 s
        shutil.rmtree(store, ignore_errors=True)
    command = " ".join([os.path.relpath(sys.executable), *sys.argv])
    print_report(args, command, results)
    if args.json:
        doc = {
            "command": command,
            "machine": bench.machine(),
            "settings": {k: getattr(args, k) for k in ("messages", "budget", "handler_ms", "size")}
            | {"drain_timeout": args.drain_timeout, "shutdown_timeout": SHUTDOWN_TIMEOUT},
            "results": [asdict(r) for r in results],
            "errors": errors,
        }
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        print(f"numbers written to {args.json}")
    bad = any(r.lost or r.acked_twice for r in results)
    return 1 if errors or bad else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--messages", type=int, default=2000, help="messages in the stream (N)")
    p.add_argument("--budget", type=int, default=64, help="in-flight budget = raw fetch batch")
    p.add_argument("--handler-ms", type=float, default=200.0, help="handler duration in ms")
    p.add_argument(
        "--drain-timeout",
        type=float,
        default=None,
        help="nats-py drain_timeout for the raw contender (default: nats-py's own, 30 s)",
    )
    p.add_argument("--size", type=int, default=128, help="payload bytes")
    p.add_argument("--window", type=int, default=1024, help="publishes in flight (setup only)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds the verification may take")
    p.add_argument("--json", metavar="FILE", help="also write the numbers as JSON")
    args = p.parse_args(argv)
    for key in ("messages", "budget", "size", "window"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be >= 1")
    if args.budget > args.messages:
        p.error("--budget must not exceed --messages")
    if args.handler_ms < 0 or (args.drain_timeout is not None and args.drain_timeout <= 0):
        p.error("--handler-ms must be >= 0 and --drain-timeout > 0")
    return args


def main() -> int:
    args = parse_args()
    # SIGTERM unwinds like Ctrl-C, so the server started here is stopped (by pid) either way
    signal.signal(signal.SIGTERM, bench._interrupt)
    try:
        return asyncio.run(amain(args))
    except KeyboardInterrupt:
        print("interrupted; the nats-server was stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
