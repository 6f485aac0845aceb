"""order_audit against a real nats-server, through jetplug's test kit (jetplug.testing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from typing import Any

from jetplug.testing import check_consumer_plugin, running_host

import jetplug_order_audit.plugin as plugin

PLUGIN = (plugin.NAME, plugin)


def unique() -> tuple[dict[str, Any], str]:
    """A config with this test's own stream, subjects, consumer and bucket."""
    tok = uuid.uuid4().hex[:8]
    table = {
        "stream": f"ORDERS_{tok}",
        "stream_subjects": [f"shop{tok}.orders.>"],
        "subject": f"shop{tok}.orders.placed",
        "audited_subject": f"shop{tok}.orders.audited",
        "durable": f"audit-{tok}",
        "bucket": f"audit_{tok}",
        "retry_delays": [0.1, 0.2],  # fast retries in tests
        "ack_wait": 5.0,  # a delivery lost in a restart comes back soon
        "max_deliver": 3,
    }
    return {"plugins": {plugin.NAME: table}}, table["subject"]


def order(i: int, total: int = 500) -> bytes:
    return json.dumps(
        {
            "order_id": f"o-{i}",
            "customer_id": "c-1",
            "currency": "EUR",
            "total_cents": total,
            "lines": [{"sku": "A", "qty": 1, "unit_cents": 500}],
        }
    ).encode()


async def test_an_order_is_recorded_and_announced(nats_server, nc) -> None:
    config, subject = unique()
    table = config["plugins"]["order_audit"]
    async with running_host(PLUGIN, config=config, server=nats_server) as h:
        out = await h.publish_and_wait(subject, order(1))
        assert out.acked, out.describe()
        entry = await h.host.kv(table["bucket"]).get("o-1")
        assert entry is not None and json.loads(entry.value)["total_cents"] == 500
    audited = await nc.jetstream().get_last_msg(table["stream"], table["audited_subject"])
    assert json.loads(audited.data) == {"order_id": "o-1", "currency": "EUR", "total_cents": 500}
    assert audited.headers["Nats-Msg-Id"] == "order-audited-o-1"


async def test_a_wrong_total_is_dead_lettered_with_its_reason(nats_server) -> None:
    config, subject = unique()
    async with running_host(PLUGIN, config=config, server=nats_server) as h:
        out = await h.publish_and_wait(subject, order(2, total=499))
        assert out.dead_lettered and out.reason == "total_mismatch", out.describe()
        [letter] = await h.dead_letters(out.handled.consumer, reason="total_mismatch")
        assert letter.error == "total_cents: 499, but the lines add up to 500"


async def test_conformance(nats_server) -> None:
    config, subject = unique()
    await check_consumer_plugin(
        plugin,
        name=plugin.NAME,
        server=nats_server,
        config=config,
        subject=subject,
        valid_message=order,
    )


def test_config_problems_are_reported_with_their_key(tmp_path) -> None:
    (tmp_path / "bad.toml").write_text(
        '[plugins.order_audit]\nenabled = true\naudited_subject = "elsewhere.audited"\n'
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from jetplug.cli import main; main()",
            "config",
            "check",
            "-c",
            "bad.toml",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("JETPLUG_")},
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "plugins.order_audit.audited_subject: 'elsewhere.audited' is not in stream_subjects" in (
        done.stderr
    )


def test_it_is_opt_in(tmp_path) -> None:
    """Installed, the plugin stays off until named, so other configurations are unaffected."""

    def listed(*args: str) -> dict[str, Any]:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "from jetplug.cli import main; main()",
                "plugins",
                "--json",
                *args,
            ],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if not k.startswith("JETPLUG_")},
        )
        return {p["name"]: p for p in json.loads(done.stdout)}

    off = listed()["order_audit"]
    assert off["status"] == "disabled" and "opt-in" in off["reason"]
    assert listed("-p", "order_audit")["order_audit"]["status"] == "enabled"
