"""Configuration: loading, env overrides, secret files, validation errors, redaction, schema.

Most tests call :func:`jetplug.config.build_config` with small msgspec models standing in for
plugin tables; the last ones run the real `jetplug` CLI for exit codes and tracebacks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import pytest
from _cli import jetplug_env, run_cli
from jetplug.cli.config_cmds import full_schema
from jetplug.config import (
    Config,
    build_config,
    core_schema,
    load_raw,
    parse_toml,
    read_toml,
    redact_secrets,
    resolve_path,
)
from jetplug.errors import ConfigError
from jetplug.settings import CoreSettings


class ResultSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Stand-in for a plugin's ``[plugins.result_consumer]`` table."""

    subject: str = "caf.exec.result.v1"
    max_deliver: Annotated[int, msgspec.Meta(ge=1)] = 5
    mode: Literal["pull", "push"] = "pull"
    tags: list[str] = msgspec.field(default_factory=list)
    api_token: str = ""
    signing_secret: Annotated[str, msgspec.Meta(min_length=8)] = ""


class NeedsKey(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A plugin table with a required key."""

    endpoint: str


MODELS: dict[str, type[msgspec.Struct] | None] = {"result_consumer": ResultSettings}


def build(raw: dict[str, Any] | str, models: dict[str, Any] | None = None, **env: str) -> Config:
    """build_config with an explicit (empty unless given) environment, never os.environ."""
    data = parse_toml(raw) if isinstance(raw, str) else raw
    return build_config(data, MODELS if models is None else models, environ=env)


def problems_of(
    raw: dict[str, Any] | str, models: dict[str, Any] | None = None, **env: str
) -> list[str]:
    with pytest.raises(ConfigError) as info:
        build(raw, models, **env)
    return info.value.problems


# --- validation errors --------------------------------------------------------------------------


def test_defaults_without_any_file() -> None:
    cfg = build({})
    assert cfg.core.nats.servers == []
    assert cfg.core.host.data_dir == ".jetplug"
    assert cfg.plugin("result_consumer") == ResultSettings()


def test_wrong_type_names_key_path_and_value() -> None:
    problems = problems_of('[plugins.result_consumer]\nmax_deliver = "three"\n')
    assert problems == ['plugins.result_consumer.max_deliver: expected int >= 1, got "three"']


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[nats]\nconnect_timeout = 0", "nats.connect_timeout: expected number > 0, got 0"),
        ("[nats]\nreconnect_attempts = -2", "nats.reconnect_attempts: expected int >= -1, got -2"),
        ("[embedded]\nport = 70000", "embedded.port: expected int >= 0 and <= 65535, got 70000"),
        (
            '[jetstream]\nprovision = "manag"',
            'jetstream.provision: expected one of "manage", "off", "verify", got "manag"',
        ),
        ('[nats.tls]\nverify = "yes"', 'nats.tls.verify: expected true or false, got "yes"'),
        ('[nats]\ntls = "on"', 'nats.tls: expected a table, got "on"'),
        ('host = "x"', 'host: expected a table, got "x"'),
        ("[host]\ndata_dir = 1979-05-27", "host.data_dir: expected string, got 1979-05-27"),
        (
            '[nats]\nservers = "nats://a:4222"',
            'nats.servers: expected list of string, got "nats://a:4222"',
        ),
        (
            '[plugins.result_consumer]\nmode = "pul"',
            'plugins.result_consumer.mode: expected one of "pull", "push", got "pul"',
        ),
        ("plugins = 3", "plugins: expected a table of plugin tables, got 3"),
        ("[plugins]\nresult_consumer = 3", "plugins.result_consumer: expected a table, got 3"),
        (
            '[plugins.result_consumer]\nenabled = "no"',
            'plugins.result_consumer.enabled: expected true or false, got "no"',
        ),
    ],
)
def test_type_errors_name_path_expectation_and_value(toml: str, expected: str) -> None:
    assert problems_of(toml) == [expected]


def test_list_item_error_names_the_index() -> None:
    (problem,) = problems_of('[plugins.result_consumer]\ntags = ["a", 3]\n')
    assert problem.startswith("plugins.result_consumer.tags[1]: expected list of string")


def test_required_plugin_key_missing() -> None:
    problems = problems_of({"plugins": {"needs": {}}}, {"needs": NeedsKey})
    assert problems == ["plugins.needs.endpoint: required key is missing (string)"]


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("[hots]", "hots: unknown key (did you mean 'host'?)"),
        ("[nats]\nservres = []", "nats.servres: unknown key (did you mean 'servers'?)"),
        ("[nats.tls]\nverfy = false", "nats.tls.verfy: unknown key (did you mean 'verify'?)"),
        ("[nats.auth]\ntokn = 'x'", "nats.auth.tokn: unknown key (did you mean 'token'?)"),
        (
            "[plugins.result_consumer]\nmax_delivr = 3",
            "plugins.result_consumer.max_delivr: unknown key (did you mean 'max_deliver'?)",
        ),
    ],
)
def test_unknown_keys_suggest_the_close_name(toml: str, expected: str) -> None:
    assert problems_of(toml) == [expected]


def test_unknown_key_without_close_name_lists_the_known_keys() -> None:
    (problem,) = problems_of("[plugins.result_consumer]\nzzz = 1\n")
    assert problem == (
        "plugins.result_consumer.zzz: unknown key; "
        "known keys: api_token, max_deliver, mode, signing_secret, subject, tags"
    )


def test_every_problem_is_reported_at_once() -> None:
    toml = """
    [hots]
    [nats]
    connect_timeout = -1
    servres = []
    [nats.tls]
    verify = "yes"
    [jetstream]
    provision = "sometimes"
    [plugins.result_consumer]
    max_deliver = "three"
    modee = "pull"
    [plugins.result_consumr]
    """
    with pytest.raises(ConfigError) as info:
        build_config(parse_toml(toml), MODELS, environ={}, source="cfg.toml")
    err = info.value
    assert len(err.problems) == 8, err.problems
    for fragment in (
        "hots: unknown key",
        "nats.connect_timeout: expected number > 0, got -1",
        "nats.servres: unknown key (did you mean 'servers'?)",
        'nats.tls.verify: expected true or false, got "yes"',
        'jetstream.provision: expected one of "manage", "off", "verify", got "sometimes"',
        'plugins.result_consumer.max_deliver: expected int >= 1, got "three"',
        "plugins.result_consumer.modee: unknown key (did you mean 'mode'?)",
        "plugins.result_consumr: no installed plugin is called 'result_consumr'",
    ):
        assert any(fragment in p for p in err.problems), fragment
    text = str(err)
    assert text.startswith("configuration in cfg.toml has 8 problems:")
    assert all(f"  - {p}" in text for p in err.problems)


def test_unknown_plugin_table_suggests_installed_name() -> None:
    (problem,) = problems_of("[plugins.result_consumr]\n")
    assert problem == (
        "plugins.result_consumr: no installed plugin is called 'result_consumr' "
        "(did you mean 'result_consumer'?); installed: result_consumer"
    )


def test_table_of_installed_but_not_loaded_plugin_is_accepted_unchecked() -> None:
    raw = {"plugins": {"other": {"anything": [1, 2]}}}
    cfg = build_config(raw, MODELS, environ={}, known_plugins={"other"})
    assert cfg.plugin("other") == {"anything": [1, 2]}


def test_enabled_false_marks_plugin_disabled() -> None:
    cfg = build_config(
        parse_toml("[plugins.other]\nenabled = false\nsetting = 1\n"),
        MODELS,
        environ={},
        known_plugins={"other"},
    )
    assert cfg.disabled_in_file == {"other"}
    assert cfg.plugin("other") == {"setting": 1}  # `enabled` is the host's key, not the plugin's
    assert cfg.to_dict()["plugins"]["other"] == {"setting": 1, "enabled": False}


def test_enabled_false_does_not_skip_validation_of_a_loaded_plugin() -> None:
    # a model is passed only for a plugin that is enabled (e.g. `-p result_consumer` beats the
    # file's enabled = false): its table must still be validated and typed
    raw = parse_toml("[plugins.result_consumer]\nenabled = false\nmax_deliver = 0\n")
    assert problems_of(raw) == ["plugins.result_consumer.max_deliver: expected int >= 1, got 0"]
    raw["plugins"]["result_consumer"]["max_deliver"] = 2
    assert build(raw).plugin("result_consumer") == ResultSettings(max_deliver=2)


# --- TOML syntax and files ----------------------------------------------------------------------


def test_bad_toml_syntax_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('[host]\ndata_dir = "x"\nlog_level = \n')
    with pytest.raises(ConfigError) as info:
        read_toml(path)
    assert info.value.source == str(path)
    (problem,) = info.value.problems
    assert problem.startswith("invalid TOML:")
    assert "line 3" in problem
    assert f"configuration in {path} has 1 problem" in str(info.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        read_toml(missing)
    assert info.value.problems == [f"config file not found: {missing}"]


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        read_toml(tmp_path)  # a directory
    assert info.value.problems[0].startswith(f"cannot read config file {tmp_path}:")


def test_config_path_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert resolve_path(None, {}) is None  # no file anywhere: built-in defaults
    (tmp_path / "jetplug.toml").write_text('[nats]\nname = "from-cwd"\n')
    (tmp_path / "env.toml").write_text('[nats]\nname = "from-env"\n')
    (tmp_path / "cli.toml").write_text('[nats]\nname = "from-cli"\n')
    env = {"JETPLUG_CONFIG": "env.toml"}
    assert resolve_path(None, {}) == Path("jetplug.toml")
    assert resolve_path(None, env) == Path("env.toml")
    assert resolve_path("cli.toml", env) == Path("cli.toml")
    raw, source = load_raw(None, env)
    assert (raw["nats"]["name"], source) == ("from-env", "env.toml")
    with pytest.raises(ConfigError, match=r"config file not found: missing\.toml"):
        load_raw(None, {"JETPLUG_CONFIG": "missing.toml"})


# --- environment overrides ----------------------------------------------------------------------


def test_env_overrides_are_nested_and_typed_as_toml() -> None:
    cfg = build(
        '[nats]\nconnect_timeout = 9.0\nname = "file"\n',
        JETPLUG_NATS__CONNECT_TIMEOUT="2.5",
        JETPLUG_NATS__TLS__VERIFY="false",
        JETPLUG_NATS__RECONNECT_ATTEMPTS="7",
        JETPLUG_JETSTREAM__DLQ__STREAM="DEAD",
        JETPLUG_PLUGINS__RESULT_CONSUMER__MAX_DELIVER="8",
        JETPLUG_PLUGINS__RESULT_CONSUMER__MODE="push",
    )
    assert cfg.core.nats.connect_timeout == 2.5  # env beats the file
    assert cfg.core.nats.name == "file"  # the rest of the file stays
    assert cfg.core.nats.tls.verify is False
    assert cfg.core.nats.reconnect_attempts == 7
    assert cfg.core.jetstream.dlq.stream == "DEAD"
    assert cfg.plugin("result_consumer") == ResultSettings(max_deliver=8, mode="push")


def test_env_lists_as_comma_list_or_toml_array() -> None:
    cfg = build({}, JETPLUG_NATS__SERVERS="nats://a:4222, nats://b:4222")
    assert cfg.core.nats.servers == ["nats://a:4222", "nats://b:4222"]
    cfg = build({}, JETPLUG_NATS__SERVERS='["nats://c:4222"]')
    assert cfg.core.nats.servers == ["nats://c:4222"]
    cfg = build({}, JETPLUG_HOST__PLUGINS="solo")
    assert cfg.core.host.plugins == ["solo"]
    cfg = build({}, JETPLUG_PLUGINS__RESULT_CONSUMER__TAGS="x,y")
    assert cfg.plugin("result_consumer").tags == ["x", "y"]


def test_env_text_that_reads_as_another_toml_type_stays_text_for_string_keys() -> None:
    # a numeric token or a name like "true" must not turn into an int or a bool
    cfg = build(
        {},
        JETPLUG_NATS__AUTH__TOKEN="12345",
        JETPLUG_NATS__NAME="true",
        JETPLUG_PLUGINS__RESULT_CONSUMER__SUBJECT="1979-05-27",
    )
    assert cfg.core.nats.auth.token == "12345"
    assert cfg.core.nats.name == "true"
    assert cfg.plugin("result_consumer").subject == "1979-05-27"


def test_env_override_errors_name_the_key_path() -> None:
    problems = problems_of(
        {},
        JETPLUG_NATS__CONNECT_TIMEOUT="fast",
        JETPLUG_NATS__SERVRES="nats://a:4222",
        JETPLUG_PLUGINS__RESULT_CONSUMER__MAX_DELIVER="0",
        JETPLUG_PLUGINS__RESULT_CONSUMR__X="1",
    )
    assert sorted(problems) == sorted(
        [
            'nats.connect_timeout: expected number > 0, got "fast"',
            "nats.servres: unknown key (did you mean 'servers'?)",
            "plugins.result_consumer.max_deliver: expected int >= 1, got 0",
            "plugins.result_consumr: no installed plugin is called 'result_consumr' "
            "(did you mean 'result_consumer'?); installed: result_consumer",
        ]
    )


def test_env_can_disable_a_plugin_table() -> None:
    cfg = build_config(
        {}, MODELS, environ={"JETPLUG_PLUGINS__OTHER__ENABLED": "false"}, known_plugins={"other"}
    )
    assert cfg.disabled_in_file == {"other"}


def test_control_variables_are_not_overrides() -> None:
    env = {
        "JETPLUG_CONFIG": "x.toml",
        "JETPLUG_PLUGINS": "a",
        "JETPLUG_DISABLE_PLUGINS": "b",
        "JETPLUG_DEBUG": "1",
        "OTHER__NATS__NAME": "no",
    }
    assert build_config({}, MODELS, environ=env).core == build({}).core


# --- secrets ------------------------------------------------------------------------------------


def test_secret_files_fill_token_and_password(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("s3cr3t-token\n")
    (tmp_path / "pw").write_text("  hunter22  \n")
    cfg = build({"nats": {"auth": {"token_file": str(tmp_path / "token")}}})
    assert cfg.core.nats.auth.token == "s3cr3t-token"
    cfg = build(
        {}, JETPLUG_NATS__AUTH__USER="bob", JETPLUG_NATS__AUTH__PASSWORD_FILE=str(tmp_path / "pw")
    )
    assert (cfg.core.nats.auth.user, cfg.core.nats.auth.password) == ("bob", "hunter22")


def test_secret_and_secret_file_together_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file")
    toml = f'[nats.auth]\ntoken = "inline"\ntoken_file = "{tmp_path / "token"}"\n'
    assert problems_of(toml) == ["nats.auth.token_file: set either token or token_file, not both"]
    # the same when one of them comes from the environment
    problems = problems_of(toml.replace('token = "inline"\n', ""), JETPLUG_NATS__AUTH__TOKEN="env")
    assert problems == ["nats.auth.token_file: set either token or token_file, not both"]


def test_unreadable_secret_files_are_reported_together(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    problems = problems_of(
        {"nats": {"auth": {"token_file": str(missing), "password_file": str(tmp_path)}}}
    )
    assert sorted(problems) == [
        f"nats.auth.password_file: cannot read secret file {str(tmp_path)!r}: Is a directory",
        f"nats.auth.token_file: cannot read secret file {str(missing)!r}: "
        "No such file or directory",
    ]


def test_to_dict_redacts_every_secret(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("file-password")
    cfg = build(
        {
            "nats": {"auth": {"user": "bob", "password_file": str(tmp_path / "pw")}},
            "plugins": {"result_consumer": {"api_token": "plugin-secret"}},
        },
        JETPLUG_NATS__AUTH__TOKEN="env-token",
    )
    shown = cfg.to_dict()
    text = json.dumps(shown)
    for secret in ("file-password", "env-token", "plugin-secret"):
        assert secret not in text
    auth = shown["nats"]["auth"]
    assert auth["password"] == auth["token"] == "***"
    assert auth["user"] == "bob"  # not a secret
    assert auth["password_file"] == str(tmp_path / "pw")  # a path, not a secret
    assert shown["plugins"]["result_consumer"]["api_token"] == "***"
    assert auth["creds_file"] == ""  # empty values are not masked: they show "not set"
    unredacted = cfg.to_dict(redact=False)
    assert unredacted["nats"]["auth"]["password"] == "file-password"
    assert unredacted["plugins"]["result_consumer"]["api_token"] == "plugin-secret"


def test_redact_secrets_walks_nested_tables_and_lists() -> None:
    data = {
        "a": [{"db_password": "x", "seed": "SU..", "note": "ok"}],
        "client_secret": "y",
        "api_key": "k",
        "nkey_seed_file": "/path",
        "token": "",
    }
    assert redact_secrets(data) == {
        "a": [{"db_password": "***", "seed": "***", "note": "ok"}],
        "client_secret": "***",
        "api_key": "***",
        "nkey_seed_file": "/path",
        "token": "",
    }


@pytest.mark.parametrize(
    ("raw", "env", "expected"),
    [
        ({"nats": {"auth": {"token": 918273645}}}, {}, "nats.auth.token: expected string, got ***"),
        (
            {"nats": {"auth": {"password": ["hunter2-list"]}}},
            {},
            "nats.auth.password: expected string, got ***",
        ),
        (
            {"plugins": {"result_consumer": {"api_token": 55512345}}},
            {},
            "plugins.result_consumer.api_token: expected string, got ***",
        ),
        (
            {},
            {"JETPLUG_PLUGINS__RESULT_CONSUMER__SIGNING_SECRET": "sh0rt"},
            "plugins.result_consumer.signing_secret: "
            "expected string (at least 8 characters), got ***",
        ),
    ],
)
def test_wrong_typed_secret_is_not_echoed(
    raw: dict[str, Any], env: dict[str, str], expected: str
) -> None:
    with pytest.raises(ConfigError) as info:
        build(raw, **env)
    text = str(info.value)
    assert expected in text
    for leak in ("918273645", "hunter2-list", "55512345", "sh0rt"):
        assert leak not in text


# --- schema -------------------------------------------------------------------------------------


def test_core_schema_describes_every_table() -> None:
    schema = core_schema()
    defs = schema["$defs"]
    assert schema["$ref"] == "#/$defs/CoreSettings"
    assert set(defs["CoreSettings"]["properties"]) == set(CoreSettings.__struct_fields__)
    assert set(CoreSettings.__struct_fields__) >= {"host", "nats", "embedded", "jetstream", "http"}
    assert defs["CoreSettings"]["additionalProperties"] is False
    assert defs["NatsSettings"]["properties"]["connect_timeout"]["exclusiveMinimum"] == 0
    assert set(defs["AuthSettings"]["properties"]) >= {"token", "token_file", "password_file"}


def test_full_schema_has_core_and_plugin_tables() -> None:
    schema = full_schema({"result_consumer": ResultSettings, "bare": None})
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    props = schema["properties"]
    assert {"host", "nats", "embedded", "jetstream", "http", "plugins"} <= set(props)
    plugins = props["plugins"]
    assert plugins["additionalProperties"] is False  # unknown plugin tables are errors
    assert set(plugins["properties"]) == {"result_consumer", "bare"}
    ref = plugins["properties"]["result_consumer"]["allOf"][0]["$ref"]
    table = schema["$defs"][ref.rsplit("/", 1)[1]]
    assert table["additionalProperties"] is False
    assert table["properties"]["max_deliver"] == {"type": "integer", "minimum": 1, "default": 5}
    assert table["properties"]["mode"]["enum"] == ["pull", "push"]
    # `enabled = false` is valid in every plugin table, even one whose model forbids extra keys
    assert table["properties"]["enabled"]["type"] == "boolean"
    assert plugins["properties"]["bare"]["type"] == "object"
    # every $ref resolves inside the document
    text = json.dumps(schema)
    targets = {part.split('"')[0] for part in text.split('"$ref": "#/$defs/')[1:]}
    assert {"HostSettings", "NatsSettings", "AuthSettings", "ResultSettings"} <= targets
    assert targets <= set(schema["$defs"])


# --- through the CLI: exit codes and tracebacks -------------------------------------------------

BAD = '[nats]\nservres = []\n[nats.auth]\ntoken = 918273645\n[jetstream]\nprovision = "sometimes"\n'


@pytest.fixture
def no_plugins() -> dict[str, str]:
    """Subprocess environment with no installed plugin enabled: core config only."""
    return jetplug_env(JETPLUG_PLUGINS="")


def test_cli_config_error_exits_2_without_traceback(
    tmp_path: Path, no_plugins: dict[str, str]
) -> None:
    (tmp_path / "bad.toml").write_text(BAD)
    result = run_cli("config", "check", "-c", "bad.toml", cwd=tmp_path, env=no_plugins)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.startswith("Error: configuration in bad.toml has 3 problems:\n")
    assert "  - nats.servres: unknown key (did you mean 'servers'?)" in result.stderr
    assert "  - nats.auth.token: expected string, got ***" in result.stderr
    assert "918273645" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("how", ["--traceback", "JETPLUG_DEBUG"])
def test_cli_traceback_on_request(tmp_path: Path, no_plugins: dict[str, str], how: str) -> None:
    (tmp_path / "bad.toml").write_text(BAD)
    args = ["config", "check", "-c", "bad.toml"]
    if how == "--traceback":
        args.insert(0, "--traceback")
    else:
        no_plugins["JETPLUG_DEBUG"] = "1"
    result = run_cli(*args, cwd=tmp_path, env=no_plugins)
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr
    assert "jetplug.errors.ConfigError: configuration in bad.toml has 3 problems" in result.stderr


@pytest.mark.parametrize(
    ("files", "args", "env", "expected"),
    [
        (
            {"syntax.toml": "[nats]\nname = \n"},
            ["-c", "syntax.toml"],
            {},
            "invalid TOML: Invalid value (at line 2, column 8)",
        ),
        ({}, ["-c", "missing.toml"], {}, "config file not found: missing.toml"),
        ({}, [], {"JETPLUG_CONFIG": "gone.toml"}, "config file not found: gone.toml"),
        ({"jetplug.toml": "[hots]\n"}, [], {}, "hots: unknown key (did you mean 'host'?)"),
        (
            {},
            [],
            {"JETPLUG_NATS__CONNECT_TIMEOUT": "soon"},
            'nats.connect_timeout: expected number > 0, got "soon"',
        ),
    ],
)
def test_cli_config_errors_from_every_source(
    tmp_path: Path,
    no_plugins: dict[str, str],
    files: dict[str, str],
    args: list[str],
    env: dict[str, str],
    expected: str,
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    result = run_cli("config", "check", *args, cwd=tmp_path, env={**no_plugins, **env})
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr
