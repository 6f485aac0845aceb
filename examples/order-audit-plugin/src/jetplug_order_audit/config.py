"""The ``[plugins.order_audit]`` table and the declarations it implies."""

from __future__ import annotations

from typing import Annotated

import msgspec
from jetplug import ConsumerSpec, KeyValueSpec, StreamSpec

PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]


class Settings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Settings of order_audit. Every field has a default; `#:` comments document them."""

    #: subject the shop publishes OrderPlaced messages on (the consumer reads only this one)
    subject: str = "shop.orders.v1.placed"
    #: subject of the OrderAudited events this plugin publishes
    audited_subject: str = "shop.orders.v1.audited"
    #: stream declared for both subjects
    stream: str = "SHOP_ORDERS"
    #: subjects the stream stores; must cover subject and audited_subject
    stream_subjects: list[str] = msgspec.field(default_factory=lambda: ["shop.orders.v1.>"])
    #: seconds the stream keeps a message (0 = for ever)
    stream_max_age: NonNegativeFloat = 7 * 24 * 3600.0
    #: durable consumer name
    durable: str = "order-audit"
    #: key-value bucket of the audit records, one per order_id
    bucket: str = "order_audit"
    #: seconds an audit record is kept (0 = for ever)
    bucket_ttl: NonNegativeFloat = 30 * 24 * 3600.0
    #: currencies accepted; an order in another one is dead-lettered
    currencies: list[str] = msgspec.field(default_factory=lambda: ["EUR", "USD", "GBP"])
    #: seconds the server waits for an ack before redelivering (the host sends in-progress)
    ack_wait: PositiveFloat = 30.0
    #: deliveries before a failing message is dead-lettered
    max_deliver: Annotated[int, msgspec.Meta(ge=1)] = 5
    #: nak delays by delivery count, applied by the host (the last one repeats)
    retry_delays: list[NonNegativeFloat] = msgspec.field(
        default_factory=lambda: [1.0, 2.0, 4.0, 8.0]
    )
    #: messages handled at once (also the server's max_ack_pending)
    in_flight: Annotated[int, msgspec.Meta(ge=1)] = 64

    def stream_spec(self) -> StreamSpec:
        """The stream that stores placed orders and audited events."""
        return StreamSpec(
            self.stream,
            tuple(self.stream_subjects),
            max_age=self.stream_max_age,
            description="order_audit: shop orders",
        )

    def consumer_spec(self) -> ConsumerSpec:
        """The durable pull consumer on ``subject``."""
        return ConsumerSpec(
            self.stream,
            self.durable,
            filter_subjects=(self.subject,),
            ack_wait=self.ack_wait,
            max_deliver=self.max_deliver,
            retry_delays=tuple(self.retry_delays),
            in_flight=self.in_flight,
            description="jetplug order_audit",
        )

    def bucket_spec(self) -> KeyValueSpec:
        """The audit records' bucket."""
        return KeyValueSpec(self.bucket, ttl=self.bucket_ttl, description="order_audit records")
