"""``jetplug run`` and ``jetplug server``."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from pathlib import Path

import click

from ..config import build_config, load_raw
from ..embedded import EmbeddedServer
from ..host import Host
from . import config_option, load_host_config, plugin_options, setup_from_config

log = logging.getLogger("jetplug.cli")


async def serve_with_signals(host: Host) -> None:
    """Serve until SIGTERM/SIGINT; a second signal forces the exit (stopping the embedded
    server)."""
    loop = asyncio.get_running_loop()
    received = 0

    def on_signal(sig: signal.Signals) -> None:
        nonlocal received
        received += 1
        if received == 1:
            log.info("received %s: shutting down (send it again to force)", sig.name)
            host.request_stop()
            return
        log.warning(
            "received %s again: forced exit, in-flight messages will be redelivered", sig.name
        )
        if host.embedded is not None:
            host.embedded.stop(timeout=2)
        os._exit(130)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        await host.serve()
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


@click.command()
@config_option
@plugin_options
@click.pass_context
def run(
    ctx: click.Context,
    config_path: str | None,
    plugin_names: tuple[str, ...],
    disabled: tuple[str, ...],
) -> None:
    """Run the host with the enabled plugins until SIGTERM or SIGINT.

    With no [nats] servers configured, an embedded nats-server with JetStream is started on
    127.0.0.1 (store under [host] data_dir) and stopped on exit. Exit codes: 0 clean shutdown,
    2 configuration, 3 connection failed or lost, 1 anything else.
    """
    cfg, plugins = load_host_config(config_path, plugin_names, disabled)
    setup_from_config(cfg, ctx)
    asyncio.run(serve_with_signals(Host(cfg, plugins)))


@click.command()
@config_option
@click.option(
    "--port",
    type=int,
    default=None,
    help="Client port on 127.0.0.1 (default: [embedded] port or 4222).",
)
@click.option(
    "--http-port",
    type=int,
    default=None,
    help="Monitoring port (default: [embedded] http_port, off).",
)
@click.option(
    "--store-dir",
    type=click.Path(file_okay=False),
    default=None,
    help="JetStream store (default: <[host] data_dir>/nats).",
)
@click.pass_context
def server(
    ctx: click.Context,
    config_path: str | None,
    port: int | None,
    http_port: int | None,
    store_dir: str | None,
) -> None:
    """Run a standalone nats-server with JetStream on 127.0.0.1 for development."""
    raw, source = load_raw(config_path)
    raw.pop("plugins", None)
    # no plugins are loaded here, so their tables (file or JETPLUG_PLUGINS__* env) are not checked
    env = {k: v for k, v in os.environ.items() if not k.lower().startswith("jetplug_plugins__")}
    cfg = build_config(raw, {}, source=source, environ=env)
    setup_from_config(cfg, ctx)
    core = cfg.core
    srv = EmbeddedServer(
        store_dir=Path(store_dir or Path(core.host.data_dir) / "nats").resolve(),
        port=port if port is not None else (core.embedded.port or 4222),
        http_port=http_port if http_port is not None else core.embedded.http_port,
        sync_always=core.embedded.sync_always,
    )
    srv.start()
    click.echo(
        f"nats-server (pid {srv.pid}) listening on {srv.url}; store {srv.store_dir}; "
        "Ctrl-C stops it"
    )

    async def wait() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except asyncio.TimeoutError:
                if srv.pid is None:
                    raise click.ClickException(
                        "nats-server exited unexpectedly; see its log in the store dir"
                    ) from None

    try:
        asyncio.run(wait())
    finally:
        srv.stop()


def register(group: click.Group) -> None:
    """Add ``run`` and ``server``."""
    group.add_command(run)
    group.add_command(server)
