"""The message object handlers receive: payload, headers and JetStream metadata.

Metadata comes from the delivery's reply subject, which the server writes as
``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`` (older form) or
``$JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>...``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .engine.consumer import ConsumerRunner
    from .types import ConsumerSpec


class MetadataError(ValueError):
    """A delivered message's reply subject is not a JetStream ack subject."""


def parse_reply(reply: str) -> tuple[str, str, int, int, int, int, int]:
    """``(stream, consumer, deliveries, stream_seq, consumer_seq, timestamp_ns, pending)``."""
    tokens = reply.split(".")
    n = len(tokens)
    if n == 9:
        _, _, stream, consumer, delivered, sseq, cseq, ts, pending = tokens
    elif n >= 11:
        stream, consumer, delivered, sseq, cseq, ts, pending = tokens[4:11]
    else:
        raise MetadataError(f"not a JetStream delivery (reply subject has {n} tokens)")
    if tokens[0] != "$JS" or tokens[1] != "ACK":
        raise MetadataError("not a JetStream delivery (reply subject is not $JS.ACK...)")
    return stream, consumer, int(delivered), int(sseq), int(cseq), int(ts), int(pending)


def _metadata_tokens(reply: str) -> list[str]:
    """``[stream, consumer, delivered, sseq, cseq, ts, pending]`` of an ack subject, as text."""
    tokens = reply.split(".")
    n = len(tokens)
    if tokens[0] != "$JS" or (n != 9 and n < 11) or tokens[1] != "ACK":
        parse_reply(reply)  # raises the precise MetadataError
    return tokens[2:] if n == 9 else tokens[4:11]


class Message:
    """One delivery of a JetStream message to a consumer.

    Handlers read ``data``, ``headers``, ``subject`` and the metadata attributes, and may call
    :meth:`in_progress` (the host already does so for long handlers). The decision is returned
    from ``handle_message``; handlers never ack themselves.
    """

    __slots__ = (
        "_meta",
        "_runner",
        "consumer",
        "data",
        "generation",
        "headers",
        "reply",
        "started",
        "subject",
    )

    def __init__(
        self,
        subject: str,
        reply: str,
        data: bytes,
        headers: dict[str, str] | None,
        spec: ConsumerSpec,
        runner: ConsumerRunner | None = None,
        generation: int = 0,
    ) -> None:
        self.subject = subject
        self.reply = reply
        self.data = data
        self.headers: dict[str, str] = headers or {}
        self.consumer = spec
        # checked now (a non-JetStream message is refused at once), converted on access: most
        # messages are acked without anyone reading their sequence numbers
        self._meta = _metadata_tokens(reply)
        self._runner = runner
        self.generation = generation
        #: when the engine received it (``time.monotonic()``)
        self.started = time.monotonic()

    @property
    def stream(self) -> str:
        """The stream that stores the message."""
        return self._meta[0]

    @property
    def deliveries(self) -> int:
        """How many times the server has delivered it, this delivery included (1 = first)."""
        return int(self._meta[2])

    @property
    def redelivered(self) -> bool:
        """Whether this is not the first delivery."""
        return self._meta[2] != "1"

    @property
    def stream_seq(self) -> int:
        """The message's sequence number in the stream."""
        return int(self._meta[3])

    @property
    def consumer_seq(self) -> int:
        """The consumer's delivery sequence."""
        return int(self._meta[4])

    @property
    def timestamp_ns(self) -> int:
        """When the stream stored the message, in Unix nanoseconds."""
        return int(self._meta[5])

    @property
    def pending(self) -> int:
        """Messages still pending on the consumer after this one."""
        return int(self._meta[6])

    @property
    def timestamp(self) -> float:
        """When the stream stored the message, as Unix seconds."""
        return self.timestamp_ns / 1e9

    async def in_progress(self) -> None:
        """Tell the server the handler is still working, resetting the ack-wait timer."""
        if self._runner is not None:
            await self._runner.send_progress(self)

    def log_fields(self) -> dict[str, Any]:
        """The fields every log line about this message carries (never the payload)."""
        return {
            "consumer": self.consumer.durable,
            "stream": self.stream,
            "stream_seq": self.stream_seq,
            "deliveries": self.deliveries,
        }

    def __repr__(self) -> str:
        return (
            f"<Message {self.subject} stream={self.stream} seq={self.stream_seq} "
            f"deliveries={self.deliveries} bytes={len(self.data)}>"
        )
