"""What order_audit does with one OrderPlaced message: validate it, record it, announce it.

Plain Python: the bucket and the publish function come in as arguments, so the unit tests use
fakes and need neither pluggy nor a server.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Protocol

import msgspec
from jetplug import ACK, Decision, Term

from .config import Settings

log = logging.getLogger("jetplug_order_audit")

Cents = Annotated[int, msgspec.Meta(ge=0)]


class Line(msgspec.Struct, kw_only=True):
    """One order line."""

    sku: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    qty: Annotated[int, msgspec.Meta(ge=1)]
    unit_cents: Cents


class Order(msgspec.Struct, kw_only=True):
    """An OrderPlaced message (fields it does not list are ignored)."""

    #: also the key of the audit record: letters, digits, ``-`` and ``_`` only
    order_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]{1,128}$")]
    customer_id: Annotated[str, msgspec.Meta(min_length=1)]
    currency: Annotated[str, msgspec.Meta(pattern=r"^[A-Z]{3}$")]
    total_cents: Cents
    lines: Annotated[list[Line], msgspec.Meta(min_length=1)]


class Invalid(Exception):
    """An order that can never be processed: becomes ``Term(reason, error)``."""

    def __init__(self, reason: str, error: str) -> None:
        super().__init__(error)
        self.reason = reason
        self.error = error


def parse(data: bytes, settings: Settings) -> Order:
    """Decode and check one order; :class:`Invalid` names the field that is wrong."""
    try:
        order = msgspec.json.decode(data, type=Order)
    except msgspec.ValidationError as exc:
        raise Invalid("invalid_payload", f"payload: {exc}") from None
    except msgspec.DecodeError as exc:
        raise Invalid("invalid_payload", f"payload: not valid JSON ({exc})") from None
    if order.currency not in settings.currencies:
        allowed = ", ".join(settings.currencies)
        raise Invalid(
            "currency_not_allowed", f"currency: {order.currency!r} is not one of {allowed}"
        )
    total = sum(line.qty * line.unit_cents for line in order.lines)
    if total != order.total_cents:
        raise Invalid(
            "total_mismatch", f"total_cents: {order.total_cents}, but the lines add up to {total}"
        )
    return order


def _json(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()


def audit_record(order: Order, placed_at_ms: int) -> bytes:
    """The audit record stored under the order id (the same bytes for every redelivery)."""
    return _json(
        {
            "order_id": order.order_id,
            "customer_id": order.customer_id,
            "currency": order.currency,
            "total_cents": order.total_cents,
            "lines": len(order.lines),
            "placed_at_ms": placed_at_ms,
        }
    )


def audited_event(order: Order) -> bytes:
    """The OrderAudited event's payload."""
    return _json(
        {"order_id": order.order_id, "currency": order.currency, "total_cents": order.total_cents}
    )


class Stored(Protocol):
    """A bucket entry (``jetplug.kv.Entry``)."""

    @property
    def value(self) -> bytes:
        """The stored bytes (read-only: ``Entry`` is frozen)."""


class Records(Protocol):
    """What the auditor needs of a key-value bucket (``host.kv(bucket)``)."""

    async def create(self, key: str, value: bytes) -> int | None:
        """Store ``value`` unless ``key`` exists; None if it does."""

    async def get(self, key: str) -> Stored | None:
        """The current entry of ``key``."""


Publish = Callable[..., Awaitable[Any]]


class Auditor:
    """Validates orders, records each once, and announces it with an OrderAudited event."""

    def __init__(self, settings: Settings, records: Records, publish: Publish) -> None:
        """
        :param records: the audit bucket (``host.kv(settings.bucket)``).
        :param publish: ``host.publisher.publish`` (pub-ack, msg-id, retries).
        """
        self.settings = settings
        self.records = records
        self.publish = publish

    async def handle(self, data: bytes, placed_at_ms: int) -> Decision:
        """Decide the fate of one OrderPlaced message.

        :param placed_at_ms: when the stream stored the message (the same on every delivery).
        :return: ACK once the record is stored and the event is pub-acked; Term for an order
            that can never be processed. Bucket or publish failures raise: the host retries.
        """
        try:
            order = parse(data, self.settings)
        except Invalid as exc:
            return Term(exc.reason, exc.error)
        record = audit_record(order, placed_at_ms)
        if await self.records.create(order.order_id, record) is None:
            existing = await self.records.get(order.order_id)
            if existing is None:
                raise RuntimeError(f"record {order.order_id!r} vanished while being written")
            if existing.value != record:
                return Term(
                    "conflicting_order",
                    f"order_id: {order.order_id!r} was audited before with other content",
                )
            log.debug("order %s seen again: announcing it again", order.order_id)
        # the msg-id makes a repeated announcement (a redelivery) a no-op on the server
        await self.publish(
            self.settings.audited_subject,
            audited_event(order),
            msg_id=f"order-audited-{order.order_id}",
            plugin="order_audit",
        )
        return ACK
