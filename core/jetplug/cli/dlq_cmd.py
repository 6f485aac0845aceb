"""``jetplug dlq list|show|replay|purge``: inspect, replay and delete dead letters.

The logic lives in :mod:`jetplug.engine.dlq`; this module parses options, connects like every
one-off command (``Host.open_client``) and prints.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from ..engine.dlq import DeadLetterStore, DlqError, Selection, table
from ..engine.engine import Engine
from ..host import Host
from . import config_option, echo_json, load_host_config, setup_from_config

T = TypeVar("T")


def _run(
    ctx: click.Context,
    config_path: str | None,
    work: Callable[[DeadLetterStore, Engine], Awaitable[T]],
) -> T:
    """Load the config, connect, run ``work`` and always shut the host down."""
    cfg, plugins = load_host_config(config_path)
    setup_from_config(cfg, ctx)
    host = Host(cfg, plugins)

    async def go() -> T:
        try:
            engine = await host.open_client()
            return await work(DeadLetterStore(engine.api, cfg.core.jetstream.dlq), engine)
        finally:
            await host.shutdown()

    return asyncio.run(go())


def _selection(consumer: str | None, reason: str | None, seqs: tuple[int, ...] = ()) -> Selection:
    return Selection(consumer=consumer or "", reason=reason or "", seqs=tuple(seqs))


def _consumer_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--consumer",
        default=None,
        metavar="NAME",
        help="Only dead letters of this consumer: a durable name (any stream) or STREAM/DURABLE.",
    )(fn)


def _reason_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--reason",
        default=None,
        metavar="CODE",
        help="Only dead letters with this Jetplug-Dlq-Reason (invalid_payload, max_deliver, ...).",
    )(fn)


@click.group("dlq")
def dlq_group() -> None:
    """Inspect, replay and delete dead letters.

    Dead letters are stored in the [jetstream.dlq] stream (default JETPLUG_DLQ) on
    <subject_prefix>.<stream>.<consumer>, with the original data and headers plus Jetplug-*
    headers (reason, error, original subject/stream/seq, consumer, deliveries, plugin, time).
    Every command addresses a dead letter by its sequence in that stream (the SEQ column).
    """


@dlq_group.command("list")
@config_option
@_consumer_option
@_reason_option
@click.option(
    "--limit",
    default=100,
    show_default=True,
    type=click.IntRange(min=0),
    help="Show at most this many (oldest first); 0 shows all.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array (keys below).")
@click.pass_context
def list_cmd(
    ctx: click.Context,
    config_path: str | None,
    consumer: str | None,
    reason: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List dead letters, oldest first: SEQ, time, consumer, reason, original subject, original
    seq, deliveries and the error (truncated).

    \b
    --json prints an array of objects with the keys:
      seq              sequence in the DLQ stream (use it with show/replay)
      time             when it was dead-lettered (ISO 8601)
      subject          DLQ subject (<prefix>.<stream>.<consumer>)
      consumer         durable name of the consumer
      reason           Jetplug-Dlq-Reason
      error            Jetplug-Dlq-Error (full text)
      plugin           plugin that decided
      original_stream  stream of the original message
      original_subject subject of the original message (replay target)
      original_seq     stream sequence of the original (null if unknown)
      deliveries       deliveries before it was dead-lettered (null if unknown)
      size             payload size in bytes
    """
    selection = _selection(consumer, reason)

    async def work(store: DeadLetterStore, _: Engine) -> tuple[list[Any], bool]:
        letters = await store.select(selection, limit=limit + 1 if limit else 0)
        more = bool(limit) and len(letters) > limit
        return letters[:limit] if limit else letters, more

    letters, more = _run(ctx, config_path, work)
    if as_json:
        echo_json([d.summary() for d in letters])
        return
    if not letters:
        click.echo("no dead letters" + ("" if selection.empty else " match"))
        return
    for line in table(letters):
        click.echo(line)
    if more:
        click.echo(f"(more than {limit} match; showing the oldest {limit}, use --limit 0 for all)")


@dlq_group.command("show")
@click.argument("seq", type=click.IntRange(min=1))
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (keys below).")
@click.pass_context
def show_cmd(ctx: click.Context, seq: int, config_path: str | None, as_json: bool) -> None:
    """Show one dead letter (by its DLQ SEQ): every header, then the payload (text if it is
    UTF-8, else base64).

    \b
    --json prints the keys of `dlq list --json` plus:
      headers        every header of the dead letter (original and Jetplug-*)
      data           the payload, as text or base64
      data_encoding  "utf-8" or "base64"
    """

    async def work(store: DeadLetterStore, _: Engine) -> dict[str, Any]:
        return (await store.get(seq)).detail()

    detail = _run(ctx, config_path, work)
    if as_json:
        echo_json(detail)
        return
    click.echo(f"seq:      {detail['seq']}")
    click.echo(f"subject:  {detail['subject']}")
    click.echo(f"size:     {detail['size']} bytes")
    click.echo("headers:")
    for key, value in detail["headers"].items():
        click.echo(f"  {key}: {value}")
    click.echo(f"data ({detail['data_encoding']}):")
    click.echo(detail["data"])


@dlq_group.command("replay")
@config_option
@click.option(
    "--seq",
    "seqs",
    multiple=True,
    type=click.IntRange(min=1),
    metavar="N",
    help="Replay the dead letter with this DLQ sequence (repeatable).",
)
@_consumer_option
@_reason_option
@click.option("--all", "replay_all", is_flag=True, help="Replay every dead letter (no filter).")
@click.option("--dry-run", is_flag=True, help="Change nothing; print what would be replayed.")
@click.option("--keep", is_flag=True, help="Keep the dead letters after they were replayed.")
@click.option(
    "--new-msg-id",
    is_flag=True,
    help="Publish with a fresh Nats-Msg-Id instead of restoring the original one "
    "(needed while the original stream's duplicate window still remembers it).",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array (keys below).")
@click.pass_context
def replay_cmd(
    ctx: click.Context,
    config_path: str | None,
    seqs: tuple[int, ...],
    consumer: str | None,
    reason: str | None,
    replay_all: bool,
    dry_run: bool,
    keep: bool,
    new_msg_id: bool,
    as_json: bool,
) -> None:
    """Republish dead letters to their original subject (Jetplug-Original-Subject).

    Each is published with its original data and headers (the Jetplug-* headers removed, the
    original Nats-Msg-Id restored if it had one) and waits for the pub-ack; then the dead letter
    is deleted, unless --keep. Filters combine (all must match); with no filter, --all is needed.
    Dead letters that arrive while replay runs are not replayed by the same run. Exits 1 if any
    dead letter could not be replayed (failed or duplicate); those are kept.

    \b
    --json prints an array of objects with the keys:
      seq               DLQ sequence of the dead letter
      original_subject  where it was (or would be) published
      status            replayed | would_replay (--dry-run) | duplicate | failed
      stream, new_seq   the pub-ack: stream and sequence (null/"" when not published)
      msg_id            Nats-Msg-Id of the replay: the original one, or a new one
                        generated by the publisher ("" in a dry run when new)
      deleted           whether the dead letter was deleted
      error             why it failed, or why it was kept ("" when all went well)
    """
    selection = _selection(consumer, reason, seqs)
    if selection.empty and not replay_all:
        raise click.UsageError("nothing selected: give --seq, --consumer, --reason, or --all")

    async def work(store: DeadLetterStore, engine: Engine) -> list[dict[str, Any]]:
        letters = await store.select(selection)
        results = await store.replay(
            letters, engine.publisher, keep=keep, dry_run=dry_run, new_msg_id=new_msg_id
        )
        return [r.to_dict() for r in results]

    results = _run(ctx, config_path, work)
    if as_json:
        echo_json(results)
    else:
        for r in results:
            click.echo(_replay_line(r))
        counts: dict[str, int] = {}
        for r in results:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
        click.echo(summary or "no dead letters match")
    if any(r["status"] in ("failed", "duplicate") for r in results):
        raise SystemExit(1)


def _replay_line(r: dict[str, Any]) -> str:
    target = f"DLQ seq {r['seq']} -> {r['original_subject'] or '?'}"
    if r["status"] == "would_replay":
        msg_id = f"Nats-Msg-Id {r['msg_id']}" if r["msg_id"] else "new Nats-Msg-Id"
        return f"would replay {target} ({msg_id})"
    if r["status"] == "replayed":
        kept = "dead letter deleted" if r["deleted"] else "dead letter kept"
        extra = f"; {r['error']}" if r["error"] else ""
        return f"replayed {target} (stored as {r['stream']} seq {r['new_seq']}; {kept}){extra}"
    return f"{r['status'].upper()} {target}: {r['error']}"


@dlq_group.command("purge")
@config_option
@_consumer_option
@_reason_option
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help='Print {"deleted": N} (N = how many dead letters were removed).',
)
@click.pass_context
def purge_cmd(
    ctx: click.Context,
    config_path: str | None,
    consumer: str | None,
    reason: str | None,
    yes: bool,
    as_json: bool,
) -> None:
    """Delete dead letters: those matching --consumer/--reason, or every one without a filter.

    Asks for confirmation unless --yes. Dead letters stored after the count shown in the
    question are not deleted.
    """
    selection = _selection(consumer, reason)

    async def work(store: DeadLetterStore, _: Engine) -> int:
        upto = await store.last_seq()
        count = await store.count(selection)
        if count == 0:
            return 0
        if not yes:
            what = "every dead letter" if selection.empty else "the matching dead letters"
            question = f"Delete {what} in {store.stream} ({count})?"
            await asyncio.to_thread(click.confirm, question, abort=True)
        return (await store.purge(selection, upto=upto)).deleted

    deleted = _run(ctx, config_path, work)
    if as_json:
        echo_json({"deleted": deleted})
    else:
        click.echo(f"deleted {deleted} dead letter(s)")


def register(group: click.Group) -> None:
    """Add the ``dlq`` group."""
    group.add_command(dlq_group)


__all__ = ["DlqError", "dlq_group", "register"]
