"""Helpers of the ack consumer's tests: unique names, payloads, records, stream reads, processes."""

from __future__ import annotations

import json
from typing import Any

import jetplug_ack_consumer.plugin as ack_plugin
import msgspec
from jetplug import KeyValueSpec, StreamSpec, hookimpl
from jetplug.message import Message
from jetplug_ack_consumer.config import AckConsumerSettings
from jetplug_caf_common.testing import dead_letters as common_dead_letters

PLUGIN = ("ack_consumer", ack_plugin)


def settings(tok: str, **overrides: Any) -> dict[str, Any]:
    """The ``[plugins.ack_consumer]`` table of one test: unique names, short retry delays."""
    table: dict[str, Any] = {
        "stream": f"ACK_{tok}",
        "subject": f"t{tok}.ack",
        "durable": f"acks-{tok}",
        "bucket": f"caf_{tok}",
        "retry_delays": [0.2, 0.4],
        "max_deliver": 3,
    }
    table.update(overrides)
    return table


def config(tok: str, **overrides: Any) -> dict[str, Any]:
    """A host config whose only plugin table is the ack consumer's."""
    return {"plugins": {"ack_consumer": settings(tok, **overrides)}}


def ack(
    assignment_id: str, status: str = "accepted", tenant: str | None = "acme", **extra: Any
) -> bytes:
    """An ExecAssignmentAck payload."""
    body: dict[str, Any] = {"assignment_id": assignment_id, "status": status, **extra}
    if tenant is not None:
        body["tenant_id"] = tenant
    return json.dumps(body).encode()


class Declarer:
    """A test plugin declaring the ack stream and the bucket, without a consumer: a host that
    only publishes and reads state while other processes consume."""

    def __init__(self, table: dict[str, Any]) -> None:
        self.settings = msgspec.convert(table, AckConsumerSettings)

    @hookimpl
    def register_streams(self) -> list[StreamSpec]:
        return [self.settings.stream_spec()]

    @hookimpl
    def register_kv_buckets(self) -> list[KeyValueSpec]:
        return [self.settings.bucket_spec()]


class Observer:
    """A test plugin: sees each delivery first (and passes), and records the CAF hooks."""

    def __init__(self) -> None:
        self.deliveries: dict[int, list[tuple[int, int]]] = {}
        self.acked: list[tuple[Any, Any]] = []

    @hookimpl(tryfirst=True)
    def handle_message(self, msg: Message) -> None:
        self.deliveries.setdefault(msg.stream_seq, []).append((msg.deliveries, msg.timestamp_ns))

    @hookimpl
    def caf_assignment_acked(self, record: Any, ack: Any) -> None:
        self.acked.append((record, ack))

    def stored_ms(self, seq: int) -> int:
        """The stream time of a delivered message, as the plugin reads it."""
        return self.deliveries[seq][0][1] // 1_000_000


async def dead_letters(nc: Any, tok: str, count: int) -> dict[int, Any]:
    """The dead letters of this test's consumer, by original stream sequence."""
    return await common_dead_letters(nc, f"ACK_{tok}", f"acks-{tok}", count)
