"""``jetplug new-plugin NAME [--dir PATH]``: scaffold a plugin distribution."""

from __future__ import annotations

from pathlib import Path

import click

from ..scaffold import Names, default_directory, new_plugin


@click.command("new-plugin")
@click.argument("name")
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Directory to create (default: ./jetplug-NAME); must not exist or be empty.",
)
def new_plugin_command(name: str, directory: Path | None) -> None:
    """Write a new consumer plugin NAME: pyproject with the entry point, thin hooks, a config
    schema, a handler module, a README and tests using the test kit (jetplug.testing).

    NAME is a lowercase Python identifier (e.g. order_audit); it becomes the entry-point name,
    the [plugins.NAME] table and the package jetplug_NAME. Exit code 2 for an invalid NAME or
    an existing, non-empty directory.
    """
    names = Names.of(name)
    target = new_plugin(name, directory if directory is not None else default_directory(names))
    click.echo(
        f"created {target}/ (plugin {names.name}, package {names.pkg}, distribution {names.dist})"
    )
    click.echo("next:")
    click.echo(f"  cd {target}")
    click.echo("  pip install -e '.[test]'")
    click.echo("  pytest")


def register(group: click.Group) -> None:
    """Add ``new-plugin``."""
    group.add_command(new_plugin_command)
