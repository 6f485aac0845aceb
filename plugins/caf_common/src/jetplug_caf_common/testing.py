"""Test helpers the CAF plugins share: unique names, stream reads, records, host processes.

Not imported by the plugins themselves, only by their tests. The multi-process tests run
``python -m jetplug_caf_common.testing CONFIG OUT``: one jetplug host that loads the installed
plugins selected by CONFIG (``[host] plugins``) exactly like ``jetplug run``, plus a recorder
that appends one JSON line per finished message and per CAF telemetry event to OUT (a ``ready``
line once the host runs), and serves until SIGTERM.
"""

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
from typing import IO, Any

import msgspec
from jetplug import hookimpl
from jetplug.cli import load_host_config
from jetplug.engine.outcomes import dlq_subject
from jetplug.events import Event
from jetplug.host import Host
from jetplug.settings import DlqSettings
from nats.js.api import StreamConfig

from . import state
from .state import AssignmentRecord
from .store import AssignmentStore


def token() -> str:
    """A short unique token, so every test has its own streams, consumer and bucket."""
    return uuid.uuid4().hex[:10]


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


async def dead_letters(nc: Any, stream: str, consumer: str, count: int) -> dict[int, Any]:
    """Exactly ``count`` dead letters of ``consumer`` on ``stream`` (default DLQ settings), by
    original stream sequence."""
    dlq = DlqSettings()
    subject = dlq_subject(dlq.subject_prefix, stream, consumer)
    msgs = await read_stream(nc, dlq.stream, subject, count)
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
    """One host in its own OS process (this module run with ``-m``), recording what it handled."""

    def __init__(self, config_path: Path, out: Path) -> None:
        self.out = out
        self.log = out.with_suffix(".log")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", __name__, str(config_path), str(out)],
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


# --- the worker process -----------------------------------------------------------------------


RECORDED = (
    "message_handled",
    "publish_failed",
    "caf_ack_processed",
    "caf_result_processed",
    "caf_usage_emitted",
)


class Recorder:
    """Writes the events the tests look at, one JSON object per line, flushed at once."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def write(self, record: dict[str, Any]) -> None:
        self.out.write(json.dumps(record) + "\n")
        self.out.flush()

    @hookimpl
    def track_event(self, event: Event) -> None:
        if event.name in RECORDED:
            self.write({"event": event.name, **msgspec.structs.asdict(event)})


async def main(config_path: str, out_path: str) -> None:
    cfg, plugins = load_host_config(config_path)
    with open(out_path, "a") as out:
        recorder = Recorder(out)
        plugins.register(recorder, "test_recorder")
        host = Host(cfg, plugins)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, host.request_stop)
        serving = asyncio.ensure_future(host.serve())
        await asyncio.wait(
            {serving, asyncio.ensure_future(host.started.wait())},
            return_when=asyncio.FIRST_COMPLETED,
        )
        if host.started.is_set():
            recorder.write({"event": "ready"})
        await serving


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
