"""``jetplug caf demo``: the whole Router <-> CAF loop on one host, with a summary."""

from __future__ import annotations

import asyncio
import sys

import click
from jetplug.cli import config_option, load_host_config, plugin_options, setup_from_config
from jetplug.host import Host

from .config import SimulatorSettings


def caf_group(group: click.Group) -> click.Group:
    """The shared ``caf`` group (other CAF plugins add to it too)."""
    existing = group.commands.get("caf")
    if isinstance(existing, click.Group):
        return existing

    @click.group("caf")
    def caf() -> None:
        """Router <-> CAF commands (assignments, demo)."""

    group.add_command(caf)
    return caf


@click.command("demo")
@config_option
@plugin_options
@click.option(
    "--count", type=int, default=None, help="Assignments to submit (default: demo_count)."
)
@click.option(
    "--rate", type=float, default=None, help="Assignments per second (default: demo_rate)."
)
@click.pass_context
def demo(
    ctx: click.Context,
    config_path: str | None,
    plugin_names: tuple[str, ...],
    disabled: tuple[str, ...],
    count: int | None,
    rate: float | None,
) -> None:
    """Run the host with the CAF plugins and the simulated executor, submit assignments, and
    print what happened to each. Exits 0 only when every published assignment is accounted for."""
    from .demo import Tally, run_demo, summary

    cfg, plugins = load_host_config(config_path, plugin_names, disabled)
    setup_from_config(cfg, ctx)
    missing = [
        n
        for n in ("caf_adapter", "ack_consumer", "result_consumer", "caf_simulator")
        if n not in plugins.enabled_names()
    ]
    if missing:
        raise click.UsageError(f"the demo needs these plugins enabled: {', '.join(missing)}")
    s: SimulatorSettings = cfg.plugin("caf_simulator")
    n = count or s.demo_count
    r = rate or s.demo_rate
    if n < 1 or r <= 0:
        raise click.BadParameter("--count must be >= 1 and --rate > 0")
    tally = Tally()
    plugins.register(tally, "caf_demo_tally")
    host = Host(cfg, plugins)

    async def go() -> tuple[str, int]:
        try:
            await host.start()
            result = await run_demo(
                host, tally, n, r, s.seed, s.demo_tenants, settle_timeout=s.demo_settle_timeout
            )
            return summary(result, host.servers()[0], r), len(result.lost)
        finally:
            await host.shutdown()

    text, lost = asyncio.run(go())
    click.echo(text)
    sys.exit(0 if lost == 0 else 1)


def register(group: click.Group) -> None:
    """Add ``caf demo``."""
    caf_group(group).add_command(demo)
