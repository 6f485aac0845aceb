"""Helpers of the ack consumer's tests: unique names, payloads, records, stream reads, processes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jetplug_ack_consumer.plugin as ack_plugin
import msgspec
from jetplug import KeyValueSpec, StreamSpec, hookimpl
from jetplug.message import Message
from jetplug_ack_consumer.config import AckConsumerSettings
from jetplug_caf_common import state
from jetplug_caf_common.state import AssignmentRecord
from jetplug_caf_common.store import AssignmentStore
from nats.js.api import StreamConfig

PLUGIN = ("ack_consumer", ack_plugin)
WORKER = Path(__file__).with_name("ack_worker.py")
DLQ_STREAM = "JETPLUG_DLQ"


def token() -> str:
    """A short unique token, so every test has its own streams, consumer and bucket."""
    return uuid.uuid4().hex[:10]


def settings(tok: str, **overrides: Any) -> dict[str, Any]:
    """The ``[plugins.ack_consumer]`` table of one test: unique names, short retry delays."""
    table: dict[str, Any] = {
        "stream": f"ACK_{tok}",
        "subject": f"t{tok}.ack",
        "durable": f"acks-{tok}",
        "bucket": f"caf_{tok}",
        "retry_delays": [0.2, 0.4],
        "max_deliver": 3,
    }
    table.update(overrides)
    return table


def config(tok: str, **overrides: Any) -> dict[str, Any]:
    """A host config whose only plugin table is the ack consumer's."""
    return {"plugins": {"ack_consumer": settings(tok, **overrides)}}


def ack(
    assignment_id: str, status: str = "accepted", tenant: str | None = "acme", **extra: Any
) -> bytes:
    """An ExecAssignmentAck payload."""
    body: dict[str, Any] = {"assignment_id": assignment_id, "status": status, **extra}
    if tenant is not None:
        body["tenant_id"] = tenant
    return json.dumps(body).encode()


def now_ms() -> int:
    """Unix milliseconds."""
    return int(time.time() * 1000)


async def record_published(
    store: AssignmentStore, assignment_id: str, *, published_at: int, tenant: str = "acme"
) -> AssignmentRecord:
    """Write the adapter's "published" fact, as caf_adapter would."""
    record, changed = await store.apply(
        assignment_id,
        lambda current: state.published(
            current,
            assignment_id=assignment_id,
            published_at=published_at,
            tenant_id=tenant,
            request_id="req-1",
            provider_id="openai:gpt-4o",
            job_type="text.generate",
            trace_id="tr-1",
            deadline_ms=5000,
            stream_seq=1,
        ),
    )
    assert changed and record is not None
    return record


class Declarer:
    """A test plugin declaring the ack stream and the bucket, without a consumer: a host that
    only publishes and reads state while other processes consume."""

    def __init__(self, table: dict[str, Any]) -> None:
        self.settings = msgspec.convert(table, AckConsumerSettings)

    @hookimpl
    def register_streams(self) -> list[StreamSpec]:
        return [self.settings.stream_spec()]

    @hookimpl
    def register_kv_buckets(self) -> list[KeyValueSpec]:
        return [self.settings.bucket_spec()]


class Observer:
    """A test plugin: sees each delivery first (and passes), and records the CAF hooks."""

    def __init__(self) -> None:
        self.deliveries: dict[int, list[tuple[int, int]]] = {}
        self.acked: list[tuple[Any, Any]] = []

    @hookimpl(tryfirst=True)
    def handle_message(self, msg: Message) -> None:
        self.deliveries.setdefault(msg.stream_seq, []).append((msg.deliveries, msg.timestamp_ns))

    @hookimpl
    def caf_assignment_acked(self, record: Any, ack: Any) -> None:
        self.acked.append((record, ack))

    def stored_ms(self, seq: int) -> int:
        """The stream time of a delivered message, as the plugin reads it."""
        return self.deliveries[seq][0][1] // 1_000_000


async def read_stream(
    nc: Any, stream: str, subject: str, count: int, timeout: float = 10.0
) -> list[Any]:
    """Exactly ``count`` messages of ``subject`` in ``stream``, read by an ephemeral consumer."""
    js = nc.jetstream()
    sub = await js.pull_subscribe(subject, stream=stream)
    got: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < count and time.monotonic() < deadline:
            try:
                got.extend(await sub.fetch(count - len(got), timeout=1.0))
            except asyncio.TimeoutError:
                continue
    finally:
        await sub.unsubscribe()
    assert len(got) == count, f"{stream}/{subject}: expected {count} messages, got {len(got)}"
    return got


async def dead_letters(nc: Any, tok: str, count: int) -> dict[int, Any]:
    """The dead letters of this test's consumer, by original stream sequence."""
    subject = f"jetplug.dlq.ACK_{tok}.acks-{tok}"
    msgs = await read_stream(nc, DLQ_STREAM, subject, count)
    return {int(m.headers["Jetplug-Original-Seq"]): m for m in msgs}


async def set_bucket_writable(nc: Any, bucket: str, writable: bool) -> None:
    """Make the bucket refuse every write (max_msg_size 1) or accept them again; reads work."""
    js = nc.jetstream()
    info = await js.stream_info(f"KV_{bucket}")
    cfg: StreamConfig = info.config
    cfg.max_msg_size = -1 if writable else 1
    await js.update_stream(cfg)


# --- separate host processes -----------------------------------------------------------------


def toml_value(value: Any) -> str:
    """A TOML literal for the simple values these configs use."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def write_config(path: Path, server_url: str, plugins: dict[str, dict[str, Any]]) -> Path:
    """A config file for ``jetplug run``: only the given plugins, against ``server_url``."""
    lines = [
        "[host]",
        f"plugins = {toml_value(sorted(plugins))}",
        f"data_dir = {toml_value(str(path.parent / 'data'))}",
        "shutdown_timeout = 5",
        'log_level = "warning"',
        "[nats]",
        f"servers = {toml_value([server_url])}",
    ]
    for name, table in plugins.items():
        lines.append(f"[plugins.{name}]")
        lines.extend(f"{key} = {toml_value(value)}" for key, value in table.items())
    path.write_text("\n".join(lines) + "\n")
    return path


class Worker:
    """One host in its own OS process (``ack_worker.py``), recording what it handled to a file."""

    def __init__(self, config_path: Path, out: Path) -> None:
        self.out = out
        self.log = out.with_suffix(".log")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, str(WORKER), str(config_path), str(out)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def ready(self) -> bool:
        """True once the host runs (the worker writes a ``ready`` line)."""
        if self.proc.poll() is not None:
            raise AssertionError(f"worker exited with {self.proc.returncode}: {self.output()}")
        return any(r.get("event") == "ready" for r in self.records())

    def output(self) -> str:
        """What the process wrote to stdout and stderr."""
        return self.log.read_text(errors="replace")

    def records(self) -> list[dict[str, Any]]:
        """Every complete line the worker wrote so far.

        The worker process may be in the middle of writing a line: only text up to the last
        newline is read, so a half-written record is never parsed.
        """
        if not self.out.exists():
            return []
        complete = self.out.read_text().rpartition("\n")[0]
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def handled(self, outcome: str = "ack") -> list[int]:
        """Stream sequences this process finished with ``outcome``."""
        return [
            r["stream_seq"]
            for r in self.records()
            if r.get("event") == "message_handled" and r["outcome"] == outcome
        ]

    def stop(self) -> int:
        """SIGTERM (ordered shutdown), wait; the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@contextmanager
def workers(configs: list[Path], tmp: Path) -> Iterator[list[Worker]]:
    """Start one worker process per config file; stop them all at the end (each must exit 0)."""
    started = [Worker(c, tmp / f"worker-{i}.jsonl") for i, c in enumerate(configs)]
    try:
        yield started
    finally:
        codes = [w.stop() for w in started]
    for w, code in zip(started, codes, strict=True):
        assert code == 0, f"worker exited with {code}: {w.output()}"
