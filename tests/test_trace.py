"""W3C traceparent crosses a consume -> publish hop without plugin code."""

from __future__ import annotations

from typing import Any

from jetplug import ACK, ConsumerSpec, StreamSpec, hookimpl, trace
from jetplug.message import Message
from jetplug.testing import running_host, wait_until


class Relay:
    """Consumes trace_in.* and republishes to trace_out.* through the host publisher."""

    host: Any = None

    @hookimpl
    def register_streams(self) -> list[StreamSpec]:
        return [StreamSpec("TRACE_IN", ("trace_in.>",)), StreamSpec("TRACE_OUT", ("trace_out.>",))]

    @hookimpl
    def register_consumers(self) -> list[ConsumerSpec]:
        return [ConsumerSpec("TRACE_IN", "relay")]

    @hookimpl
    def startup(self, host: Any) -> None:
        self.host = host

    @hookimpl
    async def handle_message(self, msg: Message) -> Any:
        await self.host.publisher.publish("trace_out." + msg.subject.split(".", 1)[1], msg.data)
        return ACK


def test_parse_rejects_invalid_values() -> None:
    assert trace.parse("00-" + "a" * 32 + "-" + "b" * 16 + "-01") == ("a" * 32, "b" * 16, "01")
    for bad in [
        "",
        "junk",
        "00-" + "0" * 32 + "-" + "b" * 16 + "-01",
        "ff-" + "a" * 32 + "-" + "b" * 16 + "-01",
    ]:
        assert trace.parse(bad) is None


async def test_traceparent_propagates_through_a_hop(nats_server, nc, monkeypatch) -> None:
    # the W3C path alone: an OpenTelemetry provider set by another test would write spans
    monkeypatch.setattr("jetplug.otel.INSTALLED", False)
    incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    async with running_host(("relay", Relay()), server=nats_server) as h:
        await h.publish("trace_in.a", b"traced", headers={"traceparent": incoming})
        js = nc.jetstream()
        await js.publish("trace_in.b", b"untraced")  # a plain client: no traceparent at all

        async def two_out() -> bool:
            return (await js.stream_info("TRACE_OUT")).state.messages >= 2

        await wait_until(two_out)
        traced = await js.get_last_msg("TRACE_OUT", "trace_out.a")
        untraced = await js.get_last_msg("TRACE_OUT", "trace_out.b")
    out = trace.parse(traced.headers["traceparent"])
    assert out is not None and out[0] == "4bf92f3577b34da6a3ce929d0e0e4736", "same trace id"
    assert out[1] != "00f067aa0ba902b7", "a new span id for the new hop"
    assert "traceparent" not in (untraced.headers or {}), "no trace invented, none leaked"
