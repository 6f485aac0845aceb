"""Dead letters for messages the host never got to decide on.

When a handler keeps running past ``ack_wait`` on the last allowed delivery, or the host dies
while holding it, the server gives up on the message without the host seeing a failure. It then
publishes a max-deliveries advisory, and this listener copies the message (by stream sequence) to
the DLQ with reason ``max_deliver``. The DLQ msg-id is the same the host itself would use, so a
message is dead-lettered once even when several hosts hear the advisory.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import TYPE_CHECKING, Any

from ..errors import PublishError
from ..events import MessageDeadLettered
from .jsapi import ApiError
from .outcomes import dlq_headers, dlq_msg_id, dlq_subject

if TYPE_CHECKING:
    from ..types import ConsumerSpec
    from .engine import Engine

log = logging.getLogger("jetplug.advisories")

MAX_DELIVERIES = "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES"


def parse_raw_headers(raw: bytes) -> dict[str, str]:
    """Headers from the ``NATS/1.0`` block the JetStream API returns for stored messages."""
    headers: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").split("\r\n")[1:]:
        key, sep, value = line.partition(":")
        if sep and key.strip():
            headers[key.strip()] = value.strip()
    return headers


def _fields(spec: ConsumerSpec, seq: int, deliveries: int) -> dict[str, object]:
    """The log fields of a message known only from an advisory (as ``Message.log_fields``)."""
    return {
        "consumer": spec.durable,
        "stream": spec.stream,
        "stream_seq": seq,
        "deliveries": deliveries,
    }


class AdvisoryListener:
    """Subscribes to the max-deliveries advisories of the declared consumers."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._subs: list[Any] = []
        self._specs: dict[tuple[str, str], ConsumerSpec] = {}

    async def start(self, specs: list[ConsumerSpec]) -> None:
        """Listen for every consumer in ``specs`` (nothing to do when the DLQ is off)."""
        if not self.engine.settings.dlq.enabled:
            return
        nc = self.engine.connection.client
        for spec in specs:
            self._specs[(spec.stream, spec.durable)] = spec
            subject = f"{MAX_DELIVERIES}.{spec.stream}.{spec.durable}"
            self._subs.append(await nc.subscribe(subject, cb=self._on_advisory))

    async def stop(self) -> None:
        """Stop listening."""
        for sub in self._subs:
            try:
                await sub.unsubscribe()
            except Exception:
                log.debug("unsubscribe failed", exc_info=True)
        self._subs.clear()

    async def _on_advisory(self, raw: Any) -> None:
        try:
            advisory = json.loads(raw.data)
            stream, consumer = advisory["stream"], advisory["consumer"]
            seq, deliveries = int(advisory["stream_seq"]), int(advisory.get("deliveries", 0))
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable max-deliveries advisory ignored")
            return
        spec = self._specs.get((stream, consumer))
        if spec is None:
            return
        await self.dead_letter(spec, seq, deliveries)

    async def dead_letter(self, spec: ConsumerSpec, seq: int, deliveries: int) -> None:
        """Copy stream message ``seq`` to the DLQ as ``max_deliver``."""
        engine = self.engine
        try:
            stored = await engine.api.get_message(spec.stream, seq)
        except ApiError as exc:
            log.warning(
                "message %d of %s is gone, no dead letter: %s",
                seq,
                spec.stream,
                exc.description,
                extra=_fields(spec, seq, deliveries),
            )
            return
        data = base64.b64decode(stored.get("data") or b"")
        original = parse_raw_headers(base64.b64decode(stored["hdrs"])) if stored.get("hdrs") else {}
        error = (
            f"no decision within ack_wait on the last of {deliveries} deliveries "
            "(handler too slow or host stopped)"
        )
        try:
            await engine.publisher.publish(
                dlq_subject(engine.settings.dlq.subject_prefix, spec.stream, spec.durable),
                data,
                headers=dlq_headers(
                    original,
                    subject=str(stored.get("subject", "")),
                    stream=spec.stream,
                    seq=seq,
                    consumer=spec.durable,
                    deliveries=deliveries,
                    reason="max_deliver",
                    error=error,
                    plugin=spec.owner,
                ),
                msg_id=dlq_msg_id(spec.stream, spec.durable, seq),
            )
        except PublishError as exc:
            log.error(
                "dead letter for %s seq %d not stored: %s",
                spec.stream,
                seq,
                exc,
                extra=_fields(spec, seq, deliveries),
            )
            return
        engine.emit(
            MessageDeadLettered(
                consumer=spec.durable,
                stream=spec.stream,
                stream_seq=seq,
                deliveries=deliveries,
                reason="max_deliver",
                error=error,
                plugin=spec.owner,
            )
        )
