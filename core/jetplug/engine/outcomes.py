"""What happens to a message: run the handler chain, then ack, nak with delay, or terminate.

The policy, in one place:

* ``Ack`` -> ``+ACK``.
* ``Nak(delay)`` or an exception -> ``-NAK`` with the delay (default: the consumer's retry delay
  for the delivery count); on the last allowed delivery (``max_deliver``) -> dead letter
  (``max_deliver``) then ``+TERM``.
* ``Term(reason, error)`` -> dead letter (``reason``) then ``+TERM``.
* A message fetched before the latest reconnect is not acked with stale state: it is dropped and
  the server redelivers it.

A dead letter is stored (pub-ack) before the original is terminated; if the dead-letter publish
fails the original is nak'ed instead, so nothing is lost.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ..connection import safe_error_text
from ..errors import PublishError
from ..events import MessageDeadLettered, MessageHandled
from ..types import Ack, Nak, Term

if TYPE_CHECKING:
    from ..message import Message
    from .engine import Engine

log = logging.getLogger("jetplug.outcomes")

NS = 1_000_000_000
_ACK = b"+ACK"
_NAK = b"-NAK"


def dlq_subject(prefix: str, stream: str, consumer: str) -> str:
    """``<prefix>.<stream>.<consumer>``."""
    return f"{prefix}.{stream}.{consumer}"


def dlq_headers(
    original: dict[str, str],
    *,
    subject: str,
    stream: str,
    seq: int,
    consumer: str,
    deliveries: int,
    reason: str,
    error: str,
    plugin: str,
) -> dict[str, str]:
    """The original headers plus the ``Jetplug-*`` context of a dead letter.

    An original ``Nats-Msg-Id`` is kept as ``Jetplug-Original-Msg-Id`` (the DLQ publish has its
    own id, so the server's dedup cannot swallow it); headers the server acts on
    (``Nats-Expected-*``, ``Nats-Rollup``, ``Nats-TTL``) are kept under ``Jetplug-Original-<name>``.
    """
    headers: dict[str, str] = {}
    for key, value in original.items():
        lowered = key.lower()
        if lowered == "nats-msg-id":
            headers["Jetplug-Original-Msg-Id"] = value
        elif lowered.startswith("nats-expected-") or lowered in ("nats-rollup", "nats-ttl"):
            # conditions on the original publish: the DLQ stream would act on them (and refuse)
            headers["Jetplug-Original-" + key] = value
        else:
            headers[key] = value
    headers.update(
        {
            "Jetplug-Dlq-Reason": reason,
            "Jetplug-Dlq-Error": error.replace("\r", " ").replace("\n", " ")[:1000],
            "Jetplug-Original-Subject": subject,
            "Jetplug-Original-Stream": stream,
            "Jetplug-Original-Seq": str(seq),
            "Jetplug-Consumer": consumer,
            "Jetplug-Deliveries": str(deliveries),
            "Jetplug-Plugin": plugin,
            "Jetplug-Dlq-Time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
        }
    )
    return headers


def dlq_msg_id(stream: str, consumer: str, seq: int) -> str:
    """The DLQ publish's msg-id: one dead letter per original message, whoever stores it."""
    return f"dlq.{stream}.{consumer}.{seq}"


class Outcomes:
    """Runs ``handle_message`` implementations and carries out their decision."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        plugins = engine.plugins
        self.handlers = plugins.message_handlers() if plugins else []
        #: every handler is a plain ``def``: the chain can run without a coroutine of its own
        self.plain = plugins.message_handlers_are_plain() if plugins else True
        #: build a ``MessageHandled`` per message only when a ``track_event`` sink takes it
        self.events = plugins.wants(MessageHandled) if plugins else True

    def decide(self, msg: Message, first: int = 0) -> tuple[Any, int, str]:
        """Run the handler chain from handler ``first`` until one returns something.

        :return: ``(result, index of the handler that returned it or failed, error text)``.
            ``result`` is None when no handler decided (``error`` says why), and may be an
            awaitable (``async def`` handlers): :meth:`resolve` awaits it and goes on.
        """
        handlers = self.handlers
        i = first
        try:
            while i < len(handlers):
                result = handlers[i][1](msg)
                if result is not None:
                    return result, i, ""
                i += 1
        except Exception as exc:  # noqa: BLE001 - a handler failure is an outcome, not a crash
            error = safe_error_text(exc)
            log.warning(
                "handler of plugin %s failed: %s", handlers[i][0], error, extra=msg.log_fields()
            )
            return None, i, error
        owner = msg.consumer.owner
        return None, -1, f"no plugin decided (owner {owner!r} returned None)"

    async def resolve(
        self, msg: Message, result: Any, index: int, error: str
    ) -> tuple[Any, int, str]:
        """Await what :meth:`decide` returned while it is awaitable, going on with the chain
        after a handler whose awaitable gave None."""
        while result is not None and hasattr(result, "__await__"):
            try:
                result = await result
            except Exception as exc:  # noqa: BLE001 - a handler failure is an outcome
                error = safe_error_text(exc)
                log.warning(
                    "handler of plugin %s failed: %s",
                    self.handlers[index][0],
                    error,
                    extra=msg.log_fields(),
                )
                return None, index, error
            if result is None:
                result, index, error = self.decide(msg, index + 1)
        return result, index, error

    def plugin_at(self, msg: Message, index: int) -> str:
        """The plugin that decided (or failed); the consumer's owner when none decided."""
        return self.handlers[index][0] if index >= 0 else msg.consumer.owner

    async def handle(self, msg: Message) -> None:
        """Decide and settle one message; never raises."""
        result, index, error = self.decide(msg)
        await self.finish(msg, result, index, error)

    async def finish(self, msg: Message, result: Any, index: int, error: str) -> None:
        """Settle what :meth:`decide` returned (awaiting it first if needed); never raises."""
        try:
            if result is not None and hasattr(result, "__await__"):
                result, index, error = await self.resolve(msg, result, index, error)
            await self.settle(msg, result, self.plugin_at(msg, index), error)
        except Exception:
            log.exception("settling failed; the server will redeliver", extra=msg.log_fields())

    async def settle(self, msg: Message, decision: Any, plugin: str, error: str) -> None:
        """Carry out ``decision`` (or the failure ``error``) for ``msg``."""
        engine = self.engine
        if msg.generation != engine.connection.generation:
            self.record(msg, "dropped", plugin, "stale", "fetched before a reconnect")
            return
        if type(decision) is Ack:
            await self.ack(msg, plugin)
            return
        spec = msg.consumer
        if type(decision) is Term:
            await self.dead_letter(msg, decision.reason, decision.error, plugin)
            return
        if type(decision) is Nak:
            delay = decision.delay
        elif decision is None:
            delay = None
        else:
            error = f"handle_message returned {decision!r}, not Ack, Nak or Term"
            delay = None
        deliveries = msg.deliveries
        if deliveries >= spec.max_deliver:
            await self.dead_letter(
                msg, "max_deliver", error or "nak on the last allowed delivery", plugin
            )
            return
        if delay is None:
            delay = spec.retry_delay(deliveries)
        await self._nak(msg, delay)
        self.record(msg, "nak", plugin, "error" if error else "nak", error)

    async def ack(self, msg: Message, plugin: str) -> None:
        """Ack ``msg`` (fetched on the current connection) and count it; never raises."""
        try:
            await self.engine.connection.client.publish(msg.reply, _ACK)
        except Exception as exc:  # noqa: BLE001 - not acked: the server redelivers it
            log.warning(
                "ack not sent, the server will redeliver: %s",
                safe_error_text(exc),
                extra=msg.log_fields(),
            )
            return
        self.record(msg, "ack", plugin)

    async def _nak(self, msg: Message, delay: float) -> None:
        body = _NAK if delay <= 0 else b'-NAK {"delay":%d}' % int(delay * NS)
        await self.engine.connection.client.publish(msg.reply, body)

    async def release(self, msg: Message) -> None:
        """Hand back a message that was fetched but never started (shutdown)."""
        try:
            await self._nak(msg, 0)
        except Exception:
            log.debug("release failed", exc_info=True, extra=msg.log_fields())
        self.record(msg, "released", "", "shutdown")

    async def dead_letter(self, msg: Message, reason: str, error: str, plugin: str) -> None:
        """Store a copy in the DLQ stream, then terminate the original; nak if the copy fails."""
        engine = self.engine
        dlq = engine.settings.dlq
        if dlq.enabled:
            try:
                await engine.publisher.publish(
                    dlq_subject(dlq.subject_prefix, msg.stream, msg.consumer.durable),
                    msg.data,
                    headers=dlq_headers(
                        msg.headers,
                        subject=msg.subject,
                        stream=msg.stream,
                        seq=msg.stream_seq,
                        consumer=msg.consumer.durable,
                        deliveries=msg.deliveries,
                        reason=reason,
                        error=error,
                        plugin=plugin,
                    ),
                    msg_id=dlq_msg_id(msg.stream, msg.consumer.durable, msg.stream_seq),
                )
            except PublishError as exc:
                log.error(
                    "dead letter not stored, message will be redelivered: %s",
                    exc,
                    extra=msg.log_fields(),
                )
                await self._nak(msg, msg.consumer.retry_delay(msg.deliveries))
                self.record(msg, "nak", plugin, "dlq_failed", str(exc))
                return
        await engine.connection.client.publish(msg.reply, b"+TERM " + reason.encode()[:200])
        engine.emit(
            MessageDeadLettered(
                consumer=msg.consumer.durable,
                stream=msg.stream,
                stream_seq=msg.stream_seq,
                deliveries=msg.deliveries,
                reason=reason,
                error=error,
                plugin=plugin,
            )
        )
        self.record(msg, "term", plugin, reason, error)

    def record(
        self, msg: Message, outcome: str, plugin: str, reason: str = "", error: str = ""
    ) -> None:
        """Count the outcome on the consumer (and emit ``MessageHandled`` if anyone listens).

        The duration runs from when the engine received the message.
        """
        duration = time.monotonic() - msg.started
        runner = msg._runner
        if runner is not None:
            runner.handled_stats.count(outcome, duration)
        if not self.events:
            return  # counted above; no event object per message when nobody listens
        self.engine.emit(
            MessageHandled(
                consumer=msg.consumer.durable,
                stream=msg.stream,
                stream_seq=msg.stream_seq,
                deliveries=msg.deliveries,
                outcome=outcome,
                duration=duration,
                plugin=plugin,
                reason=reason,
                error=error,
            )
        )
