"""Switch, allow-list, retries and publish error kinds, against a real server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from caf_adapter_helpers import DECISION, REQUEST, Observer, adapter_host, request
from jetplug import ConfigError
from jetplug.events import PublishFailed
from jetplug_caf_adapter import AssignmentError, publish_assignment
from jetplug_caf_common.events import (
    AssignmentBlocked,
    AssignmentFailed,
    AssignmentPublished,
    AssignmentRetried,
    AssignmentSkipped,
)
from jetplug_caf_common.store import AssignmentStore


async def stream_count(nc: Any, stream: str) -> int:
    return int((await nc.jetstream().stream_info(stream)).state.messages)


async def test_switched_off_skips_everything(nats_server, nc, names) -> None:
    async with adapter_host(nats_server, names.config(assignments_enabled=False)) as h:
        result = await publish_assignment(REQUEST, DECISION)
        assert result.outcome == "skipped" and result.reason == "disabled"
        assert result.assignment_id is None and result.seq is None and result.attempts == 0
        assert [e.reason for e in h.events_of(AssignmentSkipped)] == ["disabled"]
        with pytest.raises(AssignmentError) as err:
            await publish_assignment(request(tenant_id=None), DECISION)
        assert err.value.field == "request.tenant_id", "input is still checked while switched off"
    assert await stream_count(nc, names.stream) == 0


async def test_allow_list_blocks_other_tenants(nats_server, nc, names) -> None:
    async with adapter_host(nats_server, names.config(allowed_tenants=["acme", "globex"])) as h:
        assert (await publish_assignment(REQUEST, DECISION)).outcome == "published"
        assert (
            await publish_assignment(request(tenant_id="globex"), DECISION)
        ).outcome == "published"
        blocked = await publish_assignment(request(tenant_id="initech"), DECISION)
        assert blocked.outcome == "blocked" and blocked.reason == "tenant_not_allowed"
        assert blocked.assignment_id is None and blocked.seq is None
        assert [(e.tenant_id, e.reason) for e in h.events_of(AssignmentBlocked)] == [
            ("initech", "tenant_not_allowed")
        ]
        assert len(h.events_of(AssignmentPublished)) == 2
    assert await stream_count(nc, names.stream) == 2


async def test_empty_allow_list_allows_every_tenant(nats_server, names) -> None:
    async with adapter_host(nats_server, names.config(allowed_tenants=[])) as h:
        for tenant in ("acme", "initech", "x" * 256):
            assert (
                await publish_assignment(request(tenant_id=tenant), DECISION)
            ).outcome == "published"
        assert h.events_of(AssignmentBlocked) == []


async def test_no_stream_fails_at_once_with_one_attempt(nats_server, names) -> None:
    # provision = off: the declared stream is not created, so no stream stores the subject
    config = names.config(jetstream={"provision": "off"}, retry_attempts=5, retry_base_ms=500)
    async with adapter_host(nats_server, config) as h:
        started = time.monotonic()
        with pytest.raises(AssignmentError) as err:
            await publish_assignment(REQUEST, DECISION)
        assert time.monotonic() - started < 1.0, "not retried"
        exc = err.value
        assert exc.kind == "no_stream" and exc.exit_code == 1
        assert exc.assignment_id and exc.assignment_id in str(exc) and "no stream" in str(exc)
        assert "after 1 attempt" in str(exc)
        assert h.events_of(AssignmentRetried) == []
        assert [(e.assignment_id, e.kind) for e in h.events_of(AssignmentFailed)] == [
            (exc.assignment_id, "no_stream")
        ]
        assert [e.attempts for e in h.events_of(PublishFailed) if e.plugin == "caf_adapter"] == [1]
        assert h.events_of(AssignmentPublished) == []


async def test_too_large_fails_at_once(nats_server, nc, names) -> None:
    huge = request(task={"type": "t", "payload": "x" * (2 * 1024 * 1024)})
    async with adapter_host(nats_server, names.config(retry_attempts=5)) as h:
        with pytest.raises(AssignmentError) as err:
            await publish_assignment(huge, DECISION)
        assert err.value.kind == "too_large"
        assert h.events_of(AssignmentRetried) == []
        assert [e.kind for e in h.events_of(AssignmentFailed)] == ["too_large"]
    assert await stream_count(nc, names.stream) == 0


@pytest.mark.timeout(60)
async def test_retryable_errors_are_retried_with_the_same_id_until_the_server_is_back(
    fresh_server, nc, names
) -> None:
    """The server dies before the publish and comes back after the first retry: the assignment
    is stored once, with the same id, after several attempts."""
    observer = Observer()
    config = names.config(jetstream={"publish_timeout": 0.5}, retry_attempts=10, retry_base_ms=50)
    async with adapter_host(fresh_server, config, ("observer", observer)) as h:
        fresh_server.kill()
        publishing = asyncio.create_task(publish_assignment(REQUEST, DECISION))
        first_retry = await h.wait_event(lambda e: isinstance(e, AssignmentRetried), timeout=10)
        assert first_retry.kind == "timeout" and first_retry.attempt == 1
        fresh_server.start()
        result = await asyncio.wait_for(publishing, 30)
        assert result.outcome == "published" and result.attempts >= 2
        assert not result.duplicate, (
            "an earlier attempt of the same call is not a duplicate to the caller"
        )
        retries = h.events_of(AssignmentRetried)
        assert {e.assignment_id for e in retries} == {result.assignment_id}
        assert [e.attempt for e in retries] == list(range(1, result.attempts))
        assert h.events_of(AssignmentFailed) == []
        record = await AssignmentStore(h.host, names.bucket).get(result.assignment_id)
        assert record is not None and record.status == "published"
        assert len(observer.published) == 1
        server_url = fresh_server.url
    import nats

    client = await nats.connect(server_url)
    try:
        info = await client.jetstream().stream_info(names.stream)
        assert info.state.messages == 1, "every attempt carried the same Nats-Msg-Id"
        msg = await client.jetstream().get_msg(names.stream, info.state.last_seq)
        assert msg.headers["Nats-Msg-Id"] == result.assignment_id
    finally:
        await client.close()


@pytest.mark.timeout(30)
async def test_retryable_error_fails_after_the_last_attempt(fresh_server, names) -> None:
    config = names.config(
        jetstream={"publish_timeout": 0.3}, retry_attempts=3, retry_base_ms=100, retry_jitter=0.0
    )
    async with adapter_host(fresh_server, config) as h:
        fresh_server.kill()
        started = time.monotonic()
        with pytest.raises(AssignmentError) as err:
            await publish_assignment(REQUEST, DECISION)
        elapsed = time.monotonic() - started
        exc = err.value
        assert exc.kind == "timeout" and "after 3 attempts" in str(exc)
        # 3 x 0.3 s timeouts + 0.1 s + 0.2 s backoff (the sweeper adds up to a quarter timeout each)
        assert 1.2 <= elapsed < 3.0
        assert [(e.attempt, e.kind) for e in h.events_of(AssignmentRetried)] == [
            (1, "timeout"),
            (2, "timeout"),
        ]
        assert [(e.assignment_id, e.kind) for e in h.events_of(AssignmentFailed)] == [
            (exc.assignment_id, "timeout")
        ]


async def test_backoff_doubles_with_bounded_jitter(nats_server, names) -> None:
    from jetplug_caf_adapter.adapter import running_adapter

    async with adapter_host(nats_server, names.config()) as h:
        adapter = running_adapter(h.host)
        for _ in range(50):
            assert 0.2 <= adapter.backoff(1) <= 0.22
            assert 0.4 <= adapter.backoff(2) <= 0.44


async def test_config_errors_name_the_key(names) -> None:
    with pytest.raises(ConfigError) as err:
        async with adapter_host(
            None, names.config(deadline_min_ms=0, retry_attempts="3", nonsense=1)
        ):
            pass
    text = str(err.value)
    assert "plugins.caf_adapter.deadline_min_ms" in text
    assert "plugins.caf_adapter.retry_attempts" in text
    assert "plugins.caf_adapter.nonsense: unknown key" in text
    with pytest.raises(ConfigError) as err:
        async with adapter_host(None, names.config(deadline_min_ms=9000, deadline_max_ms=8000)):
            pass
    assert (
        "plugins.caf_adapter.deadline_min_ms: 9000 is greater than deadline_max_ms (8000)"
        in str(err.value)
    )
