"""ack_consumer passes the test kit's conformance check for consumer plugins."""

from __future__ import annotations

import pytest
from ack_support import PLUGIN, ack, config
from jetplug.testing import check_consumer_plugin
from jetplug_caf_common.testing import token


@pytest.mark.timeout(90)
async def test_ack_consumer_conforms(nats_server) -> None:
    tok = token()
    name, plugin = PLUGIN
    report = await check_consumer_plugin(
        plugin,
        name=name,
        server=nats_server,
        config=config(tok, ack_wait=5.0),
        subject=f"t{tok}.ack",
        valid_message=lambda i: ack(f"conformance-{i}"),
    )
    assert report.ok, str(report)
    assert report.check("dead_letters_bad_payload").detail.startswith(
        "terminated on delivery 1 with reason 'invalid_payload'"
    )
