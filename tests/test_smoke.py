"""The server fixture is a real JetStream server."""

from __future__ import annotations

from nats.aio.client import Client as NATS


async def test_jetstream_publish_roundtrip(nc: NATS) -> None:
    js = nc.jetstream()
    await js.add_stream(name="SMOKE", subjects=["smoke.>"])
    ack = await js.publish("smoke.one", b"hello")
    assert ack.stream == "SMOKE" and ack.seq == 1
    msg = await js.get_msg("SMOKE", 1)
    assert msg.data == b"hello"
