"""Helpers of the result consumer's tests: names, payloads, records, stream reads, processes."""

from __future__ import annotations

import json
from typing import Any

import jetplug_result_consumer.plugin as result_plugin
import msgspec
from jetplug import KeyValueSpec, StreamSpec, hookimpl
from jetplug.message import Message
from jetplug_caf_common.testing import dead_letters as common_dead_letters
from jetplug_caf_common.testing import read_stream
from jetplug_result_consumer.config import ResultConsumerSettings

PLUGIN = ("result_consumer", result_plugin)


def settings(tok: str, **overrides: Any) -> dict[str, Any]:
    """The ``[plugins.result_consumer]`` table of one test: unique names, short retry delays."""
    table: dict[str, Any] = {
        "stream": f"RES_{tok}",
        "subject": f"t{tok}.result",
        "durable": f"results-{tok}",
        "usage_stream": f"USAGE_{tok}",
        "usage_subject": f"t{tok}.usage",
        "bucket": f"caf_{tok}",
        "retry_delays": [0.2, 0.4],
        "max_deliver": 3,
    }
    table.update(overrides)
    return table


def config(tok: str, **overrides: Any) -> dict[str, Any]:
    """A host config whose only plugin table is the result consumer's."""
    return {"plugins": {"result_consumer": settings(tok, **overrides)}}


def result(
    assignment_id: str, status: str = "success", tenant: str | None = "acme", **extra: Any
) -> bytes:
    """An ExecResult payload."""
    body: dict[str, Any] = {"assignment_id": assignment_id, "status": status, **extra}
    if tenant is not None:
        body["tenant_id"] = tenant
    return json.dumps(body).encode()


class Declarer:
    """A test plugin declaring the result and usage streams and the bucket, without a consumer:
    a host that only publishes and reads state while other processes consume."""

    def __init__(self, table: dict[str, Any], *extra: StreamSpec) -> None:
        self.settings = msgspec.convert(table, ResultConsumerSettings)
        self.extra = list(extra)

    @hookimpl
    def register_streams(self) -> list[StreamSpec]:
        return self.settings.stream_specs() + self.extra

    @hookimpl
    def register_kv_buckets(self) -> list[KeyValueSpec]:
        return [self.settings.bucket_spec()]


class Observer:
    """A test plugin: sees each delivery first (and passes), and records the CAF hooks."""

    def __init__(self) -> None:
        self.deliveries: dict[int, list[tuple[int, int]]] = {}
        self.completed: list[tuple[Any, Any]] = []

    @hookimpl(tryfirst=True)
    def handle_message(self, msg: Message) -> None:
        self.deliveries.setdefault(msg.stream_seq, []).append((msg.deliveries, msg.timestamp_ns))

    @hookimpl
    def caf_assignment_completed(self, record: Any, result: Any) -> None:
        self.completed.append((record, result))

    def stored_ms(self, seq: int) -> int:
        """The stream time of a delivered message, as the plugin reads it."""
        return self.deliveries[seq][0][1] // 1_000_000


async def dead_letters(nc: Any, tok: str, count: int) -> dict[int, Any]:
    """The dead letters of this test's consumer, by original stream sequence."""
    return await common_dead_letters(nc, f"RES_{tok}", f"results-{tok}", count)


async def usage_events(nc: Any, tok: str) -> list[tuple[dict[str, Any], Any]]:
    """Every usage event of this test, decoded, with its message (headers included)."""
    info = await nc.jetstream().stream_info(f"USAGE_{tok}")
    msgs = await read_stream(nc, f"USAGE_{tok}", f"t{tok}.usage", info.state.messages)
    return [(json.loads(m.data), m) for m in msgs]
