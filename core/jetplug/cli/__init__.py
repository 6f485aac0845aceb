"""The ``jetplug`` command line: the root group, shared options and error handling.

Every command that reads configuration takes ``-c/--config FILE``; commands that load plugins
also take ``-p/--plugin NAME`` (repeatable) and ``--disable NAME``. Errors that jetplug raises on
purpose print one clean message and exit with their code (2 config/usage, 3 connection, 1 other);
``--traceback`` (or ``JETPLUG_DEBUG=1``) shows the traceback too.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import click

from ..config import Config, build_config, load_raw
from ..errors import ConfigError, JetplugError
from ..logs import setup_logging
from ..plugins import Plugins, Selection, discover, installed_names

F = TypeVar("F", bound=Callable[..., Any])


def config_option(fn: F) -> F:
    """``-c/--config FILE`` (default: ``JETPLUG_CONFIG``, then ./jetplug.toml)."""
    return click.option(
        "-c",
        "--config",
        "config_path",
        type=click.Path(dir_okay=False),
        default=None,
        help=(
            "TOML config file (default: $JETPLUG_CONFIG, then ./jetplug.toml, "
            "then built-in defaults)."
        ),
    )(fn)


def plugin_options(fn: F) -> F:
    """``-p/--plugin NAME`` (repeatable) and ``--disable NAME`` (repeatable)."""
    fn = click.option(
        "--disable",
        "disabled",
        multiple=True,
        metavar="NAME",
        help="Disable this plugin (repeatable); wins over every other source.",
    )(fn)
    fn = click.option(
        "-p",
        "--plugin",
        "plugin_names",
        multiple=True,
        metavar="NAME",
        help=(
            "Enable only these plugins (repeatable); overrides JETPLUG_PLUGINS and [host] plugins."
        ),
    )(fn)
    return fn


def load_host_config(
    config_path: str | None,
    plugin_names: Sequence[str] = (),
    disabled: Sequence[str] = (),
    *,
    load_disabled: bool = False,
) -> tuple[Config, Plugins]:
    """Read the config, discover and select plugins, validate every table; raise ConfigError."""
    raw, source = load_raw(config_path)
    selection = Selection.from_sources(
        cli_plugins=plugin_names, cli_disabled=disabled, environ=os.environ, raw_config=raw
    )
    plugins = discover(selection, load_disabled=load_disabled)
    models = plugins.config_schemas()
    cfg = build_config(
        raw,
        models,
        source=source,
        known_plugins={n for n, r in plugins.records.items() if not r.builtin},
    )
    problems = plugins.validate_config(cfg)
    if problems:
        raise ConfigError(problems, source=source)
    return cfg, plugins


def setup_from_config(cfg: Config, ctx: click.Context) -> None:
    """Apply logging settings: CLI options win over ``[host] log_level``/``log_format``;
    ``[host] log_levels`` sets single loggers (e.g. ``{"jetplug.consumer" = "debug"}``)."""
    opts = ctx.find_root().params
    level = opts.get("log_level") or cfg.core.host.log_level
    fmt = opts.get("log_format") or cfg.core.host.log_format
    setup_logging(level, fmt, dict(cfg.core.host.log_levels))


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON."""
    import json

    click.echo(json.dumps(data, indent=2, default=str))


def _root() -> click.Group:
    @click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
    @click.version_option(package_name="jetplug", prog_name="jetplug")
    @click.option("--traceback", is_flag=True, help="Show the full traceback of an error.")
    @click.option(
        "--log-level",
        type=click.Choice(["debug", "info", "warning", "error"]),
        default=None,
        help="Log level (default: [host] log_level, info).",
    )
    @click.option(
        "--log-format",
        type=click.Choice(["text", "json"]),
        default=None,
        help="text for people, json for machines (default: [host] log_format, text).",
    )
    def jetplug(traceback: bool, log_level: str | None, log_format: str | None) -> None:
        """jetplug: a plugin host for NATS JetStream integrations.

        Run the host with `jetplug run -c FILE`; see `jetplug COMMAND --help` for each command.
        """
        setup_logging(log_level or "info", log_format or "text")

    return jetplug


def make_cli() -> click.Group:
    """A fresh root group with the core commands and every plugin's ``register_commands``."""
    from . import (
        config_cmds,
        dlq_cmd,
        new_plugin_cmd,
        plugins_cmd,
        publish_cmd,
        run_cmd,
        status_cmd,
        streams_cmd,
    )

    group = _root()
    for module in (
        run_cmd,
        plugins_cmd,
        config_cmds,
        streams_cmd,
        publish_cmd,
        dlq_cmd,
        status_cmd,
        new_plugin_cmd,
    ):
        module.register(group)
    _plugin_commands(group)
    return group


def _plugin_commands(group: click.Group) -> None:
    """Let every installed plugin add its commands.

    Arguments (and so ``-c``) are not parsed yet, so commands come from all installed plugins,
    opt-in ones included, except those disabled through the environment; each command then
    loads the configuration and checks what it needs.
    """
    env_only = Selection.from_sources(environ=os.environ)
    names = tuple(
        n for n in installed_names() if env_only.decide(n)[0] or n in env_only.file_enabled
    )
    if not names:  # an empty -p list would mean "every plugin", not none
        return
    try:
        plugins = discover(Selection(cli_plugins=names))
    except JetplugError:
        return  # `jetplug plugins` and `run` report plugin problems properly
    plugins.register_commands(group)


def _wants_traceback(argv: Sequence[str]) -> bool:
    return "--traceback" in argv or os.environ.get("JETPLUG_DEBUG", "") not in ("", "0")


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    args = list(sys.argv[1:] if argv is None else argv)
    group = make_cli()
    try:
        code = group.main(args=args, prog_name="jetplug", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except JetplugError as exc:
        if _wants_traceback(args):
            raise
        click.echo(f"Error: {exc}", err=True)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)


__all__ = ["config_option", "load_host_config", "main", "make_cli", "plugin_options"]
