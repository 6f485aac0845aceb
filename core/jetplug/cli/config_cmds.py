"""``jetplug config check|show|schema``."""

from __future__ import annotations

import json
from typing import Any

import click
import msgspec

from ..settings import CoreSettings
from . import config_option, echo_json, load_host_config, plugin_options


@click.group("config")
def config_group() -> None:
    """Validate, show and describe the configuration."""


@config_group.command("check")
@config_option
@plugin_options
def check(
    config_path: str | None, plugin_names: tuple[str, ...], disabled: tuple[str, ...]
) -> None:
    """Validate the configuration and every plugin table without connecting (exit 2 on problems)."""
    cfg, plugins = load_host_config(config_path, plugin_names, disabled)
    plugins.check_runnable()
    enabled = [n for n in plugins.enabled_names() if not plugins.records[n].builtin]
    click.echo(
        f"configuration OK ({cfg.source or 'built-in defaults'}); "
        f"plugins: {', '.join(enabled) or 'none'}"
    )


@config_group.command("show")
@config_option
@plugin_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of TOML.")
def show(
    config_path: str | None, plugin_names: tuple[str, ...], disabled: tuple[str, ...], as_json: bool
) -> None:
    """Print the resolved configuration (defaults, file, environment), secrets redacted."""
    cfg, _ = load_host_config(config_path, plugin_names, disabled)
    data = cfg.to_dict(redact=True)
    if as_json:
        echo_json(data)
    else:
        click.echo(to_toml(data), nl=False)


@config_group.command("schema")
@config_option
@plugin_options
def schema(
    config_path: str | None, plugin_names: tuple[str, ...], disabled: tuple[str, ...]
) -> None:
    """Print the JSON schema of the core tables and every enabled plugin's table."""
    _, plugins = load_host_config(config_path, plugin_names, disabled)
    echo_json(full_schema(plugins.config_schemas()))


@config_group.command("reference")
@config_option
@plugin_options
def reference(
    config_path: str | None, plugin_names: tuple[str, ...], disabled: tuple[str, ...]
) -> None:
    """Print the configuration reference (Markdown) of the core and every enabled plugin."""
    from ..reference import config_reference

    _, plugins = load_host_config(config_path, plugin_names, disabled)
    click.echo(config_reference(plugins.config_schemas()), nl=False)


def full_schema(models: dict[str, type[msgspec.Struct] | None]) -> dict[str, Any]:
    """One JSON schema document: core tables plus ``plugins.<name>`` tables."""
    named = [(n, m) for n, m in sorted(models.items()) if m is not None]
    (_core, *plugin_refs), components = msgspec.json.schema_components(
        [CoreSettings, *[m for _, m in named]], ref_template="#/$defs/{name}"
    )
    root: dict[str, Any] = dict(components[CoreSettings.__name__])
    root["properties"] = dict(root["properties"])
    plugin_props: dict[str, Any] = {}
    for (name, _), ref in zip(named, plugin_refs, strict=True):
        # every plugin table also takes `enabled`, which the host pops before the plugin's model
        # sees the table; without it the model's additionalProperties=false would reject it
        table = components[ref["$ref"].rsplit("/", 1)[1]]
        table["properties"] = {
            "enabled": {
                "type": "boolean",
                "default": True,
                "description": "false switches the plugin off",
            },
            **table.get("properties", {}),
        }
        plugin_props[name] = {
            "allOf": [ref],
            "description": f"settings of plugin {name}; `enabled = false` switches it off",
        }
    for name, model in models.items():
        if model is None:
            plugin_props[name] = {
                "type": "object",
                "description": f"plugin {name} declares no settings",
            }
    root["properties"]["plugins"] = {
        "type": "object",
        "properties": plugin_props,
        "additionalProperties": False,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "jetplug configuration",
        **{k: v for k, v in root.items() if k != "title"},
        "$defs": {k: v for k, v in components.items() if k != CoreSettings.__name__},
    }


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    return json.dumps(str(value))


def _toml_key(key: Any) -> str:
    """A bare key when TOML allows one, else quoted (``"jetplug.consumer"`` is one key, not two)."""
    text = str(key)
    bare = text and all(c.isascii() and (c.isalnum() or c in "_-") for c in text)
    return text if bare else json.dumps(text)


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """A small TOML writer for plain data (tables, scalars, lists)."""
    lines = []
    tables = []
    for key, value in data.items():
        if isinstance(value, dict) and value:
            tables.append((key, value))
        else:  # an empty table stays visible as `key = {}`
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    out = ""
    if lines:
        if prefix:
            out += f"[{prefix}]\n"
        out += "\n".join(lines) + "\n\n"
    for key, value in tables:
        out += to_toml(value, f"{prefix}.{_toml_key(key)}" if prefix else _toml_key(key))
    return out


def register(group: click.Group) -> None:
    """Add the ``config`` group."""
    group.add_command(config_group)
