"""Plugin discovery, enable/disable, and the one typed facade over ``pm.hook``.

Nothing else in jetplug calls ``pm.hook``: every hook call goes through :class:`Plugins`, which
awaits ``async def`` implementations (pluggy itself is synchronous) and isolates notification
hooks so one failing plugin cannot take the others down.

Selection precedence (documented in docs/plugins.md):

1. the allowlist is the first of: ``-p/--plugin`` names, ``JETPLUG_PLUGINS`` (comma list, ``""``
   = none), ``[host] plugins``; if none is set every installed plugin is enabled;
2. ``--disable NAME`` and ``JETPLUG_DISABLE_PLUGINS`` always disable;
3. ``[plugins.<name>] enabled = false`` disables, unless the name was given with ``-p``.
"""

from __future__ import annotations

import copy
import difflib
import functools
import importlib.metadata as md
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal

import pluggy

from . import hookspecs
from .config import apply_env_overrides
from .errors import PluginLoadError, StartupError, UsageError
from .events import EVENTS_ATTRIBUTE

if TYPE_CHECKING:
    import click
    import msgspec

    from .config import Config
    from .events import Event
    from .host import Host
    from .message import Message
    from .types import ConsumerSpec, Decision, KeyValueSpec, PubAck, Publish, StreamSpec

log = logging.getLogger("jetplug.plugins")

GROUP = hookspecs.PROJECT
#: plugins that ship inside the host package; registered last so they run first
#: a built-in module with a ``make_plugin()`` function is registered as the object it returns,
#: one per discovery (per host), for plugins that keep per-host state (``metrics``)
BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = (
    ("log_events", "jetplug.builtin.log_events"),
    ("metrics", "jetplug.builtin.metrics"),
)

Status = Literal["enabled", "disabled", "broken"]
#: a plugin module that sets this to True stays off unless the user names it (simulators, demos)
OPT_IN_ATTRIBUTE = "JETPLUG_OPT_IN"


@dataclass
class PluginRecord:
    """What the host knows about one installed plugin (shown by ``jetplug plugins``)."""

    name: str
    distribution: str | None
    version: str | None
    target: str
    status: Status = "disabled"
    reason: str = ""
    hooks: list[str] = field(default_factory=list)
    builtin: bool = False
    error: PluginLoadError | None = None
    #: whether the selection enables it (a broken plugin that is not selected does not stop ``run``)
    selected: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data."""
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "reason": self.reason,
            "hooks": self.hooks,
            "builtin": self.builtin,
            "selected": self.selected,
        }


@dataclass(frozen=True)
class Selection:
    """Which plugins the user asked for, from every source (CLI, environment, file)."""

    cli_plugins: tuple[str, ...] = ()
    cli_disabled: tuple[str, ...] = ()
    env_plugins: tuple[str, ...] | None = None
    env_disabled: tuple[str, ...] = ()
    file_plugins: tuple[str, ...] = ()
    file_disabled: frozenset[str] = frozenset()
    file_enabled: frozenset[str] = frozenset()

    @classmethod
    def from_sources(
        cls,
        *,
        cli_plugins: Sequence[str] = (),
        cli_disabled: Sequence[str] = (),
        environ: Mapping[str, str] | None = None,
        raw_config: Mapping[str, Any] | None = None,
    ) -> Selection:
        """Gather the selection from CLI options, ``JETPLUG_PLUGINS``/``_DISABLE_PLUGINS`` and TOML.

        The TOML side is read after the ``JETPLUG_<SECTION>__<KEY>`` overrides, as validation
        reads it: ``JETPLUG_HOST__PLUGINS=a,b`` and ``JETPLUG_PLUGINS__A__ENABLED=false`` count.
        """
        env = environ or {}
        raw = copy.deepcopy(dict(raw_config or {}))
        apply_env_overrides(raw, env)
        env_plugins = _split(env["JETPLUG_PLUGINS"]) if "JETPLUG_PLUGINS" in env else None
        host = raw.get("host", {}) if isinstance(raw.get("host"), dict) else {}
        file_plugins = host.get("plugins", [])
        if isinstance(file_plugins, str):  # a comma list from JETPLUG_HOST__PLUGINS
            file_plugins = list(_split(file_plugins))
        tables = raw.get("plugins", {}) if isinstance(raw.get("plugins"), dict) else {}
        file_disabled = frozenset(
            n for n, t in tables.items() if isinstance(t, dict) and t.get("enabled") is False
        )
        file_enabled = frozenset(
            n for n, t in tables.items() if isinstance(t, dict) and t.get("enabled") is True
        )
        return cls(
            file_enabled=file_enabled,
            cli_plugins=tuple(cli_plugins),
            cli_disabled=tuple(cli_disabled),
            env_plugins=env_plugins,
            env_disabled=_split(env.get("JETPLUG_DISABLE_PLUGINS", "")),
            file_plugins=tuple(p for p in file_plugins if isinstance(p, str))
            if isinstance(file_plugins, list)
            else (),
            file_disabled=file_disabled,
        )

    def decide(self, name: str) -> tuple[bool, str]:
        """Whether ``name`` is enabled, and why not when it is not."""
        if name in self.cli_disabled:
            return False, "disabled by --disable"
        if name in self.env_disabled:
            return False, "disabled by JETPLUG_DISABLE_PLUGINS"
        if self.cli_plugins:
            if name not in self.cli_plugins:
                return False, "not named with -p/--plugin"
            return True, ""
        if self.env_plugins is not None:
            if name not in self.env_plugins:
                return False, "not in JETPLUG_PLUGINS"
        elif self.file_plugins and name not in self.file_plugins:
            return False, "not in [host] plugins"
        if name in self.file_disabled:
            return False, f"[plugins.{name}] enabled = false"
        return True, ""

    def explicitly_enabled(self, name: str) -> bool:
        """Whether the user named ``name`` to enable it (needed for opt-in plugins)."""
        return (
            name in self.cli_plugins
            or name in (self.env_plugins or ())
            or name in self.file_plugins
            or name in self.file_enabled
        )

    def named(self) -> list[tuple[str, str]]:
        """Every plugin name the user typed, with where, to check they exist."""
        out = [(n, "-p/--plugin") for n in self.cli_plugins]
        out += [(n, "--disable") for n in self.cli_disabled]
        out += [(n, "JETPLUG_PLUGINS") for n in self.env_plugins or ()]
        out += [(n, "JETPLUG_DISABLE_PLUGINS") for n in self.env_disabled]
        out += [(n, "[host] plugins") for n in self.file_plugins]
        return out


def _split(value: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in value.split(",") if p.strip())


def _entry_points() -> list[md.EntryPoint]:
    seen: dict[str, md.EntryPoint] = {}
    for ep in md.entry_points(group=GROUP):
        seen.setdefault(ep.name, ep)  # first on sys.path wins, as for imports
    return sorted(seen.values(), key=lambda e: e.name)


def installed_names() -> list[str]:
    """Names of every plugin installed through the ``jetplug`` entry-point group."""
    return [ep.name for ep in _entry_points()]


def _dist_of(ep: md.EntryPoint) -> tuple[str | None, str | None]:
    dist = getattr(ep, "dist", None)
    if dist is None:
        return None, None
    return dist.metadata["Name"], dist.version


def new_manager() -> pluggy.PluginManager:
    """A plugin manager with jetplug's hook specs and nothing registered."""
    pm = pluggy.PluginManager(GROUP)
    pm.add_hookspecs(hookspecs)
    return pm


def _unknown_hooks(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    """Hook implementations of ``plugin`` that match no spec (typos), with a suggestion."""
    known = hookspecs.all_hook_names()
    problems = []
    for caller in pm.get_hookcallers(plugin) or []:
        if not caller.has_spec():
            close = difflib.get_close_matches(caller.name, known, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            problems.append(f"implements unknown hook {caller.name!r}{hint}")
    return problems


def _async_wrappers(pm: pluggy.PluginManager, plugin: object) -> list[str]:
    problems = []
    for caller in pm.get_hookcallers(plugin) or []:
        if caller.name in hookspecs.ASYNC_HOOKS:
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and (impl.hookwrapper or impl.wrapper):
                    problems.append(
                        f"hook {caller.name!r} cannot be a wrapper: it may be async and pluggy "
                        "would wrap creating the coroutine, not running it"
                    )
    return problems


def _register(
    pm: pluggy.PluginManager, obj: object, record: PluginRecord, *, check: bool = True
) -> bool:
    """Register ``obj`` under its plugin name; on any problem mark the record broken.

    With ``check=False`` the hook-name check is left to :func:`_check_registered` (discovery
    checks once every plugin had the chance to add its own hook specs).
    """
    try:
        pm.register(obj, name=record.name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        _mark_broken(record, str(exc))
        return False
    return _check_registered(pm, obj, record) if check else True


def _check_registered(pm: pluggy.PluginManager, obj: object, record: PluginRecord) -> bool:
    """Reject misspelt hooks and async wrappers; unregister and mark broken if any."""
    problems = _unknown_hooks(pm, obj) + _async_wrappers(pm, obj)
    record.hooks = sorted(c.name for c in pm.get_hookcallers(obj) or [] if c.has_spec())
    if problems:
        pm.unregister(obj)
        _mark_broken(record, "; ".join(problems))
        return False
    return True


def _add_plugin_hookspecs(
    pm: pluggy.PluginManager, records: dict[str, PluginRecord]
) -> list[ModuleType | type]:
    """Add the hook specs plugins define for each other (``register_hookspecs``); return them."""
    added: set[int] = set()
    namespaces: list[ModuleType | type] = []
    for impl in reversed(pm.hook.register_hookspecs.get_hookimpls()):
        try:
            namespace = _call(impl)
        except Exception as exc:  # noqa: BLE001 - a failing plugin is broken, not fatal
            record = records[impl.plugin_name]
            pm.unregister(name=impl.plugin_name)
            _mark_broken(record, f"register_hookspecs failed: {type(exc).__name__}: {exc}")
            continue
        if namespace is None or id(namespace) in added or _has_specs(pm, namespace):
            continue
        added.add(id(namespace))
        namespaces.append(namespace)
        pm.add_hookspecs(namespace)
    return namespaces


def _has_specs(pm: pluggy.PluginManager, namespace: object) -> bool:
    """True when every spec in ``namespace`` is already known to ``pm``."""
    marker = hookspecs.PROJECT + "_spec"
    names = [n for n in dir(namespace) if hasattr(getattr(namespace, n), marker)]
    return bool(names) and all(
        getattr(pm.hook, n, None) is not None and getattr(pm.hook, n).has_spec() for n in names
    )


def _mark_broken(record: PluginRecord, cause: str) -> None:
    record.status = "broken"
    record.reason = cause
    record.error = PluginLoadError(record.name, record.distribution, record.version, cause)


def discover(
    selection: Selection,
    *,
    extra: Iterable[tuple[str, object]] = (),
    load_disabled: bool = False,
    autoload: bool = True,
) -> Plugins:
    """Find installed plugins, load and register the enabled ones, then the built-ins.

    :param extra: ``(name, object)`` pairs registered as if installed (tests, embedding).
    :param load_disabled: also import disabled plugins to list their hooks (``jetplug plugins``).
    :param autoload: load installed entry points (tests turn it off to control the set).
    """
    pm = new_manager()
    records: dict[str, PluginRecord] = {}
    listed_only: list[tuple[object, PluginRecord, str]] = []  # disabled, loaded to list hooks
    for ep in _entry_points() if autoload else []:
        dist, version = _dist_of(ep)
        record = PluginRecord(ep.name, dist, version, ep.value)
        records[ep.name] = record
        enabled, reason = selection.decide(ep.name)
        record.selected = enabled
        if not enabled and not load_disabled:
            record.reason = reason
            continue
        try:
            obj = ep.load()
        except Exception as exc:  # noqa: BLE001 - any import failure makes the plugin broken
            _mark_broken(record, f"import of {ep.value!r} failed: {type(exc).__name__}: {exc}")
            continue
        if (
            enabled
            and getattr(obj, OPT_IN_ATTRIBUTE, False)
            and not selection.explicitly_enabled(ep.name)
        ):
            enabled = record.selected = False
            reason = (
                f"opt-in plugin: enable it with [plugins.{ep.name}] enabled = true or -p {ep.name}"
            )
        if enabled:
            if _register(pm, obj, record, check=False):
                record.status = "enabled"
        else:
            listed_only.append((obj, record, reason))
    for name, obj in extra:
        record = PluginRecord(name, None, None, repr(obj))
        records[name] = record
        enabled, reason = selection.decide(name)
        record.selected = enabled
        if enabled and _register(pm, obj, record, check=False):
            record.status = "enabled"
        elif record.status != "broken":
            record.reason = reason
    installed = set(records)
    for name, target in BUILTIN_PLUGINS:
        record = PluginRecord(name, GROUP, _host_version(), target, builtin=True)
        records[name] = record
        if name in selection.cli_disabled or name in selection.env_disabled:
            record.reason = "disabled by --disable or JETPLUG_DISABLE_PLUGINS"
            continue
        record.selected = True
        module = __import__(target, fromlist=["_"])
        factory = getattr(module, "make_plugin", None)
        if _register(pm, factory() if callable(factory) else module, record, check=False):
            record.status = "enabled"
    namespaces = _add_plugin_hookspecs(pm, records)
    for record in records.values():
        obj = pm.get_plugin(record.name)
        if (
            record.status == "enabled"
            and obj is not None
            and not _check_registered(pm, obj, record)
        ):
            record.status = "broken"
    for obj, record, reason in listed_only:
        scratch = new_manager()
        for namespace in namespaces:
            scratch.add_hookspecs(namespace)
        if _register(scratch, obj, record, check=False):
            _add_plugin_hookspecs(scratch, {record.name: record})
            _check_registered(scratch, obj, record)
        if record.status != "broken":
            record.reason = reason
    unknown = []
    for name, where in selection.named():
        if name not in records:
            close = difflib.get_close_matches(name, sorted(records), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            unknown.append(f"{where}: no installed plugin is called {name!r}{hint}")
    if unknown:
        raise UsageError(
            "; ".join(unknown) + f". Installed: {', '.join(sorted(installed)) or 'none'}"
        )
    return Plugins(pm, records)


def _host_version() -> str | None:
    try:
        return md.version(GROUP)
    except md.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return None


def _call(impl: pluggy.HookImpl, **kwargs: Any) -> Any:
    """Call one implementation with only the arguments it names (pluggy's own rule)."""
    return impl.function(*[kwargs[name] for name in impl.argnames])


def _call_one(impl: pluggy.HookImpl, name: str, value: Any) -> Any:
    return _call(impl, **{name: value})


async def _await_maybe(value: Any) -> Any:
    if inspect.isawaitable(value):
        return await value
    return value


def _close_pending(results: Sequence[Any]) -> None:
    for value in results:
        if inspect.iscoroutine(value):
            value.close()


MessageHandler = Callable[["Message"], "Decision | Awaitable[Decision | None] | None"]


class Plugins:
    """The typed facade over the plugin manager: the only caller of ``pm.hook``."""

    def __init__(self, pm: pluggy.PluginManager, records: dict[str, PluginRecord]) -> None:
        self.pm = pm
        self.records = records
        self._routes: dict[type, list[tuple[str, Callable[[Event], Any]]]] = {}

    # --- inspection ---------------------------------------------------------------------------

    def enabled_names(self) -> list[str]:
        """Names of the registered plugins (built-ins included)."""
        return [r.name for r in self.records.values() if r.status == "enabled"]

    def broken(self) -> list[PluginRecord]:
        """Plugins that failed to import or register and are enabled (``run`` refuses them)."""
        return [r for r in self.records.values() if r.status == "broken" and r.selected]

    def check_runnable(self) -> None:
        """Raise the first broken plugin's :class:`PluginLoadError`, naming every broken one."""
        broken = self.broken()
        if broken:
            causes = "\n".join(f"  - {r.error}" for r in broken)
            raise StartupError(
                f"{len(broken)} plugin(s) failed to load; fix or disable them "
                f"(--disable NAME):\n{causes}"
            )

    def register(self, obj: object, name: str) -> None:
        """Register one more plugin object (tests, embedding); typos are rejected like at load."""
        record = PluginRecord(name, None, None, repr(obj), selected=True)
        self.records[name] = record
        if not _register(self.pm, obj, record):
            assert record.error is not None
            raise record.error
        record.status = "enabled"
        self._routes.clear()

    def unregister(self, name: str) -> None:
        """Remove a plugin registered by name."""
        self.pm.unregister(name=name)
        self.records.pop(name, None)
        self._routes.clear()

    def _impls(self, hook: str) -> list[pluggy.HookImpl]:
        """Implementations in pluggy's call order (tryfirst first, then LIFO registration)."""
        caller: pluggy.HookCaller = getattr(self.pm.hook, hook)
        return list(reversed(caller.get_hookimpls()))

    # --- configuration ------------------------------------------------------------------------

    def config_schemas(self) -> dict[str, type[msgspec.Struct] | None]:
        """Each enabled plugin's table model (None when it declares none)."""
        models: dict[str, type[msgspec.Struct] | None] = {
            n: None for n in self.enabled_names() if not self.records[n].builtin
        }
        for impl in self._impls("register_config_schema"):
            try:
                models[impl.plugin_name] = _call(impl)
            except Exception as exc:
                raise StartupError(
                    f"plugin {impl.plugin_name!r}: register_config_schema failed: {exc}"
                ) from exc
        return models

    def validate_config(self, config: Config) -> list[str]:
        """Problems from every plugin's cross-table checks."""
        problems: list[str] = []
        for impl in self._impls("validate_config"):
            found = _call(impl, config=config)
            problems.extend(found or [])
        return problems

    def configure(self, config: Config) -> None:
        """Hand the validated config to every plugin."""
        self.pm.hook.configure(config=config)

    def register_commands(self, cli: click.Group) -> None:
        """Let plugins add CLI commands."""
        self.pm.hook.register_commands(cli=cli)

    # --- declarations -------------------------------------------------------------------------

    def _declared(self, hook: str, config: Config) -> list[tuple[str, Any]]:
        out: list[tuple[str, Any]] = []
        for impl in self._impls(hook):
            specs = _call(impl, config=config)
            out.extend((impl.plugin_name, spec) for spec in specs or [])
        return out

    def streams(self, config: Config) -> list[tuple[str, StreamSpec]]:
        """Every declared stream with the name of the plugin that declared it."""
        return self._declared("register_streams", config)

    def consumers(self, config: Config) -> list[tuple[str, ConsumerSpec]]:
        """Every declared consumer with its owner."""
        return self._declared("register_consumers", config)

    def kv_buckets(self, config: Config) -> list[tuple[str, KeyValueSpec]]:
        """Every declared key-value bucket with the name of the plugin that declared it."""
        return self._declared("register_kv_buckets", config)

    # --- lifecycle ----------------------------------------------------------------------------

    async def startup(self, host: Host) -> None:
        """Run every ``startup`` in call order; the first exception stops the rest."""
        for impl in self._impls("startup"):
            try:
                await _await_maybe(_call(impl, host=host))
            except StartupError:
                raise
            except Exception as exc:
                raise StartupError(f"plugin {impl.plugin_name!r} failed at startup: {exc}") from exc

    async def shutdown(self, host: Host, timeout: float) -> None:
        """Run every ``shutdown`` in reverse order, each bounded by ``timeout``; failures are
        logged."""
        import asyncio

        for impl in reversed(self._impls("shutdown")):
            try:
                await asyncio.wait_for(_await_maybe(_call(impl, host=host)), timeout)
            except Exception:
                log.exception("plugin %s: shutdown failed", impl.plugin_name)

    # --- messages -----------------------------------------------------------------------------

    def message_handlers(self) -> list[tuple[str, Callable[[Message], Any]]]:
        """``handle_message`` implementations in call order as one-argument callables (cached by
        the engine: the per-message path never goes through pluggy)."""
        out: list[tuple[str, Callable[[Message], Any]]] = []
        for impl in self._impls("handle_message"):
            if impl.argnames == ("msg",):
                out.append((impl.plugin_name, impl.function))
            else:
                out.append((impl.plugin_name, functools.partial(_call_one, impl, "msg")))
        return out

    def message_handlers_are_plain(self) -> bool:
        """Whether every ``handle_message`` implementation is a plain ``def`` (the engine then
        runs the chain inline, without a coroutine per message)."""
        return not any(
            inspect.iscoroutinefunction(impl.function) for impl in self._impls("handle_message")
        )

    # --- publishing ---------------------------------------------------------------------------

    def has_publish_hooks(self) -> tuple[bool, bool]:
        """Whether any plugin implements ``before_publish`` / ``after_publish`` (fast path if
        not)."""
        return bool(self._impls("before_publish")), bool(self._impls("after_publish"))

    async def before_publish(self, publish: Publish) -> None:
        """Let plugins adjust a publish; an exception propagates and fails the publish."""
        for impl in self._impls("before_publish"):
            await _await_maybe(_call(impl, publish=publish))

    async def after_publish(
        self, publish: Publish, pub_ack: PubAck | None, error: Exception | None
    ) -> None:
        """Tell plugins how a publish ended; their failures are logged, never raised."""
        for impl in self._impls("after_publish"):
            try:
                await _await_maybe(_call(impl, publish=publish, pub_ack=pub_ack, error=error))
            except Exception:
                log.exception("plugin %s: after_publish failed", impl.plugin_name)

    # --- hooks plugins define for each other -------------------------------------------------

    def implements(self, hook: str) -> bool:
        """Whether any registered plugin implements ``hook``."""
        caller = getattr(self.pm.hook, hook, None)
        return caller is not None and bool(caller.get_hookimpls())

    async def notify(self, hook: str, **kwargs: Any) -> None:
        """Call a plugin-defined notification hook (see ``register_hookspecs``).

        Every implementation runs (async ones awaited); a failure is logged, never raised, so
        one observer cannot break the plugin that calls the hook.
        """
        caller = getattr(self.pm.hook, hook, None)
        if caller is None:
            return
        for impl in reversed(caller.get_hookimpls()):
            try:
                await _await_maybe(_call(impl, **kwargs))
            except Exception:
                log.exception("plugin %s: hook %s failed", impl.plugin_name, hook)

    # --- telemetry ----------------------------------------------------------------------------

    def track_event(self, event: Event) -> None:
        """Deliver one event to every ``track_event`` implementation that takes its class,
        isolating failures.

        An implementation decorated with :func:`jetplug.events.listens_to` only gets the classes
        it names (the routes are computed once per event class), so a sink that ignores
        per-message events costs nothing per message.
        """
        sinks = self._routes.get(type(event))
        if sinks is None:
            sinks = self._routes[type(event)] = self._sinks_for(type(event))
        for name, fn in sinks:
            try:
                fn(event)
            except Exception:
                log.exception("plugin %s: track_event failed for %s", name, event.name)

    def wants(self, cls: type[Event]) -> bool:
        """Whether a ``track_event`` implementation takes ``cls`` events (build them only then)."""
        sinks = self._routes.get(cls)
        if sinks is None:
            sinks = self._routes[cls] = self._sinks_for(cls)
        return bool(sinks)

    def _sinks_for(self, cls: type) -> list[tuple[str, Callable[[Event], Any]]]:
        sinks: list[tuple[str, Callable[[Event], Any]]] = []
        for impl in self._impls("track_event"):
            wanted = getattr(impl.function, EVENTS_ATTRIBUTE, None)
            if wanted is not None and not issubclass(cls, tuple(wanted)):
                continue
            fn = (
                impl.function
                if impl.argnames == ("event",)
                else functools.partial(_call_one, impl, "event")
            )
            sinks.append((impl.plugin_name, fn))
        return sinks


__all__ = ["BUILTIN_PLUGINS", "GROUP", "PluginRecord", "Plugins", "Selection", "discover"]
