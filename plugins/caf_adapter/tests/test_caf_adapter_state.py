"""The ``published`` record, the published hook, and deadline expiry (also after a restart)."""

from __future__ import annotations

import time
import uuid

from caf_adapter_helpers import DECISION, REQUEST, Observer, adapter_host, request
from jetplug.testing import wait_until
from jetplug_caf_adapter import publish_assignment
from jetplug_caf_adapter.adapter import running_adapter
from jetplug_caf_common import state
from jetplug_caf_common.contracts import ExecAssignment
from jetplug_caf_common.events import AssignmentExpired
from jetplug_caf_common.store import AssignmentStore

#: expiry settings for tests: a 200 ms deadline (set by the request) expires ~300 ms later
FAST = {"expiry_interval": 0.05, "expiry_grace": 0.1}
SHORT = request(options={"deadline_ms": 200})


def now_ms() -> int:
    return int(time.time() * 1000)


async def test_the_record_says_published_and_the_hook_fires(nats_server, names) -> None:
    observer = Observer()
    async with adapter_host(nats_server, names.config(), ("observer", observer)) as h:
        before = now_ms()
        result = await publish_assignment(REQUEST, DECISION)
        record = await AssignmentStore(h.host, names.bucket).get(result.assignment_id)
    assert record is not None and record.status == "published"
    assert record.assignment_id == result.assignment_id and record.stream_seq == result.seq
    assert record.tenant_id == "acme" and record.request_id == REQUEST["request_id"]
    assert record.provider_id == "openai:gpt-4o" and record.job_type == "text.generate"
    assert record.trace_id == "tr-123" and record.deadline_ms == 5000
    assert before <= record.published_at <= now_ms()
    assert record.deadline_at == record.published_at + 5000
    [(hooked, assignment)] = observer.published
    assert hooked == record
    assert (
        isinstance(assignment, ExecAssignment) and assignment.assignment_id == result.assignment_id
    )


async def test_an_ack_that_arrived_first_is_kept(nats_server, names) -> None:
    aid = str(uuid.uuid4())
    observer = Observer()
    async with adapter_host(nats_server, names.config(), ("observer", observer)) as h:
        store = AssignmentStore(h.host, names.bucket)
        acked_at = now_ms()
        await store.apply(
            aid, lambda r: state.acknowledged(r, assignment_id=aid, status="accepted", at=acked_at)
        )
        result = await publish_assignment(REQUEST, DECISION, assignment_id=aid)
        record = await store.get(aid)
    assert result.recorded and not result.duplicate
    assert record is not None and record.status == "accepted", (
        "publishing does not move the record back"
    )
    assert record.ack_status == "accepted" and record.acked_at == acked_at
    assert record.published_at is not None and record.stream_seq == result.seq
    assert len(observer.published) == 1


async def test_an_assignment_without_a_result_expires(nats_server, names) -> None:
    observer = Observer()
    async with adapter_host(nats_server, names.config(**FAST), ("observer", observer)) as h:
        result = await publish_assignment(SHORT, DECISION)
        assert result.deadline_ms == 200
        expired = await h.wait_event(
            lambda e: isinstance(e, AssignmentExpired) and e.assignment_id == result.assignment_id,
            timeout=10,
        )
        assert expired.tenant_id == "acme"
        record = await AssignmentStore(h.host, names.bucket).get(result.assignment_id)
        assert record is not None and record.status == "expired"
        assert record.expired_at >= record.published_at + 200 + 100, "not before deadline + grace"
        await wait_until(lambda: observer.expired, timeout=5)
        assert [r.assignment_id for r in observer.expired] == [result.assignment_id]
        assert len(h.events_of(AssignmentExpired)) == 1


async def test_rejected_and_completed_assignments_do_not_expire(nats_server, names) -> None:
    async with adapter_host(nats_server, names.config(**FAST)) as h:
        store = AssignmentStore(h.host, names.bucket)
        rejected = await publish_assignment(SHORT, DECISION)
        completed = await publish_assignment(SHORT, DECISION)
        at = now_ms()
        await store.apply(
            rejected.assignment_id,
            lambda r: state.acknowledged(
                r, assignment_id=rejected.assignment_id, status="rejected", at=at
            ),
        )
        await store.apply(
            completed.assignment_id,
            lambda r: state.resulted(
                r, assignment_id=completed.assignment_id, status="success", at=at
            ),
        )
        control = await publish_assignment(SHORT, DECISION)
        await h.wait_event(
            lambda e: isinstance(e, AssignmentExpired) and e.assignment_id == control.assignment_id
        )
        expiry = running_adapter(h.host).expiry
        assert expiry is not None
        ids = (rejected.assignment_id, completed.assignment_id, control.assignment_id)
        await wait_until(lambda: expiry.checks >= 3 and not any(expiry.scheduled(i) for i in ids))
        assert [e.assignment_id for e in h.events_of(AssignmentExpired)] == [control.assignment_id]
        assert (await store.get(rejected.assignment_id)).status == "rejected"
        assert (await store.get(completed.assignment_id)).status == "completed"


async def test_an_assignment_expires_under_a_host_started_after_a_restart(
    nats_server, names
) -> None:
    # first router: publishes, has expiry off, and stops before the deadline
    async with adapter_host(nats_server, names.config(expiry_enabled=False)) as first:
        result = await publish_assignment(SHORT, DECISION)
        assert running_adapter(first.host).expiry is None
        assert first.events_of(AssignmentExpired) == []
    observer = Observer()
    # the next router finds it in the bucket at startup
    async with adapter_host(nats_server, names.config(**FAST), ("observer", observer)) as second:
        expired = await second.wait_event(
            lambda e: isinstance(e, AssignmentExpired) and e.assignment_id == result.assignment_id,
            timeout=10,
        )
        assert expired.tenant_id == "acme"
        record = await AssignmentStore(second.host, names.bucket).get(result.assignment_id)
        assert record is not None and record.status == "expired"
        await wait_until(lambda: observer.expired, timeout=5)


async def test_two_routers_report_one_expiry(nats_server, names) -> None:
    """Both routers track the assignment; the compare-and-set lets exactly one of them expire it."""
    config = names.config(**FAST)
    one, two = Observer(), Observer()
    async with (
        adapter_host(nats_server, config, ("observer", one)) as a,
        adapter_host(nats_server, config, ("observer", two)) as b,
    ):
        result = await publish_assignment(SHORT, DECISION, host=a.host)
        aid = result.assignment_id
        record = await AssignmentStore(b.host, names.bucket).get(aid)
        # b tracks it too (as a rescan would make it), due at the same moment as in a
        running_adapter(b.host).expiry.schedule(aid, record.deadline_at)
        assert running_adapter(a.host).expiry.scheduled(aid)

        def expired_somewhere() -> bool:
            return bool(
                [
                    e
                    for h in (a, b)
                    for e in h.events_of(AssignmentExpired)
                    if e.assignment_id == aid
                ]
            )

        await wait_until(expired_somewhere, timeout=10)
        for h in (a, b):
            expiry = running_adapter(h.host).expiry
            await wait_until(lambda ex=expiry: not ex.scheduled(aid))
        events = [
            e for h in (a, b) for e in h.events_of(AssignmentExpired) if e.assignment_id == aid
        ]
        assert len(events) == 1
        assert len(one.expired) + len(two.expired) == 1
