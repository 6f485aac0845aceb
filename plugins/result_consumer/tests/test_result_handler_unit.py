"""The result handler on its own, without pluggy or a server: the order of its side effects."""

from __future__ import annotations

from typing import Any

import pytest
from jetplug import ACK, PubAck, PublishError
from jetplug_caf_common.events import ResultProcessed, UsageEmitted
from jetplug_caf_common.state import AssignmentRecord
from jetplug_result_consumer.config import ResultConsumerSettings
from jetplug_result_consumer.handler import ResultHandler

RESULT = b'{"assignment_id":"a","status":"success","tenant_id":"t","cost":1.5}'


class Fakes:
    """An in-memory store and publisher that log every call in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.records: dict[str, AssignmentRecord] = {}
        self.published: dict[str, bytes] = {}
        self.publish_error: Exception | None = None
        self.write_error: Exception | None = None

    async def get(self, assignment_id: str) -> AssignmentRecord | None:
        self.calls.append("get")
        return self.records.get(assignment_id)

    async def apply(self, assignment_id: str, change: Any) -> tuple[AssignmentRecord | None, bool]:
        self.calls.append("apply")
        current = self.records.get(assignment_id)
        new = change(current)
        if new is None:
            return current, False
        if self.write_error is not None:
            raise self.write_error
        self.records[assignment_id] = new
        return new, True

    async def publish(self, subject: str, data: bytes, *, msg_id: str = "", **_: Any) -> PubAck:
        self.calls.append("publish")
        if self.publish_error is not None:
            raise self.publish_error
        duplicate = msg_id in self.published
        self.published.setdefault(msg_id, data)
        return PubAck("USAGE", len(self.published), duplicate)


def make() -> tuple[ResultHandler, Fakes, list[Any]]:
    fakes, events = Fakes(), []

    async def notify(hook: str, **kwargs: Any) -> None:
        fakes.calls.append(hook)

    return (
        ResultHandler(ResultConsumerSettings(), fakes, fakes, events.append, notify),
        fakes,
        events,
    )


async def test_usage_is_stored_before_the_record_and_the_ack() -> None:
    handler, fakes, events = make()
    assert await handler.handle(RESULT, {}, 5000) == ACK
    assert fakes.calls == ["get", "publish", "apply", "caf_assignment_completed"]
    assert list(fakes.published) == ["usage-a"]
    assert fakes.records["a"].usage_billed and fakes.records["a"].result_at == 5000
    assert [type(e) for e in events] == [UsageEmitted, ResultProcessed]


async def test_a_failed_usage_publish_raises_before_any_record_write() -> None:
    handler, fakes, events = make()
    fakes.publish_error = PublishError("no_stream", "beamline.usage.v1.metered", "no stream")
    with pytest.raises(PublishError):
        await handler.handle(RESULT, {}, 5000)
    assert fakes.calls == ["get", "publish"] and fakes.records == {} and events == []


async def test_a_failed_record_write_is_retried_without_billing_twice() -> None:
    handler, fakes, events = make()
    fakes.write_error = RuntimeError("kv down")
    with pytest.raises(RuntimeError):
        await handler.handle(RESULT, {}, 5000)
    fakes.write_error = None
    assert await handler.handle(RESULT, {}, 5000) == ACK
    assert [e.duplicate for e in events if isinstance(e, UsageEmitted)] == [False, True]
    assert len(fakes.published) == 1 and fakes.records["a"].usage_billed
    # and once recorded, a redelivery is a duplicate that publishes nothing
    fakes.calls.clear()
    assert await handler.handle(RESULT, {}, 5000) == ACK
    assert fakes.calls == ["get"]
    outcomes = [e.outcome for e in events if isinstance(e, ResultProcessed)]
    assert outcomes == ["unknown_assignment", "duplicate"]
