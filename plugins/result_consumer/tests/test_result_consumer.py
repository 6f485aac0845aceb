"""result_consumer against a real nats-server: the fate table, billing exactly once, the shared
state, several processes."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from jetplug import PubAck, Publish, StreamSpec
from jetplug.events import MessageDeadLettered, MessageHandled, PublishFailed
from jetplug.testing import running_host, wait_until
from jetplug_caf_common import state
from jetplug_caf_common.events import ResultProcessed, UsageEmitted
from jetplug_caf_common.store import AssignmentStore
from jetplug_caf_common.testing import (
    now_ms,
    record_published,
    set_bucket_writable,
    token,
    workers,
    write_config,
)
from jetplug_result_consumer.config import ResultConsumerSettings
from result_support import (
    PLUGIN,
    Declarer,
    Observer,
    config,
    dead_letters,
    result,
    settings,
    usage_events,
)

# the contract's example result
EXAMPLE = {
    "assignment_id": "a1f5b1d2-3c4e-4f6a-8b8c-9d0e1f2a3b4c",
    "request_id": "e3b0c442-98fc-4c14-9afb-f4c8996fb924",
    "status": "success",
    "provider_id": "openai:gpt-4o",
    "job": {"type": "text.generate"},
    "latency_ms": 850,
    "cost": 0.012,
    "trace_id": "tr-123",
    "tenant_id": "acme",
    "timestamp": 1706371200000,
}


def processed(h: Any) -> list[ResultProcessed]:
    return list(h.events_of(ResultProcessed))


def emitted(h: Any) -> list[bool]:
    """The duplicate flag of every usage publish, in order."""
    return [e.duplicate for e in h.events_of(UsageEmitted)]


# --- declarations -----------------------------------------------------------------------------


def test_defaults_follow_the_contract() -> None:
    s = ResultConsumerSettings()
    results, usage = s.stream_specs()
    assert (results.name, results.subjects) == ("CAF_RESULT", ("caf.exec.result.v1",))
    assert (usage.name, usage.subjects) == ("USAGE", ("beamline.usage.v1.metered",))
    assert usage.duplicate_window == 3600.0, "a late redelivery cannot bill twice"
    consumer = s.consumer_spec()
    assert consumer.durable == "router-results" and consumer.mode == "pull"
    assert consumer.ack_wait == 30.0 and consumer.max_deliver == 5
    assert consumer.retry_delays == (1.0, 2.0, 4.0, 8.0)
    assert (s.bucket_spec().bucket, s.bucket_spec().ttl) == ("caf_assignments", 24 * 3600.0)
    push = ResultConsumerSettings(mode="push").consumer_spec()
    assert (push.mode, push.deliver_group) == ("push", "router-results-group")
    assert len(ResultConsumerSettings(declare_usage_stream=False).stream_specs()) == 1


async def test_streams_and_consumer_are_provisioned_as_declared(nats_server) -> None:
    tok = token()
    async with running_host(PLUGIN, server=nats_server, config=config(tok, in_flight=9)) as h:
        api = h.host.engine.api
        c = (await api.consumer_info(f"RES_{tok}", f"results-{tok}"))["config"]
        assert c["ack_policy"] == "explicit" and c["max_deliver"] == 3 and c["max_ack_pending"] == 9
        assert c["ack_wait"] == 30 * 1_000_000_000 and "backoff" not in c
        usage = await api.request(f"STREAM.INFO.USAGE_{tok}", {})
        assert usage["config"]["duplicate_window"] == 3600 * 1_000_000_000
        assert usage["config"]["subjects"] == [f"t{tok}.usage"]


# --- processed ---------------------------------------------------------------------------------


async def test_result_is_billed_then_completes_the_published_record(nats_server, nc) -> None:
    tok, obs = token(), Observer()
    async with running_host(PLUGIN, ("observer", obs), server=nats_server, config=config(tok)) as h:
        store = AssignmentStore(h.host, f"caf_{tok}")
        published_at = now_ms() - 2500
        await record_published(store, "a-1", published_at=published_at)
        # no provider_id, job, request_id or trace_id: the usage event takes them from the record
        pub = await h.publish(f"t{tok}.result", result("a-1", latency_ms=850, cost=0.5))
        assert (await h.outcome(pub.seq)).outcome == "ack"

        record = await store.get("a-1")
        assert record is not None and record.status == "completed" and record.usage_billed
        assert record.result_at == obs.stored_ms(pub.seq), "result time is the stream time"
        assert record.end_to_end_ms == record.result_at - published_at >= 2500
        assert emitted(h) == [False]
        [event] = processed(h)
        assert (event.status, event.outcome) == ("success", "applied")
        assert event.latency_ms == record.end_to_end_ms
        [(hook_record, hook_result)] = obs.completed
        assert hook_record == record and hook_result.assignment_id == "a-1"

    [(usage, msg)] = await usage_events(nc, tok)
    assert usage == {
        "version": "1",
        "tenant_id": "acme",
        "assignment_id": "a-1",
        "status": "success",
        "timestamp": record.result_at,
        "provider_id": "openai:gpt-4o",
        "event_type": "text.generate",
        "latency_ms": 850,
        "cost": 0.5,
        "trace_id": "tr-1",
        "request_id": "req-1",
    }
    assert msg.headers["Nats-Msg-Id"] == "usage-a-1"
    assert msg.headers["tenant_id"] == "acme" and msg.headers["version"] == "1"


async def test_usage_event_carries_the_result_and_omits_absent_values(nats_server, nc) -> None:
    tok, obs = token(), Observer()
    async with running_host(PLUGIN, ("observer", obs), server=nats_server, config=config(tok)) as h:
        full = await h.publish(f"t{tok}.result", json.dumps(EXAMPLE).encode())
        bare = await h.publish(f"t{tok}.result", result("a-bare", "cancelled"))
        assert (await h.outcome(full.seq)).outcome == "ack"
        assert (await h.outcome(bare.seq)).outcome == "ack"
        bare_time = obs.stored_ms(bare.seq)
    usage = {u["assignment_id"]: u for u, _ in await usage_events(nc, tok)}
    assert usage[EXAMPLE["assignment_id"]] == {
        "version": "1",
        "tenant_id": "acme",
        "assignment_id": EXAMPLE["assignment_id"],
        "status": "success",
        "timestamp": 1706371200000,
        "provider_id": "openai:gpt-4o",
        "event_type": "text.generate",
        "latency_ms": 850,
        "cost": 0.012,
        "trace_id": "tr-123",
        "request_id": EXAMPLE["request_id"],
    }
    assert usage["a-bare"] == {
        "version": "1",
        "tenant_id": "acme",
        "assignment_id": "a-bare",
        "status": "cancelled",
        "timestamp": bare_time,
    }, "absent values are omitted, never null or 'undefined'"


async def test_each_result_status_maps_to_its_final_state(nats_server) -> None:
    tok = token()
    expected = {
        "success": "completed",
        "error": "failed",
        "timeout": "timed_out",
        "cancelled": "cancelled",
    }
    async with running_host(PLUGIN, server=nats_server, config=config(tok)) as h:
        store = AssignmentStore(h.host, f"caf_{tok}")
        for status in expected:
            await record_published(store, f"a-{status}", published_at=now_ms())
            extra = {"error_code": "E42", "error_message": "boom"} if status == "error" else {}
            pub = await h.publish(f"t{tok}.result", result(f"a-{status}", status, **extra))
            assert (await h.outcome(pub.seq)).outcome == "ack"
        for status, final in expected.items():
            record = await store.get(f"a-{status}")
            assert record is not None and record.status == final and record.usage_billed


async def test_header_values_win_over_the_payload(nats_server, nc) -> None:
    tok = token()
    cfg = config(tok, allowed_tenants=["acme"])
    async with running_host(PLUGIN, server=nats_server, config=cfg) as h:
        payload = result("a-hdr", tenant="zeta", trace_id="payload-trace")
        pub = await h.publish(
            f"t{tok}.result", payload, headers={"tenant_id": "acme", "trace_id": "header-trace"}
        )
        assert (await h.outcome(pub.seq)).outcome == "ack"
        record = await AssignmentStore(h.host, f"caf_{tok}").get("a-hdr")
        assert record is not None and record.tenant_id == "acme"
    [(usage, _)] = await usage_events(nc, tok)
    assert (usage["tenant_id"], usage["trace_id"]) == ("acme", "header-trace")


# --- the fate table: terminated and dead-lettered ---------------------------------------------

INVALID: list[tuple[str, bytes, dict[str, str], str, str]] = [
    # (case, payload, headers, reason, error must contain)
    ("not json", b"{nope", {}, "invalid_payload", "payload: not valid JSON"),
    ("not an object", b'"a-1"', {}, "invalid_payload", "payload: expected a JSON object"),
    (
        "missing assignment_id",
        b'{"status":"success","tenant_id":"acme"}',
        {},
        "invalid_payload",
        "assignment_id: required field is missing",
    ),
    (
        "missing status",
        b'{"assignment_id":"x-1","tenant_id":"acme"}',
        {},
        "invalid_payload",
        "status: required field is missing",
    ),
    ("unknown status", result("x-2", "done"), {}, "invalid_payload", "status:"),
    (
        "cost not a number",
        result("x-3", cost="cheap"),
        {},
        "invalid_payload",
        "cost: expected float",
    ),
    ("negative latency", result("x-4", latency_ms=-1), {}, "invalid_payload", "latency_ms:"),
    ("trace_id too long", result("x-5", trace_id="t" * 129), {}, "invalid_payload", "trace_id:"),
    ("empty trace_id", result("x-6", trace_id=""), {}, "invalid_payload", "trace_id:"),
    (
        "job not an object",
        result("x-7", job="text.generate"),
        {},
        "invalid_payload",
        "job: expected object",
    ),
    (
        "timestamp not int",
        result("x-8", timestamp="now"),
        {},
        "invalid_payload",
        "timestamp: expected int",
    ),
    (
        "run without flow and step",
        result("x-9", run_id="r"),
        {},
        "invalid_payload",
        "run_id, flow_id and step_id come together",
    ),
    (
        "missing tenant",
        result("x-10", tenant=None),
        {},
        "invalid_payload",
        "tenant_id: required field is missing",
    ),
    (
        "unknown version",
        result("x-11", version="2"),
        {},
        "unsupported_version",
        'version: expected "1", got "2"',
    ),
    (
        "unknown version in header",
        result("x-12"),
        {"version": "0"},
        "unsupported_version",
        'version: expected "1", got "0"',
    ),
    ("too large", result("x-13", error_message="e" * 3000), {}, "too_large", "the limit is 2048"),
    (
        "tenant not allowed",
        result("x-14", tenant="zeta"),
        {},
        "tenant_not_allowed",
        "tenant_id: 'zeta'",
    ),
    (
        "header tenant not allowed",
        result("x-15"),
        {"tenant_id": "zeta"},
        "tenant_not_allowed",
        "tenant_id: 'zeta'",
    ),
]


async def test_every_invalid_result_is_terminated_dead_lettered_and_not_billed(
    nats_server, nc
) -> None:
    tok = token()
    cfg = config(tok, allowed_tenants=["acme"], max_bytes=2048)
    async with running_host(PLUGIN, server=nats_server, config=cfg) as h:
        store = AssignmentStore(h.host, f"caf_{tok}")
        seqs = {}
        for case, payload, headers, _, _ in INVALID:
            seqs[case] = (await h.publish(f"t{tok}.result", payload, headers=headers)).seq
        for case, _, _, reason, error in INVALID:
            handled = await h.outcome(seqs[case])
            assert (handled.outcome, handled.reason) == ("term", reason), case
            assert error in handled.error, f"{case}: {handled.error}"
            assert handled.deliveries == 1, f"{case}: terminated at once, never retried"
        await wait_until(lambda: len(h.events_of(MessageDeadLettered)) == len(INVALID))
        assert processed(h) == [] and emitted(h) == [], "nothing invalid is processed or billed"
        for i in range(1, 16):
            assert await store.get(f"x-{i}") is None
    assert await usage_events(nc, tok) == []

    letters = await dead_letters(nc, tok, len(INVALID))
    for case, payload, headers, reason, error in INVALID:
        msg = letters[seqs[case]]
        assert msg.data == payload, case
        assert msg.headers["Jetplug-Dlq-Reason"] == reason, case
        assert error in msg.headers["Jetplug-Dlq-Error"], case
        assert msg.headers["Jetplug-Plugin"] == "result_consumer"
        for name, value in headers.items():
            assert msg.headers[name] == value, f"{case}: original header {name} kept"


async def test_duplicate_results_are_acked_without_billing_again(nats_server, nc) -> None:
    tok, obs = token(), Observer()
    async with running_host(PLUGIN, ("observer", obs), server=nats_server, config=config(tok)) as h:
        store = AssignmentStore(h.host, f"caf_{tok}")
        await record_published(store, "a-dup", published_at=now_ms() - 100)
        first = await h.publish(f"t{tok}.result", result("a-dup", cost=1.0))
        await h.outcome(first.seq)
        stored = await store.get("a-dup")
        again = await h.publish(f"t{tok}.result", result("a-dup", cost=1.0))
        other = await h.publish(f"t{tok}.result", result("a-dup", "error", cost=2.0))
        assert (await h.outcome(again.seq)).outcome == "ack"
        assert (await h.outcome(other.seq)).outcome == "ack"
        assert await store.get("a-dup") == stored, "the first result stays"
        assert [(e.status, e.outcome) for e in processed(h)] == [
            ("success", "applied"),
            ("success", "duplicate"),
            ("error", "duplicate"),
        ]
        assert emitted(h) == [False], "duplicates publish no usage event at all"
        assert len(obs.completed) == 1
    [(usage, _)] = await usage_events(nc, tok)
    assert (usage["status"], usage["cost"]) == ("success", 1.0)


async def test_unknown_assignment_is_billed_and_counted(nats_server, nc) -> None:
    tok = token()
    async with running_host(PLUGIN, server=nats_server, config=config(tok)) as h:
        pub = await h.publish(f"t{tok}.result", json.dumps(EXAMPLE).encode())
        assert (await h.outcome(pub.seq)).outcome == "ack"
        record = await AssignmentStore(h.host, f"caf_{tok}").get(EXAMPLE["assignment_id"])
        assert record is not None and record.status == "completed" and record.usage_billed
        assert record.published_at is None and record.provider_id == "openai:gpt-4o"
        [event] = processed(h)
        assert (event.outcome, event.latency_ms) == ("unknown_assignment", None)
    assert len(await usage_events(nc, tok)) == 1


async def test_strict_mode_dead_letters_unknown_assignments_unbilled(nats_server, nc) -> None:
    tok = token()
    async with running_host(PLUGIN, server=nats_server, config=config(tok, strict=True)) as h:
        store = AssignmentStore(h.host, f"caf_{tok}")
        await record_published(store, "a-known", published_at=now_ms() - 100)
        known = await h.publish(f"t{tok}.result", result("a-known"))
        unknown = await h.publish(f"t{tok}.result", result("a-stranger"))
        assert (await h.outcome(known.seq)).outcome == "ack"
        handled = await h.outcome(unknown.seq)
        assert (handled.outcome, handled.reason) == ("term", "unknown_assignment")
        assert await store.get("a-stranger") is None
        assert [e.outcome for e in processed(h)] == ["applied"]
    assert [u["assignment_id"] for u, _ in await usage_events(nc, tok)] == ["a-known"]
    msg = (await dead_letters(nc, tok, 1))[unknown.seq]
    assert msg.headers["Jetplug-Dlq-Reason"] == "unknown_assignment"
    assert "assignment_id: no record of assignment 'a-stranger'" in msg.headers["Jetplug-Dlq-Error"]


async def test_a_result_naming_another_tenant_is_dead_lettered_unbilled(nats_server, nc) -> None:
    tok = token()
    async with running_host(PLUGIN, server=nats_server, config=config(tok)) as h:
        store = AssignmentStore(h.host, f"caf_{tok}")
        before = await record_published(store, "a-owned", published_at=now_ms(), tenant="acme")
        pub = await h.publish(f"t{tok}.result", result("a-owned", tenant="beta", cost=9.0))
        handled = await h.outcome(pub.seq)
        assert (handled.outcome, handled.reason) == ("term", "tenant_mismatch")
        assert await store.get("a-owned") == before
    assert await usage_events(nc, tok) == []


# --- transient failures and billing exactly once ----------------------------------------------


async def test_usage_stream_missing_naks_then_bills_once_when_it_exists(nats_server, nc) -> None:
    tok = token()
    cfg = config(tok, declare_usage_stream=False, retry_delays=[0.3], max_deliver=5)
    async with running_host(PLUGIN, server=nats_server, config=cfg) as h:
        store = AssignmentStore(h.host, f"caf_{tok}")
        await record_published(store, "a-wait", published_at=now_ms())
        pub = await h.publish(f"t{tok}.result", result("a-wait"))
        nak = await h.wait_event(
            lambda e: (
                isinstance(e, MessageHandled) and e.stream_seq == pub.seq and e.outcome == "nak"
            )
        )
        assert "no stream" in nak.error, nak.error
        assert processed(h) == [] and emitted(h) == []
        record = await store.get("a-wait")
        assert record is not None and record.status == "published" and not record.usage_billed

        await nc.jetstream().add_stream(
            name=f"USAGE_{tok}", subjects=[f"t{tok}.usage"], duplicate_window=3600
        )
        handled = await h.outcome(pub.seq)
        assert handled.outcome == "ack" and handled.deliveries >= 2
        record = await store.get("a-wait")
        assert record is not None and record.status == "completed" and record.usage_billed
        assert [e.outcome for e in processed(h)] == ["applied"]
    assert len(await usage_events(nc, tok)) == 1


async def test_usage_stream_missing_until_max_deliver_dead_letters(nats_server, nc) -> None:
    tok = token()
    cfg = config(tok, declare_usage_stream=False, retry_delays=[0.1], max_deliver=2)
    async with running_host(PLUGIN, server=nats_server, config=cfg) as h:
        pub = await h.publish(f"t{tok}.result", result("a-doomed"))
        handled = await h.outcome(pub.seq)
        assert (handled.outcome, handled.reason, handled.deliveries) == ("term", "max_deliver", 2)
        assert await AssignmentStore(h.host, f"caf_{tok}").get("a-doomed") is None
        assert processed(h) == []
    msg = (await dead_letters(nc, tok, 1))[pub.seq]
    assert msg.headers["Jetplug-Dlq-Reason"] == "max_deliver"
    assert "no stream" in msg.headers["Jetplug-Dlq-Error"]


async def test_usage_is_billed_exactly_once_across_a_forced_redelivery(nats_server, nc) -> None:
    """The first delivery stores its usage event, then fails to write the record (the bucket
    refuses writes), so the result is redelivered: the second usage publish is dropped by the
    stream as a duplicate of ``usage-<assignment_id>`` and the record is written once."""
    tok, obs = token(), Observer()
    cfg = config(tok, retry_delays=[0.3], max_deliver=5)
    async with running_host(PLUGIN, ("observer", obs), server=nats_server, config=cfg) as h:
        store = AssignmentStore(h.host, f"caf_{tok}")
        await record_published(store, "a-once", published_at=now_ms() - 1000)
        await set_bucket_writable(nc, f"caf_{tok}", False)
        pub = await h.publish(f"t{tok}.result", result("a-once", cost=0.25))
        nak = await h.wait_event(
            lambda e: (
                isinstance(e, MessageHandled) and e.stream_seq == pub.seq and e.outcome == "nak"
            )
        )
        assert "exceeds maximum" in nak.error or "too_large" in nak.error, nak.error
        assert emitted(h) == [False], "the first delivery stored its usage event"
        record = await store.get("a-once")
        assert record is not None and not record.usage_billed and record.result_status is None
        await set_bucket_writable(nc, f"caf_{tok}", True)

        handled = await h.outcome(pub.seq)
        assert handled.outcome == "ack" and handled.deliveries >= 2
        flags = emitted(h)
        assert flags[0] is False and all(flags[1:]) and len(flags) == handled.deliveries
        record = await store.get("a-once")
        assert record is not None and record.status == "completed" and record.usage_billed
        assert record.result_at == obs.stored_ms(pub.seq), (
            "a redelivery does not move the result time"
        )
        assert [e.outcome for e in processed(h)] == ["applied"] and len(obs.completed) == 1
    [(usage, msg)] = await usage_events(nc, tok)
    assert usage["assignment_id"] == "a-once" and msg.headers["Nats-Msg-Id"] == "usage-a-once"


# --- state ordering ---------------------------------------------------------------------------


async def test_result_before_ack_completes_and_the_late_ack_does_not_move_it_back(
    nats_server,
) -> None:
    tok = token()
    async with running_host(PLUGIN, server=nats_server, config=config(tok)) as h:
        store = AssignmentStore(h.host, f"caf_{tok}")
        published_at = now_ms() - 3000
        await record_published(store, "a-early", published_at=published_at)
        pub = await h.publish(f"t{tok}.result", result("a-early"))
        assert (await h.outcome(pub.seq)).outcome == "ack"
        record = await store.get("a-early")
        assert record is not None and record.status == "completed" and record.ack_status is None
        # the ack arrives afterwards (merged as ack_consumer would)
        late, changed = await store.apply(
            "a-early",
            lambda r: state.acknowledged(
                r, assignment_id="a-early", status="accepted", at=now_ms()
            ),
        )
        assert changed and late is not None and late.status == "completed"
        assert late.end_to_end_ms == record.end_to_end_ms >= 3000


# --- several processes ------------------------------------------------------------------------


def conflicts(procs: list[Any], h: Any) -> int:
    """Compare-and-set conflicts lost (and retried) in the worker processes and in this one."""
    n = sum(
        1
        for p in procs
        for r in p.records()
        if r["event"] == "publish_failed" and r["kind"] == "conflict"
    )
    return n + sum(1 for e in h.events_of(PublishFailed) if e.kind == "conflict")


@pytest.mark.timeout(60)
async def test_two_processes_and_a_concurrent_writer_lose_no_update(
    nats_server, nc, tmp_path: Path
) -> None:
    """Two host processes share the durable consumer and bill; meanwhile this process writes the
    acks of the same assignments. Every record ends with all facts, every result billed once."""
    tok, n = token(), 150
    table = settings(tok, in_flight=32)
    configs = [
        write_config(tmp_path / f"host{i}.toml", nats_server.url, {"result_consumer": table})
        for i in range(2)
    ]
    ids = [f"a-{i:03d}" for i in range(n)]
    async with running_host(("declarer", Declarer(table)), server=nats_server) as h:
        store = AssignmentStore(h.host, f"caf_{tok}")
        for aid in ids:
            await record_published(store, aid, published_at=now_ms() - 50)
        with workers(configs, tmp_path) as procs:
            await wait_until(lambda: all(p.ready() for p in procs), timeout=20)

            async def write_ack(aid: str) -> None:
                await store.apply(
                    aid,
                    lambda r: state.acknowledged(
                        r, assignment_id=aid, status="accepted", at=now_ms()
                    ),
                )

            # each ack is written while the processes handle the same assignment's result
            pubs, writes = [], []
            for aid in ids:
                pubs.append(await h.publish(f"t{tok}.result", result(aid, cost=0.01)))
                writes.append(asyncio.ensure_future(write_ack(aid)))
            await asyncio.gather(*writes)
            seqs = {p.seq for p in pubs}
            await wait_until(
                lambda: seqs <= set(procs[0].handled()) | set(procs[1].handled()), timeout=30
            )
            assert sorted(procs[0].handled() + procs[1].handled()) == sorted(seqs)
            assert conflicts(procs, h) > 0, "the writers raced on the same keys"

        records = await asyncio.gather(*(store.get(aid) for aid in ids))
        lost = [
            aid
            for aid, r in zip(ids, records, strict=True)
            if r is None
            or r.published_at is None
            or r.ack_status != "accepted"
            or r.result_status != "success"
            or not r.usage_billed
        ]
        assert lost == [], f"updates lost for {len(lost)} assignments"
    usage = await usage_events(nc, tok)
    assert sorted(u["assignment_id"] for u, _ in usage) == ids, "every result billed exactly once"


def _installed(plugin: str) -> bool:
    """Whether a jetplug plugin is installed (by its entry point; nothing is imported)."""
    return any(ep.name == plugin for ep in importlib.metadata.entry_points(group="jetplug"))


@pytest.mark.timeout(60)
@pytest.mark.skipif(not _installed("ack_consumer"), reason="ack_consumer is not installed")
async def test_two_processes_running_both_consumers_lose_no_update(
    nats_server, nc, tmp_path: Path
) -> None:
    """Two ``jetplug`` processes, each running ack_consumer and result_consumer on the same
    bucket, work through a backlog holding every assignment's ack and result twice (executors
    resend): the copies race each other and the other fact on the same record."""
    tok, n = token(), 100
    results = settings(tok, in_flight=32)
    acks = {
        "stream": f"ACK_{tok}",
        "subject": f"t{tok}.ack",
        "durable": f"acks-{tok}",
        "bucket": f"caf_{tok}",
        "in_flight": 32,
    }
    plugins = {"result_consumer": results, "ack_consumer": acks}
    configs = [write_config(tmp_path / f"host{i}.toml", nats_server.url, plugins) for i in range(2)]
    ids = [f"a-{i:03d}" for i in range(n)]
    # the ack stream as ack_consumer declares it, so the backlog can be written before it starts
    ack_stream = StreamSpec(
        f"ACK_{tok}",
        (f"t{tok}.ack",),
        max_age=7 * 24 * 3600.0,
        description="CAF -> router: ExecAssignmentAck",
    )
    async with running_host(("declarer", Declarer(results, ack_stream)), server=nats_server) as h:
        store = AssignmentStore(h.host, f"caf_{tok}")
        for aid in ids:
            await record_published(store, aid, published_at=now_ms() - 50)
        ack = [
            json.dumps({"assignment_id": aid, "status": "accepted", "tenant_id": "acme"}).encode()
            for aid in ids
        ]
        pubs = await h.host.publisher.publish_many(
            [Publish(f"t{tok}.ack", ack[i]) for i in range(n) for _ in range(2)]
            + [Publish(f"t{tok}.result", result(aid)) for aid in ids for _ in range(2)]
        )
        seqs = {(p.stream, p.seq) for p in pubs if isinstance(p, PubAck)}
        assert len(seqs) == 4 * n

        with workers(configs, tmp_path) as procs:

            def finished() -> set[tuple[str, int]]:
                return {
                    (r["stream"], r["stream_seq"])
                    for p in procs
                    for r in p.records()
                    if r["event"] == "message_handled" and r["outcome"] == "ack"
                }

            await wait_until(lambda: seqs <= finished(), timeout=30)
            assert all(p.ready() for p in procs)
            outcomes = Counter(
                (r["event"], r["outcome"])
                for p in procs
                for r in p.records()
                if r["event"] in ("caf_ack_processed", "caf_result_processed")
            )
            assert outcomes == {
                ("caf_ack_processed", "applied"): n,
                ("caf_ack_processed", "duplicate"): n,
                ("caf_result_processed", "applied"): n,
                ("caf_result_processed", "duplicate"): n,
            }
            assert conflicts(procs, h) > 0, "the copies raced on the same keys"

        records = await asyncio.gather(*(store.get(aid) for aid in ids))
        lost = [
            aid
            for aid, r in zip(ids, records, strict=True)
            if r is None
            or r.ack_status != "accepted"
            or r.result_status != "success"
            or not r.usage_billed
        ]
        assert lost == [], f"updates lost for {len(lost)} assignments"
        assert all(r is not None and r.status == "completed" for r in records)
    usage = await usage_events(nc, tok)
    assert sorted(u["assignment_id"] for u, _ in usage) == ids, "every result billed exactly once"


@pytest.mark.timeout(60)
async def test_push_mode_deliver_group_shares_results_between_two_processes(
    nats_server, nc, tmp_path: Path
) -> None:
    tok, n = token(), 120
    table = settings(tok, mode="push", deliver_group=f"group-{tok}", in_flight=8)
    configs = [
        write_config(tmp_path / f"host{i}.toml", nats_server.url, {"result_consumer": table})
        for i in range(2)
    ]
    with workers(configs, tmp_path) as procs:
        await wait_until(lambda: all(p.ready() for p in procs), timeout=20)
        async with running_host(("declarer", Declarer(table)), server=nats_server) as h:
            info = await h.host.engine.api.consumer_info(f"RES_{tok}", f"results-{tok}")
            assert info["config"]["deliver_group"] == f"group-{tok}"
            pubs = [await h.publish(f"t{tok}.result", result(f"p-{i}")) for i in range(n)]
            seqs = {p.seq for p in pubs}
            await wait_until(
                lambda: seqs <= set(procs[0].handled()) | set(procs[1].handled()), timeout=30
            )
            first, second = procs[0].handled(), procs[1].handled()
            assert first and second, "both members of the deliver group got work"
            assert sorted(first + second) == sorted(seqs), "each result handled once"
    assert len(await usage_events(nc, tok)) == n
