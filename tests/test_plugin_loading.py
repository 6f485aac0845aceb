"""Plugin discovery through real installed entry points, selection precedence, broken plugins.

The plugin distributions in tests/fixtures/plugin_dists are built and installed with pip into a
session temp dir, which these tests alone put on ``sys.path`` (in-process) or ``PYTHONPATH``
(CLI subprocesses). They are never installed into the venv: the broken ones would stop
``jetplug run`` for everyone.
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _cli import EMBEDDED_PID, Spawned, embedded_config, jetplug_env, process_gone, run_cli
from jetplug import hookimpl
from jetplug.errors import PluginLoadError, StartupError, UsageError
from jetplug.plugins import Plugins, Selection, discover
from jetplug.testing import wait_until

DISTS = Path(__file__).parent / "fixtures" / "plugin_dists"
BROKEN = ("bad_signature", "exploder", "typo_hook")
EXPLODER_CAUSE = (
    "import of 'jetplug_test_exploder' failed: RuntimeError: exploder needs the frobnicate library"
)


@pytest.fixture(scope="session")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture distributions, built and installed with pip into a directory of their own."""
    target = tmp_path_factory.mktemp("plugin-site")
    dists = sorted(str(d) for d in DISTS.iterdir() if (d / "pyproject.toml").is_file())
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--disable-pip-version-check",
            "--quiet",
            "--target",
            str(target),
            *dists,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return target


@pytest.fixture
def site(plugin_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Make the fixture plugins importable in this process for one test; no JETPLUG_* env."""
    for name in list(os.environ):
        if name.startswith("JETPLUG_"):
            monkeypatch.delenv(name)
    monkeypatch.syspath_prepend(str(plugin_site))
    yield plugin_site


@pytest.fixture
def cli_env(plugin_site: Path) -> dict[str, str]:
    """Subprocess environment that sees the fixture plugins (and nothing JETPLUG_* from outside)."""
    paths = [str(plugin_site), *filter(None, [os.environ.get("PYTHONPATH")])]
    return jetplug_env(PYTHONPATH=os.pathsep.join(paths))


def select(**kwargs: Any) -> Plugins:
    """discover() over the installed entry points with a selection built like the CLI builds it."""
    kwargs.setdefault("environ", {})
    return discover(Selection.from_sources(**kwargs))


def statuses(plugins: Plugins, *names: str) -> dict[str, str]:
    return {n: plugins.records[n].status for n in names}


# --- discovery ----------------------------------------------------------------------------------


def test_fixture_plugins_are_not_installed_in_the_venv() -> None:
    # without the `site` fixture they must be invisible: the venv stays usable for `jetplug run`
    with pytest.raises(md.PackageNotFoundError):
        md.distribution("jetplug-test-exploder")
    assert not {"exploder", "greeter"} & {ep.name for ep in md.entry_points(group="jetplug")}


def test_discovers_entry_points_with_distribution_and_version(site: Path) -> None:
    plugins = select(cli_disabled=BROKEN)
    greeter, farewell = plugins.records["greeter"], plugins.records["farewell"]
    assert (greeter.distribution, greeter.version, greeter.status) == (
        "jetplug-test-greeter",
        "1.2.3",
        "enabled",
    )
    # two entry points of one distribution are two plugins
    assert (farewell.distribution, farewell.version, farewell.status) == (
        "jetplug-test-greeter",
        "1.2.3",
        "enabled",
    )
    assert greeter.hooks == ["register_commands", "register_config_schema", "track_event"]
    assert farewell.hooks == ["track_event"]
    assert {"greeter", "farewell", "log_events"} <= set(plugins.enabled_names())
    # the entry-point name is the registration name and the name of the config table
    assert plugins.pm.get_plugin("greeter") is sys.modules["jetplug_test_greeter"]
    models = plugins.config_schemas()
    assert models["greeter"].__name__ == "GreeterSettings"
    assert models["farewell"] is None
    assert plugins.broken() == []
    plugins.check_runnable()


# --- selection precedence -----------------------------------------------------------------------

PRECEDENCE = [
    # (id, selection sources, expected status of greeter / farewell / exploder, greeter's reason)
    ("unset-means-all", {}, ("enabled", "enabled", "broken"), ""),
    (
        "env-empty-means-none",
        {"environ": {"JETPLUG_PLUGINS": ""}},
        ("disabled", "disabled", "disabled"),
        "not in JETPLUG_PLUGINS",
    ),
    (
        "env-list",
        {"environ": {"JETPLUG_PLUGINS": "greeter"}},
        ("enabled", "disabled", "disabled"),
        "",
    ),
    (
        "env-comma-list",
        {"environ": {"JETPLUG_PLUGINS": " greeter , farewell "}},
        ("enabled", "enabled", "disabled"),
        "",
    ),
    (
        "file-allowlist",
        {"raw_config": {"host": {"plugins": ["farewell"]}}},
        ("disabled", "enabled", "disabled"),
        "not in [host] plugins",
    ),
    (
        "file-allowlist-from-env-override",
        {"environ": {"JETPLUG_HOST__PLUGINS": "greeter,farewell"}},
        ("enabled", "enabled", "disabled"),
        "",
    ),
    (
        "env-beats-file",
        {
            "environ": {"JETPLUG_PLUGINS": "greeter"},
            "raw_config": {"host": {"plugins": ["farewell"]}},
        },
        ("enabled", "disabled", "disabled"),
        "",
    ),
    (
        "cli-beats-env",
        {"cli_plugins": ["farewell"], "environ": {"JETPLUG_PLUGINS": "greeter"}},
        ("disabled", "enabled", "disabled"),
        "not named with -p/--plugin",
    ),
    (
        "disable-beats-cli",
        {"cli_plugins": ["greeter", "farewell"], "cli_disabled": ["greeter"]},
        ("disabled", "enabled", "disabled"),
        "disabled by --disable",
    ),
    (
        "env-disable-beats-cli",
        {
            "cli_plugins": ["greeter", "farewell"],
            "environ": {"JETPLUG_DISABLE_PLUGINS": "greeter,exploder"},
        },
        ("disabled", "enabled", "disabled"),
        "disabled by JETPLUG_DISABLE_PLUGINS",
    ),
    (
        "file-enabled-false",
        {"raw_config": {"plugins": {"greeter": {"enabled": False}}}},
        ("disabled", "enabled", "broken"),
        "[plugins.greeter] enabled = false",
    ),
    (
        "env-enabled-false",
        {"environ": {"JETPLUG_PLUGINS__GREETER__ENABLED": "false"}},
        ("disabled", "enabled", "broken"),
        "[plugins.greeter] enabled = false",
    ),
    (
        "env-list-does-not-beat-enabled-false",
        {
            "environ": {"JETPLUG_PLUGINS": "greeter"},
            "raw_config": {"plugins": {"greeter": {"enabled": False}}},
        },
        ("disabled", "disabled", "disabled"),
        "[plugins.greeter] enabled = false",
    ),
    (
        "cli-beats-enabled-false",
        {"cli_plugins": ["greeter"], "raw_config": {"plugins": {"greeter": {"enabled": False}}}},
        ("enabled", "disabled", "disabled"),
        "",
    ),
]


@pytest.mark.parametrize(
    ("sources", "expected", "reason"),
    [pytest.param(s, e, r, id=i) for i, s, e, r in PRECEDENCE],
)
def test_selection_precedence(
    site: Path, sources: dict[str, Any], expected: tuple[str, str, str], reason: str
) -> None:
    plugins = select(**sources)
    assert statuses(plugins, "greeter", "farewell", "exploder") == dict(
        zip(("greeter", "farewell", "exploder"), expected, strict=True)
    )
    assert plugins.records["greeter"].reason == reason
    assert plugins.records["log_events"].status == "enabled"  # the built-in is not allowlisted
    # a disabled plugin is not even imported, so a broken one cannot stop anything
    if expected[2] == "disabled":
        assert plugins.records["exploder"].error is None


def test_builtin_can_be_disabled(site: Path) -> None:
    plugins = select(cli_disabled=["log_events", *BROKEN])
    assert plugins.records["log_events"].status == "disabled"
    assert "log_events" not in plugins.enabled_names()


@pytest.mark.parametrize(
    ("sources", "where", "typo", "suggestion"),
    [
        ({"cli_plugins": ["greter"]}, "-p/--plugin", "greter", "greeter"),
        ({"cli_disabled": ["greter"]}, "--disable", "greter", "greeter"),
        (
            {"environ": {"JETPLUG_PLUGINS": "greeter,farewel"}},
            "JETPLUG_PLUGINS",
            "farewel",
            "farewell",
        ),
        (
            {"environ": {"JETPLUG_DISABLE_PLUGINS": "exploderr"}},
            "JETPLUG_DISABLE_PLUGINS",
            "exploderr",
            "exploder",
        ),
        (
            {"raw_config": {"host": {"plugins": ["typo_hok"]}}},
            "[host] plugins",
            "typo_hok",
            "typo_hook",
        ),
        ({"environ": {"JETPLUG_HOST__PLUGINS": "greter"}}, "[host] plugins", "greter", "greeter"),
    ],
)
def test_unknown_names_name_their_source_and_suggest(
    site: Path, sources: dict[str, Any], where: str, typo: str, suggestion: str
) -> None:
    with pytest.raises(UsageError) as info:
        select(**sources)
    text = str(info.value)
    assert text.startswith(
        f"{where}: no installed plugin is called {typo!r} (did you mean {suggestion!r}?)"
    )
    assert re.search(r"\. Installed: .*\bgreeter\b", text)
    assert info.value.exit_code == 2


# --- broken plugins -----------------------------------------------------------------------------


def test_import_failure_is_reported_with_name_distribution_version_and_cause(site: Path) -> None:
    plugins = select(cli_plugins=["greeter", "exploder"])
    record = plugins.records["exploder"]
    assert record.status == "broken"
    assert record.reason == EXPLODER_CAUSE
    err = record.error
    assert isinstance(err, PluginLoadError)
    assert (err.name, err.distribution, err.version) == (
        "exploder",
        "jetplug-test-exploder",
        "0.0.1",
    )
    assert str(err) == (
        f"plugin 'exploder' (jetplug-test-exploder 0.0.1) failed to load: {EXPLODER_CAUSE}"
    )
    # the good plugin next to it still loaded
    assert plugins.records["greeter"].status == "enabled"
    assert plugins.broken() == [record]
    with pytest.raises(StartupError) as info:
        plugins.check_runnable()
    assert "1 plugin(s) failed to load; fix or disable them (--disable NAME)" in str(info.value)
    assert str(err) in str(info.value)


def test_misspelt_hook_is_caught_at_load_with_a_hint(site: Path) -> None:
    plugins = select(cli_plugins=["typo_hook"])
    record = plugins.records["typo_hook"]
    assert record.status == "broken"
    assert (
        record.reason == "implements unknown hook 'handle_mesage' (did you mean 'handle_message'?)"
    )
    assert (record.distribution, record.version) == ("jetplug-test-typo-hook", "0.3.0")
    assert plugins.pm.get_plugin("typo_hook") is None  # not left half-registered


def test_hookimpl_with_an_argument_the_spec_lacks_is_broken(site: Path) -> None:
    plugins = select(cli_plugins=["bad_signature"])
    record = plugins.records["bad_signature"]
    assert record.status == "broken"
    assert "handle_message" in record.reason
    assert "{'context'}" in record.reason
    assert plugins.pm.get_plugin("bad_signature") is None


def test_broken_plugin_that_is_disabled_is_listed_but_does_not_block(site: Path) -> None:
    plugins = discover(Selection.from_sources(cli_disabled=BROKEN, environ={}), load_disabled=True)
    # `jetplug plugins` imports disabled plugins too, to show their hooks and problems
    assert statuses(plugins, *BROKEN) == dict.fromkeys(BROKEN, "broken")
    assert not any(plugins.records[n].selected for n in BROKEN)
    assert plugins.broken() == []
    plugins.check_runnable()


class AsyncWrapper:
    @hookimpl(wrapper=True)
    async def startup(self, host: Any) -> Any:
        yield


class GeneratorWrapperOnAsyncHook:
    @hookimpl(wrapper=True)
    def handle_message(self, msg: Any) -> Any:
        return (yield)


class OldStyleWrapperOnAsyncHook:
    @hookimpl(hookwrapper=True)
    def before_publish(self, publish: Any) -> Any:
        yield


class WrapperOnSyncHook:
    @hookimpl(wrapper=True)
    def track_event(self, event: Any) -> Any:
        return (yield)


class Typo:
    @hookimpl
    def track_evnt(self, event: Any) -> None: ...


def test_wrappers_on_async_hooks_are_rejected() -> None:
    plugins = discover(
        Selection(),
        extra=[
            ("async_wrapper", AsyncWrapper()),
            ("gen_wrapper", GeneratorWrapperOnAsyncHook()),
            ("old_wrapper", OldStyleWrapperOnAsyncHook()),
            ("sync_wrapper", WrapperOnSyncHook()),
        ],
        autoload=False,
    )
    records = plugins.records
    assert records["async_wrapper"].status == "broken"
    assert "not a generator function" in records["async_wrapper"].reason
    for name, hook in (("gen_wrapper", "handle_message"), ("old_wrapper", "before_publish")):
        assert records[name].status == "broken"
        assert records[name].reason.startswith(f"hook {hook!r} cannot be a wrapper")
        assert plugins.pm.get_plugin(name) is None
    # a wrapper around a hook that is never async is fine
    assert records["sync_wrapper"].status == "enabled"


def test_register_rejects_a_typo_like_discovery() -> None:
    plugins = discover(Selection(), autoload=False)
    with pytest.raises(
        PluginLoadError, match=r"unknown hook 'track_evnt' \(did you mean 'track_event'\?\)"
    ):
        plugins.register(Typo(), "typo")
    assert plugins.pm.get_plugin("typo") is None


# --- through the CLI ----------------------------------------------------------------------------


def test_cli_plugins_lists_broken_plugins_and_exits_1(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    result = run_cli("plugins", cwd=tmp_path, env=cli_env)
    assert result.returncode == 1, result.stderr
    rows = {line.split()[0]: line.split() for line in result.stdout.splitlines()[1:]}
    assert rows["greeter"][:4] == ["greeter", "enabled", "jetplug-test-greeter", "1.2.3"]
    assert rows["exploder"][:4] == ["exploder", "broken", "jetplug-test-exploder", "0.0.1"]
    assert rows["typo_hook"][:4] == ["typo_hook", "broken", "jetplug-test-typo-hook", "0.3.0"]
    assert rows["bad_signature"][:2] == ["bad_signature", "broken"]
    assert f"exploder: broken: {EXPLODER_CAUSE}" in result.stderr
    assert (
        "typo_hook: broken: implements unknown hook 'handle_mesage' "
        "(did you mean 'handle_message'?)" in result.stderr
    )
    assert "Traceback" not in result.stderr


def test_cli_plugins_json(tmp_path: Path, cli_env: dict[str, str]) -> None:
    result = run_cli("plugins", "--json", cwd=tmp_path, env=cli_env)
    assert result.returncode == 1, result.stderr
    records = {r["name"]: r for r in json.loads(result.stdout)}
    expected = {
        "name": "exploder",
        "distribution": "jetplug-test-exploder",
        "version": "0.0.1",
        "status": "broken",
        "reason": EXPLODER_CAUSE,
        "hooks": [],
        "builtin": False,
        "selected": True,
    }
    assert {k: records["exploder"].get(k) for k in expected} == expected
    assert records["greeter"]["hooks"] == [
        "register_commands",
        "register_config_schema",
        "track_event",
    ]
    assert records["log_events"]["builtin"] is True


def test_cli_plugins_exits_0_when_broken_plugins_are_disabled(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    cli_env["JETPLUG_DISABLE_PLUGINS"] = "typo_hook,bad_signature"
    result = run_cli("plugins", "--disable", "exploder", cwd=tmp_path, env=cli_env)
    assert result.returncode == 0, result.stderr
    assert f"exploder: broken (disabled): {EXPLODER_CAUSE}" in result.stderr


def test_cli_unknown_plugin_name_is_a_usage_error(tmp_path: Path, cli_env: dict[str, str]) -> None:
    result = run_cli("plugins", "-p", "greter", cwd=tmp_path, env=cli_env)
    assert result.returncode == 2
    assert (
        "Error: -p/--plugin: no installed plugin is called 'greter' (did you mean 'greeter'?)"
        in result.stderr
    )
    assert "Traceback" not in result.stderr
    (tmp_path / "jetplug.toml").write_text("[plugins.greter]\nrepeat = 2\n")
    cli_env["JETPLUG_DISABLE_PLUGINS"] = ",".join(BROKEN)
    result = run_cli("config", "check", cwd=tmp_path, env=cli_env)
    assert result.returncode == 2
    assert (
        "plugins.greter: no installed plugin is called 'greter' (did you mean 'greeter'?)"
        in result.stderr
    )


def test_cli_p_beats_enabled_false_and_then_validates_the_table(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    (tmp_path / "jetplug.toml").write_text("[plugins.greeter]\nenabled = false\nrepeat = 0\n")
    cli_env["JETPLUG_DISABLE_PLUGINS"] = ",".join(BROKEN)
    # disabled in the file: its table is not checked and it is not loaded
    result = run_cli("config", "check", cwd=tmp_path, env=cli_env)
    assert result.returncode == 0, result.stderr
    assert "farewell" in result.stdout and "greeter" not in result.stdout
    # `-p greeter` enables it anyway, so its table must be valid
    result = run_cli("config", "check", "-p", "greeter", cwd=tmp_path, env=cli_env)
    assert result.returncode == 2
    assert "plugins.greeter.repeat: expected int >= 1, got 0" in result.stderr
    (tmp_path / "jetplug.toml").write_text("[plugins.greeter]\nenabled = false\nrepeat = 3\n")
    result = run_cli("config", "show", "--json", "-p", "greeter", cwd=tmp_path, env=cli_env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["plugins"]["greeter"]["repeat"] == 3


def test_cli_config_schema_includes_installed_plugin_tables(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    result = run_cli(
        "config",
        "schema",
        "--disable",
        "exploder",
        "--disable",
        "typo_hook",
        "--disable",
        "bad_signature",
        cwd=tmp_path,
        env=cli_env,
    )
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    plugins = schema["properties"]["plugins"]["properties"]
    assert plugins["greeter"]["allOf"] == [{"$ref": "#/$defs/GreeterSettings"}]
    greeter = schema["$defs"]["GreeterSettings"]["properties"]
    assert greeter["repeat"] == {"type": "integer", "minimum": 1, "default": 1}
    assert set(greeter) == {"enabled", "greeting", "repeat", "api_token"}
    assert plugins["farewell"]["type"] == "object"  # declares no settings
    assert "exploder" not in plugins


def test_cli_plugin_commands_are_added(tmp_path: Path, cli_env: dict[str, str]) -> None:
    result = run_cli("greet", "--name", "tester", cwd=tmp_path, env=cli_env)
    assert (result.returncode, result.stdout) == (0, "hello tester\n"), result.stderr
    result = run_cli("--help", cwd=tmp_path, env=cli_env)
    assert re.search(r"^\s+greet\s", result.stdout, re.M)
    cli_env["JETPLUG_PLUGINS"] = ""  # plugin off: its command is gone
    result = run_cli("greet", cwd=tmp_path, env=cli_env)
    assert result.returncode == 2
    assert "No such command 'greet'" in result.stderr


def test_run_refuses_to_start_with_an_enabled_broken_plugin(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    config, _ = embedded_config(tmp_path)
    result = run_cli(
        "run", "-c", str(config), "-p", "greeter", "-p", "exploder", cwd=tmp_path, env=cli_env
    )
    assert result.returncode == 1, result.stderr
    assert (
        "Error: 1 plugin(s) failed to load; fix or disable them (--disable NAME):" in result.stderr
    )
    assert (
        f"plugin 'exploder' (jetplug-test-exploder 0.0.1) failed to load: {EXPLODER_CAUSE}"
        in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert "started embedded nats-server" not in result.stderr  # refused before any side effect


async def test_run_starts_when_the_broken_plugin_is_disabled(
    tmp_path: Path, cli_env: dict[str, str]
) -> None:
    config, _ = embedded_config(tmp_path)
    cli_env["JETPLUG_PLUGINS"] = "greeter,exploder"
    host = Spawned("run", "-c", str(config), "--disable", "exploder", cwd=tmp_path, env=cli_env)
    try:
        match = await wait_until(
            lambda: EMBEDDED_PID.search(host.output()) or host.proc.poll() is not None,
            timeout=15,
            message="no embedded server",
        )
        assert match is not True, host.output()
        host.children.append(int(match.group(1)))
        await wait_until(
            lambda: "jetplug is running" in host.output() or host.proc.poll() is not None,
            timeout=15,
        )
        running = re.search(r"jetplug is running plugins=(\S+)", host.output())
        assert running is not None, host.output()
        loaded = set(running.group(1).split(","))
        assert "greeter" in loaded and "log_events" in loaded
        assert not loaded & {"exploder", "farewell", "typo_hook", "bad_signature"}
        host.signal()
        await wait_until(lambda: host.proc.poll() is not None, timeout=10, message=host.output())
        assert host.proc.returncode == 0, host.output()
        assert process_gone(host.children[0])
    finally:
        host.cleanup()
