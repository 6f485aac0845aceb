"""Every ExecAssignment field rule through the Python API, against a real server.

Invalid input is rejected before anything is published, with the field path named; the stored
message carries the contract's fields and headers; the same assignment_id twice is one message.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

import pytest
from caf_adapter_helpers import DECISION, REQUEST, Observer, adapter_host, decision, request
from jetplug_caf_adapter import AssignmentError, AssignResult, publish_assignment
from jetplug_caf_common.events import AssignmentFailed, AssignmentPublished

AID = str(uuid.uuid4())

#: (label, request, decision, field the error must name)
INVALID: list[tuple[str, Any, Any, str]] = [
    ("request not an object", ["acme"], DECISION, "request"),
    ("tenant missing", request(tenant_id=None), DECISION, "request.tenant_id"),
    ("tenant empty", request(tenant_id=""), DECISION, "request.tenant_id"),
    ("tenant not a string", request(tenant_id=42), DECISION, "request.tenant_id"),
    ("tenant 257 bytes", request(tenant_id="t" * 257), DECISION, "request.tenant_id"),
    ("tenant 129 chars = 258 bytes", request(tenant_id="é" * 129), DECISION, "request.tenant_id"),
    (
        "tenant with a newline",
        request(tenant_id="acme\r\nX-Evil: 1"),
        DECISION,
        "request.tenant_id",
    ),
    ("request_id missing", request(request_id=None), DECISION, "request.request_id"),
    ("request_id empty", request(request_id=""), DECISION, "request.request_id"),
    ("request_id 'undefined'", request(request_id="undefined"), DECISION, "request.request_id"),
    ("request_id not a string", request(request_id=7), DECISION, "request.request_id"),
    ("task missing", request(task=None), DECISION, "request.task"),
    ("task not an object", request(task="text.generate"), DECISION, "request.task"),
    ("task.type missing", request(task={"payload_ref": "s3://x"}), DECISION, "request.task.type"),
    ("task.type empty", request(task={"type": ""}), DECISION, "request.task.type"),
    (
        "task.payload_ref not a string",
        request(task={"type": "t", "payload_ref": 5}),
        DECISION,
        "request.task.payload_ref",
    ),
    ("options not an object", request(options=[1]), DECISION, "request.options"),
    (
        "options.priority > 100",
        request(options={"priority": 101}),
        DECISION,
        "request.options.priority",
    ),
    (
        "options.deadline_ms 0",
        request(options={"deadline_ms": 0}),
        DECISION,
        "request.options.deadline_ms",
    ),
    (
        "options.deadline_ms float",
        request(options={"deadline_ms": 1.5}),
        DECISION,
        "request.options.deadline_ms",
    ),
    (
        "options.retry.max_attempts 0",
        request(options={"retry": {"max_attempts": 0}}),
        DECISION,
        "request.options.retry.max_attempts",
    ),
    (
        "options.retry.backoff_ms < 0",
        request(options={"retry": {"backoff_ms": -1}}),
        DECISION,
        "request.options.retry.backoff_ms",
    ),
    ("trace_id empty", request(trace_id=""), DECISION, "request.trace_id"),
    ("trace_id 129 chars", request(trace_id="t" * 129), DECISION, "request.trace_id"),
    ("metadata not an object", request(metadata="x"), DECISION, "request.metadata"),
    ("decision not an object", REQUEST, "openai", "decision"),
    ("provider missing", REQUEST, decision(provider_id=None), "decision.provider_id"),
    ("provider empty", REQUEST, decision(provider_id=""), "decision.provider_id"),
    ("provider 129 bytes", REQUEST, decision(provider_id="p" * 129), "decision.provider_id"),
    (
        "provider 65 chars = 130 bytes",
        REQUEST,
        decision(provider_id="é" * 65),
        "decision.provider_id",
    ),
    ("priority missing", REQUEST, decision(priority=None), "decision.priority"),
    ("priority < 0", REQUEST, decision(priority=-1), "decision.priority"),
    ("priority > 100", REQUEST, decision(priority=101), "decision.priority"),
    ("priority a bool", REQUEST, decision(priority=True), "decision.priority"),
    (
        "latency missing",
        REQUEST,
        decision(expected_latency_ms=None),
        "decision.expected_latency_ms",
    ),
    ("latency < 0", REQUEST, decision(expected_latency_ms=-1), "decision.expected_latency_ms"),
    (
        "latency > 1 h",
        REQUEST,
        decision(expected_latency_ms=3_600_001),
        "decision.expected_latency_ms",
    ),
    (
        "latency a float",
        REQUEST,
        decision(expected_latency_ms=850.5),
        "decision.expected_latency_ms",
    ),
    (
        "latency a string",
        REQUEST,
        decision(expected_latency_ms="850"),
        "decision.expected_latency_ms",
    ),
    ("cost missing", REQUEST, decision(expected_cost=None), "decision.expected_cost"),
    ("cost < 0", REQUEST, decision(expected_cost=-0.01), "decision.expected_cost"),
    ("cost a string", REQUEST, decision(expected_cost="cheap"), "decision.expected_cost"),
    ("reason missing", REQUEST, decision(reason=None), "decision.reason"),
    ("reason unknown", REQUEST, decision(reason="random"), "decision.reason"),
    ("decision.metadata not an object", REQUEST, decision(metadata=[1]), "decision.metadata"),
]

#: inputs at the edge of each rule, all valid
BOUNDARY: list[tuple[str, Any, Any]] = [
    ("tenant 256 bytes", request(tenant_id="t" * 256), DECISION),
    ("tenant 128 chars = 256 bytes", request(tenant_id="é" * 128), DECISION),
    ("tenant 1 byte", request(tenant_id="a"), DECISION),
    ("provider 128 bytes", REQUEST, decision(provider_id="p" * 128)),
    ("provider 1 byte", REQUEST, decision(provider_id="p")),
    ("priority 0", REQUEST, decision(priority=0)),
    ("priority 100", REQUEST, decision(priority=100)),
    ("latency 0", REQUEST, decision(expected_latency_ms=0)),
    ("latency 1 h", REQUEST, decision(expected_latency_ms=3_600_000)),
    ("cost 0 as an int", REQUEST, decision(expected_cost=0)),
    ("reason weighted", REQUEST, decision(reason="weighted")),
    ("reason sticky", REQUEST, decision(reason="sticky")),
    ("reason fallback", REQUEST, decision(reason="fallback")),
    ("no optional request field", request(trace_id=None, metadata=None, options=None), DECISION),
    ("options null", {**REQUEST, "options": None}, DECISION),
    ("task with only a type", request(task={"type": "t"}), DECISION),
]


async def stream_count(nc: Any, stream: str) -> int:
    return int((await nc.jetstream().stream_info(stream)).state.messages)


async def test_every_invalid_input_is_rejected_before_publish_naming_the_field(
    nats_server, nc, names
) -> None:
    async with adapter_host(nats_server, names.config()) as h:
        wrong = []
        for label, req, dec, field in INVALID:
            try:
                await publish_assignment(req, dec)
            except AssignmentError as exc:
                ok = (
                    exc.kind == "invalid"
                    and exc.field == field
                    and str(exc).startswith(f"{field}:")
                )
                if not ok or exc.assignment_id is not None or exc.exit_code != 2:
                    wrong.append(f"{label}: kind={exc.kind} field={exc.field!r} text={exc}")
            else:
                wrong.append(f"{label}: accepted")
        assert not wrong, "\n".join(wrong)
        with pytest.raises(AssignmentError) as err:
            await publish_assignment(REQUEST, DECISION, assignment_id="a1234567890-12345")
        assert err.value.field == "assignment_id"
        failed = h.events_of(AssignmentFailed)
        assert len(failed) == len(INVALID) + 1 and {e.kind for e in failed} == {"invalid"}
        assert h.events_of(AssignmentPublished) == []
    assert await stream_count(nc, names.stream) == 0, "nothing reached the stream"


async def test_inputs_at_the_edge_of_each_rule_are_published(nats_server, nc, names) -> None:
    async with adapter_host(nats_server, names.config()) as h:
        for label, req, dec in BOUNDARY:
            result = await publish_assignment(req, dec)
            assert result.outcome == "published", label
        assert len(h.events_of(AssignmentPublished)) == len(BOUNDARY)
    assert await stream_count(nc, names.stream) == len(BOUNDARY)


async def test_stored_message_and_headers(nats_server, nc, names) -> None:
    hex_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    async with adapter_host(nats_server, names.config()) as h:
        result = await publish_assignment(REQUEST, DECISION)
        hexed = await publish_assignment(request(trace_id=hex_trace), DECISION)
        untraced = await publish_assignment(request(trace_id=None), DECISION)
        published = h.events_of(AssignmentPublished)[0]
    assert isinstance(result, AssignResult)
    assert result.outcome == "published" and result.stream == names.stream and result.seq == 1
    assert result.attempts == 1 and not result.duplicate and result.recorded
    assert uuid.UUID(result.assignment_id).version == 4
    assert (published.assignment_id, published.tenant_id, published.stream, published.seq) == (
        result.assignment_id,
        "acme",
        names.stream,
        1,
    )

    js = nc.jetstream()
    msg = await js.get_msg(names.stream, result.seq)
    assert msg.subject == names.subject
    headers = msg.headers
    assert headers["Nats-Msg-Id"] == result.assignment_id
    assert (
        headers["tenant_id"] == "acme"
        and headers["version"] == "1"
        and headers["trace_id"] == "tr-123"
    )
    assert re.fullmatch(r"00-[0-9a-f]{32}-[0-9a-f]{16}-01", headers["traceparent"])
    body = json.loads(msg.data)
    assert body["version"] == "1" and body["assignment_id"] == result.assignment_id
    assert body["request_id"] == REQUEST["request_id"] and body["tenant_id"] == "acme"
    assert body["executor"] == {"provider_id": "openai:gpt-4o", "channel": "nats"}
    assert body["job"] == REQUEST["task"]
    assert body["options"] == {
        "priority": 50,
        "deadline_ms": 5000,
        "retry": {"max_attempts": 2, "backoff_ms": 200},
    }
    assert body["correlation"] == {"trace_id": "tr-123"} and body["metadata"] == {"user_id": "u-42"}
    assert body["decision"] == DECISION

    hexed_msg = await js.get_msg(names.stream, hexed.seq)
    assert hexed_msg.headers["traceparent"].split("-")[1] == hex_trace
    plain = await js.get_msg(names.stream, untraced.seq)
    assert "trace_id" not in plain.headers and "traceparent" in plain.headers
    assert json.loads(plain.data)["correlation"] == {}


@pytest.mark.parametrize(
    ("latency", "deadline"),
    [(100, 5000), (1000, 5000), (2000, 10000), (5000, 25000), (15000, 60000)],
)
async def test_deadline_table_on_the_wire(
    nats_server, nc, names, latency: int, deadline: int
) -> None:
    async with adapter_host(nats_server, names.config()):
        result = await publish_assignment(REQUEST, decision(expected_latency_ms=latency))
        override = await publish_assignment(
            request(options={"deadline_ms": 1234}), decision(expected_latency_ms=latency)
        )
    assert result.deadline_ms == deadline and override.deadline_ms == 1234
    msg = await nc.jetstream().get_msg(names.stream, result.seq)
    assert json.loads(msg.data)["options"]["deadline_ms"] == deadline
    msg = await nc.jetstream().get_msg(names.stream, override.seq)
    assert json.loads(msg.data)["options"]["deadline_ms"] == 1234


async def test_the_same_assignment_id_twice_is_one_message(nats_server, nc, names) -> None:
    observer = Observer()
    async with adapter_host(nats_server, names.config(), ("observer", observer)) as h:
        first = await publish_assignment(REQUEST, DECISION, assignment_id=AID)
        again = await publish_assignment(REQUEST, DECISION, assignment_id=AID)
        assert (first.assignment_id, again.assignment_id) == (AID, AID)
        assert (first.duplicate, again.duplicate) == (False, True)
        assert again.seq == first.seq and again.stream == first.stream
        assert [e.duplicate for e in h.events_of(AssignmentPublished)] == [False, True]
        assert len(observer.published) == 1, "the hook fires once: the duplicate changed no record"
        other = await publish_assignment(REQUEST, DECISION)
        assert other.assignment_id != AID and other.seq == first.seq + 1
    assert await stream_count(nc, names.stream) == 2


async def test_publish_assignment_without_a_running_plugin_is_a_clear_error() -> None:
    with pytest.raises(AssignmentError) as err:
        await publish_assignment(REQUEST, DECISION)
    assert err.value.kind == "not_started" and "caf_adapter" in str(err.value)
