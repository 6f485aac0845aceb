"""Running one durable consumer: continuous pull (default) or push, dispatch, and self-healing.

Pull follows the model of nats.go's ``Consume()``: one inbox subscription with a callback; pull
requests to ``$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`` carrying ``batch``, ``expires`` and
``idle_heartbeat``; a refill when fetched-but-unfinished messages fall to half the in-flight
budget; status messages 100 (heartbeat), 408 (request expired) and 409 (request ended) handled as
normal flow, never as errors. Each request gets its own reply token so its end is matched
exactly.

When every handler is a plain ``def``, the chain is decided inline in the subscription callback
and an ack is sent right there (no coroutine per message). Otherwise, and for anything but an
ack, each message runs as its own tracked coroutine, started eagerly (see :mod:`.eager`), so a
handler that does not wait costs no task. Either way each message has its own context.
A supervisor per consumer sends in-progress for long handlers, notices stalls (no heartbeat,
deleted consumer, lost pull requests after a reconnect) and recovers.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Any, Literal

from .. import otel, trace
from ..events import ConsumerStateChanged, MessageRedelivered
from ..message import Message, MetadataError
from ..stats import HandledStats
from ..types import Ack
from . import eager
from .jsapi import ApiError
from .provisioning import consumer_config, deliver_subject

if TYPE_CHECKING:
    from collections.abc import Coroutine

    from ..types import ConsumerSpec
    from .engine import Engine

log = logging.getLogger("jetplug.consumer")

State = Literal["starting", "running", "stalled", "recovering", "stopping", "stopped"]
NS = 1_000_000_000


class ConsumerRunner:
    """Fetches, dispatches and settles the messages of one declared consumer."""

    def __init__(self, spec: ConsumerSpec, engine: Engine) -> None:
        self.spec = spec
        self.engine = engine
        self.state: State = "starting"
        self.state_reason = ""
        self.in_flight: dict[Message, float] = {}  # message -> last in-progress sent (monotonic)
        self.tasks: set[asyncio.Task[Any]] = set()
        self.outstanding = 0
        #: open pull requests, oldest first: ``[token, messages still due]``
        self.requests: deque[list[Any]] = deque()
        self.last_activity = time.monotonic()
        self.last_message = 0.0
        self.handled = 0
        #: outcomes and durations, counted here so no event is needed per message
        self.handled_stats = HandledStats()
        self.stopping = False
        self._sub: Any = None
        self._inbox = ""
        self._req_counter = 0
        self._supervisor: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        #: decide inline in the subscription callback (every handler a plain def, no spans)
        self._inline = False
        js = engine.settings
        self.expires = js.pull_expires
        self.heartbeat = js.idle_heartbeat
        self.refill_at = max(1, spec.in_flight // 2)
        self._pull_subject = f"{engine.api.prefix}.CONSUMER.MSG.NEXT.{spec.stream}.{spec.durable}"

    # --- state ----------------------------------------------------------------------------------

    def _set_state(self, state: State, reason: str = "") -> None:
        if state == self.state and reason == self.state_reason:
            return
        self.state = state
        self.state_reason = reason
        self.engine.emit(
            ConsumerStateChanged(
                consumer=self.spec.durable, stream=self.spec.stream, state=state, reason=reason
            )
        )

    def status(self) -> dict[str, Any]:
        """State for health checks and ``jetplug status``."""
        return {
            "consumer": self.spec.durable,
            "stream": self.spec.stream,
            "mode": self.spec.mode,
            "owner": self.spec.owner,
            "state": self.state,
            "reason": self.state_reason,
            "in_flight": len(self.in_flight),
            "outstanding": self.outstanding,
            "handled": self.handled,
            "seconds_since_activity": round(time.monotonic() - self.last_activity, 3),
        }

    # --- start / stop ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Subscribe, send the first pull request, start the supervisor."""
        self._inline = self.engine.outcomes.plain and not self.engine.spans
        await self._subscribe()
        self._set_state("running")
        if self.spec.mode == "pull":
            await self._refill()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def _subscribe(self) -> None:
        nc = self.engine.connection.client
        budget = self.spec.in_flight
        if self.spec.mode == "pull":
            self._inbox = nc.new_inbox()
            self._sub = await nc.subscribe(
                self._inbox + ".*",
                cb=self._on_pull_msg,
                pending_msgs_limit=budget * 4 + 64,
                pending_bytes_limit=-1,
            )
        else:
            self._sub = await nc.subscribe(
                deliver_subject(self.spec),
                queue=self.spec.deliver_group,
                cb=self._on_push_msg,
                pending_msgs_limit=budget * 4 + 64,
                pending_bytes_limit=-1,
            )

    async def stop_intake(self, timeout: float = 5.0) -> None:
        """Stop taking messages, and hand back at once the ones that arrived but never started.

        The subscription is drained: UNSUB, then a round trip, so everything the server sent
        before it has arrived, then the callback runs for what is still queued and, since the
        runner is stopping, releases each of those messages (nak without delay) instead of
        leaving it to come back after ``ack_wait``. For pull consumers the UNSUB also ends the
        open pull requests (the server drops requests nobody listens to), so a released message
        is not redelivered to this host again and again. Push consumers leave the deliver group,
        so the other members take over.
        """
        self.stopping = True
        self._set_state("stopping")
        sub, self._sub = self._sub, None
        if sub is None:
            return
        try:
            await asyncio.wait_for(sub.drain(), timeout)
        except Exception as exc:  # noqa: BLE001 - closed or slow: the rest waits for ack_wait
            log.debug("draining the subscription failed: %s", exc)
            try:
                await sub.unsubscribe()
            except Exception:
                log.debug("unsubscribe failed", exc_info=True)

    async def wait_idle(self, timeout: float) -> bool:
        """Wait until no handler runs; False if ``timeout`` passed first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return False

    async def close(self) -> int:
        """Cancel what still runs (left for redelivery), unsubscribe; returns how many were
        cancelled."""
        if self._supervisor is not None:
            self._supervisor.cancel()
        running = [task for task in self.tasks if not task.done()]
        for task in running:
            task.cancel()
        if running:
            # let the cancelled handlers unwind (their finally blocks) before the host goes on
            await asyncio.wait(running, timeout=1.0)
        cancelled = len(running)
        await self._unsubscribe()
        self.in_flight.clear()
        self._set_state("stopped")
        return cancelled

    async def _unsubscribe(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except Exception:
                log.debug("unsubscribe failed", exc_info=True)

    # --- pull -----------------------------------------------------------------------------------

    async def _refill(self) -> None:
        """Ask for as many messages as the budget allows, if that is at least the refill step."""
        if self.stopping or self._sub is None or not self._refill_due():
            return
        free = self.spec.in_flight - len(self.in_flight) - self.outstanding
        self._req_counter += 1
        token = str(self._req_counter)
        self.requests.append([token, free])
        self.outstanding += free
        body = b'{"batch":%d,"expires":%d,"idle_heartbeat":%d}' % (
            free,
            int(self.expires * NS),
            int(self.heartbeat * NS),
        )
        try:
            await self.engine.connection.client.publish(
                self._pull_subject, body, reply=f"{self._inbox}.{token}"
            )
        except Exception as exc:  # noqa: BLE001 - retried by the supervisor
            self._end_request(token)
            log.debug("pull request failed: %s", exc)

    def _end_request(self, token: str, undelivered: int | None = None) -> None:
        for request in self.requests:
            if request[0] == token:
                break
        else:
            return
        self.requests.remove(request)
        due = request[1]
        self.outstanding -= due if undelivered is None else min(due, undelivered)
        if self.outstanding < 0:
            self.outstanding = 0

    def _forget_requests(self) -> None:
        self.requests.clear()
        self.outstanding = 0

    async def _on_pull_msg(self, raw: Any) -> None:
        headers = raw.headers
        if headers is not None and not raw.data and "Status" in headers:
            self.last_activity = time.monotonic()
            await self._on_status(raw, headers)
            return
        # the server serves pull requests in order: this message belongs to the oldest open one
        requests = self.requests
        if requests:
            oldest = requests[0]
            oldest[1] -= 1
            if oldest[1] <= 0:
                requests.popleft()
            self.outstanding -= 1
        await self._dispatch(raw)
        if self._refill_due():
            await self._refill()

    async def _on_status(self, raw: Any, headers: dict[str, str]) -> None:
        status = headers.get("Status", "")
        if status == "100":
            if raw.reply:  # flow control request (push): answer it
                await self.engine.connection.client.publish(raw.reply, b"")
            if self.state == "stalled":
                self._set_state("running", "heartbeats resumed")
            return
        token = raw.subject.rsplit(".", 1)[-1] if self.spec.mode == "pull" else ""
        desc = headers.get("Description", "")
        pending = headers.get("Nats-Pending-Messages")
        undelivered = int(pending) if pending and pending.isdigit() else None
        if status in ("404", "408"):
            self._end_request(token, undelivered)
        elif status == "409":
            self._end_request(token, undelivered)
            lowered = desc.lower()
            if "consumer deleted" in lowered or "consumer is push based" in lowered:
                self._set_state("stalled", desc)
                self.engine.spawn(self.recover(desc))
                return
            if "leadership change" not in lowered and "batch completed" not in lowered:
                log.info("pull request ended: %s", desc, extra={"consumer": self.spec.durable})
        elif status == "503":
            self._end_request(token)
            self._set_state("stalled", "no responders: JetStream unavailable or consumer missing")
            return
        else:
            self._end_request(token, undelivered)
            log.info("unexpected status %s %s", status, desc, extra={"consumer": self.spec.durable})
        await self._refill()

    # --- push -----------------------------------------------------------------------------------

    async def _on_push_msg(self, raw: Any) -> None:
        headers = raw.headers
        if headers is not None and not raw.data and "Status" in headers:
            self.last_activity = time.monotonic()
            await self._on_status(raw, headers)
            return
        await self._dispatch(raw)

    # --- dispatch -------------------------------------------------------------------------------

    async def _dispatch(self, raw: Any) -> None:
        engine = self.engine
        try:
            msg = Message(
                raw.subject,
                raw.reply,
                raw.data,
                raw.headers,
                self.spec,
                self,
                engine.connection.generation,
            )
        except MetadataError as exc:
            self.last_activity = time.monotonic()
            log.warning(
                "ignored a non-JetStream message on the consumer inbox: %s",
                exc,
                extra={"consumer": self.spec.durable},
            )
            return
        self.last_activity = self.last_message = msg.started
        if msg.redelivered:
            engine.emit(
                MessageRedelivered(
                    consumer=self.spec.durable,
                    stream=msg.stream,
                    stream_seq=msg.stream_seq,
                    deliveries=msg.deliveries,
                )
            )
        if self.stopping:
            # fetched but never started: hand it back at once instead of waiting for ack_wait
            engine.spawn(engine.outcomes.release(msg))
            return
        outcomes = engine.outcomes
        if self._inline:
            # plain handlers never wait: decide right here, in the message's own context (so its
            # trace never leaks into the next one), and ack without a coroutine of its own
            # (nothing awaits between building the message and here, so it cannot be stale yet)
            decision, index, error = contextvars.copy_context().run(self._decide, msg)
            if type(decision) is Ack:
                await outcomes.ack(msg, outcomes.handlers[index][0])
                self.handled += 1
                return
            # anything else (nak, term, failure, an awaitable): the full path
            self._start(msg, outcomes.finish(msg, decision, index, error))
            return
        self._start(msg, outcomes.handle(msg))

    def _decide(self, msg: Message) -> tuple[Any, int, str]:
        trace.enter(msg.headers)
        return self.engine.outcomes.decide(msg)

    def _start(self, msg: Message, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` for ``msg`` in the message's own context, tracked as in flight.

        It is started eagerly: a coroutine that does not wait costs no task.
        """
        self.in_flight[msg] = msg.started
        self._idle.clear()
        done, value = eager.start(self._process(msg, work), contextvars.copy_context())
        if not done:
            self.tasks.add(value)
            value.add_done_callback(self.tasks.discard)

    async def _process(self, msg: Message, work: Coroutine[Any, Any, None]) -> None:
        trace.enter(msg.headers)
        span = token = None
        if self.engine.spans:
            span, token = otel.start_consumer_span(msg)
        try:
            await work
        finally:
            if span is not None:
                otel.end_consumer_span(span, token)
            self.in_flight.pop(msg, None)
            self.handled += 1
            if not self.in_flight:
                self._idle.set()
            if self.spec.mode == "pull" and self._refill_due():
                await self._refill()

    def _refill_due(self) -> bool:
        """Whether a pull request should go out now (checked before creating a coroutine)."""
        free = self.spec.in_flight - len(self.in_flight) - self.outstanding
        return free >= self.refill_at or (free > 0 and self.outstanding == 0)

    async def send_progress(self, msg: Message) -> None:
        """Send +WPI for ``msg`` unless it was fetched before the last reconnect."""
        if msg.generation != self.engine.connection.generation:
            return
        self.in_flight[msg] = time.monotonic()
        await self.engine.connection.client.publish(msg.reply, b"+WPI")

    # --- supervision ----------------------------------------------------------------------------

    def on_reconnected(self) -> None:
        """Pull requests do not survive a reconnect: forget them and ask again."""
        if self.spec.mode == "pull":
            self._forget_requests()
            self.engine.spawn(self._refill())

    async def _supervise(self) -> None:
        spec = self.spec
        progress_every = spec.ack_wait * spec.progress_fraction
        max_progress = spec.max_progress or spec.ack_wait * 10
        tick = max(0.05, min(self.heartbeat, progress_every / 2))
        last_check = time.monotonic()
        check_every = max(self.heartbeat * 3, 1.0)
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for msg, last in list(self.in_flight.items()):
                if now - last >= progress_every and now - msg.started < max_progress:
                    try:
                        await self.send_progress(msg)
                    except Exception:
                        log.debug("in-progress failed", exc_info=True, extra=msg.log_fields())
            if self.stopping or now - last_check < check_every:
                continue
            last_check = now
            silent = now - self.last_activity
            if spec.mode == "pull":
                if silent > check_every and self.engine.connection.client.is_connected:
                    self._set_state("stalled", f"no heartbeat for {silent:.1f}s")
                    await self.recover(f"no heartbeat for {silent:.1f}s")
                elif self.outstanding == 0 and not self.in_flight:
                    await self._refill()
            elif silent > max(5.0, check_every):
                await self._check_push_alive()

    async def _check_push_alive(self) -> None:
        try:
            await self.engine.api.consumer_info(self.spec.stream, self.spec.durable)
            self.last_activity = time.monotonic()
            if self.state == "stalled":
                self._set_state("running", "consumer found")
        except ApiError as exc:
            if exc.not_found:
                self._set_state("stalled", "consumer was deleted on the server")
                await self.recover("consumer was deleted on the server")
        except Exception as exc:  # noqa: BLE001 - not connected: wait for the reconnect
            log.debug("consumer info failed: %s", exc)

    async def recover(self, reason: str) -> None:
        """Re-create the consumer if it is gone, resubscribe if needed, and pull again."""
        if self.stopping:
            return
        self._set_state("recovering", reason)
        try:
            try:
                await self.engine.api.consumer_info(self.spec.stream, self.spec.durable)
            except ApiError as exc:
                if not exc.not_found:
                    raise
                if self.engine.settings.provision == "off":
                    self._set_state(
                        "stalled", "consumer is missing and [jetstream] provision = 'off'"
                    )
                    return
                await self.engine.api.create_consumer(self.spec.stream, consumer_config(self.spec))
                log.warning(
                    "re-created deleted consumer",
                    extra={"consumer": self.spec.durable, "stream": self.spec.stream},
                )
        except Exception as exc:  # noqa: BLE001 - stay stalled; the supervisor tries again
            self._set_state("stalled", f"recovery failed: {exc}")
            return
        if self._sub is None:
            await self._subscribe()
        self.last_activity = time.monotonic()
        self._forget_requests()
        self._set_state("running", "recovered")
        if self.spec.mode == "pull":
            await self._refill()


def pull_request(batch: int, expires: float, heartbeat: float) -> bytes:
    """The JSON body of one pull request (exposed for tests)."""
    return json.dumps(
        {"batch": batch, "expires": int(expires * NS), "idle_heartbeat": int(heartbeat * NS)}
    ).encode()
