"""The `jetplug` command line: help texts, config commands, `run` and `server` against a real
embedded nats-server, and `publish` against the test server."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import nats
import pytest
from _cli import EMBEDDED_PID, JETPLUG, Spawned, embedded_config, jetplug_env, process_gone, run_cli
from click.testing import CliRunner
from jetplug.cli import make_cli
from jetplug.cli.config_cmds import to_toml
from jetplug.embedded import EmbeddedServer, free_port
from jetplug.testing import wait_until
from nats.aio.client import Client as NATS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# --- help ---------------------------------------------------------------------------------------


def _commands(
    group: click.Group, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, cmd in sorted(group.commands.items()):
        yield (*path, name), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, (*path, name))


COMMANDS = [((), make_cli()), *_commands(make_cli())]
CORE_COMMANDS = {
    "run",
    "server",
    "plugins",
    "publish",
    "config",
    "config check",
    "config show",
    "config schema",
    "streams",
    "streams plan",
    "streams apply",
}


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """In-process CLI runs configure the root logger on the runner's stream: undo that."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_every_core_command_exists() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert names >= CORE_COMMANDS, CORE_COMMANDS - names


@pytest.mark.usefixtures("restore_logging")
@pytest.mark.parametrize(
    ("path", "command"), [pytest.param(p, c, id=" ".join(p) or "jetplug") for p, c in COMMANDS]
)
def test_help_of_every_command(path: tuple[str, ...], command: click.Command) -> None:
    result = CliRunner().invoke(make_cli(), [*path, "--help"])
    assert result.exit_code == 0, result.output
    usage = " ".join(["jetplug", *path])
    assert f"Usage: {usage} " in result.output
    for param in command.params:
        if isinstance(param, click.Option) and not param.hidden:
            assert any(opt in result.output for opt in param.opts), (param.opts, result.output)
        elif isinstance(param, click.Argument):
            assert param.make_metavar(click.Context(command)) in result.output
    if isinstance(command, click.Group):
        for name in command.commands:
            assert re.search(rf"^\s+{re.escape(name)}\s", result.output, re.M), name


def test_version(tmp_path: Path) -> None:
    result = run_cli("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert re.fullmatch(r"jetplug, version \d+\.\d+\.\d+.*\n", result.stdout)


# --- config commands ----------------------------------------------------------------------------


@pytest.fixture
def core_env() -> dict[str, str]:
    """No installed plugin enabled: outputs depend on the core alone."""
    return jetplug_env(JETPLUG_PLUGINS="")


def test_config_check_ok(tmp_path: Path, core_env: dict[str, str]) -> None:
    result = run_cli("config", "check", cwd=tmp_path, env=core_env)
    assert (result.returncode, result.stdout) == (
        0,
        "configuration OK (built-in defaults); plugins: none\n",
    ), result.stderr
    (tmp_path / "jetplug.toml").write_text('[nats]\nname = "x"\n')  # picked up from the cwd
    result = run_cli("config", "check", cwd=tmp_path, env=core_env)
    assert result.stdout == "configuration OK (jetplug.toml); plugins: none\n"


def test_config_show_redacts_secrets_from_file_env_and_secret_file(
    tmp_path: Path, core_env: dict[str, str]
) -> None:
    (tmp_path / "pw.txt").write_text("file-pass-9f8e7d\n")
    (tmp_path / "jetplug.toml").write_text(
        '[nats]\nservers = ["nats://127.0.0.1:4222"]\n'
        '[nats.auth]\nuser = "bob"\npassword_file = "pw.txt"\n'
    )
    env = {
        **core_env,
        "JETPLUG_NATS__AUTH__TOKEN": "31415926535",
        "JETPLUG_JETSTREAM__DOMAIN": "hub",
    }
    as_toml = run_cli("config", "show", cwd=tmp_path, env=env)
    as_json = run_cli("config", "show", "--json", cwd=tmp_path, env=env)
    for result in (as_toml, as_json):
        assert result.returncode == 0, result.stderr
        assert "file-pass-9f8e7d" not in result.stdout + result.stderr
        assert "31415926535" not in result.stdout + result.stderr
    data = json.loads(as_json.stdout)
    auth = data["nats"]["auth"]
    assert (auth["user"], auth["password"], auth["token"]) == ("bob", "***", "***")
    assert auth["password_file"] == "pw.txt"
    assert data["jetstream"]["domain"] == "hub"  # env override applied
    assert data["nats"]["servers"] == ["nats://127.0.0.1:4222"]
    # the TOML form is valid TOML with the same content
    assert tomllib.loads(as_toml.stdout) == data
    assert '[nats.auth]\ntoken = "***"\n' in as_toml.stdout


def test_to_toml_round_trips_odd_keys_and_empty_tables() -> None:
    data = {
        "empty": {},
        "a": {"x.y": 1, "with space": "v", "inline": {"k.1": [1, 2], "e": {}}, "sub": {"z": True}},
        "odd.table": {"n": 1.5},
    }
    assert tomllib.loads(to_toml(data)) == data


def test_config_schema_is_json_schema_of_core(tmp_path: Path, core_env: dict[str, str]) -> None:
    result = run_cli("config", "schema", cwd=tmp_path, env=core_env)
    assert result.returncode == 0, result.stderr
    schema = json.loads(result.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["properties"]) >= {"host", "nats", "embedded", "jetstream", "http", "plugins"}
    assert schema["properties"]["plugins"] == {
        "type": "object",
        "properties": {},
        "additionalProperties": False,
    }
    assert schema["$defs"]["HostSettings"]["properties"]["log_level"]["enum"] == [
        "debug",
        "error",
        "info",
        "warning",
    ]


# --- run and server against a real embedded nats-server -----------------------------------------


async def _accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:port (nats-py itself retries a
    refused connect for ever, so the socket is asked directly)."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 2)
    except OSError:
        return False
    writer.close()
    return True


async def _js_publish_roundtrip(port: int, stream: str) -> None:
    """A test client connects, creates a stream and gets a pub-ack for a publish."""
    await wait_until(lambda: _accepts(port), timeout=10, message=f"nothing accepts on port {port}")
    client = await asyncio.wait_for(
        nats.connect(f"nats://127.0.0.1:{port}", allow_reconnect=False), 5
    )
    try:
        js = client.jetstream()
        await js.add_stream(name=stream, subjects=[f"{stream.lower()}.>"])
        ack = await js.publish(f"{stream.lower()}.one", b"hello")
        assert (ack.stream, ack.seq) == (stream, 1)
    finally:
        await client.close()


async def _exited(proc: Spawned, timeout: float) -> int:
    await wait_until(
        lambda: proc.proc.poll() is not None,
        timeout=timeout,
        message=f"still running after {timeout}s:\n{proc.output()}",
    )
    return proc.proc.returncode


async def test_run_with_embedded_server_accepts_a_publish_and_stops_cleanly(tmp_path: Path) -> None:
    config, port = embedded_config(tmp_path)
    host = Spawned("run", "-c", str(config), cwd=tmp_path, env=jetplug_env(JETPLUG_PLUGINS=""))
    try:
        match = await wait_until(
            lambda: EMBEDDED_PID.search(host.output()) or host.proc.poll() is not None,
            timeout=15,
            message="no 'started embedded nats-server' line",
        )
        assert match is not True, host.output()
        nats_pid = int(match.group(1))
        host.children.append(nats_pid)
        assert f"url=nats://127.0.0.1:{port} " in host.output()
        await wait_until(
            lambda: "jetplug is running" in host.output() or host.proc.poll() is not None,
            timeout=15,
        )
        await _js_publish_roundtrip(port, "RUNCHECK")
        # the JetStream store lives under [host] data_dir
        assert (tmp_path / "data" / "nats" / "jetstream").is_dir()
        host.signal()
        assert await _exited(host, 10) == 0, host.output()
        assert process_gone(nats_pid), "the embedded nats-server outlived jetplug"
        assert not await _accepts(port)
        assert "Traceback" not in host.output()
    finally:
        host.cleanup()


async def test_server_command_starts_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    (tmp_path / "srv.toml").write_text(f'[host]\ndata_dir = "{tmp_path / "data"}"\n')
    # a plugin override in the environment must not trouble `server`, which loads no plugins
    env = jetplug_env(JETPLUG_PLUGINS__RESULT_CONSUMER__MAX_DELIVER="3")
    srv = Spawned("server", "-c", "srv.toml", "--port", str(port), cwd=tmp_path, env=env)
    try:
        pattern = re.compile(
            rf"nats-server \(pid (\d+)\) listening on nats://127\.0\.0\.1:{port}; "
            rf"store {re.escape(str(tmp_path / 'data' / 'nats'))};"
        )
        match = await wait_until(
            lambda: pattern.search(srv.output()) or srv.proc.poll() is not None, timeout=15
        )
        assert match is not True, srv.output()
        nats_pid = int(match.group(1))
        srv.children.append(nats_pid)
        await _js_publish_roundtrip(port, "SRVCHECK")
        srv.signal()
        assert await _exited(srv, 10) == 0, srv.output()
        assert process_gone(nats_pid)
        assert not await _accepts(port)
    finally:
        srv.cleanup()


# --- publish ------------------------------------------------------------------------------------


async def _cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None, stdin: bytes | None = None
) -> tuple[int, str, str]:
    """Run jetplug without blocking the event loop (the test's own client stays responsive)."""
    proc = await asyncio.create_subprocess_exec(
        JETPLUG,
        *args,
        cwd=cwd,
        env=env or jetplug_env(JETPLUG_PLUGINS=""),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin or b""), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.fixture
def server_config(tmp_path: Path, nats_server: EmbeddedServer) -> Path:
    path = tmp_path / "pub.toml"
    path.write_text(f'[nats]\nservers = ["{nats_server.url}"]\n')
    return path


async def test_publish_prints_the_pub_ack(tmp_path: Path, server_config: Path, nc: NATS) -> None:
    js = nc.jetstream()
    await js.add_stream(name="CLIPUB", subjects=["clipub.>"])
    code, out, err = await _cli(
        "publish",
        "clipub.one",
        "payload-1",
        "--header",
        "Tenant=acme",
        "-H",
        "Query=a=b",
        "--msg-id",
        "m-1",
        "-c",
        str(server_config),
        cwd=tmp_path,
    )
    assert code == 0, err
    assert json.loads(out) == {"stream": "CLIPUB", "seq": 1, "duplicate": False}
    msg = await js.get_msg("CLIPUB", 1)
    assert msg.data == b"payload-1"
    assert msg.headers is not None
    assert msg.headers["Tenant"] == "acme"
    assert msg.headers["Query"] == "a=b"  # only the first '=' separates key and value
    assert msg.headers["Nats-Msg-Id"] == "m-1"
    # the same msg-id again is deduplicated by the server, and says so
    code, out, err = await _cli(
        "publish",
        "clipub.one",
        "payload-1",
        "--msg-id",
        "m-1",
        "-c",
        str(server_config),
        cwd=tmp_path,
    )
    assert code == 0, err
    assert json.loads(out) == {"stream": "CLIPUB", "seq": 1, "duplicate": True}
    # data from stdin, and a generated msg-id
    code, out, err = await _cli(
        "publish", "clipub.two", "-", "-c", str(server_config), cwd=tmp_path, stdin=b"from-stdin"
    )
    assert code == 0, err
    assert json.loads(out)["seq"] == 2
    msg = await js.get_msg("CLIPUB", 2)
    assert msg.data == b"from-stdin"
    assert msg.headers is not None and msg.headers.get("Nats-Msg-Id")


async def test_publish_without_a_stream_fails_with_the_kind(
    tmp_path: Path, server_config: Path
) -> None:
    code, out, err = await _cli(
        "publish", "nostream.here", "x", "-c", str(server_config), cwd=tmp_path
    )
    assert code == 1
    assert out == ""
    assert "Error: publish to 'nostream.here' failed (no_stream)" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("header", ["novalue", "=value"])
def test_publish_bad_header_is_a_usage_error(tmp_path: Path, header: str) -> None:
    # checked before any config is read or connection made: no server needed
    result = run_cli(
        "publish",
        "any.subject",
        "data",
        "--header",
        "Good=1",
        "--header",
        header,
        cwd=tmp_path,
        env=jetplug_env(JETPLUG_PLUGINS=""),
    )
    assert result.returncode == 2
    assert result.stderr == f"Error: --header {header!r}: expected KEY=VALUE\n"
