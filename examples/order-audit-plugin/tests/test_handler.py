"""The auditor on its own: no pluggy, no server; a dict stands in for the bucket."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from jetplug import ACK, Term

from jetplug_order_audit.config import Settings
from jetplug_order_audit.handler import Auditor


@dataclass
class Entry:
    value: bytes


class FakeBucket:
    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}

    async def create(self, key: str, value: bytes) -> int | None:
        if key in self.data:
            return None
        self.data[key] = value
        return len(self.data)

    async def get(self, key: str) -> Entry | None:
        return Entry(self.data[key]) if key in self.data else None


def order(**changes: Any) -> bytes:
    body = {
        "order_id": "o-1",
        "customer_id": "c-1",
        "currency": "EUR",
        "total_cents": 1250,
        "lines": [
            {"sku": "A", "qty": 2, "unit_cents": 500},
            {"sku": "B", "qty": 1, "unit_cents": 250},
        ],
    }
    body.update(changes)
    return json.dumps(body).encode()


def auditor() -> tuple[Auditor, FakeBucket, list[tuple[str, bytes, dict[str, Any]]]]:
    bucket, sent = FakeBucket(), []

    async def publish(subject: str, data: bytes, **kw: Any) -> None:
        sent.append((subject, data, kw))

    return Auditor(Settings(), bucket, publish), bucket, sent


async def test_an_order_is_recorded_and_announced_once_per_msg_id() -> None:
    a, bucket, sent = auditor()
    assert await a.handle(order(), placed_at_ms=1000) == ACK
    assert json.loads(bucket.data["o-1"])["total_cents"] == 1250
    [(subject, data, kw)] = sent
    assert subject == "shop.orders.v1.audited" and json.loads(data)["order_id"] == "o-1"
    assert kw == {"msg_id": "order-audited-o-1", "plugin": "order_audit"}
    # a redelivery: the same record is there, the event goes out again with the same msg-id
    assert await a.handle(order(), placed_at_ms=1000) == ACK
    assert sent[1] == sent[0]


async def test_the_same_order_id_with_other_content_is_dead_lettered() -> None:
    a, _, _ = auditor()
    await a.handle(order(), placed_at_ms=1000)
    decision = await a.handle(order(customer_id="c-2"), placed_at_ms=2000)
    assert isinstance(decision, Term) and decision.reason == "conflicting_order"


async def test_invalid_orders_are_terminated_naming_the_field() -> None:
    a, bucket, sent = auditor()
    cases = [
        (b"{nope", "invalid_payload", "not valid JSON"),
        (order(order_id="has space"), "invalid_payload", "$.order_id"),
        (order(lines=[]), "invalid_payload", "$.lines"),
        (order(total_cents=-1), "invalid_payload", "$.total_cents"),
        (order(currency="XXX"), "currency_not_allowed", "currency: 'XXX'"),
        (order(total_cents=1), "total_mismatch", "lines add up to 1250"),
    ]
    for payload, reason, says in cases:
        decision = await a.handle(payload, placed_at_ms=0)
        assert isinstance(decision, Term) and decision.reason == reason, (payload, decision)
        assert says in decision.error, (payload, decision.error)
    assert bucket.data == {} and sent == []
