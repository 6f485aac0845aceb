"""``jetplug status``: connection, streams, consumers and dead letters, as the server sees them.

Connects like every one-off command (``Host.open_client``): the streams and consumers are the
ones the enabled plugins declare, plus the dead-letter stream. The numbers are the server's own
(``STREAM.INFO`` / ``CONSUMER.INFO``), under the server's names in ``--json``. With
``[http] enabled`` and a fixed port, the running host's ``/readyz`` verdict is shown too. With no
``[nats] servers`` and a fixed ``[embedded] port`` that already accepts connections (a running
host's embedded server), it connects there instead of starting a second embedded server.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from datetime import datetime, timezone
from typing import Any

import click

from ..connection import redact_url
from ..engine.jsapi import ApiError
from ..host import Host
from ..http import get as http_get
from . import config_option, echo_json, load_host_config, plugin_options, setup_from_config


def _version(nc: Any) -> str:
    v = nc.connected_server_version
    try:
        text = f"{v.major}.{v.minor}.{v.patch}"
        return f"{text}-{v.dev}" if v.dev else text
    except (ValueError, TypeError):
        return "unknown"


async def _stream(host: Host, name: str, owner: str) -> dict[str, Any]:
    assert host.engine is not None
    try:
        info = await host.engine.api.stream_info(name)
    except ApiError as exc:
        if not exc.not_found:
            raise
        return {"name": name, "owner": owner, "exists": False}
    cfg, state = info.get("config", {}), info.get("state", {})
    return {
        "name": name,
        "owner": owner,
        "exists": True,
        "subjects": list(cfg.get("subjects") or []),
        "messages": int(state.get("messages", 0)),
        "bytes": int(state.get("bytes", 0)),
        "num_subjects": int(state.get("num_subjects", 0)),
        "first_seq": int(state.get("first_seq", 0)),
        "last_seq": int(state.get("last_seq", 0)),
        "consumer_count": int(state.get("consumer_count", 0)),
    }


async def _consumer(host: Host, stream: str, durable: str, owner: str, mode: str) -> dict[str, Any]:
    assert host.engine is not None
    base = {"stream": stream, "consumer": durable, "owner": owner, "mode": mode}
    try:
        info = await host.engine.api.consumer_info(stream, durable)
    except ApiError as exc:
        if not exc.not_found:
            raise
        return {**base, "exists": False}
    delivered = info.get("delivered", {})
    ack_floor = info.get("ack_floor", {})
    return {
        **base,
        "exists": True,
        "num_pending": int(info.get("num_pending", 0)),
        "num_ack_pending": int(info.get("num_ack_pending", 0)),
        "num_redelivered": int(info.get("num_redelivered", 0)),
        "num_waiting": int(info.get("num_waiting", 0)),
        "delivered_stream_seq": int(delivered.get("stream_seq", 0)),
        "ack_floor_stream_seq": int(ack_floor.get("stream_seq", 0)),
        "last_active": delivered.get("last_active"),
    }


async def _host_readiness(host: Host) -> dict[str, Any] | None:
    """The running host's /readyz, when ``[http]`` is enabled on a fixed port."""
    http = host.config.core.http
    if not http.enabled or not http.port:
        return None
    where = "127.0.0.1" if http.host in ("0.0.0.0", "::", "") else http.host  # noqa: S104
    url = f"http://{where}:{http.port}/readyz"
    try:
        status, body = await http_get(where, http.port, "/readyz", timeout=2.0)
        data = json.loads(body)
        return {
            "url": url,
            "reachable": True,
            "ready": status == 200,
            "problems": list(data.get("problems", [])),
        }
    except (OSError, ValueError, asyncio.TimeoutError) as exc:
        return {
            "url": url,
            "reachable": False,
            "ready": False,
            "problems": [f"not reachable: {type(exc).__name__}"],
        }


async def collect_status(host: Host) -> dict[str, Any]:
    """Everything ``jetplug status`` shows, as JSON-ready data; always shuts ``host`` down."""
    try:
        await host.open_client()
        assert host.connection is not None
        nc = host.connection.client
        try:
            rtt_ms: float | None = round(await nc.rtt() * 1000, 3)
        except Exception:  # noqa: BLE001 - the rest is still worth showing
            rtt_ms = None
        server = nc.connected_url.geturl() if nc.connected_url is not None else ""
        decl = host.declarations
        streams = [await _stream(host, s.name, owner) for owner, s in decl.streams]
        streams += [await _stream(host, f"KV_{b.bucket}", owner) for owner, b in decl.buckets]
        dlq_settings = host.config.core.jetstream.dlq
        dlq: dict[str, Any] = {"enabled": dlq_settings.enabled, "stream": dlq_settings.stream}
        if dlq_settings.enabled:
            dlq_stream = await _stream(host, dlq_settings.stream, "jetplug")
            streams.append(dlq_stream)
            dlq.update(
                exists=dlq_stream["exists"],
                messages=dlq_stream.get("messages", 0),
                bytes=dlq_stream.get("bytes", 0),
            )
        consumers = [
            await _consumer(host, c.stream, c.durable, c.owner, c.mode) for c in decl.consumers
        ]
        return {
            "connection": {
                "server": redact_url(server),
                "version": _version(nc),
                "rtt_ms": rtt_ms,
                "connected": bool(nc.is_connected),
                "embedded": host.embedded is not None,
            },
            "host": await _host_readiness(host),
            "streams": streams,
            "consumers": consumers,
            "dlq": dlq,
        }
    finally:
        await host.shutdown()


def _listening(port: int) -> bool:
    """True when something accepts TCP connections on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _ago(stamp: str | None, now: float | None = None) -> str:
    """``"3.2s ago"`` for a server RFC 3339 timestamp (nanosecond precision allowed)."""
    if not stamp:
        return "never"
    text = stamp.rstrip("Z")
    main, _, frac = text.partition(".")
    try:
        when = datetime.fromisoformat(main).replace(tzinfo=timezone.utc).timestamp()
    except ValueError:
        return stamp
    if frac.isdigit():
        when += float("0." + frac)
    secs = max(0.0, (now if now is not None else time.time()) - when)
    if secs < 60:
        return f"{secs:.1f}s ago"
    if secs < 3600:
        return f"{secs / 60:.1f}m ago"
    if secs < 86400:
        return f"{secs / 3600:.1f}h ago"
    return f"{secs / 86400:.1f}d ago"


def _table(rows: list[tuple[str, ...]], right: frozenset[int] = frozenset()) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for row in rows:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
    return out


def render(status: dict[str, Any]) -> list[str]:
    """The human-readable report."""
    conn = status["connection"]
    rtt = f"{conn['rtt_ms']:.2f} ms" if conn["rtt_ms"] is not None else "?"
    where = " (embedded)" if conn["embedded"] else ""
    lines = [f"connection  {conn['server']}{where}  server {conn['version']}  rtt {rtt}"]
    host = status.get("host")
    if host is not None:
        verdict = "ready" if host["ready"] else "NOT READY"
        lines.append(f"host        {host['url']}  {verdict}")
        lines += [f"            - {p}" for p in host["problems"]]
    lines.append("")
    rows: list[tuple[str, ...]] = [
        ("STREAM", "OWNER", "MESSAGES", "BYTES", "FIRST", "LAST", "SUBJECTS")
    ]
    for s in status["streams"]:
        if not s["exists"]:
            rows.append((s["name"], s["owner"], "missing", "-", "-", "-", "-"))
            continue
        rows.append(
            (
                s["name"],
                s["owner"],
                str(s["messages"]),
                _size(s["bytes"]),
                str(s["first_seq"]),
                str(s["last_seq"]),
                ", ".join(s["subjects"]) or "-",
            )
        )
    lines += _table(rows, frozenset({2, 3, 4, 5}))
    lines.append("")
    if status["consumers"]:
        rows = [
            ("CONSUMER", "MODE", "PENDING", "ACK PENDING", "REDELIVERED", "WAITING", "LAST ACTIVE")
        ]
        for c in status["consumers"]:
            name = f"{c['stream']}/{c['consumer']}"
            if not c["exists"]:
                rows.append((name, c["mode"], "missing", "-", "-", "-", "-"))
                continue
            rows.append(
                (
                    name,
                    c["mode"],
                    str(c["num_pending"]),
                    str(c["num_ack_pending"]),
                    str(c["num_redelivered"]),
                    str(c["num_waiting"]),
                    _ago(c["last_active"]),
                )
            )
        lines += _table(rows, frozenset({2, 3, 4, 5}))
    else:
        lines.append("no consumers declared by the enabled plugins")
    lines.append("")
    dlq = status["dlq"]
    if not dlq["enabled"]:
        lines.append("dead letters: off ([jetstream.dlq] enabled = false)")
    elif not dlq.get("exists"):
        lines.append(f"dead letters: stream {dlq['stream']} does not exist yet")
    else:
        hint = "  (jetplug dlq list)" if dlq["messages"] else ""
        size = _size(dlq["bytes"])
        lines.append(f"dead letters: {dlq['messages']} in {dlq['stream']} ({size}){hint}")
    return lines


@click.command("status")
@config_option
@plugin_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON (keys below).")
@click.pass_context
def status_command(
    ctx: click.Context,
    config_path: str | None,
    plugin_names: tuple[str, ...],
    disabled: tuple[str, ...],
    as_json: bool,
) -> None:
    """Show the connection, the declared streams and consumers, and the dead letters.

    Numbers come from the server. --json prints {"connection": {server, version, rtt_ms,
    connected, embedded}, "host": null or {url, reachable, ready, problems}, "streams": [{name,
    owner, exists, subjects, messages, bytes, num_subjects, first_seq, last_seq,
    consumer_count}], "consumers": [{stream, consumer, owner, mode, exists, num_pending,
    num_ack_pending, num_redelivered, num_waiting, delivered_stream_seq, ack_floor_stream_seq,
    last_active}], "dlq": {enabled, stream, exists, messages, bytes}}. Exits 1 when a declared
    stream or consumer is missing, or the running host reports it is not ready.
    """
    cfg, plugins = load_host_config(config_path, plugin_names, disabled)
    setup_from_config(cfg, ctx)
    port = cfg.core.embedded.port
    if not cfg.core.nats.servers and port and _listening(port):
        # a running host's embedded server: look at it instead of starting another on its store
        cfg.core.nats.servers = [f"nats://127.0.0.1:{port}"]
    status = asyncio.run(collect_status(Host(cfg, plugins)))
    if as_json:
        echo_json(status)
    else:
        for line in render(status):
            click.echo(line)
    missing = any(not s["exists"] for s in status["streams"] if s["owner"] != "jetplug")
    missing = missing or any(not c["exists"] for c in status["consumers"])
    host = status["host"]
    if missing or (host is not None and not host["ready"]):
        raise SystemExit(1)


def register(group: click.Group) -> None:
    """Add ``status``."""
    group.add_command(status_command)
