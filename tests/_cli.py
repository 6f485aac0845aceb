"""Helpers for host tests that run the real `jetplug` console script as a subprocess."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

#: the console script of the venv the tests run in
JETPLUG = str(
    Path(sys.executable).with_name("jetplug")
    if Path(sys.executable).with_name("jetplug").exists()
    else shutil.which("jetplug") or "jetplug"
)

EMBEDDED_PID = re.compile(r"started embedded nats-server .*\bpid=(\d+)")


def jetplug_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ``JETPLUG_*`` variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JETPLUG_")}
    env.update(extra)
    return env


def run_cli(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 30,
) -> subprocess.CompletedProcess[str]:
    """Run ``jetplug ARGS`` to completion in ``cwd`` (never the repo: no stray jetplug.toml)."""
    return subprocess.run(
        [JETPLUG, *args],
        cwd=cwd,
        env=jetplug_env() if env is None else env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


async def run_cli_async(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 30
) -> tuple[int, str, str]:
    """:func:`run_cli` without blocking the event loop (the test's server or host keeps going):
    ``(exit code, stdout, stderr)``."""
    proc = await asyncio.create_subprocess_exec(
        JETPLUG,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=cwd,
        env=jetplug_env() if env is None else env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def process_gone(pid: int) -> bool:
    """True when no process ``pid`` exists any more (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


class Spawned:
    """A long-running ``jetplug`` subprocess whose stdout and stderr go to one log file."""

    def __init__(self, *args: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        self.log = cwd / f"jetplug-{args[0]}.log"
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                [JETPLUG, *args],
                cwd=cwd,
                env=jetplug_env() if env is None else env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        #: extra pids to kill at cleanup if they outlive the test (the embedded nats-server)
        self.children: list[int] = []

    def output(self) -> str:
        """Everything the process printed so far."""
        return self.log.read_text(errors="replace")

    def signal(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to the jetplug process (by pid)."""
        self.proc.send_signal(sig)

    def cleanup(self) -> None:
        """Kill, by pid, whatever is still running: the test has failed if anything was."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for pid in self.children:
            if not process_gone(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def embedded_config(tmp_path: Path, extra: str = "") -> tuple[Path, int]:
    """A config for ``jetplug run`` on the embedded server: data dir in ``tmp_path``, free port."""
    from jetplug.embedded import free_port

    port = free_port()
    path = tmp_path / "run.toml"
    path.write_text(
        f'[host]\ndata_dir = "{tmp_path / "data"}"\n[embedded]\nport = {port}\n{extra}',
        encoding="utf-8",
    )
    return path, port
