"""Provisioning in each mode (manage, verify, off) and `jetplug streams plan|apply`, real server.

Every test uses its own stream names on the shared server; the DLQ is disabled where it would
otherwise take part in the plan.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from _cli import jetplug_env, run_cli_async
from jetplug import ConsumerSpec, StreamSpec, hookimpl
from jetplug.engine.jsapi import ApiError, JsApi
from jetplug.errors import ProvisioningError, StartupError
from jetplug.events import ProvisioningDrift
from jetplug.testing import running_host

NS = 1_000_000_000
NO_DLQ = "[jetstream.dlq]\nenabled = false\n"
FIXTURE = Path(__file__).parent / "fixtures" / "provisioning_plugin"


def mode(provision: str) -> str:
    return f'[jetstream]\nprovision = "{provision}"\n\n{NO_DLQ}'


class Declarer:
    """Declares whatever streams and consumers the test puts in it."""

    def __init__(self, streams: list[StreamSpec], consumers: list[ConsumerSpec]) -> None:
        self.streams = streams
        self.consumers = consumers

    @hookimpl
    def register_streams(self) -> list[StreamSpec]:
        return self.streams

    @hookimpl
    def register_consumers(self) -> list[ConsumerSpec]:
        return self.consumers


def actions(plan: list[Any]) -> dict[str, str]:
    return {f"{c.kind} {c.target}": c.action for c in plan}


@pytest.fixture
async def api(nc: Any) -> JsApi:
    return JsApi(nc)


async def missing(api: JsApi, stream: str, durable: str = "") -> bool:
    try:
        if durable:
            await api.consumer_info(stream, durable)
        else:
            await api.stream_info(stream)
    except ApiError as exc:
        return exc.not_found
    return False


async def test_manage_creates_then_updates_mutable_fields(nats_server, api) -> None:
    decl = Declarer(
        [StreamSpec("PVA", ("pva.>",), max_age=60)],
        [ConsumerSpec("PVA", "worker", ack_wait=30, max_deliver=5)],
    )
    async with running_host(("decl", decl), server=nats_server, config=NO_DLQ) as h:
        assert actions(h.host.engine.plan) == {
            "stream PVA": "create",
            "consumer PVA/worker": "create",
        }
    stream = (await api.stream_info("PVA"))["config"]
    assert stream["subjects"] == ["pva.>"] and stream["max_age"] == 60 * NS
    assert stream["duplicate_window"] == 60 * NS  # capped at max_age: the server refuses more
    consumer = (await api.consumer_info("PVA", "worker"))["config"]
    assert consumer["ack_wait"] == 30 * NS and consumer["max_deliver"] == 5

    decl.streams = [StreamSpec("PVA", ("pva.>",), max_age=120)]
    decl.consumers = [ConsumerSpec("PVA", "worker", ack_wait=10, max_deliver=7)]
    async with running_host(("decl", decl), server=nats_server, config=NO_DLQ) as h:
        assert actions(h.host.engine.plan) == {
            "stream PVA": "update",
            "consumer PVA/worker": "update",
        }
        drift = {(e.target, e.field_name): e for e in h.events_of(ProvisioningDrift)}
        assert drift[("PVA", "max_age")].current == str(60 * NS)
        assert drift[("PVA", "max_age")].wanted == str(120 * NS)
        assert all(e.applied for e in drift.values())
        assert {("PVA/worker", "ack_wait"), ("PVA/worker", "max_deliver")} <= set(drift)
    stream = (await api.stream_info("PVA"))["config"]
    assert stream["max_age"] == 120 * NS
    consumer = (await api.consumer_info("PVA", "worker"))["config"]
    assert consumer["ack_wait"] == 10 * NS and consumer["max_deliver"] == 7

    # in sync now: nothing to do, no drift
    async with running_host(("decl", decl), server=nats_server, config=NO_DLQ) as h:
        assert set(actions(h.host.engine.plan).values()) == {"none"}
        assert h.events_of(ProvisioningDrift) == []


async def test_manage_refuses_immutable_changes_and_changes_nothing(nats_server, api) -> None:
    decl = Declarer([StreamSpec("PVB", ("pvb.>",), max_age=60)], [ConsumerSpec("PVB", "worker")])
    async with running_host(("decl", decl), server=nats_server, config=NO_DLQ):
        pass
    decl.streams = [StreamSpec("PVB", ("pvb.>",), storage="memory", max_age=120)]
    decl.consumers = [ConsumerSpec("PVB", "worker", deliver_policy="new", ack_wait=5)]
    with pytest.raises(ProvisioningError) as err:
        async with running_host(("decl", decl), server=nats_server, config=NO_DLQ):
            pytest.fail("the host must not start")
    text = str(err.value)
    assert "stream PVB: storage is file on the server, declared memory" in text
    assert "consumer PVB/worker: deliver_policy is all on the server, declared new" in text
    assert "max_age" not in text  # mutable diffs are not errors...
    stream = (await api.stream_info("PVB"))["config"]
    consumer = (await api.consumer_info("PVB", "worker"))["config"]
    # ...but nothing at all is applied while an immutable change blocks the plan
    assert stream["storage"] == "file" and stream["max_age"] == 60 * NS
    assert consumer["deliver_policy"] == "all" and consumer["ack_wait"] == 30 * NS


async def test_immutability_follows_the_server(nats_server, api) -> None:
    # replay_policy cannot be updated; retention limits <-> interest can, to/from workqueue not
    await api.create_stream({"name": "PVF", "subjects": ["pvf.>"], "retention": "interest"})
    await api.create_consumer(
        "PVF", {"durable_name": "worker", "ack_policy": "explicit", "replay_policy": "original"}
    )
    decl = Declarer([StreamSpec("PVF", ("pvf.>",))], [ConsumerSpec("PVF", "worker")])
    with pytest.raises(
        ProvisioningError, match="replay_policy is original on the server, declared instant"
    ):
        async with running_host(("decl", decl), server=nats_server, config=NO_DLQ):
            pass
    await api.delete_consumer("PVF", "worker")
    async with running_host(("decl", decl), server=nats_server, config=NO_DLQ) as h:
        assert actions(h.host.engine.plan)["stream PVF"] == "update"
    assert (await api.stream_info("PVF"))["config"]["retention"] == "limits"
    decl.streams = [StreamSpec("PVF", ("pvf.>",), retention="workqueue")]
    with pytest.raises(
        ProvisioningError, match="stream PVF: retention is limits on the server, declared workqueue"
    ):
        async with running_host(("decl", decl), server=nats_server, config=NO_DLQ):
            pass


async def test_verify_reports_drift_and_refuses_to_start_without_changes(nats_server, api) -> None:
    decl = Declarer([StreamSpec("PVC", ("pvc.>",), max_age=60)], [ConsumerSpec("PVC", "worker")])
    with pytest.raises(ProvisioningError) as err:
        async with running_host(("decl", decl), server=nats_server, config=mode("verify")):
            pytest.fail("the host must not start")
    text = str(err.value)
    assert "provision = 'verify'" in text and "jetplug streams apply" in text
    assert (
        "+ create stream PVC  (declared by decl)" in text and "+ create consumer PVC/worker" in text
    )
    assert await missing(api, "PVC")

    async with running_host(("decl", decl), server=nats_server, config=mode("manage")):
        pass
    decl.streams = [StreamSpec("PVC", ("pvc.>",), max_age=120)]
    decl.consumers = [ConsumerSpec("PVC", "worker", ack_wait=10)]
    with pytest.raises(ProvisioningError) as err:
        async with running_host(("decl", decl), server=nats_server, config=mode("verify")):
            pytest.fail("the host must not start")
    text = str(err.value)
    assert "~ update stream PVC" in text and f"max_age: {60 * NS} -> {120 * NS}" in text
    assert "~ update consumer PVC/worker" in text and f"ack_wait: {30 * NS} -> {10 * NS}" in text
    assert (await api.stream_info("PVC"))["config"]["max_age"] == 60 * NS
    assert (await api.consumer_info("PVC", "worker"))["config"]["ack_wait"] == 30 * NS

    decl.streams = [StreamSpec("PVC", ("pvc.>",), max_age=60)]
    decl.consumers = [ConsumerSpec("PVC", "worker")]
    async with running_host(("decl", decl), server=nats_server, config=mode("verify")) as h:
        assert set(actions(h.host.engine.plan).values()) == {"none"}


async def test_off_ignores_declarations(nats_server, api) -> None:
    decl = Declarer([StreamSpec("PVD", ("pvd.>",), max_age=60)], [ConsumerSpec("PVD", "worker")])
    async with running_host(("decl", decl), server=nats_server, config=NO_DLQ):
        pass
    decl.streams = [StreamSpec("PVD", ("pvd.>",), max_age=120), StreamSpec("PVD2", ("pvd2.>",))]
    decl.consumers = [ConsumerSpec("PVD", "worker", ack_wait=10)]
    async with running_host(("decl", decl), server=nats_server, config=mode("off")) as h:
        assert h.host.engine.plan == []
        assert h.events_of(ProvisioningDrift) == []
    assert (await api.stream_info("PVD"))["config"]["max_age"] == 60 * NS
    assert (await api.consumer_info("PVD", "worker"))["config"]["ack_wait"] == 30 * NS
    assert await missing(api, "PVD2")


async def test_two_plugins_declaring_one_consumer_is_a_startup_error(nats_server, api) -> None:
    stream = StreamSpec("PVE", ("pve.>",))
    first = Declarer([stream], [ConsumerSpec("PVE", "worker")])
    second = Declarer([stream], [ConsumerSpec("PVE", "worker", ack_wait=5)])
    with pytest.raises(StartupError) as err:
        async with running_host(
            ("first", first), ("second", second), server=nats_server, config=NO_DLQ
        ):
            pytest.fail("the host must not start")
    text = str(err.value)
    line = next(ln for ln in text.splitlines() if "consumer 'worker' on stream 'PVE'" in ln)
    assert "declared by both" in line and "'first'" in line and "'second'" in line
    assert await missing(api, "PVE")  # refused before anything reached the server


# --- jetplug streams plan | apply ----------------------------------------------------------------


@pytest.fixture(scope="session")
def provtest_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/fixtures/provisioning_plugin installed into a private directory (not .venv)."""
    target = tmp_path_factory.mktemp("provtest-plugin")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(FIXTURE),
        ],
        check=True,
        timeout=50,
        capture_output=True,
    )
    return target


async def streams_cli(config: Path, plugin_path: Path, *args: str) -> tuple[int, str, str]:
    """`jetplug streams ARGS -c CONFIG -p provtest` with the test plugin importable."""
    return await run_cli_async(
        "--log-level",
        "warning",
        "streams",
        *args,
        "-c",
        str(config),
        "-p",
        "provtest",
        cwd=config.parent,
        env=jetplug_env(PYTHONPATH=str(plugin_path)),
    )


def write_config(path: Path, url: str, **plugin: Any) -> None:
    table = "\n".join(f"{k} = {json.dumps(v)}" for k, v in plugin.items())
    path.write_text(
        f'[nats]\nservers = ["{url}"]\n\n[jetstream.dlq]\nstream = "DLQ_PVCLI"\n'
        f'subject_prefix = "dlqpvcli"\n\n[plugins.provtest]\nstream = "PVCLI"\n{table}\n'
    )


async def test_streams_plan_and_apply(nats_server, api, provtest_path, tmp_path) -> None:
    config = tmp_path / "jetplug.toml"
    write_config(config, nats_server.url, max_age=60)

    code, out, err = await streams_cli(config, provtest_path, "plan")
    assert code == 1, err
    assert "+ create stream PVCLI  (declared by provtest)" in out
    assert "+ create consumer PVCLI/worker  (declared by provtest)" in out
    assert "+ create stream DLQ_PVCLI  (declared by jetplug)" in out
    assert "3 change(s) to apply" in out
    assert await missing(api, "PVCLI")

    code, out, err = await streams_cli(config, provtest_path, "apply")
    assert code == 0, err
    assert "3 change(s) applied" in out
    assert (await api.stream_info("PVCLI"))["config"]["max_age"] == 60 * NS
    assert not await missing(api, "PVCLI", "worker") and not await missing(api, "DLQ_PVCLI")

    code, out, err = await streams_cli(config, provtest_path, "plan")
    assert code == 0, err
    assert "= keep stream PVCLI" in out and "0 change(s) to apply" in out

    write_config(config, nats_server.url, max_age=120, ack_wait=10)
    code, out, err = await streams_cli(config, provtest_path, "plan", "--json")
    assert code == 1, err
    plan = {c["target"]: c for c in json.loads(out)}
    assert plan["PVCLI"]["action"] == "update" and plan["DLQ_PVCLI"]["action"] == "none"
    assert {"field": "max_age", "current": 60 * NS, "wanted": 120 * NS, "immutable": False} in plan[
        "PVCLI"
    ]["diffs"]
    assert plan["PVCLI/worker"]["diffs"] == [
        {"field": "ack_wait", "current": 30 * NS, "wanted": 10 * NS, "immutable": False}
    ]
    code, out, err = await streams_cli(config, provtest_path, "apply")
    assert code == 0, err
    assert "~ update stream PVCLI" in out and "2 change(s) applied" in out
    assert (await api.stream_info("PVCLI"))["config"]["max_age"] == 120 * NS
    assert (await api.consumer_info("PVCLI", "worker"))["config"]["ack_wait"] == 10 * NS
    code, _, err = await streams_cli(config, provtest_path, "plan")
    assert code == 0, err

    write_config(config, nats_server.url, max_age=120, ack_wait=10, storage="memory")
    code, out, err = await streams_cli(config, provtest_path, "plan")
    assert code == 1, err
    assert "storage: file -> memory (immutable: the server cannot change it)" in out
    assert "1 blocked (immutable)" in out
    code, out, err = await streams_cli(config, provtest_path, "apply")
    assert code == 1
    assert "stream PVCLI: storage is file on the server, declared memory" in err
    assert "Traceback" not in err
    assert (await api.stream_info("PVCLI"))["config"]["storage"] == "file"
