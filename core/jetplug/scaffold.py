"""``jetplug new-plugin NAME``: write a complete, tested plugin distribution to start from.

The templates live in ``jetplug/templates/plugin`` (shipped in the wheel). File names carry the
placeholders ``__pkg__`` (the import package) and ``__name__`` (the plugin name); contents use
:class:`string.Template` placeholders (``${name}``, ``${pkg}``...). ``.tmpl`` is dropped from
the name and ``gitignore`` becomes ``.gitignore``.
"""

from __future__ import annotations

import keyword
import re
import string
from dataclasses import asdict, dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from . import __version__
from .errors import UsageError
from .plugins import BUILTIN_PLUGINS

#: a plugin name: a lowercase Python identifier
NAME_RULE = re.compile(r"[a-z][a-z0-9_]*\Z")
TEMPLATE_ROOT = ("templates", "plugin")


@dataclass(frozen=True)
class Names:
    """Every name the templates derive from the plugin name."""

    #: the plugin name: entry-point name, ``[plugins.<name>]`` table, owner of its consumers
    name: str
    #: import package, ``jetplug_<name>``
    pkg: str
    #: distribution, ``jetplug-<name with dashes>``
    dist: str
    #: default stream name, ``<NAME>``
    stream: str
    #: default durable consumer name, ``<name with dashes>``
    durable: str
    #: default subject, ``<name>.events``
    subject: str
    #: lower bound of the jetplug dependency (this jetplug's major.minor)
    jetplug_version: str

    @classmethod
    def of(cls, name: str) -> Names:
        """Validate ``name`` and derive the rest; :class:`UsageError` says what is wrong."""
        check_name(name)
        dashed = name.replace("_", "-")
        major_minor = ".".join(__version__.split(".")[:2])
        return cls(
            name,
            f"jetplug_{name}",
            f"jetplug-{dashed}",
            name.upper(),
            dashed,
            f"{name}.events",
            major_minor,
        )


def check_name(name: str) -> None:
    """Raise :class:`UsageError` unless ``name`` can be a plugin name."""
    if not NAME_RULE.match(name):
        raise UsageError(
            f"plugin name {name!r} is not valid: use a lowercase Python identifier (letters a-z, "
            "digits and underscores, starting with a letter), e.g. order_audit"
        )
    if keyword.iskeyword(name):
        raise UsageError(f"plugin name {name!r} is a Python keyword; choose another")
    builtin = {n for n, _ in BUILTIN_PLUGINS}
    if name in builtin:
        raise UsageError(
            f"plugin name {name!r} is taken by a built-in plugin "
            f"({', '.join(sorted(builtin))}); choose another"
        )


def _walk(node: Traversable, prefix: str = "") -> list[tuple[str, Traversable]]:
    out: list[tuple[str, Traversable]] = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name == "__pycache__":
            continue
        path = f"{prefix}{child.name}"
        if child.is_dir():
            out.extend(_walk(child, path + "/"))
        else:
            out.append((path, child))
    return out


def _target_path(template_path: str, names: Names) -> str:
    path = template_path.removesuffix(".tmpl")
    path = path.replace("__pkg__", names.pkg).replace("test___name__", f"test_{names.name}")
    parts = path.split("/")
    if parts[-1] == "gitignore":
        parts[-1] = ".gitignore"
    return "/".join(parts)


def render(names: Names) -> dict[str, str]:
    """Every file of the new distribution: relative path -> content."""
    root = resources.files("jetplug").joinpath(*TEMPLATE_ROOT)
    values = asdict(names)
    files: dict[str, str] = {}
    for template_path, node in _walk(root):
        text = node.read_text(encoding="utf-8")
        if template_path.endswith(".tmpl"):
            text = string.Template(text).substitute(values)
        content = text
        files[_target_path(template_path, names)] = content
    return files


def default_directory(names: Names) -> Path:
    """``./<distribution name>``."""
    return Path(names.dist)


def new_plugin(name: str, directory: Path | None = None) -> Path:
    """Write the distribution of plugin ``name`` into ``directory`` and return it.

    :param directory: where to write (default ``./jetplug-<name>``); it must not exist or be
        an empty directory: nothing is ever overwritten.
    :raises UsageError: for an invalid name or an existing, non-empty directory.
    """
    names = Names.of(name)
    target = directory if directory is not None else default_directory(names)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(
            f"{target} already exists and is not an empty directory; nothing was "
            "written (choose another --dir or remove it)"
        )
    files = render(names)
    for rel, content in files.items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
    return target


__all__ = ["NAME_RULE", "Names", "check_name", "new_plugin", "render"]
