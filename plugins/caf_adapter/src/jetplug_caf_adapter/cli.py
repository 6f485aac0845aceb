"""``jetplug caf assign FILE|-``: publish one assignment from a JSON file and print the result."""

from __future__ import annotations

import asyncio
from typing import IO, TYPE_CHECKING, Any

import click
from jetplug.cli import (
    config_option,
    echo_json,
    load_host_config,
    plugin_options,
    setup_from_config,
)
from jetplug.errors import UsageError

from .adapter import AssignResult
from .client import client_adapter
from .config import PLUGIN
from .reply import parse

if TYPE_CHECKING:
    from jetplug.config import Config
    from jetplug.plugins import Plugins

GROUP_HELP = "Router <-> CAF: assignments, acks, results."


def register(cli: click.Group) -> None:
    """Add ``caf assign``, creating the ``caf`` group unless another CAF plugin already did."""
    group = cli.commands.get("caf")
    if group is None:
        group = click.Group("caf", help=GROUP_HELP)
        cli.add_command(group)
    if not isinstance(group, click.Group):
        return  # something else took the name; `jetplug caf` is not ours to replace
    if "assign" not in group.commands:
        group.add_command(assign)


async def run_assign(
    config: Config, plugins: Plugins, request: Any, decision: Any, assignment_id: str | None = None
) -> AssignResult:
    """Publish one assignment on a client connection (see :func:`.client.client_adapter`)."""
    async with client_adapter(config, plugins) as adapter:
        return await adapter.assign(request, decision, assignment_id=assignment_id)


@click.command("assign")
@click.argument("file", type=click.File("rb"), metavar="FILE|-")
@config_option
@plugin_options
@click.pass_context
def assign(
    ctx: click.Context,
    file: IO[bytes],
    config_path: str | None,
    plugin_names: tuple[str, ...],
    disabled: tuple[str, ...],
) -> None:
    """Publish the assignment in FILE (- reads stdin) and print the result as JSON.

    FILE holds {"request": {...}, "decision": {...}} and optionally "assignment_id" (a UUID v4,
    to retry a publish without storing it twice). Exit 0 when published, 1 when it was not
    (publish failure, blocked tenant, assignments switched off), 2 for invalid input (the
    message names the field).
    """
    request, decision, aid = parse(file.read())
    cfg, plugins = load_host_config(config_path, plugin_names, disabled)
    setup_from_config(cfg, ctx)
    if PLUGIN not in plugins.enabled_names():
        raise UsageError(
            f"the {PLUGIN} plugin is not enabled (check -p/--disable, JETPLUG_PLUGINS, "
            f"[host] plugins and [plugins.{PLUGIN}] enabled)"
        )
    result = asyncio.run(run_assign(cfg, plugins, request, decision, aid))
    echo_json(result.to_dict())
    if result.outcome != "published":
        why = {
            "tenant_not_allowed": "the tenant is not in allowed_tenants",
            "disabled": "assignments_enabled is false",
        }.get(result.reason, result.reason)
        click.echo(f"Error: not published ({result.outcome}): {why}", err=True)
        ctx.exit(1)
