"""The demo's load driver and its summary: N assignments at a rate, every one accounted for.

An assignment is accounted for when its record reaches a final status (completed, failed,
timed_out, cancelled, rejected, expired). ``lost`` counts published assignments that never do:
the demo's exit code is 0 only when it is zero.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, TextIO

from jetplug.events import Event, MessageDeadLettered
from jetplug.hookspecs import hookimpl
from jetplug.host import Host
from jetplug_caf_common import events as caf
from jetplug_caf_common.state import FINAL
from jetplug_caf_common.store import AssignmentStore

PROVIDERS = ["openai:gpt-4o", "anthropic:claude", "local:llama", "google:gemini"]
JOB_TYPES = ["text.generate", "text.embed", "image.generate"]
REASONS = ["weighted", "sticky", "fallback", "best_score"]


@dataclass
class Tally:
    """Counts built from the telemetry events while the demo runs."""

    published: int = 0
    failed: Counter[str] = field(default_factory=Counter)
    blocked: int = 0
    acks: Counter[str] = field(default_factory=Counter)
    results: Counter[str] = field(default_factory=Counter)
    usage: int = 0
    usage_duplicates: int = 0
    dead_letters: Counter[str] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)
    unknown: int = 0
    expired: int = 0
    ack_latency: list[int] = field(default_factory=list)
    e2e_latency: list[int] = field(default_factory=list)

    @hookimpl
    def track_event(self, event: Event) -> None:
        """Count the events the CAF plugins and the host emit."""
        if isinstance(event, caf.AssignmentPublished):
            self.published += 1
        elif isinstance(event, caf.AssignmentFailed):
            self.failed[event.kind] += 1
        elif isinstance(event, caf.AssignmentBlocked):
            self.blocked += 1
        elif isinstance(event, caf.AssignmentExpired):
            self.expired += 1
        elif isinstance(event, caf.AckProcessed | caf.ResultProcessed):
            kind = "acks" if isinstance(event, caf.AckProcessed) else "results"
            if event.outcome == "duplicate":
                self.duplicates[kind] += 1
                return
            if event.outcome == "unknown_assignment":
                self.unknown += 1
            getattr(self, kind)[event.status] += 1
            if event.latency_ms is not None:
                (self.ack_latency if kind == "acks" else self.e2e_latency).append(event.latency_ms)
        elif isinstance(event, caf.UsageEmitted):
            if event.duplicate:
                self.usage_duplicates += 1
            else:
                self.usage += 1
        elif isinstance(event, MessageDeadLettered):
            self.dead_letters[event.reason] += 1


def make_request(rng: random.Random, tenants: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """One decide request and its routing decision, as the router would have them."""
    request = {
        "request_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "tenant_id": rng.choice(tenants),
        "task": {
            "type": rng.choice(JOB_TYPES),
            "payload_ref": f"s3://demo/{rng.getrandbits(32):08x}",
        },
        "trace_id": f"{rng.getrandbits(128):032x}",
        "metadata": {"user_id": f"u-{rng.randint(1, 500)}"},
    }
    decision = {
        "provider_id": rng.choice(PROVIDERS),
        "priority": rng.randint(0, 100),
        "expected_latency_ms": rng.randint(100, 1500),
        "expected_cost": round(rng.uniform(0.001, 0.05), 5),
        "reason": rng.choice(REASONS),
    }
    return request, decision


def percentile(values: list[int], q: float) -> str:
    """``q`` percentile in ms, or "-" with no data."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]} ms"
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return f"{round(cuts[int(q) - 1])} ms"


@dataclass
class DemoResult:
    """What the demo measured; ``lost`` must be zero."""

    tally: Tally
    published_ids: list[str]
    final: Counter[str]
    lost: list[str]
    publish_seconds: float
    total_seconds: float


async def run_demo(
    host: Host,
    tally: Tally,
    count: int,
    rate: float,
    seed: int,
    tenants: list[str],
    out: TextIO = sys.stderr,
    settle_timeout: float = 60.0,
) -> DemoResult:
    """Submit ``count`` assignments at ``rate``/s through caf_adapter and wait for every outcome."""
    from jetplug_caf_adapter import publish_assignment

    rng = random.Random(seed)
    store = AssignmentStore(host)
    ids: list[str] = []
    gate = asyncio.Semaphore(256)
    tasks: list[asyncio.Task[None]] = []
    started = time.monotonic()

    async def submit(request: dict[str, Any], decision: dict[str, Any]) -> None:
        async with gate:
            result = await publish_assignment(request, decision)
            if result.outcome == "published" and result.assignment_id:
                ids.append(result.assignment_id)

    progress = asyncio.get_running_loop().create_task(_progress(tally, count, out))
    try:
        for i in range(count):
            due = started + i / rate
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing the load: a rate, not a condition
            tasks.append(
                asyncio.get_running_loop().create_task(submit(*make_request(rng, tenants)))
            )
        await asyncio.gather(*tasks, return_exceptions=True)
        publish_seconds = time.monotonic() - started
        pending = set(ids)
        final: Counter[str] = Counter()
        deadline = time.monotonic() + settle_timeout
        while pending and time.monotonic() < deadline:
            for aid in list(pending):
                record = await store.get(aid)
                if record is not None and record.status in FINAL:
                    final[record.status] += 1
                    pending.discard(aid)
            if pending:
                await asyncio.sleep(0.5)  # records settle at executor speed; poll them
    finally:
        progress.cancel()
    return DemoResult(
        tally, ids, final, sorted(pending), publish_seconds, time.monotonic() - started
    )


async def _progress(tally: Tally, count: int, out: TextIO) -> None:
    tty = out.isatty()
    while True:
        line = (
            f"published {tally.published}/{count} | acks {sum(tally.acks.values())} | "
            f"results {sum(tally.results.values())} | usage {tally.usage} | "
            f"dead letters {sum(tally.dead_letters.values())} | expired {tally.expired}"
        )
        out.write(("\r" + line) if tty else line + "\n")
        out.flush()
        await asyncio.sleep(0.5 if tty else 2.0)


def summary(result: DemoResult, server: str, rate: float) -> str:
    """The readable end-of-demo report."""
    t = result.tally

    def counts(c: Counter[str]) -> str:
        return "  ".join(f"{k} {v}" for k, v in sorted(c.items())) or "none"

    accounted = sum(result.final.values())
    per_second = len(result.published_ids) / max(result.publish_seconds, 1e-9)
    lines = [
        "",
        f"jetplug CAF demo: {len(result.published_ids)} assignments at {rate:g}/s on {server}",
        f"  assignments published  {t.published}   "
        f"(failed {sum(t.failed.values())}, blocked {t.blocked})",
        f"  acks by status         {counts(t.acks)}",
        f"  results by status      {counts(t.results)}",
        f"  usage events           {t.usage}   "
        f"(repeats the server deduplicated, not billed: {t.usage_duplicates})",
        f"  dead letters           {counts(t.dead_letters)}",
        f"  duplicates dropped     {counts(t.duplicates)}",
        f"  unknown assignments    {t.unknown}",
        f"  expired                {t.expired}",
        f"  ack latency            p50 {percentile(t.ack_latency, 50)}   "
        f"p99 {percentile(t.ack_latency, 99)}",
        f"  end-to-end latency     p50 {percentile(t.e2e_latency, 50)}   "
        f"p99 {percentile(t.e2e_latency, 99)}",
        f"  throughput             {per_second:.0f} "
        f"assignments/s published; {accounted} settled in {result.total_seconds:.1f} s",
        f"  final states           {counts(result.final)}",
        f"  lost: {len(result.lost)}",
    ]
    if result.lost:
        lines.append(f"  never settled (first 10): {', '.join(result.lost[:10])}")
    return "\n".join(lines)
