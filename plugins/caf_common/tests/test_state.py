"""The assignment state machine: facts merge in any order and never move a record backwards."""

from __future__ import annotations

import itertools

from jetplug_caf_common import state

AID = "a-1"


def publish(rec):  # type: ignore[no-untyped-def]
    return state.published(
        rec,
        assignment_id=AID,
        published_at=1000,
        tenant_id="acme",
        request_id="r",
        provider_id="p",
        job_type="t",
        trace_id=None,
        deadline_ms=5000,
        stream_seq=7,
    )


def ack(status: str):  # type: ignore[no-untyped-def]
    return lambda rec: state.acknowledged(rec, assignment_id=AID, status=status, at=1200)


def result(status: str):  # type: ignore[no-untyped-def]
    return lambda rec: state.resulted(rec, assignment_id=AID, status=status, at=2500)


def run(*steps):  # type: ignore[no-untyped-def]
    rec = None
    for step in steps:
        new = step(rec)
        rec = new if new is not None else rec
    return rec


def test_normal_path() -> None:
    rec = run(publish, ack("accepted"), result("success"))
    assert rec.status == "completed"
    assert rec.ack_latency_ms == 200 and rec.end_to_end_ms == 1500 and rec.usage_billed


def test_every_order_of_publish_ack_result_ends_completed() -> None:
    for order in itertools.permutations([publish, ack("accepted"), result("success")]):
        rec = run(*order)
        assert rec.status == "completed"
        assert rec.published_at == 1000 and rec.acked_at == 1200 and rec.result_at == 2500


def test_result_status_mapping() -> None:
    for status, expected in state.RESULT_STATUS.items():
        assert run(publish, result(status)).status == expected


def test_duplicates_change_nothing() -> None:
    rec = run(publish, ack("accepted"), result("success"))
    assert publish(rec) is None
    assert ack("accepted")(rec) is None
    assert result("error")(rec) is None, "a second result is a duplicate: never billed twice"


def test_rejected_is_final() -> None:
    rec = run(publish, ack("rejected"))
    assert rec.status == "rejected"
    assert ack("accepted")(rec) is None
    assert state.expire(rec, now=10**9) is None, "rejected assignments do not expire"
    after = result("success")(rec)
    assert after is not None and after.result_status == "success" and after.status == "rejected"


def test_accepted_can_turn_into_error_before_a_result() -> None:
    rec = run(publish, ack("accepted"), ack("error"))
    assert rec.status == "error"
    late = run(publish, ack("accepted"), result("success"))
    assert ack("error")(late) is None


def test_expiry() -> None:
    rec = run(publish, ack("accepted"))
    assert state.expire(rec, now=5999) is None, "not before the deadline"
    expired = state.expire(rec, now=6000)
    assert expired is not None and expired.status == "expired"
    assert state.expire(expired, now=7000) is None, "expires once"
    assert state.expire(run(publish, result("success")), now=10**9) is None
    late = result("success")(expired)
    assert late.status == "completed" and late.expired_at == 6000, (
        "a late result is kept, flagged late"
    )


def test_roundtrip_encoding() -> None:
    rec = run(publish, ack("accepted"))
    assert state.decode(state.encode(rec)) == rec
