"""A second SIGTERM forces the exit while a graceful shutdown is still waiting on a handler."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from _cli import EMBEDDED_PID, process_gone

SCRIPT = textwrap.dedent(
    """
    import asyncio, sys
    from jetplug import ConsumerSpec, StreamSpec, hookimpl
    from jetplug.cli.run_cmd import serve_with_signals
    from jetplug.config import build_config
    from jetplug.host import Host
    from jetplug.logs import setup_logging
    from jetplug.plugins import Selection, discover

    class Stuck:
        host = None

        @hookimpl
        def register_streams(self):
            return [StreamSpec("SIG", ("sig.>",))]

        @hookimpl
        def register_consumers(self):
            return [ConsumerSpec("SIG", "stuck")]

        @hookimpl
        async def startup(self, host):
            await host.publisher.publish("sig.x", b"x")

        @hookimpl
        async def handle_message(self, msg):
            print("HANDLER STARTED", flush=True)
            await asyncio.sleep(120)

    setup_logging("info")
    plugins = discover(Selection(), extra=[("stuck", Stuck())], autoload=False)
    data = {"host": {"data_dir": sys.argv[1], "shutdown_timeout": 60}}
    config = build_config(data, plugins.config_schemas(), environ={})
    asyncio.run(serve_with_signals(Host(config, plugins)))
    """
)


@pytest.mark.timeout(60)
def test_second_signal_forces_exit_and_stops_the_embedded_server(tmp_path: Path) -> None:
    script = tmp_path / "stuck.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("JETPLUG_")}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "data")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the handler is running: a graceful stop would wait 60 s
            lines.append(line)
            if "HANDLER STARTED" in line:
                break
        pid_match = next((EMBEDDED_PID.search(x) for x in lines if EMBEDDED_PID.search(x)), None)
        assert pid_match, "".join(lines)
        server_pid = int(pid_match.group(1))
        proc.send_signal(signal.SIGTERM)
        for line in proc.stdout:
            lines.append(line)
            if "shutting down" in line:
                break
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
        assert code == 130, "".join(lines)
        assert time.monotonic() - started < 10, "forced exit does not wait for the handler"
        deadline = time.monotonic() + 10
        while not process_gone(server_pid) and time.monotonic() < deadline:
            time.sleep(0.05)  # the pid disappears asynchronously; poll the condition
        assert process_gone(server_pid), "the embedded nats-server was stopped by the forced exit"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
