"""ack_consumer against a real nats-server: the fate table, the shared state, several processes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from ack_support import PLUGIN, Declarer, Observer, ack, config, dead_letters, settings
from jetplug.events import MessageDeadLettered, MessageHandled, PublishFailed
from jetplug.testing import running_host, wait_until
from jetplug_ack_consumer.config import AckConsumerSettings
from jetplug_caf_common import state
from jetplug_caf_common.events import AckProcessed
from jetplug_caf_common.store import AssignmentStore
from jetplug_caf_common.testing import (
    now_ms,
    record_published,
    set_bucket_writable,
    token,
    workers,
    write_config,
)


def processed(h: Any) -> list[AckProcessed]:
    return list(h.events_of(AckProcessed))


# --- declarations -----------------------------------------------------------------------------


def test_defaults_follow_the_contract() -> None:
    s = AckConsumerSettings()
    stream, consumer, bucket = s.stream_spec(), s.consumer_spec(), s.bucket_spec()
    assert (stream.name, stream.subjects) == ("CAF_ACK", ("caf.exec.assign.v1.ack",))
    assert (
        consumer.durable == "router-acks"
        and consumer.mode == "pull"
        and consumer.deliver_group == ""
    )
    assert consumer.ack_wait == 30.0 and consumer.max_deliver == 5
    assert consumer.retry_delays == (1.0, 2.0, 4.0, 8.0)
    assert (bucket.bucket, bucket.ttl) == ("caf_assignments", 24 * 3600.0)
    push = AckConsumerSettings(mode="push").consumer_spec()
    assert (push.mode, push.deliver_group) == ("push", "router-acks-group")


async def test_consumer_is_provisioned_as_declared(nats_server) -> None:
    tok = token()
    cfg = config(tok, ack_wait=12.5, in_flight=7, max_deliver=4, bucket_ttl=600.0)
    async with running_host(PLUGIN, server=nats_server, config=cfg) as h:
        info = await h.host.engine.api.consumer_info(f"ACK_{tok}", f"acks-{tok}")
        c = info["config"]
        assert c["ack_policy"] == "explicit" and c["max_deliver"] == 4 and c["max_ack_pending"] == 7
        assert c["ack_wait"] == 12_500_000_000 and "backoff" not in c
        kv = await h.host.engine.api.request(f"STREAM.INFO.KV_caf_{tok}", {})
        assert kv["config"]["max_age"] == 600 * 1_000_000_000


# --- processed ---------------------------------------------------------------------------------


async def test_ack_updates_the_published_record_and_measures_ack_latency(nats_server) -> None:
    tok, obs = token(), Observer()
    async with running_host(PLUGIN, ("observer", obs), server=nats_server, config=config(tok)) as h:
        store = AssignmentStore(h.host, f"caf_{tok}")
        published_at = now_ms() - 1500
        await record_published(store, "a-1", published_at=published_at)
        pub = await h.publish(f"t{tok}.ack", ack("a-1", message="queued", request_id="req-1"))
        assert (await h.outcome(pub.seq)).outcome == "ack"

        record = await store.get("a-1")
        assert record is not None
        assert record.status == "accepted" and record.ack_message == "queued"
        assert record.acked_at == obs.stored_ms(pub.seq), "ack time is the stream time of the ack"
        assert record.ack_latency_ms == record.acked_at - published_at >= 1500
        [event] = processed(h)
        assert (event.status, event.outcome, event.latency_ms) == (
            "accepted",
            "applied",
            record.ack_latency_ms,
        )
        [(hook_record, hook_ack)] = obs.acked
        assert (
            hook_record == record
            and hook_ack.assignment_id == "a-1"
            and hook_ack.message == "queued"
        )


async def test_header_values_win_over_the_payload(nats_server) -> None:
    tok = token()
    cfg = config(tok, allowed_tenants=["acme"])
    async with running_host(PLUGIN, server=nats_server, config=cfg) as h:
        store = AssignmentStore(h.host, f"caf_{tok}")
        # the payload names a tenant that is not allowed; the header's allowed tenant wins
        pub = await h.publish(
            f"t{tok}.ack",
            ack("a-hdr", tenant="zeta", trace_id="payload-trace"),
            headers={"tenant_id": "acme", "trace_id": "header-trace"},
        )
        assert (await h.outcome(pub.seq)).outcome == "ack"
        record = await store.get("a-hdr")
        assert (
            record is not None and record.tenant_id == "acme" and record.trace_id == "header-trace"
        )


# --- the fate table: terminated and dead-lettered ---------------------------------------------

TOO_LONG_TENANT = "t" * 257

INVALID: list[tuple[str, bytes, dict[str, str], str, str]] = [
    # (case, payload, headers, reason, error must contain)
    ("not json", b"{nope", {}, "invalid_payload", "payload: not valid JSON"),
    ("not an object", b'["a-1"]', {}, "invalid_payload", "payload: expected a JSON object"),
    (
        "missing assignment_id",
        b'{"status":"accepted","tenant_id":"acme"}',
        {},
        "invalid_payload",
        "assignment_id: required field is missing",
    ),
    ("empty assignment_id", ack("", "accepted"), {}, "invalid_payload", "assignment_id:"),
    (
        "wrong type",
        b'{"assignment_id":7,"status":"accepted","tenant_id":"acme"}',
        {},
        "invalid_payload",
        "assignment_id: expected str",
    ),
    (
        "missing status",
        b'{"assignment_id":"x-1","tenant_id":"acme"}',
        {},
        "invalid_payload",
        "status: required field is missing",
    ),
    ("unknown status", ack("x-2", "done"), {}, "invalid_payload", "status:"),
    (
        "missing tenant",
        ack("x-3", tenant=None),
        {},
        "invalid_payload",
        "tenant_id: required field is missing",
    ),
    ("tenant too long", ack("x-4", tenant=TOO_LONG_TENANT), {}, "invalid_payload", "tenant_id:"),
    (
        "acknowledged_at not int",
        ack("x-5", acknowledged_at="yesterday"),
        {},
        "invalid_payload",
        "acknowledged_at: expected int",
    ),
    (
        "unknown version",
        ack("x-6", version="2"),
        {},
        "unsupported_version",
        'version: expected "1", got "2"',
    ),
    (
        "unknown version in header",
        ack("x-7", version="1"),
        {"version": "3"},
        "unsupported_version",
        'version: expected "1", got "3"',
    ),
    ("too large", ack("x-8", message="m" * 3000), {}, "too_large", "the limit is 2048"),
    (
        "tenant not allowed",
        ack("x-9", tenant="zeta"),
        {},
        "tenant_not_allowed",
        "tenant_id: 'zeta'",
    ),
    (
        "header tenant not allowed",
        ack("x-10", tenant="acme"),
        {"tenant_id": "zeta"},
        "tenant_not_allowed",
        "tenant_id: 'zeta'",
    ),
]


async def test_every_invalid_ack_is_terminated_and_dead_lettered_with_its_reason(
    nats_server, nc
) -> None:
    tok = token()
    cfg = config(tok, allowed_tenants=["acme", "beta"], max_bytes=2048)
    async with running_host(PLUGIN, server=nats_server, config=cfg) as h:
        store = AssignmentStore(h.host, f"caf_{tok}")
        seqs = {}
        for case, payload, headers, _, _ in INVALID:
            seqs[case] = (await h.publish(f"t{tok}.ack", payload, headers=headers)).seq
        for case, _, _, reason, error in INVALID:
            handled = await h.outcome(seqs[case])
            assert (handled.outcome, handled.reason) == ("term", reason), case
            assert error in handled.error, f"{case}: {handled.error}"
            assert handled.deliveries == 1, f"{case}: terminated at once, never retried"
        await wait_until(lambda: len(h.events_of(MessageDeadLettered)) == len(INVALID))
        assert processed(h) == [], "nothing invalid was processed"
        for aid in [f"x-{i}" for i in range(1, 11)]:
            assert await store.get(aid) is None, f"{aid}: an invalid ack never touches the state"

    letters = await dead_letters(nc, tok, len(INVALID))
    for case, payload, headers, reason, error in INVALID:
        msg = letters[seqs[case]]
        assert msg.data == payload, case
        assert msg.headers["Jetplug-Dlq-Reason"] == reason, case
        assert error in msg.headers["Jetplug-Dlq-Error"], case
        assert msg.headers["Jetplug-Plugin"] == "ack_consumer"
        for name, value in headers.items():
            assert msg.headers[name] == value, f"{case}: original header {name} kept"


async def test_duplicates_are_acked_without_processing_again(nats_server) -> None:
    tok, obs = token(), Observer()
    async with running_host(PLUGIN, ("observer", obs), server=nats_server, config=config(tok)) as h:
        store = AssignmentStore(h.host, f"caf_{tok}")
        await record_published(store, "a-dup", published_at=now_ms() - 100)
        first = await h.publish(f"t{tok}.ack", ack("a-dup"))
        await h.outcome(first.seq)
        stored = await store.get("a-dup")
        # the executor sends the same ack again (a new message, so the stream keeps both)
        second = await h.publish(f"t{tok}.ack", ack("a-dup"))
        assert (await h.outcome(second.seq)).outcome == "ack"
        assert await store.get("a-dup") == stored, (
            "the record is unchanged: acked_at is the first ack's"
        )
        assert [(e.outcome, e.latency_ms is None) for e in processed(h)] == [
            ("applied", False),
            ("duplicate", True),
        ]
        assert len(obs.acked) == 1, "the acked hook fires once"


async def test_a_changed_mind_is_applied_but_rejected_is_final(nats_server) -> None:
    tok = token()
    async with running_host(PLUGIN, server=nats_server, config=config(tok)) as h:
        store = AssignmentStore(h.host, f"caf_{tok}")
        await record_published(store, "a-mind", published_at=now_ms() - 100)
        for status in ("accepted", "rejected", "accepted", "error"):
            pub = await h.publish(f"t{tok}.ack", ack("a-mind", status))
            assert (await h.outcome(pub.seq)).outcome == "ack"
        record = await store.get("a-mind")
        assert record is not None and record.status == "rejected"
        assert [(e.status, e.outcome) for e in processed(h)] == [
            ("accepted", "applied"),
            ("rejected", "applied"),
            ("accepted", "stale"),
            ("error", "stale"),
        ]


async def test_unknown_assignment_is_processed_and_counted(nats_server) -> None:
    tok = token()
    async with running_host(PLUGIN, server=nats_server, config=config(tok)) as h:
        store = AssignmentStore(h.host, f"caf_{tok}")
        pub = await h.publish(f"t{tok}.ack", ack("a-unknown", "rejected", message="no capacity"))
        assert (await h.outcome(pub.seq)).outcome == "ack"
        record = await store.get("a-unknown")
        assert record is not None and record.status == "rejected" and record.published_at is None
        assert record.tenant_id == "acme"
        [event] = processed(h)
        assert (event.outcome, event.latency_ms) == ("unknown_assignment", None)


async def test_strict_mode_dead_letters_unknown_assignments(nats_server, nc) -> None:
    tok = token()
    async with running_host(PLUGIN, server=nats_server, config=config(tok, strict=True)) as h:
        store = AssignmentStore(h.host, f"caf_{tok}")
        await record_published(store, "a-known", published_at=now_ms() - 100)
        known = await h.publish(f"t{tok}.ack", ack("a-known"))
        unknown = await h.publish(f"t{tok}.ack", ack("a-stranger"))
        assert (await h.outcome(known.seq)).outcome == "ack"
        handled = await h.outcome(unknown.seq)
        assert (handled.outcome, handled.reason) == ("term", "unknown_assignment")
        assert await store.get("a-stranger") is None
        assert [e.outcome for e in processed(h)] == ["applied"]
    msg = (await dead_letters(nc, tok, 1))[unknown.seq]
    assert msg.headers["Jetplug-Dlq-Reason"] == "unknown_assignment"
    assert "assignment_id: no record of assignment 'a-stranger'" in msg.headers["Jetplug-Dlq-Error"]


async def test_an_ack_naming_another_tenant_is_dead_lettered(nats_server, nc) -> None:
    tok = token()
    async with running_host(PLUGIN, server=nats_server, config=config(tok)) as h:
        store = AssignmentStore(h.host, f"caf_{tok}")
        before = await record_published(
            store, "a-owned", published_at=now_ms() - 100, tenant="acme"
        )
        pub = await h.publish(f"t{tok}.ack", ack("a-owned", "rejected", tenant="beta"))
        handled = await h.outcome(pub.seq)
        assert (handled.outcome, handled.reason) == ("term", "tenant_mismatch")
        assert await store.get("a-owned") == before
    msg = (await dead_letters(nc, tok, 1))[pub.seq]
    assert msg.headers["Jetplug-Dlq-Error"].startswith("tenant_id: 'beta' does not match")


# --- transient failures -----------------------------------------------------------------------


async def test_state_store_unavailable_naks_then_succeeds_on_redelivery(nats_server, nc) -> None:
    tok, obs = token(), Observer()
    cfg = config(tok, retry_delays=[0.3], max_deliver=5)
    async with running_host(PLUGIN, ("observer", obs), server=nats_server, config=cfg) as h:
        store = AssignmentStore(h.host, f"caf_{tok}")
        await record_published(store, "other", published_at=now_ms())
        await set_bucket_writable(nc, f"caf_{tok}", False)
        pub = await h.publish(f"t{tok}.ack", ack("a-retry"))
        nak = await h.wait_event(
            lambda e: (
                isinstance(e, MessageHandled) and e.stream_seq == pub.seq and e.outcome == "nak"
            )
        )
        assert "maximum" in nak.error, nak.error
        assert processed(h) == [] and obs.acked == [], (
            "nothing is processed before the state is stored"
        )
        await set_bucket_writable(nc, f"caf_{tok}", True)

        handled = await h.outcome(pub.seq)
        assert handled.outcome == "ack" and handled.deliveries >= 2
        record = await store.get("a-retry")
        assert record is not None and record.status == "accepted"
        assert record.acked_at == obs.stored_ms(pub.seq), "a redelivery does not move the ack time"
        assert [e.outcome for e in processed(h)] == ["unknown_assignment"] and len(obs.acked) == 1


async def test_state_store_unavailable_until_max_deliver_dead_letters(nats_server, nc) -> None:
    tok = token()
    cfg = config(tok, retry_delays=[0.1], max_deliver=2)
    async with running_host(PLUGIN, server=nats_server, config=cfg) as h:
        store = AssignmentStore(h.host, f"caf_{tok}")
        await record_published(store, "other", published_at=now_ms())
        await set_bucket_writable(nc, f"caf_{tok}", False)
        pub = await h.publish(f"t{tok}.ack", ack("a-doomed"))
        handled = await h.outcome(pub.seq)
        assert (handled.outcome, handled.reason, handled.deliveries) == ("term", "max_deliver", 2)
        assert processed(h) == []
        await set_bucket_writable(nc, f"caf_{tok}", True)
        assert await store.get("a-doomed") is None
    msg = (await dead_letters(nc, tok, 1))[pub.seq]
    assert msg.headers["Jetplug-Dlq-Reason"] == "max_deliver"
    assert "maximum" in msg.headers["Jetplug-Dlq-Error"]


# --- state ordering ---------------------------------------------------------------------------


async def test_an_ack_after_the_result_does_not_move_the_record_back(nats_server) -> None:
    tok = token()
    async with running_host(PLUGIN, server=nats_server, config=config(tok)) as h:
        store = AssignmentStore(h.host, f"caf_{tok}")
        published_at = now_ms() - 2000
        await record_published(store, "a-late", published_at=published_at)
        # the result overtook the ack (written as result_consumer would)
        await store.apply(
            "a-late",
            lambda r: state.resulted(
                r, assignment_id="a-late", status="success", at=published_at + 900
            ),
        )
        pub = await h.publish(f"t{tok}.ack", ack("a-late"))
        assert (await h.outcome(pub.seq)).outcome == "ack"
        record = await store.get("a-late")
        assert record is not None
        assert record.status == "completed", "the late ack does not move the record back"
        assert record.ack_status == "accepted" and record.acked_at is not None
        assert record.end_to_end_ms == 900 and record.usage_billed
        [event] = processed(h)
        assert event.outcome == "applied" and event.latency_ms == record.ack_latency_ms


# --- several processes ------------------------------------------------------------------------


@pytest.mark.timeout(60)
async def test_two_processes_and_a_concurrent_writer_lose_no_update(
    nats_server, tmp_path: Path
) -> None:
    """Two host processes share the durable consumer; meanwhile this process writes the results
    of the same assignments. Every record ends with all three facts."""
    tok, n = token(), 150
    table = settings(tok, in_flight=32)
    configs = [
        write_config(tmp_path / f"host{i}.toml", nats_server.url, {"ack_consumer": table})
        for i in range(2)
    ]
    ids = [f"a-{i:03d}" for i in range(n)]
    async with running_host(("declarer", Declarer(table)), server=nats_server) as h:
        store = AssignmentStore(h.host, f"caf_{tok}")
        for aid in ids:
            await record_published(store, aid, published_at=now_ms() - 50)
        with workers(configs, tmp_path) as procs:
            await wait_until(lambda: all(p.ready() for p in procs), timeout=20)

            async def write_result(aid: str) -> None:
                await store.apply(
                    aid,
                    lambda r: state.resulted(r, assignment_id=aid, status="success", at=now_ms()),
                )

            # each result is written while the processes handle the same assignment's ack
            acks, writes = [], []
            for aid in ids:
                acks.append(await h.publish(f"t{tok}.ack", ack(aid)))
                writes.append(asyncio.ensure_future(write_result(aid)))
            await asyncio.gather(*writes)
            seqs = {a.seq for a in acks}
            await wait_until(
                lambda: seqs <= set(procs[0].handled()) | set(procs[1].handled()), timeout=30
            )
            both = procs[0].handled() + procs[1].handled()
            assert sorted(both) == sorted(seqs), "each ack handled once, by one of the processes"
            conflicts = sum(
                1
                for p in procs
                for r in p.records()
                if r["event"] == "publish_failed" and r["kind"] == "conflict"
            )
            conflicts += sum(1 for e in h.events_of(PublishFailed) if e.kind == "conflict")
            assert conflicts > 0, "the writers raced on the same keys (compare-and-set conflicts)"

        records = await asyncio.gather(*(store.get(aid) for aid in ids))
        lost = [
            aid
            for aid, r in zip(ids, records, strict=True)
            if r is None
            or r.published_at is None
            or r.ack_status != "accepted"
            or r.result_status != "success"
        ]
        assert lost == [], f"updates lost for {len(lost)} assignments"
        assert all(r is not None and r.status == "completed" for r in records)


@pytest.mark.timeout(60)
async def test_push_mode_deliver_group_shares_acks_between_two_processes(
    nats_server, tmp_path: Path
) -> None:
    tok, n = token(), 120
    table = settings(tok, mode="push", deliver_group=f"group-{tok}", in_flight=8)
    configs = [
        write_config(tmp_path / f"host{i}.toml", nats_server.url, {"ack_consumer": table})
        for i in range(2)
    ]
    with workers(configs, tmp_path) as procs:
        await wait_until(lambda: all(p.ready() for p in procs), timeout=20)
        async with running_host(("declarer", Declarer(table)), server=nats_server) as h:
            info = await h.host.engine.api.consumer_info(f"ACK_{tok}", f"acks-{tok}")
            assert info["config"]["deliver_group"] == f"group-{tok}"
            acks = [await h.publish(f"t{tok}.ack", ack(f"p-{i}")) for i in range(n)]
            seqs = {a.seq for a in acks}
            await wait_until(
                lambda: seqs <= set(procs[0].handled()) | set(procs[1].handled()), timeout=30
            )
            first, second = procs[0].handled(), procs[1].handled()
            assert first and second, "both members of the deliver group got work"
            assert sorted(first + second) == sorted(seqs), "each ack handled once"
            store = AssignmentStore(h.host, f"caf_{tok}")
            records = await asyncio.gather(*(store.get(f"p-{i}") for i in range(n)))
            assert all(r is not None and r.ack_status == "accepted" for r in records)
    events = [
        json.dumps(r) for p in procs for r in p.records() if r["event"] == "caf_ack_processed"
    ]
    assert len(events) == n
