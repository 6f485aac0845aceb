"""Publishing: pub-ack, msg-id dedup, and each error kind with its retry behaviour."""

from __future__ import annotations

import time

import pytest
from jetplug import PublishError, StreamSpec, hookimpl
from jetplug.embedded import EmbeddedServer
from jetplug.events import PublishFailed
from jetplug.testing import running_host


class Streams:
    def __init__(self, *specs: StreamSpec) -> None:
        self.specs = list(specs)

    @hookimpl
    def register_streams(self) -> list[StreamSpec]:
        return self.specs


async def test_msg_id_makes_a_repeated_publish_a_duplicate(nats_server) -> None:
    async with running_host(
        ("s", Streams(StreamSpec("PUB_DEDUP", ("pub_dedup.>",)))), server=nats_server
    ) as h:
        first = await h.publish("pub_dedup.x", b"1", msg_id="order-42")
        again = await h.publish("pub_dedup.x", b"1", msg_id="order-42")
        other = await h.publish("pub_dedup.x", b"2")
        assert (first.duplicate, again.duplicate, other.duplicate) == (False, True, False)
        assert again.seq == first.seq and other.seq == first.seq + 1


async def test_every_publish_gets_a_msg_id(nats_server, nc) -> None:
    async with running_host(
        ("s", Streams(StreamSpec("PUB_ID", ("pub_id.>",)))), server=nats_server
    ) as h:
        ack = await h.publish("pub_id.x", b"1")
    msg = await nc.jetstream().get_msg("PUB_ID", ack.seq)
    assert msg.headers and msg.headers.get("Nats-Msg-Id")


async def test_no_stream_fails_at_once_without_retries(nats_server) -> None:
    async with running_host(
        server=nats_server, config="[jetstream]\npublish_attempts = 5\npublish_retry_wait = 1"
    ) as h:
        started = time.monotonic()
        with pytest.raises(PublishError) as err:
            await h.publish("nowhere.at.all", b"x")
        assert err.value.kind == "no_stream" and not err.value.retryable
        assert time.monotonic() - started < 1.0
        assert "no stream" in str(err.value)
        failed = h.events_of(PublishFailed)[-1]
        assert failed.kind == "no_stream" and failed.attempts == 1


async def test_wrong_expected_stream(nats_server) -> None:
    async with running_host(
        ("s", Streams(StreamSpec("PUB_WS", ("pub_ws.>",)))), server=nats_server
    ) as h:
        with pytest.raises(PublishError) as err:
            await h.host.publisher.publish("pub_ws.x", b"x", expected_stream="OTHER")
        assert err.value.kind == "wrong_stream"


async def test_payload_too_large(nats_server) -> None:
    async with running_host(
        ("s", Streams(StreamSpec("PUB_BIG", ("pub_big.>",)))), server=nats_server
    ) as h:
        with pytest.raises(PublishError) as err:
            await h.publish("pub_big.x", b"x" * (2 * 1024 * 1024))
        assert err.value.kind == "too_large"


async def test_stream_max_msg_size_is_too_large(nats_server) -> None:
    spec = StreamSpec("PUB_SMALL", ("pub_small.>",), max_msg_size=100)
    async with running_host(("s", Streams(spec)), server=nats_server) as h:
        with pytest.raises(PublishError) as err:
            await h.publish("pub_small.x", b"x" * 500)
        assert err.value.kind == "too_large"


@pytest.mark.timeout(30)
async def test_permission_denied_is_named(tmp_path) -> None:
    server = EmbeddedServer(
        store_dir=tmp_path / "nats",
        extra_config="""
authorization {
  users = [
    { user: app, password: "s3cret-pass", permissions: {
        publish: { allow: ["$JS.API.>", "allowed.>", "_INBOX.>"], deny: ["denied.>"] },
        subscribe: { allow: ["_INBOX.>", "$JS.>"] } } }
  ]
}
""",
    ).start()
    try:
        config = {
            "nats": {"auth": {"user": "app", "password": "s3cret-pass"}},
            "jetstream": {
                "publish_timeout": 0.5,
                "publish_attempts": 2,
                "publish_retry_wait": 0.05,
            },
        }
        spec = StreamSpec("PUB_PERM", ("denied.>", "allowed.>"))
        async with running_host(("s", Streams(spec)), server=server, config=config) as h:
            assert (await h.publish("allowed.x", b"ok")).seq == 1
            with pytest.raises(PublishError) as err:
                await h.publish("denied.x", b"no")
            assert err.value.kind == "permission"
            assert "s3cret-pass" not in str(err.value)
    finally:
        server.stop()


async def test_pipelined_publish_many_keeps_order(nats_server) -> None:
    from jetplug import Publish

    async with running_host(
        ("s", Streams(StreamSpec("PUB_MANY", ("pub_many.>",)))), server=nats_server
    ) as h:
        results = await h.host.publisher.publish_many(
            Publish(f"pub_many.{i}", b"x") for i in range(500)
        )
        seqs = [r.seq for r in results]  # type: ignore[union-attr]
        assert seqs == list(range(1, 501))


@pytest.mark.parametrize(
    ("attempts", "attempt", "started_ago", "retries"),
    [
        (3, 1, 0.0, True),  # counted attempts left
        (3, 3, 1.0, True),  # counted attempts used up at once (no responders): time is left
        (3, 5, 9.0, True),  # ... still inside the horizon with the next attempt's timeout
        (3, 6, 11.0, False),  # the next attempt could end after the horizon
        (1, 1, 0.0, False),  # attempts=1 means no retry, however fast the failure
    ],
)
async def test_fast_failures_are_retried_for_as_long_as_timeouts_could_take(
    attempts: int, attempt: int, started_ago: float, retries: bool
) -> None:
    import asyncio

    from jetplug import Publish
    from jetplug.engine.publisher import Publisher, _Pending, retry_horizon

    # the rule alone, without a connection: timeout 5 s, waits 0.2 s doubling, capped at 2 s
    publisher = Publisher(None, None, None, lambda e: None, timeout=5.0)  # type: ignore[arg-type]
    assert retry_horizon(5.0, 3, 0.2, 2.0) == pytest.approx(15.66)
    fut = asyncio.get_running_loop().create_future()
    pending = _Pending(Publish("x", b""), {}, fut, attempts)
    pending.attempt = attempt
    pending.started = time.monotonic() - started_ago
    assert publisher._may_retry(pending, 0.2) is retries
