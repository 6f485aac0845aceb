"""Every contract field rule, and the header-wins rule (no broker needed)."""

from __future__ import annotations

import json

import pytest
from jetplug_caf_common.contracts import (
    ContractError,
    ExecAssignmentAck,
    ExecResult,
    UsageEvent,
    decode,
    encode,
)

RESULT = {
    "assignment_id": "a1f5b1d2-3c4e-4f6a-8b8c-9d0e1f2a3b4c",
    "request_id": "e3b0c442",
    "status": "success",
    "provider_id": "openai:gpt-4o",
    "job": {"type": "text.generate"},
    "latency_ms": 850,
    "cost": 0.012,
    "trace_id": "tr-123",
    "tenant_id": "acme",
    "timestamp": 1706371200000,
}
ACK = {"assignment_id": "a1", "status": "accepted", "tenant_id": "acme", "message": "queued"}


def b(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_contract_examples_are_valid() -> None:
    result = decode(b(RESULT), ExecResult)
    assert result.status == "success" and result.job and result.job.type == "text.generate"
    assert result.trace_id == "tr-123", "the docs' own trace id example is accepted"
    ack = decode(b(ACK), ExecAssignmentAck)
    assert ack.status == "accepted" and ack.message == "queued"


@pytest.mark.parametrize(
    ("change", "reason", "field"),
    [
        ({"status": "done"}, "invalid_payload", "status"),
        ({"status": None}, "invalid_payload", "status"),
        ({"assignment_id": ""}, "invalid_payload", "assignment_id"),
        ({"tenant_id": "x" * 257}, "invalid_payload", "tenant_id"),
        ({"latency_ms": -1}, "invalid_payload", "latency_ms"),
        ({"cost": "free"}, "invalid_payload", "cost"),
        ({"trace_id": "t" * 129}, "invalid_payload", "trace_id"),
        ({"job": {"type": 5}}, "invalid_payload", "job.type"),
        ({"version": "2"}, "unsupported_version", "version"),
        ({"run_id": "r"}, "invalid_payload", ""),
    ],
)
def test_result_field_rules(change: dict, reason: str, field: str) -> None:
    with pytest.raises(ContractError) as err:
        decode(b({**RESULT, **change}), ExecResult)
    assert err.value.reason == reason
    if field:
        assert err.value.field == field
        assert str(err.value).startswith(f"{field}:")


@pytest.mark.parametrize("missing", ["assignment_id", "status", "tenant_id"])
def test_required_fields_are_named(missing: str) -> None:
    body = {k: v for k, v in RESULT.items() if k != missing}
    with pytest.raises(ContractError) as err:
        decode(b(body), ExecResult)
    assert err.value.field == missing and "required" in str(err.value)


@pytest.mark.parametrize("payload", [b"not json", b"[1, 2]", b'"text"', b""])
def test_not_a_json_object(payload: bytes) -> None:
    with pytest.raises(ContractError) as err:
        decode(payload, ExecAssignmentAck)
    assert err.value.reason == "invalid_payload" and "payload" in str(err.value)


def test_run_flow_step_all_or_none() -> None:
    ok = decode(b({**RESULT, "run_id": "r", "flow_id": "f", "step_id": "s"}), ExecResult)
    assert ok.run_id == "r"
    with pytest.raises(ContractError) as err:
        decode(b({**RESULT, "run_id": "r", "flow_id": "f"}), ExecResult)
    assert "step_id" in str(err.value)


def test_headers_win_over_payload() -> None:
    body = {**ACK, "tenant_id": "payload-tenant"}
    ack = decode(b(body), ExecAssignmentAck, {"tenant_id": "header-tenant", "trace_id": "h-trace"})
    assert ack.tenant_id == "header-tenant" and ack.trace_id == "h-trace"
    # tenant only in a header is enough
    ack2 = decode(
        b({k: v for k, v in ACK.items() if k != "tenant_id"}), ExecAssignmentAck, {"tenant_id": "t"}
    )
    assert ack2.tenant_id == "t"
    with pytest.raises(ContractError) as err:
        decode(b(ACK), ExecAssignmentAck, {"version": "7"})
    assert err.value.reason == "unsupported_version"


def test_size_limit() -> None:
    with pytest.raises(ContractError) as err:
        decode(b(RESULT), ExecResult, max_bytes=10)
    assert err.value.reason == "too_large"


def test_ack_status_values() -> None:
    for status in ("accepted", "rejected", "error"):
        assert decode(b({**ACK, "status": status}), ExecAssignmentAck).status == status
    with pytest.raises(ContractError):
        decode(b({**ACK, "status": "ok"}), ExecAssignmentAck)


def test_usage_event_omits_absent_values() -> None:
    event = UsageEvent(
        version="1", tenant_id="acme", assignment_id="a1", status="success", timestamp=1
    )
    data = json.loads(encode(event))
    assert data == {
        "version": "1",
        "tenant_id": "acme",
        "assignment_id": "a1",
        "status": "success",
        "timestamp": 1,
    }
    assert "undefined" not in encode(event).decode()


def test_tenant_limit_counts_bytes() -> None:
    with pytest.raises(ContractError) as err:
        decode(b({**ACK, "tenant_id": "é" * 200}), ExecAssignmentAck)  # 200 chars, 400 bytes
    assert err.value.field == "tenant_id" and "bytes" in str(err.value)


def test_encode_keeps_defaults_and_drops_none() -> None:
    from jetplug_caf_common.contracts import Decision, ExecAssignment, Executor

    assignment = ExecAssignment(
        assignment_id="a",
        request_id="r",
        tenant_id="t",
        executor=Executor(provider_id="p"),
        job={"type": "x"},
        decision=Decision(
            provider_id="p", priority=1, expected_latency_ms=5, expected_cost=0, reason="sticky"
        ),
    )
    data = json.loads(encode(assignment))
    assert data["version"] == "1" and data["executor"] == {"provider_id": "p", "channel": "nats"}
    assert data["options"]["retry"] == {"max_attempts": 2, "backoff_ms": 200}
    assert "priority" not in data["options"] and "metadata" not in data["decision"]
