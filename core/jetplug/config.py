"""Loading, overriding and validating the TOML configuration.

The pipeline is: read the file (``-c``, ``JETPLUG_CONFIG``, ``./jetplug.toml`` or nothing), apply
``JETPLUG_<SECTION>__<KEY>`` environment overrides, read secrets from ``*_file`` keys, then
validate the core tables and every ``[plugins.<name>]`` table against its model. Validation
collects every problem before raising one :class:`~jetplug.errors.ConfigError`.
"""

from __future__ import annotations

import copy
import datetime
import difflib
import functools
import json
import os
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from .errors import ConfigError
from .settings import SECRET_KEYS, CoreSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on 3.10
    import tomli as tomllib

ENV_PREFIX = "JETPLUG_"
DEFAULT_FILE = "jetplug.toml"
REDACTED = "***"
#: ``*_file`` keys whose file content becomes the value of the key without the suffix
SECRET_FILE_KEYS = {"token_file": "token", "password_file": "password"}

S = TypeVar("S", bound=msgspec.Struct)


@dataclass
class Config:
    """The resolved, validated configuration.

    ``core`` holds the typed core tables; :meth:`plugin` returns a plugin's typed table.
    """

    core: CoreSettings
    #: typed ``[plugins.<name>]`` tables of the plugins that declared a schema
    plugin_tables: dict[str, msgspec.Struct] = field(default_factory=dict)
    #: raw ``[plugins.<name>]`` tables (after env overrides), for plugins without a schema
    raw_plugin_tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: plugin names switched off with ``[plugins.<name>] enabled = false``
    disabled_in_file: set[str] = field(default_factory=set)
    #: where the file came from, or None for built-in defaults
    source: str | None = None

    def plugin(self, name: str, model: type[S] | None = None) -> Any:
        """Return the ``[plugins.<name>]`` table: typed if the plugin declared a schema."""
        table = self.plugin_tables.get(name)
        if table is None:
            raw = self.raw_plugin_tables.get(name, {})
            if model is not None:
                return msgspec.convert(raw, model)
            return raw
        return table

    def to_dict(self, *, redact: bool = True) -> dict[str, Any]:
        """The whole resolved configuration as plain data; secrets redacted unless asked not to."""
        data: dict[str, Any] = msgspec.to_builtins(self.core)
        plugins: dict[str, Any] = {}
        for name in sorted(set(self.plugin_tables) | set(self.raw_plugin_tables)):
            table = self.plugin_tables.get(name)
            plugins[name] = (
                msgspec.to_builtins(table)
                if table is not None
                else dict(self.raw_plugin_tables[name])
            )
            if name in self.disabled_in_file:
                plugins[name]["enabled"] = False
        data["plugins"] = plugins
        return redact_secrets(data) if redact else data


def is_secret_key(key: str) -> bool:
    """True when a key's value must never be shown (``token``, ``password``, ``*_secret`` ...)."""
    lowered = key.lower()
    if lowered.endswith("_file"):
        return False
    return any(lowered == s or lowered.endswith("_" + s) for s in SECRET_KEYS)


def redact_secrets(data: Any) -> Any:
    """Copy of ``data`` with every non-empty secret value replaced by ``***``."""
    if isinstance(data, Mapping):
        return {
            k: (REDACTED if is_secret_key(str(k)) and v not in ("", None) else redact_secrets(v))
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [redact_secrets(v) for v in data]
    return data


def resolve_path(explicit: str | None, environ: Mapping[str, str]) -> Path | None:
    """Which config file to read: ``-c``, then ``JETPLUG_CONFIG``, then ``./jetplug.toml``."""
    if explicit:
        return Path(explicit)
    from_env = environ.get(ENV_PREFIX + "CONFIG")
    if from_env:
        return Path(from_env)
    default = Path(DEFAULT_FILE)
    return default if default.is_file() else None


def read_toml(path: Path) -> dict[str, Any]:
    """Parse one TOML file; syntax errors name the file, line and column."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"config file not found: {path}"]) from None
    except OSError as exc:
        raise ConfigError([f"cannot read config file {path}: {exc.strerror}"]) from None
    return parse_toml(text, str(path))


def parse_toml(text: str, source: str = "<string>") -> dict[str, Any]:
    """Parse TOML text; a syntax error becomes a ConfigError that keeps tomllib's line number."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"invalid TOML: {exc}"], source=source) from None


def _parse_env_value(raw: str) -> Any:
    """An env value is read as a TOML value when it is one (``5``, ``true``, ``["a"]``), else
    text."""
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def apply_env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> dict[str, str]:
    """Apply ``JETPLUG_A__B__C=value`` as ``data[a][b][c] = value``; return the keys applied,
    each with its raw text (validation falls back to it when the TOML reading does not fit).

    Only names with a double underscore are overrides, so ``JETPLUG_CONFIG`` and the other
    single-word control variables never collide with config keys.
    """
    applied: dict[str, str] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX) or "__" not in name:
            continue
        parts = [p.lower() for p in name[len(ENV_PREFIX) :].split("__") if p]
        if not parts:
            continue
        node = data
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = _parse_env_value(raw)
        applied[".".join(parts)] = raw
    return applied


def _read_secret_files(data: Any, path: str, problems: list[str]) -> None:
    """Replace ``token_file``/``password_file`` by the file's content under the plain key."""
    if not isinstance(data, dict):
        return
    for key in list(data):
        value = data[key]
        where = f"{path}.{key}" if path else key
        if isinstance(value, dict):
            _read_secret_files(value, where, problems)
        elif key in SECRET_FILE_KEYS and value:
            target = SECRET_FILE_KEYS[key]
            if data.get(target):
                problems.append(f"{where}: set either {target} or {key}, not both")
                continue
            try:
                data[target] = Path(str(value)).read_text(encoding="utf-8").strip()
            except OSError as exc:
                problems.append(f"{where}: cannot read secret file {value!r}: {exc.strerror}")


# --- validation -------------------------------------------------------------------------------


def _describe(info: msgspec.inspect.Type) -> str:
    """Human wording of a field type, e.g. ``int >= 1`` or ``one of "pull", "push"``."""
    mi = msgspec.inspect
    if isinstance(info, mi.IntType | mi.FloatType):
        name = "int" if isinstance(info, mi.IntType) else "number"
        bounds = [
            f"{op} {getattr(info, attr)}"
            for attr, op in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
            if getattr(info, attr) is not None
        ]
        return " ".join([name, " and ".join(bounds)]).strip()
    if isinstance(info, mi.StrType):
        extra = []
        if info.min_length:
            extra.append(f"at least {info.min_length} characters")
        if info.max_length is not None:
            extra.append(f"at most {info.max_length} characters")
        if info.pattern:
            extra.append(f"matching {info.pattern}")
        return "string" + (f" ({', '.join(extra)})" if extra else "")
    if isinstance(info, mi.BoolType):
        return "true or false"
    if isinstance(info, mi.LiteralType):
        return "one of " + ", ".join(json.dumps(v) for v in info.values)
    if isinstance(info, mi.ListType):
        return f"list of {_describe(info.item_type)}"
    if isinstance(info, mi.DictType):
        return f"table of {_describe(info.value_type)}"
    if isinstance(info, mi.UnionType):
        return " or ".join(_describe(t) for t in info.types)
    if isinstance(info, mi.StructType):
        return "table"
    if isinstance(info, mi.NoneType):
        return "nothing"
    return type(info).__name__.removesuffix("Type").lower()


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime.date | datetime.time):  # TOML dates and times
        return value.isoformat()
    return json.dumps(value) if isinstance(value, str | int | float | bool | list) else repr(value)


def _unknown_key(path: str, key: str, known: list[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    choices = f"; known keys: {', '.join(sorted(known))}" if not close and known else ""
    return f"{path}: unknown key{hint}{choices}"


def validate_table(
    data: Any,
    model: type[S],
    path: str,
    problems: list[str],
    *,
    env_paths: Mapping[str, str] | None = None,
) -> S | None:
    """Validate one table against a msgspec model, appending every problem; None if any.

    ``env_paths`` maps the key paths set from the environment to their raw text.
    """
    env_paths = env_paths or {}
    if not isinstance(data, dict):
        problems.append(f"{path}: expected a table, got {_show(data)}")
        return None
    info = msgspec.inspect.type_info(model)
    assert isinstance(info, msgspec.inspect.StructType)
    before = len(problems)
    fields = {f.encode_name: f for f in info.fields}
    hints = _type_hints(model)
    for key in data:
        if key not in fields:
            problems.append(_unknown_key(f"{path}.{key}" if path else key, key, list(fields)))
    for name, fld in fields.items():
        where = f"{path}.{name}" if path else name
        if name not in data:
            if fld.required:
                problems.append(f"{where}: required key is missing ({_describe(fld.type)})")
            continue
        value = data[name]
        if isinstance(fld.type, msgspec.inspect.StructType):
            validate_table(value, fld.type.cls, where, problems, env_paths=env_paths)
            continue
        raw_env = env_paths.get(where)
        if raw_env is not None and not _fits(value, hints[name]):
            # an env value read as TOML that does not fit the field is taken as text:
            # JETPLUG_NATS__AUTH__TOKEN=12345 is the string "12345", and
            # JETPLUG_HOST__PLUGINS=a,b is a comma list (the natural way to write a list in env)
            text: Any = raw_env
            if isinstance(fld.type, msgspec.inspect.ListType):
                text = [part.strip() for part in raw_env.split(",") if part.strip()]
            if _fits(text, hints[name]):
                value = data[name] = text
        try:
            msgspec.convert(value, hints[name])
        except msgspec.ValidationError as exc:
            shown = REDACTED if is_secret_key(name) else _show(value)
            detail = str(exc)
            where_inner = ""
            if " - at `$" in detail:
                inner = detail.split(" - at `$", 1)[1].rstrip("`")
                where_inner = inner
            problems.append(f"{where}{where_inner}: expected {_describe(fld.type)}, got {shown}")
    if len(problems) > before:
        return None
    try:
        return msgspec.convert(data, model)
    except msgspec.ValidationError as exc:  # a rule the walk above does not know (post-init ...)
        problems.append(f"{path or 'config'}: {exc}")
        return None


def _fits(value: Any, hint: Any) -> bool:
    try:
        msgspec.convert(value, hint)
    except msgspec.ValidationError:
        return False
    return True


@functools.cache
def _type_hints(model: type[msgspec.Struct]) -> dict[str, Any]:
    return typing.get_type_hints(model, include_extras=True)


def build_config(
    raw: dict[str, Any],
    plugin_models: Mapping[str, type[msgspec.Struct] | None],
    *,
    source: str | None = None,
    environ: Mapping[str, str] | None = None,
    known_plugins: set[str] | None = None,
) -> Config:
    """Validate raw TOML data (env overrides and secret files applied here) into a Config.

    ``plugin_models`` maps each loaded plugin name to its table model (None = no schema);
    ``known_plugins`` adds names that are installed but not loaded (disabled or broken), whose
    tables are accepted unchecked.
    """
    env = os.environ if environ is None else environ
    data = copy.deepcopy(raw)  # not a JSON round trip: TOML dates would crash it
    env_paths = apply_env_overrides(data, env)
    problems: list[str] = []
    _read_secret_files(data, "", problems)

    plugin_data = data.pop("plugins", {})
    core = validate_table(data, CoreSettings, "", problems, env_paths=env_paths)
    cfg = Config(core=core or CoreSettings(), source=source)

    if not isinstance(plugin_data, dict):
        problems.append(f"plugins: expected a table of plugin tables, got {_show(plugin_data)}")
        plugin_data = {}
    known = set(plugin_models) | (known_plugins or set())
    for name, table in plugin_data.items():
        where = f"plugins.{name}"
        if not isinstance(table, dict):
            problems.append(f"{where}: expected a table, got {_show(table)}")
            continue
        table = dict(table)
        enabled = table.pop("enabled", True)
        if not isinstance(enabled, bool):
            problems.append(f"{where}.enabled: expected true or false, got {_show(enabled)}")
        elif not enabled:
            cfg.disabled_in_file.add(name)
        if name not in known:
            problems.append(_unknown_plugin(where, name, known))
            continue
        cfg.raw_plugin_tables[name] = table
    for name, model in plugin_models.items():
        if model is None:  # a model is given only for an enabled plugin (`-p NAME` beats the file)
            continue
        typed = validate_table(
            cfg.raw_plugin_tables.get(name, {}),
            model,
            f"plugins.{name}",
            problems,
            env_paths=env_paths,
        )
        if typed is not None:
            cfg.plugin_tables[name] = typed
    if problems:
        raise ConfigError(problems, source=source)
    return cfg


def _unknown_plugin(where: str, name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    installed = ", ".join(sorted(known)) or "none"
    return f"{where}: no installed plugin is called {name!r}{hint}; installed: {installed}"


def load_raw(
    path: str | None, environ: Mapping[str, str] | None = None
) -> tuple[dict[str, Any], str | None]:
    """Read the raw TOML data the CLI should use and where it came from (None = defaults)."""
    env = os.environ if environ is None else environ
    resolved = resolve_path(path, env)
    if resolved is None:
        return {}, None
    return read_toml(resolved), str(resolved)


def core_schema() -> dict[str, Any]:
    """JSON schema of the core tables."""
    return msgspec.json.schema(CoreSettings)
