"""The host's small HTTP server: ``/healthz``, ``/readyz`` and ``/metrics``.

One asyncio server on the host's event loop, no extra dependency. It answers ``GET`` (and
``HEAD``) only, one request per connection (``Connection: close``), with a bounded request head
and a read timeout, so a slow or hostile client cannot hold it. It listens on ``[http] host``
(loopback by default) and ``[http] port`` (0 picks a free port; :attr:`HttpServer.port` tells
which) and is off unless ``[http] enabled = true``.

* ``/healthz``: 200 while the event loop is responsive, 503 when its lag exceeds
  ``[http] max_loop_lag``.
* ``/readyz``: 200 when connected, every declared stream and consumer exists and every consumer
  makes progress; else 503 with ``{"ready": false, "problems": [...]}``.
* ``/metrics``: the Prometheus text exposition of ``host.metrics.registry``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import TYPE_CHECKING, Any

from .errors import StartupError

if TYPE_CHECKING:
    from .host import Host

log = logging.getLogger("jetplug.http")

#: the request line and headers together may not exceed this many bytes
MAX_HEAD = 8192
#: seconds a client gets to send its request head
READ_TIMEOUT = 5.0
_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
JSON = "application/json"


def _json(status: int, data: Any) -> tuple[int, str, bytes]:
    return status, JSON, json.dumps(data).encode() + b"\n"


class HttpServer:
    """Serves the health and metrics endpoints of one host."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.settings = host.config.core.http
        self._server: asyncio.AbstractServer | None = None
        #: the bound TCP port (after :meth:`start`)
        self.port = 0

    async def start(self) -> int:
        """Listen; return the bound port. A port already in use is a StartupError."""
        s = self.settings
        try:
            self._server = await asyncio.start_server(self._serve, s.host, s.port, limit=MAX_HEAD)
        except OSError as exc:
            raise StartupError(
                f"[http] cannot listen on {s.host}:{s.port}: {exc.strerror or exc}; choose another "
                "port ([http] port, 0 picks a free one) or set [http] enabled = false"
            ) from None
        sock = self._server.sockets[0]
        self.port = int(sock.getsockname()[1])
        log.info(
            "health and metrics on http://%s:%d",
            s.host,
            self.port,
            extra={"endpoints": "/healthz,/readyz,/metrics"},
        )
        return self.port

    async def stop(self) -> None:
        """Stop listening and close the server."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 2)

    # --- requests -------------------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head_only = False
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            except asyncio.TimeoutError:
                status, ctype, body = _json(408, {"error": "request timeout"})
            except asyncio.LimitOverrunError:
                status, ctype, body = _json(431, {"error": "request head too large"})
            except asyncio.IncompleteReadError:
                return  # the client went away
            else:
                method, path = _request_line(head)
                head_only = method == "HEAD"
                if not method:
                    status, ctype, body = _json(400, {"error": "bad request"})
                elif method not in ("GET", "HEAD"):
                    status, ctype, body = _json(405, {"error": "only GET"})
                else:
                    status, ctype, body = self.route(path)
            writer.write(_response(status, ctype, b"" if head_only else body, len(body)))
            await asyncio.wait_for(writer.drain(), READ_TIMEOUT)
        except Exception:  # one bad connection never hurts the host
            log.debug("http request failed", exc_info=True)
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    def route(self, path: str) -> tuple[int, str, bytes]:
        """``(status, content type, body)`` for a GET of ``path``."""
        try:
            if path == "/healthz":
                return self.healthz()
            if path == "/readyz":
                return self.readyz()
            if path == "/metrics":
                body, ctype = self.host.metrics.exposition()
                return 200, ctype, body
        except Exception as exc:  # noqa: BLE001 - report, do not crash
            log.warning("http %s failed: %s", path, exc)
            return _json(500, {"error": type(exc).__name__})
        return _json(404, {"error": "not found", "endpoints": ["/healthz", "/readyz", "/metrics"]})

    def healthz(self) -> tuple[int, str, bytes]:
        """Liveness: 200 unless the event loop lags."""
        health = self.host.health
        problems = health.liveness()
        lag = round(health.loop_lag, 4)
        data = {"alive": not problems, "loop_lag_seconds": lag, "problems": problems}
        return _json(503 if problems else 200, data)

    def readyz(self) -> tuple[int, str, bytes]:
        """Readiness: 200 when ready, else 503 naming every problem."""
        problems = self.host.health.readiness()
        engine = self.host.engine
        consumers = {k: r.state for k, r in engine.runners.items()} if engine is not None else {}
        data = {"ready": not problems, "problems": problems, "consumers": consumers}
        return _json(503 if problems else 200, data)


def _request_line(head: bytes) -> tuple[str, str]:
    """``(method, path without query)``; ``("", "")`` when the request line is malformed."""
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return "", ""
    method, target = parts[0], parts[1]
    return method.upper(), target.split("?", 1)[0]


def _response(status: int, ctype: str, body: bytes, length: int) -> bytes:
    head = (
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}\r\n"
        f"Content-Type: {ctype}\r\n"
        f"Content-Length: {length}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


async def get(host: str, port: int, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
    """A minimal HTTP GET (``jetplug status`` and tests): ``(status, body)``."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body


__all__ = ["HttpServer", "get"]
