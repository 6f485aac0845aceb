"""The request-reply subject: core NATS request in, pub-ack or a structured error out."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from caf_adapter_helpers import DECISION, REQUEST, adapter_host, request
from jetplug_caf_common.store import AssignmentStore


async def ask(nc: Any, subject: str, body: Any) -> dict[str, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    reply = await nc.request(subject, data, timeout=5)
    answer: dict[str, Any] = json.loads(reply.data)
    return answer


async def test_happy_path_replies_with_the_pub_ack(nats_server, nc, names) -> None:
    config = names.config(reply_subject=names.reply_subject)
    async with adapter_host(nats_server, config) as h:
        answer = await ask(nc, names.reply_subject, {"request": REQUEST, "decision": DECISION})
        assert answer["outcome"] == "published" and answer["stream"] == names.stream
        assert answer["seq"] == 1 and answer["duplicate"] is False
        aid = answer["assignment_id"]
        assert uuid.UUID(aid).version == 4
        record = await AssignmentStore(h.host, names.bucket).get(aid)
        assert record is not None and record.status == "published"
        again = await ask(
            nc,
            names.reply_subject,
            {"request": REQUEST, "decision": DECISION, "assignment_id": aid},
        )
        assert again["duplicate"] is True and again["seq"] == 1 and again["assignment_id"] == aid
    msg = await nc.jetstream().get_msg(names.stream, 1)
    assert msg.headers["Nats-Msg-Id"] == aid


@pytest.mark.parametrize(
    ("body", "kind", "field", "text"),
    [
        (b"{not json", "invalid", "", "payload: not valid JSON"),
        (b"\xff\xfe", "invalid", "", "payload: not valid JSON"),
        (b"[1, 2]", "invalid", "", "payload: expected a JSON object"),
        ({"decision": DECISION}, "invalid", "request", "request: required field is missing"),
        ({"request": REQUEST}, "invalid", "decision", "decision: required field is missing"),
        (
            {"request": request(tenant_id=None), "decision": DECISION},
            "invalid",
            "request.tenant_id",
            "request.tenant_id: required field is missing",
        ),
        (
            {"request": REQUEST, "decision": {**DECISION, "expected_latency_ms": -5}},
            "invalid",
            "decision.expected_latency_ms",
            "decision.expected_latency_ms:",
        ),
        (
            {"request": REQUEST, "decision": DECISION, "assignment_id": 5},
            "invalid",
            "assignment_id",
            "assignment_id: expected a string",
        ),
        (
            {"request": REQUEST, "decision": DECISION, "assignment_id": "x"},
            "invalid",
            "assignment_id",
            "assignment_id: expected a UUID v4",
        ),
    ],
)
async def test_errors_are_structured(
    nats_server, nc, names, body: Any, kind: str, field: str, text: str
) -> None:
    config = names.config(reply_subject=names.reply_subject)
    async with adapter_host(nats_server, config):
        answer = await ask(nc, names.reply_subject, body)
        assert set(answer) == {"error"}
        error = answer["error"]
        assert (
            error["kind"] == kind and error["field"] == field and error["message"].startswith(text)
        )
        # the service survived it
        ok = await ask(nc, names.reply_subject, {"request": REQUEST, "decision": DECISION})
        assert ok["outcome"] == "published"
    assert (await nc.jetstream().stream_info(names.stream)).state.messages == 1


async def test_a_publish_failure_is_a_structured_error(nats_server, nc, names) -> None:
    config = names.config(jetstream={"provision": "off"}, reply_subject=names.reply_subject)
    async with adapter_host(nats_server, config):
        answer = await ask(nc, names.reply_subject, {"request": REQUEST, "decision": DECISION})
    error = answer["error"]
    assert error["kind"] == "no_stream" and error["field"] == ""
    assert error["assignment_id"] in error["message"]


async def test_blocked_and_skipped_are_answered(nats_server, nc, names) -> None:
    config = names.config(reply_subject=names.reply_subject, allowed_tenants=["globex"])
    async with adapter_host(nats_server, config):
        answer = await ask(nc, names.reply_subject, {"request": REQUEST, "decision": DECISION})
    assert answer["outcome"] == "blocked" and answer["reason"] == "tenant_not_allowed"
    assert answer["assignment_id"] is None


async def test_off_by_default(nats_server, nc, names) -> None:
    from jetplug_caf_adapter.adapter import running_adapter

    async with adapter_host(nats_server, names.config()) as h:
        assert running_adapter(h.host).reply is None
