"""``jetplug caf assign FILE|-``, run as the real console script against a real server."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
from caf_adapter_helpers import DECISION, REQUEST, Names, request
from jetplug.embedded import EmbeddedServer
from jetplug_caf_adapter.cli import register

JETPLUG = str(Path(sys.executable).with_name("jetplug"))


def config_file(tmp_path: Path, server: EmbeddedServer, names: Names, extra: str = "") -> Path:
    path = tmp_path / "jetplug.toml"
    path.write_text(
        f'[host]\ndata_dir = "{tmp_path / "data"}"\n'
        f'[nats]\nservers = ["{server.url}"]\n'
        f"{extra}\n"
        f'[plugins.caf_adapter]\nstream = "{names.stream}"\n'
        f'assignment_subject = "{names.subject}"\nbucket = "{names.bucket}"\n',
        encoding="utf-8",
    )
    return path


def run(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """The console script with only caf_adapter enabled (whatever else is installed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JETPLUG_")}
    env["JETPLUG_PLUGINS"] = "caf_adapter"
    return subprocess.run(
        [JETPLUG, *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=30
    )


async def arun(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(run, *args, cwd=cwd, stdin=stdin)


def assignment_file(tmp_path: Path, body: Any, name: str = "assignment.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(body), encoding="utf-8")
    return path


async def test_assign_from_a_file_and_from_stdin(tmp_path, nats_server, nc, names) -> None:
    cfg = config_file(tmp_path, nats_server, names)
    source = assignment_file(tmp_path, {"request": REQUEST, "decision": DECISION})
    done = await arun("caf", "assign", str(source), "-c", str(cfg), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (
        result["outcome"] == "published" and result["stream"] == names.stream and result["seq"] == 1
    )
    assert result["duplicate"] is False and result["attempts"] == 1 and result["recorded"] is True
    msg = await nc.jetstream().get_msg(names.stream, 1)
    assert msg.headers["Nats-Msg-Id"] == result["assignment_id"]
    assert json.loads(msg.data)["tenant_id"] == "acme"

    again = json.dumps(
        {"request": REQUEST, "decision": DECISION, "assignment_id": result["assignment_id"]}
    )
    piped = await arun("caf", "assign", "-", "-c", str(cfg), cwd=tmp_path, stdin=again)
    assert piped.returncode == 0, piped.stderr
    second = json.loads(piped.stdout)
    assert second["duplicate"] is True and second["seq"] == 1
    assert (await nc.jetstream().stream_info(names.stream)).state.messages == 1


async def test_invalid_input_exits_2_naming_the_field(tmp_path, nats_server, nc, names) -> None:
    cfg = config_file(tmp_path, nats_server, names)
    bad = assignment_file(
        tmp_path, {"request": REQUEST, "decision": {**DECISION, "provider_id": ""}}
    )
    done = await arun("caf", "assign", str(bad), "-c", str(cfg), cwd=tmp_path)
    assert done.returncode == 2
    assert "decision.provider_id: must be 1-128 bytes" in done.stderr and done.stdout == ""
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{nope", encoding="utf-8")
    done = await arun("caf", "assign", str(garbage), "-c", str(cfg), cwd=tmp_path)
    assert done.returncode == 2 and "payload: not valid JSON" in done.stderr
    done = await arun("caf", "assign", "-", "-c", str(cfg), cwd=tmp_path, stdin='{"request": {}}')
    assert done.returncode == 2 and "decision: required field is missing" in done.stderr
    done = await arun("caf", "assign", str(tmp_path / "missing.json"), "-c", str(cfg), cwd=tmp_path)
    assert done.returncode == 2 and "missing.json" in done.stderr
    info = await nc.jetstream().stream_info(names.stream)
    assert info.state.messages == 0


async def test_publish_failure_exits_1_with_the_reason(tmp_path, nats_server, names) -> None:
    cfg = config_file(tmp_path, nats_server, names, extra='[jetstream]\nprovision = "off"')
    source = assignment_file(tmp_path, {"request": REQUEST, "decision": DECISION})
    done = await arun("caf", "assign", str(source), "-c", str(cfg), cwd=tmp_path)
    assert done.returncode == 1
    assert "no_stream" in done.stderr and "not published" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""


async def test_blocked_tenant_exits_1(tmp_path, nats_server, names) -> None:
    cfg = config_file(tmp_path, nats_server, names)
    cfg.write_text(cfg.read_text() + 'allowed_tenants = ["globex"]\n', encoding="utf-8")
    source = assignment_file(tmp_path, {"request": request(tenant_id="acme"), "decision": DECISION})
    done = await arun("caf", "assign", str(source), "-c", str(cfg), cwd=tmp_path)
    assert done.returncode == 1
    assert json.loads(done.stdout)["outcome"] == "blocked"
    assert "not in allowed_tenants" in done.stderr


def test_help_lists_the_command(monkeypatch) -> None:
    from click.testing import CliRunner
    from jetplug.cli import make_cli

    monkeypatch.setenv("JETPLUG_PLUGINS", "caf_adapter")
    cli = make_cli()
    done = CliRunner().invoke(cli, ["caf", "--help"])
    assert done.exit_code == 0 and "assign" in done.output
    done = CliRunner().invoke(cli, ["caf", "assign", "--help"])
    assert done.exit_code == 0 and "FILE|-" in done.output and "UUID v4" in done.output


def test_an_existing_caf_group_is_reused() -> None:
    root = click.Group("jetplug")
    other = click.Group("caf")
    other.add_command(click.Command("acks", callback=lambda: None))
    root.add_command(other)
    register(root)
    register(root)  # twice is harmless
    assert root.commands["caf"] is other
    assert sorted(other.commands) == ["acks", "assign"]
    fresh = click.Group("jetplug")
    register(fresh)
    assert (
        isinstance(fresh.commands["caf"], click.Group)
        and "assign" in fresh.commands["caf"].commands
    )
