"""``jetplug publish SUBJECT [DATA|-]``: one publish through the host's publisher."""

from __future__ import annotations

import asyncio
import sys

import click

from ..errors import UsageError
from ..host import Host
from . import config_option, echo_json, load_host_config, setup_from_config


def parse_headers(pairs: tuple[str, ...]) -> dict[str, str]:
    """``K=V`` pairs into a dict; a pair without ``=`` is a UsageError naming it."""
    headers = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--header {pair!r}: expected KEY=VALUE")
        headers[key.strip()] = value
    return headers


@click.command("publish")
@click.argument("subject")
@click.argument("data", required=False)
@click.option(
    "--header", "-H", "header_pairs", multiple=True, metavar="K=V", help="A header (repeatable)."
)
@click.option("--msg-id", default="", help="Nats-Msg-Id (default: generated).")
@click.option("--expected-stream", default="", help="Fail unless this stream stores SUBJECT.")
@config_option
@click.pass_context
def publish(
    ctx: click.Context,
    subject: str,
    data: str | None,
    header_pairs: tuple[str, ...],
    msg_id: str,
    expected_stream: str,
    config_path: str | None,
) -> None:
    """Publish DATA (or stdin with -) to SUBJECT, wait for the pub-ack and print it as JSON."""
    headers = parse_headers(header_pairs)
    payload = sys.stdin.buffer.read() if data in (None, "-") else data.encode()
    cfg, plugins = load_host_config(config_path)
    setup_from_config(cfg, ctx)
    host = Host(cfg, plugins)

    async def go() -> dict[str, object]:
        try:
            engine = await host.open_client()
            ack = await engine.publisher.publish(
                subject, payload, headers=headers, msg_id=msg_id, expected_stream=expected_stream
            )
            return {"stream": ack.stream, "seq": ack.seq, "duplicate": ack.duplicate}
        finally:
            await host.shutdown()

    echo_json(asyncio.run(go()))


def register(group: click.Group) -> None:
    """Add ``publish``."""
    group.add_command(publish)
