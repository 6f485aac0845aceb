"""Publishing to JetStream: always a pub-ack, always a msg-id, retries only when they can help.

All pub-acks come back on one wildcard inbox subscription, keyed by a token in the reply subject,
so many publishes can be in flight at once (the window) without a subscription, task or timer per
publish. One sweeper times out unanswered publishes in send order.

Error kinds (``PublishError.kind``): ``no_stream`` (no stream stores the subject),
``wrong_stream`` (``expected_stream`` mismatch), ``too_large``, ``permission``, ``timeout``,
``no_responders`` (a stream exists but has no leader, e.g. during an election),
``conflict`` (an expected last sequence did not match: a compare-and-set lost),
``not_connected``, ``server_error``. Only ``timeout``, ``no_responders`` and a reconnect in
progress are retried, with the same msg-id so the server stores the message once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import msgspec
import nats.errors

from .. import otel, trace
from ..errors import PublishError
from ..events import Event, Published, PublishFailed
from ..stats import PublishStats
from ..types import PubAck, Publish
from .jsapi import ApiError, JsApi

if TYPE_CHECKING:
    from ..connection import Connection
    from ..plugins import Plugins

log = logging.getLogger("jetplug.publisher")

MSG_ID = "Nats-Msg-Id"
EXPECTED_STREAM = "Nats-Expected-Stream"
ERR_WRONG_STREAM = 10060
ERR_TOO_LARGE = 10054
ERR_WRONG_LAST_SEQUENCE = 10071


def retry_delay(attempt: int, wait: float, max_wait: float) -> float:
    """Delay before the attempt after ``attempt`` (1-based): doubling from ``wait``, capped."""
    return float(min(wait * (2 ** min(attempt - 1, 30)), max_wait))


def retry_horizon(timeout: float, attempts: int, wait: float, max_wait: float) -> float:
    """Longest time from the first send to the last attempt's timeout (jitter included).

    A stream's ``duplicate_window`` must be longer, or a retried publish could be stored twice.
    """
    waits = sum(retry_delay(a, wait, max_wait) * 1.1 for a in range(1, attempts))
    return timeout * attempts + waits


class _ApiErrorWire(msgspec.Struct, gc=False):
    code: int = 0
    err_code: int = 0
    description: str = ""


class _AnswerWire(msgspec.Struct, gc=False):
    """A pub-ack or an API error, as the server sends it (scalars only: no reference cycles, so
    the cyclic garbage collector need not track one per publish)."""

    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    domain: str = ""
    error: _ApiErrorWire | None = None


_decode_answer = msgspec.json.Decoder(_AnswerWire).decode


class _Window:
    """How many more publishes may be in flight, and the senders waiting for a slot.

    A counter rather than an :class:`asyncio.Semaphore`: taking and returning a slot happens for
    every publish, and a plain integer costs a fraction of the semaphore's checks.
    """

    __slots__ = ("free", "waiters")

    def __init__(self, size: int) -> None:
        self.free = size
        self.waiters: deque[asyncio.Future[None]] = deque()

    async def wait(self) -> None:
        """Wait until a slot is handed over (call only when ``free`` is 0)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed over just as the sender gave up: pass it on
            raise

    def release(self) -> None:
        """Return a slot: to the longest waiting sender, else to the counter."""
        waiters = self.waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.free += 1


class _Pending:
    __slots__ = (
        "attempt",
        "attempts",
        "future",
        "headers",
        "publish",
        "sent_at",
        "span",
        "started",
        "token",
    )

    def __init__(
        self,
        publish: Publish,
        headers: dict[str, str],
        future: asyncio.Future[PubAck],
        attempts: int,
    ):
        self.publish = publish
        self.headers = headers
        self.future = future
        self.attempts = attempts
        self.attempt = 0
        self.span: Any = None
        self.started = self.sent_at = time.monotonic()
        self.token = ""


class Publisher:
    """The host's publisher; plugins reach it as ``host.publisher``."""

    def __init__(
        self,
        connection: Connection,
        api: JsApi,
        plugins: Plugins | None,
        emit: Callable[[Event], None],
        *,
        timeout: float = 5.0,
        attempts: int = 3,
        retry_wait: float = 0.2,
        retry_max_wait: float = 2.0,
        window: int = 1024,
    ) -> None:
        self.connection = connection
        self.api = api
        self.plugins = plugins
        self.emit = emit
        self.timeout = timeout
        self.attempts = attempts
        self.retry_wait = retry_wait
        self.retry_max_wait = retry_max_wait
        self.window = _Window(window)
        #: in flight by reply token, in send order (the sweeper relies on it)
        self._pending: dict[str, _Pending] = {}
        self._counter = 0
        self._id_prefix = os.urandom(8).hex()
        self._inbox = ""
        self._reply_prefix = ""
        self._sub: Any = None
        self._sweeper: asyncio.Task[None] | None = None
        self._before = self._after = False
        #: build a ``Published`` per publish only when a ``track_event`` sink takes it
        self._events = True
        #: make OpenTelemetry producer spans (decided once, at start)
        self.spans = False
        #: pub-acks per stream (the metrics plugin exposes them)
        self.stats: dict[str, PublishStats] = {}

    async def start(self) -> None:
        """Subscribe the reply inbox and start the timeout sweeper."""
        self.spans = otel.active()
        nc = self.connection.client
        self._inbox = nc.new_inbox()
        self._reply_prefix = self._inbox + "."
        self._sub = await nc.subscribe(
            self._inbox + ".*", cb=self._on_reply, pending_msgs_limit=-1, pending_bytes_limit=-1
        )
        if self.plugins is not None:
            self._before, self._after = self.plugins.has_publish_hooks()
            self._events = self.plugins.wants(Published)
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def close(self) -> None:
        """Fail what is still pending and stop the sweeper."""
        if self._sweeper is not None:
            self._sweeper.cancel()
        for pending in list(self._pending.values()):
            self._finish_error(
                pending, PublishError("not_connected", pending.publish.subject, "publisher closed")
            )
        self._pending.clear()
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:
                log.debug("unsubscribe failed", exc_info=True)

    def new_msg_id(self) -> str:
        """A process-unique msg-id (random prefix + counter)."""
        self._counter += 1
        return f"{self._id_prefix}-{self._counter}"

    async def publish(
        self,
        subject: str,
        data: bytes,
        *,
        headers: dict[str, str] | None = None,
        msg_id: str = "",
        expected_stream: str = "",
        plugin: str = "",
        attempts: int = 0,
    ) -> PubAck:
        """Publish and wait for the pub-ack; raise :class:`PublishError` if it does not come.

        ``attempts`` overrides ``[jetstream] publish_attempts`` for this publish (1 = no retry,
        for callers with their own retry policy).
        """
        fut = await self.publish_async(
            subject,
            data,
            headers=headers,
            msg_id=msg_id,
            expected_stream=expected_stream,
            plugin=plugin,
            attempts=attempts,
        )
        return await fut

    async def publish_async(
        self,
        subject: str,
        data: bytes,
        *,
        headers: dict[str, str] | None = None,
        msg_id: str = "",
        expected_stream: str = "",
        plugin: str = "",
        attempts: int = 0,
    ) -> asyncio.Future[PubAck]:
        """Send a publish and return a future of its pub-ack, without waiting for it.

        Waits only while ``window`` publishes are already in flight. The future raises
        :class:`PublishError` on failure.
        """
        pub = Publish(subject, data, dict(headers or {}), msg_id, expected_stream, plugin)
        return await self.send(pub, attempts=attempts)

    async def publish_many(self, publishes: Iterable[Publish]) -> list[PubAck | PublishError]:
        """Publish many messages pipelined through the window; results in input order."""
        futures = [await self.send(p) for p in publishes]
        results: list[PubAck | PublishError] = []
        for fut in futures:
            try:
                results.append(await fut)
            except PublishError as exc:
                results.append(exc)
        return results

    async def send(self, pub: Publish, attempts: int = 0) -> asyncio.Future[PubAck]:
        """Run ``before_publish`` hooks, then send ``pub``; the future resolves to its pub-ack."""
        if self._before and self.plugins is not None:
            await self.plugins.before_publish(pub)
        if not pub.msg_id:
            pub.msg_id = pub.headers.get(MSG_ID) or self.new_msg_id()
        headers = pub.headers
        headers[MSG_ID] = pub.msg_id
        span = None
        if self.spans and trace.HEADER not in headers:
            span = otel.start_producer_span(pub.subject, headers)
        else:
            parent = trace.outgoing(headers.get(trace.HEADER))
            if parent is not None:
                headers[trace.HEADER] = parent
        if pub.expected_stream:
            headers[EXPECTED_STREAM] = pub.expected_stream
        fut: asyncio.Future[PubAck] = asyncio.get_running_loop().create_future()
        window = self.window
        if window.free > 0:
            window.free -= 1
        else:
            await window.wait()
        pending = _Pending(pub, headers, fut, attempts or self.attempts)
        pending.span = span
        await self._transmit(pending)
        return fut

    async def _transmit(self, pending: _Pending) -> None:
        pending.attempt += 1
        if pending.attempt > 1:
            pending.sent_at = time.monotonic()
        self._counter += 1
        token = str(self._counter)
        pending.token = token
        self._pending[token] = pending
        pub = pending.publish
        try:
            await self.connection.client.publish(
                pub.subject, pub.data, reply=self._reply_prefix + token, headers=pending.headers
            )
        except nats.errors.MaxPayloadError:
            self._pending.pop(token, None)
            self._fail(
                pending,
                "too_large",
                f"payload of {len(pub.data)} bytes exceeds the server's max_payload",
            )
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionDrainingError):
            self._pending.pop(token, None)
            self._fail(pending, "not_connected", "the connection is closed")
        except nats.errors.BadSubjectError:
            self._pending.pop(token, None)
            self._fail(pending, "bad_subject", "the subject is empty or invalid")
        except nats.errors.OutboundBufferLimitError:
            self._pending.pop(token, None)
            self._retry_or_fail(
                pending, "not_connected", "reconnecting and the outbound buffer is full"
            )

    async def _on_reply(self, msg: Any) -> None:
        token = msg.subject[len(self._reply_prefix) :]
        pending = self._pending.pop(token, None)
        if pending is None or pending.future.done():
            return  # a late answer to an attempt that already timed out and was retried
        if msg.headers and msg.headers.get("Status") == "503":
            await self._no_responders(pending)
            return
        try:
            answer = _decode_answer(msg.data)
        except msgspec.DecodeError:
            self._fail(pending, "server_error", f"unreadable pub-ack: {msg.data[:100]!r}")
            return
        err = answer.error
        if err is not None:
            code, err_code, desc = err.code, err.err_code, err.description
            if err_code == ERR_WRONG_STREAM:
                self._fail(
                    pending,
                    "wrong_stream",
                    f"{desc} (expected {pending.publish.expected_stream!r})",
                )
            elif err_code == ERR_WRONG_LAST_SEQUENCE:
                self._fail(pending, "conflict", desc)
            elif err_code == ERR_TOO_LARGE or "exceeds maximum" in desc:
                self._fail(pending, "too_large", desc)
            elif code == 503:
                self._retry_or_fail(pending, "no_responders", desc)
            else:
                self._fail(pending, "server_error", f"{desc} (err_code {err_code})")
            return
        self._succeed(pending, PubAck(answer.stream, answer.seq, answer.duplicate, answer.domain))

    async def _no_responders(self, pending: _Pending) -> None:
        subject = pending.publish.subject
        try:
            streams = await self.api.stream_names(subject)
        except (ApiError, nats.errors.Error, asyncio.TimeoutError) as exc:
            self._retry_or_fail(
                pending, "no_responders", f"no responders and stream lookup failed: {exc}"
            )
            return
        if not streams:
            self._fail(pending, "no_stream", "no stream stores this subject; declare or create one")
        else:
            self._retry_or_fail(
                pending, "no_responders", f"stream {streams[0]} did not answer (leader election?)"
            )

    async def _sweep(self) -> None:
        interval = max(self.timeout / 4, 0.05)
        while True:
            await asyncio.sleep(interval)
            deadline = time.monotonic() - self.timeout
            while self._pending:
                token, pending = next(iter(self._pending.items()))
                if pending.sent_at > deadline:
                    break
                del self._pending[token]
                if pending.future.done():
                    continue
                denied = self.connection.permission_denied(pending.publish.subject)
                if denied:
                    self._fail(pending, "permission", denied)
                else:
                    self._retry_or_fail(pending, "timeout", f"no pub-ack within {self.timeout:g}s")

    def _retry_or_fail(self, pending: _Pending, kind: str, detail: str) -> None:
        delay = retry_delay(pending.attempt, self.retry_wait, self.retry_max_wait)
        delay += random.uniform(0, delay * 0.1)
        if not self._may_retry(pending, delay):
            self._fail(
                pending, kind, f"{detail} (after {pending.attempt} attempts)", retryable=True
            )
            return
        log.debug("retrying publish to %s in %.2fs (%s)", pending.publish.subject, delay, kind)
        loop = asyncio.get_running_loop()
        loop.call_later(delay, lambda: loop.create_task(self._transmit(pending)))

    def _may_retry(self, pending: _Pending, delay: float) -> bool:
        """Whether another attempt may follow in ``delay`` seconds.

        ``attempts`` counts attempts that time out. A failure that comes back at once (no
        responders while a stream elects a new leader, the outbound buffer full while
        reconnecting) uses up no time, so counting it the same way would give up within a second
        or two, long before an election ends. Such failures are retried as long as the next
        attempt, with its own timeout, still ends within the time the counted attempts could
        have taken (:func:`retry_horizon`, the bound the duplicate windows are checked against).
        """
        if pending.attempt < pending.attempts:
            return True
        horizon = retry_horizon(
            self.timeout, pending.attempts, self.retry_wait, self.retry_max_wait
        )
        elapsed = time.monotonic() - pending.started
        return elapsed + delay + self.timeout <= horizon

    def _fail(self, pending: _Pending, kind: str, detail: str, *, retryable: bool = False) -> None:
        self._finish_error(
            pending, PublishError(kind, pending.publish.subject, detail, retryable=retryable)
        )

    def _finish_error(self, pending: _Pending, error: PublishError) -> None:
        if pending.future.done():
            return
        pending.future.set_exception(error)
        self.window.release()
        if pending.span is not None:
            otel.end_producer_span(pending.span, error)
        pub = pending.publish
        self.emit(
            PublishFailed(
                subject=pub.subject,
                kind=error.kind,
                error=error.detail,
                attempts=pending.attempt,
                plugin=pub.plugin,
            )
        )
        if self._after and self.plugins is not None:
            asyncio.get_running_loop().create_task(self.plugins.after_publish(pub, None, error))

    def _succeed(self, pending: _Pending, ack: PubAck) -> None:
        pending.future.set_result(ack)
        self.window.release()
        if pending.span is not None:
            otel.end_producer_span(pending.span, seq=ack.seq)
        stats = self.stats.get(ack.stream)
        if stats is None:
            stats = self.stats[ack.stream] = PublishStats()
        if ack.duplicate:
            stats.duplicate += 1
        else:
            stats.stored += 1
        if pending.attempt > 1:
            stats.retries += pending.attempt - 1
        duration = time.monotonic() - pending.started
        stats.duration.observe(duration)
        pub = pending.publish
        if self._events:  # else nobody listens: no event object per publish
            self.emit(
                Published(
                    subject=pub.subject,
                    stream=ack.stream,
                    seq=ack.seq,
                    duplicate=ack.duplicate,
                    duration=duration,
                    attempts=pending.attempt,
                    plugin=pub.plugin,
                )
            )
        if self._after and self.plugins is not None:
            asyncio.get_running_loop().create_task(self.plugins.after_publish(pub, ack, None))
