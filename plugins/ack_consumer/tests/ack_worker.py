"""One jetplug host in its own process, for the multi-process tests.

Usage: ``python ack_worker.py CONFIG OUT``. Loads the installed plugins selected by CONFIG
(``[host] plugins``) exactly like ``jetplug run``, plus a recorder that appends one JSON line per
finished message and per CAF telemetry event to OUT (a ``ready`` line once the host runs), and
serves until SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from typing import IO, Any

import msgspec
from jetplug import hookimpl
from jetplug.cli import load_host_config
from jetplug.events import Event
from jetplug.host import Host

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
