"""The pure rules of building an assignment (no broker): deadline, options, trace context."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from caf_adapter_helpers import DECISION, REQUEST, decision, request
from jetplug_caf_adapter.build import (
    InvalidInput,
    build,
    compute_deadline,
    trace_id_for_traceparent,
    traceparent,
)
from jetplug_caf_adapter.config import CafAdapterSettings, problems

DEFAULTS = CafAdapterSettings()


@pytest.mark.parametrize(
    ("latency", "deadline"),
    [(100, 5000), (1000, 5000), (2000, 10000), (5000, 25000), (15000, 60000)],
)
def test_deadline_table(latency: int, deadline: int) -> None:
    assert compute_deadline(latency) == deadline
    built = build(REQUEST, decision(expected_latency_ms=latency), DEFAULTS, str(uuid.uuid4()))
    assert built.deadline_ms == deadline
    assert json.loads(built.data)["options"]["deadline_ms"] == deadline


def test_deadline_bounds_and_multiplier_come_from_settings() -> None:
    s = CafAdapterSettings(deadline_multiplier=2.5, deadline_min_ms=1000, deadline_max_ms=9000)
    assert build(REQUEST, decision(expected_latency_ms=0), s, str(uuid.uuid4())).deadline_ms == 1000
    assert (
        build(REQUEST, decision(expected_latency_ms=2000), s, str(uuid.uuid4())).deadline_ms == 5000
    )
    assert (
        build(REQUEST, decision(expected_latency_ms=3_600_000), s, str(uuid.uuid4())).deadline_ms
        == 9000
    )


def test_request_deadline_overrides_the_computed_one_unclamped() -> None:
    req = request(options={"deadline_ms": 200})
    built = build(req, DECISION, DEFAULTS, str(uuid.uuid4()))
    assert built.deadline_ms == 200


def test_options_merge_defaults_under_the_request() -> None:
    plain = json.loads(build(REQUEST, DECISION, DEFAULTS, str(uuid.uuid4())).data)["options"]
    assert plain == {
        "priority": 50,
        "deadline_ms": 5000,
        "retry": {"max_attempts": 2, "backoff_ms": 200},
    }
    req = request(options={"priority": 7, "retry": {"max_attempts": 5}, "unknown_option": True})
    merged = json.loads(build(req, DECISION, DEFAULTS, str(uuid.uuid4())).data)["options"]
    assert merged == {
        "priority": 7,
        "deadline_ms": 5000,
        "retry": {"max_attempts": 5, "backoff_ms": 200},
    }
    s = CafAdapterSettings(executor_max_attempts=4, executor_backoff_ms=50)
    tuned = json.loads(build(REQUEST, DECISION, s, str(uuid.uuid4())).data)["options"]
    assert tuned["retry"] == {"max_attempts": 4, "backoff_ms": 50}


def test_the_message_carries_every_contract_field() -> None:
    aid = str(uuid.uuid4())
    req = request(task={"type": "text.generate", "payload": {"prompt": "hi"}, "extra": [1, 2]})
    msg = json.loads(build(req, decision(metadata={"why": "cheap"}), DEFAULTS, aid).data)
    assert msg["version"] == "1"
    assert msg["assignment_id"] == aid and msg["request_id"] == REQUEST["request_id"]
    assert msg["tenant_id"] == "acme"
    assert msg["executor"] == {"provider_id": "openai:gpt-4o", "channel": "nats"}
    assert msg["job"] == {"type": "text.generate", "payload": {"prompt": "hi"}, "extra": [1, 2]}
    assert msg["correlation"] == {"trace_id": "tr-123"}
    assert msg["decision"] == {**DECISION, "metadata": {"why": "cheap"}}
    assert msg["metadata"] == {"user_id": "u-42"}
    bare = json.loads(build(request(trace_id=None, metadata=None), DECISION, DEFAULTS, aid).data)
    assert bare["correlation"] == {} and bare["metadata"] == {}
    s = CafAdapterSettings(executor_channel="grpc", executor_endpoint="dns:///caf:50051")
    grpc = json.loads(build(REQUEST, DECISION, s, aid).data)
    assert grpc["executor"] == {
        "provider_id": "openai:gpt-4o",
        "channel": "grpc",
        "endpoint": "dns:///caf:50051",
    }


def test_traceparent_uses_a_hex_trace_id_else_a_random_one() -> None:
    pattern = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-01")
    hex_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    m = pattern.fullmatch(traceparent(hex_id))
    assert m and m.group(1) == hex_id
    assert trace_id_for_traceparent(hex_id.upper()) == hex_id
    assert trace_id_for_traceparent("4bf92f35-77b3-4da6-a3ce-929d0e0e4736") == hex_id
    for other in ("tr-123", None, "0" * 32, "g" * 32):
        made = trace_id_for_traceparent(other)
        assert re.fullmatch(r"[0-9a-f]{32}", made) and made != "0" * 32
    assert traceparent("tr-123") != traceparent("tr-123"), "new random ids each time"


def test_assignment_id_must_be_a_uuid4() -> None:
    for bad in ("a1234567890-12345", "", str(uuid.uuid1())):
        with pytest.raises(InvalidInput) as err:
            build(REQUEST, DECISION, DEFAULTS, bad)
        assert err.value.field == "assignment_id"


def test_settings_cross_checks_name_the_key() -> None:
    found = problems(CafAdapterSettings(deadline_min_ms=70000), 5.0)
    assert any(p.startswith("plugins.caf_adapter.deadline_min_ms:") for p in found)
    found = problems(CafAdapterSettings(duplicate_window=10), 5.0)
    assert any(p.startswith("plugins.caf_adapter.duplicate_window:") for p in found)
    found = problems(CafAdapterSettings(allowed_tenants=["ok", ""]), 5.0)
    assert found == ["plugins.caf_adapter.allowed_tenants[1]: a tenant id is 1-256 bytes, got 0"]
    assert problems(CafAdapterSettings(assignment_subject="caf.>"), 5.0)
    assert problems(CafAdapterSettings(), 5.0) == []
