"""Settings both CAF consumers share, and the declarations they imply.

``ack_consumer`` and ``result_consumer`` subclass :class:`ConsumerSettings` and override the
per-contract defaults (subject, stream, durable, deliver group, size limit, descriptions).
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import msgspec
from jetplug import ConsumerSpec, KeyValueSpec, StreamSpec

from .store import DEFAULT_BUCKET, DEFAULT_TTL, bucket_spec

PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]


class ConsumerSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The table of one CAF consumer (defaults from the Router <-> CAF contract)."""

    #: what the stream and the consumer are described as on the server
    STREAM_DESCRIPTION: ClassVar[str] = ""
    CONSUMER_DESCRIPTION: ClassVar[str] = ""

    #: subject the executors publish these messages on
    subject: str = ""
    #: stream that stores them (declared by this plugin)
    stream: str = ""
    #: seconds the stream keeps a message (0 = for ever); acked messages are not needed later
    stream_max_age: NonNegativeFloat = 7 * 24 * 3600.0
    #: durable consumer name (from the origin)
    durable: str = ""
    #: ``pull`` (default) or ``push``; push uses ``deliver_group`` so several hosts share the work
    mode: Literal["pull", "push"] = "pull"
    #: push only: the deliver group (queue) the hosts join
    deliver_group: str = ""
    #: seconds the server waits for an ack before redelivering (the host sends in-progress)
    ack_wait: PositiveFloat = 30.0
    #: deliveries before a failing message is terminated and dead-lettered (``max_deliver``)
    max_deliver: Annotated[int, msgspec.Meta(ge=1)] = 5
    #: nak delays by delivery count, applied by the host (the last one repeats)
    retry_delays: list[NonNegativeFloat] = msgspec.field(
        default_factory=lambda: [1.0, 2.0, 4.0, 8.0]
    )
    #: messages fetched but not finished at once (also the server's max_ack_pending)
    in_flight: Annotated[int, msgspec.Meta(ge=1)] = 64
    #: payloads larger than this many bytes are terminated as ``too_large`` (0 = no limit)
    max_bytes: Annotated[int, msgspec.Meta(ge=0)] = 64 * 1024
    #: tenants whose messages are accepted; empty = every tenant
    allowed_tenants: list[str] = msgspec.field(default_factory=list)
    #: dead-letter messages for assignments this router has no record of (``unknown_assignment``)
    strict: bool = False
    #: the shared assignment-state bucket
    bucket: str = DEFAULT_BUCKET
    #: seconds an assignment record lives
    bucket_ttl: PositiveFloat = DEFAULT_TTL

    def stream_spec(self) -> StreamSpec:
        """The stream the executor's messages arrive on."""
        return StreamSpec(
            self.stream,
            (self.subject,),
            max_age=self.stream_max_age,
            description=self.STREAM_DESCRIPTION,
        )

    def consumer_spec(self) -> ConsumerSpec:
        """The durable consumer: explicit ack, host-applied retry delays, DLQ at max_deliver."""
        return ConsumerSpec(
            self.stream,
            self.durable,
            filter_subjects=(self.subject,),
            mode=self.mode,
            deliver_group=self.deliver_group if self.mode == "push" else "",
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            retry_delays=tuple(self.retry_delays),
            in_flight=self.in_flight,
            description=self.CONSUMER_DESCRIPTION,
        )

    def bucket_spec(self) -> KeyValueSpec:
        """The shared assignment-state bucket (same declaration as the other CAF plugins)."""
        return bucket_spec(self.bucket, self.bucket_ttl)
