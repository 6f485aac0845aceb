"""The test kit plugin authors use (jetplug.testing): outcomes, consumer state, conformance."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from jetplug import ACK, ConsumerSpec, Nak, StreamSpec, Term, hookimpl
from jetplug.events import MessageHandled
from jetplug.host import Host
from jetplug.message import Message
from jetplug.testing import (
    ConformanceReport,
    check_consumer_plugin,
    publish_and_wait,
    running_host,
    subject_matches,
)


class JsonConsumer:
    """A well-behaved consumer plugin: JSON objects are acked, anything else is terminated."""

    name = "json_consumer"

    def __init__(self, token: str, *, max_deliver: int = 4) -> None:
        self.stream = f"KIT_{token}"
        self.subject = f"kit.{token}.in"
        self.durable = f"kit-{token}"
        self.max_deliver = max_deliver
        self.host: Host | None = None

    @hookimpl
    def register_streams(self) -> list[StreamSpec]:
        return [StreamSpec(self.stream, (f"kit.{self.stream[4:]}.>",), storage="memory")]

    @hookimpl
    def register_consumers(self) -> list[ConsumerSpec]:
        return [
            ConsumerSpec(
                self.stream,
                self.durable,
                (self.subject,),
                max_deliver=self.max_deliver,
                retry_delays=(0.1, 0.2),
                ack_wait=5,
            )
        ]

    @hookimpl
    def startup(self, host: Host) -> None:
        self.host = host

    @hookimpl
    async def handle_message(self, msg: Message) -> Any:
        if msg.consumer.owner != self.name:
            return None
        return self.decide(msg)

    def decide(self, msg: Message) -> Any:
        if msg.data == b"boom":
            raise RuntimeError("downstream unavailable")
        if msg.data == b"later":
            return Nak(delay=0.1) if msg.deliveries == 1 else ACK
        try:
            body = json.loads(msg.data)
        except ValueError as exc:
            return Term("invalid_payload", f"payload: not JSON ({exc})")
        if not isinstance(body, dict):
            return Term("invalid_payload", "payload: expected a JSON object")
        return ACK


def tok() -> str:
    return uuid.uuid4().hex[:8]


def test_subject_matches() -> None:
    assert subject_matches("a.b", "a.b") and not subject_matches("a.b", "a.b.c")
    assert subject_matches("a.*.c", "a.x.c") and not subject_matches("a.*", "a.x.c")
    assert subject_matches("a.>", "a.x.c") and not subject_matches("a.>", "a")


# --- publish_and_wait, events, consumer state --------------------------------------------------


async def test_publish_and_wait_reports_each_outcome(nats_server) -> None:
    plugin = JsonConsumer(tok())
    async with running_host((plugin.name, plugin), server=nats_server) as h:
        ok = await publish_and_wait(h, plugin.subject, b'{"id": 1}')
        assert ok.acked and ok.outcome == "ack" and ok.deliveries == 1
        assert ok.plugin == plugin.name and not ok.dead_lettered

        bad = await h.publish_and_wait(plugin.subject, b"[1]", {"tenant": "acme"})
        assert bad.terminated and bad.dead_lettered and bad.reason == "invalid_payload"
        assert bad.dead_letter is not None
        assert bad.dead_letter.error == "payload: expected a JSON object"
        [letter] = await h.dead_letters(f"{plugin.stream}/{plugin.durable}")
        assert letter.original_seq == bad.stream_seq and letter.headers["tenant"] == "acme"
        assert await h.dead_letters(plugin.durable, reason="max_deliver") == []

        first = await h.publish_and_wait(plugin.subject, b"later", final=False)
        assert first.outcome == "nak" and first.reason == "nak"
        final = await h.wait_outcome(first.pub_ack)
        assert final.acked and final.deliveries == 2
        assert [e.outcome for e in final.history] == ["nak", "ack"]

        failed = await h.publish_and_wait(plugin.subject, b"boom", final=False)
        assert failed.outcome == "nak" and "downstream unavailable" in failed.error

        assert len(h.events_of(MessageHandled, outcome="ack", consumer=plugin.durable)) == 2
        assert "nak (nak) by plugin 'json_consumer' on delivery 1" in first.describe()


async def test_wait_outcome_times_out_with_what_happened(nats_server) -> None:
    plugin = JsonConsumer(tok(), max_deliver=10)
    async with running_host((plugin.name, plugin), server=nats_server) as h:
        with pytest.raises(AssertionError, match=r"reached no final outcome .* seen so far: nak@1"):
            await h.publish_and_wait(plugin.subject, b"boom", timeout=0.05)


async def test_consumer_state_has_both_sides(nats_server) -> None:
    plugin = JsonConsumer(tok())
    async with running_host((plugin.name, plugin), server=nats_server) as h:
        for i in range(3):
            await h.publish_and_wait(plugin.subject, json.dumps({"i": i}).encode())
        state = await h.wait_settled(plugin.durable)
        assert state.state == "running" and state.runner is not None
        assert state.runner["handled"] == 3 and state.ack_floor == 3
        assert state.config["max_deliver"] == 4 and state.settled
        with pytest.raises(AssertionError, match="not declared by any plugin"):
            await h.consumer_state("nope")
        with pytest.raises(AssertionError, match="does not exist on the server"):
            await h.consumer_state("nope", plugin.stream)


# --- the conformance check ---------------------------------------------------------------------


async def conformance(plugin: Any, **kw: Any) -> ConformanceReport:
    kw.setdefault("timeout", 5.0)
    return await check_consumer_plugin(
        plugin,
        name=plugin.name,
        server=kw.pop("server"),
        subject=plugin.subject,
        valid_message=lambda i: json.dumps({"i": i}).encode(),
        raise_on_failure=False,
        **kw,
    )


async def test_a_well_behaved_plugin_passes_every_check(nats_server) -> None:
    plugin = JsonConsumer(tok())
    report = await conformance(plugin, server=nats_server, failing_message=b"boom")
    assert report.ok, str(report)
    assert [c.name for c in report.checks] == [
        "starts",
        "declares_consumer",
        "routes_subject",
        "acks_valid_message",
        "owner_check",
        "dead_letters_bad_payload",
        "redelivers_after_failure",
        "failing_message_redelivered",
        "shutdown_loses_nothing",
    ]
    assert report.consumer == f"{plugin.stream}/{plugin.durable}"
    assert "none lost" in report.check("shutdown_loses_nothing").detail
    report.assert_ok()


class RaisesOnBadPayload(JsonConsumer):
    name = "raiser"

    def decide(self, msg: Message) -> Any:
        json.loads(msg.data)  # a bad payload raises: retried until max_deliver
        return ACK


class NoOwnerCheck(JsonConsumer):
    name = "greedy"

    @hookimpl
    async def handle_message(self, msg: Message) -> Any:
        return self.decide(msg)


class NotIdempotent(JsonConsumer):
    name = "forgetful"

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.seen: set[bytes] = set()

    def decide(self, msg: Message) -> Any:
        if msg.data in self.seen:
            return Term("duplicate", "seen before")
        self.seen.add(msg.data)
        return super().decide(msg)


class TermsWhileStopping(JsonConsumer):
    name = "quitter"

    def decide(self, msg: Message) -> Any:
        assert self.host is not None
        if self.host.stopping:
            return Term("shutting_down", "host is stopping")
        return super().decide(msg)


@pytest.mark.parametrize(
    ("cls", "failed", "says"),
    [
        (
            RaisesOnBadPayload,
            "dead_letters_bad_payload",
            "was not terminated on its first delivery but nak'ed",
        ),
        (NoOwnerCheck, "owner_check", "answered a message of a consumer it does not own"),
        (NotIdempotent, "redelivers_after_failure", "handlers must be idempotent"),
        (TermsWhileStopping, "shutdown_loses_nothing", "were never acked"),
    ],
    ids=lambda v: v.__name__ if isinstance(v, type) else None,
)
async def test_each_misbehaviour_fails_its_check_with_advice(
    nats_server, cls: type[JsonConsumer], failed: str, says: str
) -> None:
    report = await conformance(cls(tok()), server=nats_server, timeout=2.0)
    assert [c.name for c in report.failures] == [failed], str(report)
    assert says in report.check(failed).detail
    with pytest.raises(AssertionError, match=failed):
        report.assert_ok()


class NoConsumer:
    name = "no_consumer"
    subject = "nowhere.x"


async def test_a_plugin_without_a_consumer_fails_and_the_rest_is_skipped(nats_server) -> None:
    report = await conformance(NoConsumer(), server=nats_server)
    assert report.check("declares_consumer").ok is False
    assert "declares no consumer" in report.check("declares_consumer").detail
    assert {c.name for c in report.checks if c.ok is None} >= {
        "routes_subject",
        "dead_letters_bad_payload",
        "shutdown_loses_nothing",
    }
    with pytest.raises(AssertionError, match="declares_consumer"):
        await check_consumer_plugin(
            NoConsumer(),
            name="no_consumer",
            server=nats_server,
            subject="nowhere.x",
            valid_message=b"{}",
        )


async def test_a_plugin_that_cannot_start_fails_starts(nats_server) -> None:
    class Broken(JsonConsumer):
        name = "broken"

        @hookimpl
        def startup(self, host: Host) -> None:
            raise RuntimeError("no database")

    report = await conformance(Broken(tok()), server=nats_server)
    assert [c.name for c in report.checks] == ["starts"]
    assert "no database" in report.checks[0].detail and not report.ok


async def test_interceptor_leaves_other_messages_alone(nats_server) -> None:
    """Messages without the conformance mark reach the plugin untouched, at full speed."""
    plugin = JsonConsumer(tok())
    async with running_host((plugin.name, plugin), server=nats_server) as h:
        outs = await asyncio.gather(
            *(h.publish_and_wait(plugin.subject, json.dumps({"i": i}).encode()) for i in range(20))
        )
        assert all(o.acked and o.deliveries == 1 for o in outs)
