"""``jetplug streams plan|apply``: declared streams and consumers versus the server."""

from __future__ import annotations

import asyncio
from typing import Any

import click

from ..engine.provisioning import apply, plan
from ..host import Host
from . import config_option, echo_json, load_host_config, plugin_options, setup_from_config


@click.group("streams")
def streams_group() -> None:
    """Compare and apply the streams and consumers plugins declare."""


def _plan_and_show(
    ctx: click.Context,
    config_path: str | None,
    plugin_names: tuple[str, ...],
    disabled: tuple[str, ...],
    as_json: bool,
    do_apply: bool,
) -> list[dict[str, Any]]:
    """Load the configuration, compare (and with ``do_apply`` apply), print; the changes."""
    cfg, plugins = load_host_config(config_path, plugin_names, disabled)
    setup_from_config(cfg, ctx)
    changes = asyncio.run(_plan(Host(cfg, plugins), do_apply=do_apply))
    _show(changes, as_json, applied=do_apply)
    return changes


async def _plan(host: Host, do_apply: bool) -> list[dict[str, Any]]:
    try:
        engine = await host.open_client()
        changes = await plan(engine.api, host.declarations, engine.host_streams())
        if do_apply:
            await apply(engine.api, changes)
        return [{"text": c.describe(), **c.to_dict()} for c in changes]
    finally:
        await host.shutdown()


def _show(changes: list[dict[str, Any]], as_json: bool, applied: bool) -> None:
    if as_json:
        echo_json([{k: v for k, v in c.items() if k != "text"} for c in changes])
        return
    for c in changes:
        click.echo(str(c["text"]))
    pending = sum(1 for c in changes if c["action"] != "none")
    blocked = sum(1 for c in changes for d in c["diffs"] if d["immutable"])
    verb = "applied" if applied else "to apply"
    click.echo(
        f"\n{pending} change(s) {verb}" + (f", {blocked} blocked (immutable)" if blocked else "")
    )


@streams_group.command("plan")
@config_option
@plugin_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def plan_cmd(
    ctx: click.Context,
    config_path: str | None,
    plugin_names: tuple[str, ...],
    disabled: tuple[str, ...],
    as_json: bool,
) -> None:
    """Show what `apply` (or `run` with provision = "manage") would create or change.

    Exits 1 when there are changes, 0 when the server matches the declarations.
    """
    changes = _plan_and_show(ctx, config_path, plugin_names, disabled, as_json, do_apply=False)
    if any(c["action"] != "none" for c in changes):
        raise SystemExit(1)


@streams_group.command("apply")
@config_option
@plugin_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def apply_cmd(
    ctx: click.Context,
    config_path: str | None,
    plugin_names: tuple[str, ...],
    disabled: tuple[str, ...],
    as_json: bool,
) -> None:
    """Create missing and update changed streams and consumers; immutable changes are refused."""
    _plan_and_show(ctx, config_path, plugin_names, disabled, as_json, do_apply=True)


def register(group: click.Group) -> None:
    """Add the ``streams`` group."""
    group.add_command(streams_group)
