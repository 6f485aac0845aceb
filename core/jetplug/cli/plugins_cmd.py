"""``jetplug plugins``: what is installed, enabled, disabled or broken."""

from __future__ import annotations

import os

import click

from ..config import load_raw
from ..plugins import Selection, discover
from . import config_option, echo_json, plugin_options


@click.command("plugins")
@config_option
@plugin_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--hook", default=None, metavar="NAME", help="Only plugins that implement this hook.")
def plugins_command(
    config_path: str | None,
    plugin_names: tuple[str, ...],
    disabled: tuple[str, ...],
    as_json: bool,
    hook: str | None,
) -> None:
    """List installed plugins: name, distribution, version, status and hooks.

    Works even when a plugin is broken (it is listed as broken with the cause); exits 1 if any
    enabled plugin is broken, so scripts can check (a broken plugin that is disabled is listed,
    marked "(disabled)", and does not count).
    """
    raw, _ = load_raw(config_path)
    selection = Selection.from_sources(
        cli_plugins=plugin_names, cli_disabled=disabled, environ=os.environ, raw_config=raw
    )
    plugins = discover(selection, load_disabled=True)
    records = sorted(plugins.records.values(), key=lambda r: (r.builtin, r.name))
    if hook:
        records = [r for r in records if hook in r.hooks]
    if as_json:
        echo_json([r.to_dict() for r in records])
    else:
        rows = [("NAME", "STATUS", "DISTRIBUTION", "VERSION", "HOOKS")]
        for r in records:
            rows.append(
                (
                    r.name,
                    r.status,
                    r.distribution or "-",
                    r.version or "-",
                    ", ".join(r.hooks) or "-",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        for row in rows:
            click.echo(
                "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4]
            )
        for r in records:
            if r.status != "enabled" and r.reason:
                off = "" if r.selected else " (disabled)"
                click.echo(f"{r.name}: {r.status}{off}: {r.reason}", err=r.status == "broken")
    if any(r.status == "broken" and r.selected for r in records):
        raise SystemExit(1)


def register(group: click.Group) -> None:
    """Add ``plugins``."""
    group.add_command(plugins_command)
