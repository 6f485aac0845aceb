"""Logs: `jetplug run --log-format json` writes one valid JSON object per line, message lines carry
consumer / stream_seq / deliveries, per-logger levels apply, and no secret reaches any line."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path
from typing import Any

import _opsplugin
import nats
import pytest
from _cli import Spawned, jetplug_env
from jetplug.embedded import EmbeddedServer
from jetplug.engine.jsapi import ApiError, JsApi
from jetplug.logs import JsonFormatter, SecretFilter, register_secret
from jetplug.testing import wait_until

TOKEN = "tok-9f8e7d6c5b4a3921"
PASSWORD = "pw-1a2b3c4d5e6f7788"
MESSAGE_FIELDS = ("consumer", "stream_seq", "deliveries")

VARIANTS = {
    # secret in the TOML file
    "token": (
        f'authorization {{ token: "{TOKEN}" }}',
        f'[nats.auth]\ntoken = "{TOKEN}"\n',
        {},
        {"token": TOKEN},
    ),
    # secret in the environment
    "user_password": (
        f'authorization {{ users: [ {{ user: "opsuser", password: "{PASSWORD}" }} ] }}',
        '[nats.auth]\nuser = "opsuser"\n',
        {"JETPLUG_NATS__AUTH__PASSWORD": PASSWORD},
        {"user": "opsuser", "password": PASSWORD},
    ),
}


@pytest.fixture(scope="module")
def ops_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _opsplugin.install(tmp_path_factory.mktemp("opsplugin"))


def parse(output: str) -> list[dict[str, Any]]:
    lines = [ln for ln in output.splitlines() if ln.strip()]
    records = []
    for ln in lines:
        record = json.loads(ln)  # every line is JSON, nothing else is printed
        assert isinstance(record, dict), ln
        assert {"time", "level", "logger", "message"} <= set(record), ln
        records.append(record)
    return records


@pytest.mark.timeout(60)
@pytest.mark.parametrize("variant", sorted(VARIANTS))
async def test_json_logs_carry_message_fields_and_no_secret(
    variant: str, tmp_path: Path, ops_plugin: Path
) -> None:
    server_auth, config_auth, env_extra, client_auth = VARIANTS[variant]
    server = EmbeddedServer(store_dir=tmp_path / "nats", extra_config=server_auth).start()
    stream = f"LOGS_{variant.upper()}"
    config = tmp_path / "jetplug.toml"
    config.write_text(
        f'[host]\ndata_dir = "{tmp_path / "data"}"\n'
        'log_levels = { "jetplug.host" = "warning" }\n\n'
        f'[nats]\nservers = ["{server.url}"]\n\n{config_auth}\n'
        "[jetstream]\nidle_heartbeat = 0.2\npull_expires = 1.0\n\n"
        f'[plugins.opstest]\nstream = "{stream}"\n',
        encoding="utf-8",
    )
    env = jetplug_env(PYTHONPATH=str(ops_plugin), **env_extra)
    proc = Spawned(
        "--log-format",
        "json",
        "--log-level",
        "info",
        "run",
        "-c",
        str(config),
        "-p",
        "opstest",
        cwd=tmp_path,
        env=env,
    )
    nc = None
    try:
        nc = await nats.connect(server.url, **client_auth)
        api = JsApi(nc)

        async def consumer_exists() -> bool:
            try:
                await api.consumer_info(stream, "worker")
                return True
            except ApiError:
                return False

        await wait_until(
            consumer_exists,
            timeout=20,
            interval=0.1,
            message=f"host did not provision:\n{proc.output()}",
        )
        js = nc.jetstream()
        for data in (b"ok", b"boom", b"bad"):
            await js.publish(f"{stream.lower()}.x", data)

        def dead_letters() -> int:
            return proc.output().count("dead-lettered message")

        await wait_until(
            lambda: dead_letters() >= 2, timeout=20, message=f"no dead letters:\n{proc.output()}"
        )
        proc.signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.proc.wait, 20)
        assert code == 0, proc.output()
    finally:
        if nc is not None:
            await nc.close()
        proc.cleanup()
        server.stop()

    output = proc.output()
    # no secret anywhere, in any form the handler's error carried it
    assert TOKEN not in output and PASSWORD not in output
    records = parse(output)
    message_loggers = {"jetplug_test_ops", "jetplug.outcomes"}
    about_messages = [
        r
        for r in records
        if "stream_seq" in r
        or r["logger"] in message_loggers
        or r["message"].startswith("dead-lettered")
    ]
    for r in about_messages:
        missing = [f for f in MESSAGE_FIELDS if f not in r]
        assert not missing, f"{r} lacks {missing}"
        assert r["consumer"] == "worker"
    deciding = [r for r in records if r["message"] == "deciding"]
    seen = sorted((r["stream_seq"], r["deliveries"]) for r in deciding)
    assert seen == [(1, 1), (2, 1), (2, 2), (3, 1)]
    failed = [r for r in records if r["message"].startswith("handler of plugin opstest failed")]
    assert [(r["stream_seq"], r["deliveries"]) for r in failed] == [(2, 1), (2, 2)]
    assert all("***" in r["message"] and r["level"] == "warning" for r in failed)
    dead = {r["stream_seq"]: r for r in records if r["message"].startswith("dead-lettered")}
    assert set(dead) == {2, 3}
    assert dead[2]["deliveries"] == 2 and "***" in dead[2]["error"]  # extra fields are scrubbed too
    assert dead[3]["message"] == "dead-lettered message (bad_input)"
    # per-logger levels: jetplug.host is at warning, the others at info
    assert not any(r["logger"] == "jetplug.host" and r["level"] == "info" for r in records)
    assert any(r["logger"] == "jetplug.connection" and r["level"] == "info" for r in records)


def test_secret_filter_scrubs_message_args_extra_fields_and_tracebacks() -> None:
    secret = "s3cr3t-value-for-filter-test"
    register_secret(secret)
    record = logging.LogRecord(
        "jetplug.test", logging.ERROR, __file__, 1, "failed with %s", (f"token {secret}",), None
    )
    record.error = f"server said {secret}"
    record.stream_seq = 7
    try:
        raise RuntimeError(f"boom {secret}")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    assert SecretFilter().filter(record)
    line = JsonFormatter().format(record)
    data = json.loads(line)
    assert secret not in line
    assert data["message"] == "failed with token ***"
    assert data["error"] == "server said ***" and data["stream_seq"] == 7
    assert "RuntimeError: boom ***" in data["exception"]
