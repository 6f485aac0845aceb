"""The ack handler on its own, without pluggy or a server: an in-memory store stands in."""

from __future__ import annotations

from typing import Any

import pytest
from jetplug import ACK, Term
from jetplug_ack_consumer.config import AckConsumerSettings
from jetplug_ack_consumer.handler import AckHandler
from jetplug_caf_common.events import AckProcessed
from jetplug_caf_common.state import AssignmentRecord


class MemoryStore:
    """Compare-and-set semantics without the server; ``fail`` makes every write raise."""

    def __init__(self) -> None:
        self.records: dict[str, AssignmentRecord] = {}
        self.fail: Exception | None = None

    async def apply(self, assignment_id: str, change: Any) -> tuple[AssignmentRecord | None, bool]:
        current = self.records.get(assignment_id)
        new = change(current)
        if new is None:
            return current, False
        if self.fail is not None:
            raise self.fail
        self.records[assignment_id] = new
        return new, True


def make(**settings: Any) -> tuple[AckHandler, MemoryStore, list[Any], list[tuple[str, Any]]]:
    store, events, hooks = MemoryStore(), [], []

    async def notify(hook: str, **kwargs: Any) -> None:
        hooks.append((hook, kwargs))

    handler = AckHandler(AckConsumerSettings(**settings), store, events.append, notify)
    return handler, store, events, hooks


async def test_a_store_failure_raises_and_records_nothing() -> None:
    handler, store, events, hooks = make()
    store.fail = RuntimeError("kv down")
    with pytest.raises(RuntimeError, match="kv down"):
        await handler.handle(b'{"assignment_id":"a","status":"accepted","tenant_id":"t"}', {}, 1000)
    assert store.records == {} and events == [] and hooks == []


async def test_processed_then_duplicate() -> None:
    handler, store, events, hooks = make()
    data = b'{"assignment_id":"a","status":"accepted","tenant_id":"t"}'
    assert await handler.handle(data, {}, 1000) == ACK
    assert await handler.handle(data, {}, 2000) == ACK
    assert store.records["a"].acked_at == 1000
    assert [(e.outcome, e.latency_ms) for e in events if isinstance(e, AckProcessed)] == [
        ("unknown_assignment", None),
        ("duplicate", None),
    ]
    assert [h for h, _ in hooks] == ["caf_assignment_acked"]


async def test_strict_refuses_without_writing() -> None:
    handler, store, events, _ = make(strict=True)
    decision = await handler.handle(
        b'{"assignment_id":"a","status":"error","tenant_id":"t"}', {}, 1
    )
    assert isinstance(decision, Term) and decision.reason == "unknown_assignment"
    assert store.records == {} and events == []
