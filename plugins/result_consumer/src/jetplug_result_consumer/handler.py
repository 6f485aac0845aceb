"""What the result consumer does with one message: the fate table, billing, then the shared state.

Order of the side effects, which is what makes billing exactly-once:

1. validate (contract, size, tenant) -> Term on failure;
2. read the record: a result already recorded -> duplicate, ACK without billing;
3. publish the UsageEvent with ``Nats-Msg-Id: usage-<assignment_id>`` and wait for its pub-ack
   (the stream drops a repeat inside its duplicate window);
4. compare-and-set the result into the record (which marks ``usage_billed``);
5. ACK.

A failure anywhere raises, so the host naks with backoff: a redelivery finds either no result in
the record (steps 3-4 again; the usage publish is dropped as a duplicate) or the result (step 2).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Protocol

from jetplug import ACK, Decision, PubAck
from jetplug.events import Event
from jetplug_caf_common import state
from jetplug_caf_common.contracts import ContractError, ExecResult, UsageEvent, encode
from jetplug_caf_common.events import ResultProcessed, UsageEmitted
from jetplug_caf_common.intake import (
    APPLIED,
    DUPLICATE,
    UNKNOWN,
    Notify,
    admit,
    is_unknown,
    refusal,
    term,
)
from jetplug_caf_common.state import AssignmentRecord
from jetplug_caf_common.store import Store

from .config import ResultConsumerSettings

log = logging.getLogger("jetplug.result_consumer")

PLUGIN = "result_consumer"


class Publisher(Protocol):
    """What the handler needs from the host's publisher."""

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
        """Publish and wait for the pub-ack; raise PublishError otherwise."""


def usage_msg_id(assignment_id: str) -> str:
    """The ``Nats-Msg-Id`` of an assignment's usage event: one bill per assignment."""
    return f"usage-{assignment_id}"


def usage_event(
    result: ExecResult, record: AssignmentRecord | None, received_at_ms: int
) -> UsageEvent:
    """The UsageEvent of a result; provider, job type, request and trace fall back to the record.

    :param received_at_ms: the message's stream time, used when the result has no ``timestamp``.
    """
    rec = record or AssignmentRecord(assignment_id=result.assignment_id)
    job_type = result.job.type if result.job is not None else None
    return UsageEvent(
        version="1",
        tenant_id=result.tenant_id,
        assignment_id=result.assignment_id,
        status=result.status,
        timestamp=result.timestamp if result.timestamp is not None else received_at_ms,
        provider_id=result.provider_id or rec.provider_id,
        event_type=job_type or rec.job_type,
        latency_ms=result.latency_ms,
        cost=result.cost,
        trace_id=result.trace_id or rec.trace_id,
        request_id=result.request_id or rec.request_id,
    )


def usage_headers(usage: UsageEvent) -> dict[str, str]:
    """NATS headers of a usage event (tenant, version, trace): billing can route without parsing."""
    headers = {"tenant_id": usage.tenant_id, "version": usage.version}
    if usage.trace_id:
        headers["trace_id"] = usage.trace_id
    return headers


class ResultHandler:
    """Validates ExecResult messages, bills each processed result once, records it."""

    def __init__(
        self,
        settings: ResultConsumerSettings,
        store: Store,
        publisher: Publisher,
        emit: Callable[[Event], None],
        notify: Notify,
    ) -> None:
        """
        :param settings: the plugin's configuration.
        :param store: the shared assignment store (compare-and-set updates).
        :param publisher: the host's publisher (pub-ack, msg-id).
        :param emit: sends a telemetry event (``host.emit``).
        :param notify: calls a plugin hook (``host.plugins.notify``).
        """
        self.settings = settings
        self.store = store
        self.publisher = publisher
        self.emit = emit
        self.notify = notify
        self.allowed = frozenset(settings.allowed_tenants)

    async def handle(
        self, data: bytes, headers: Mapping[str, str], received_at_ms: int
    ) -> Decision:
        """Decide the fate of one result.

        :param data: the payload.
        :param headers: the NATS headers (``tenant_id``, ``trace_id``, ``version`` win over
            the payload).
        :param received_at_ms: when the stream stored the message (Unix ms): the result time of
            the record (so a redelivery does not change the end-to-end latency) and the usage
            event's timestamp when the result has none.
        :return: ACK once the usage event and the record are stored (or were already), Term for
            a message that can never be processed. Failures raise, so the host naks with backoff.
        """
        try:
            result = admit(
                data,
                headers,
                ExecResult,
                max_bytes=self.settings.max_bytes,
                allowed_tenants=self.allowed,
            )
        except ContractError as exc:
            log.debug("result rejected (%s): %s", exc.reason, exc.error)
            return term(exc)

        aid = result.assignment_id
        current = await self.store.get(aid)
        refused = refusal(current, result.tenant_id, aid, strict=self.settings.strict)
        if refused is not None:
            log.debug("result for %s refused (%s): %s", aid, refused.reason, refused.error)
            return refused
        if current is not None and current.result_status is not None:
            log.debug("duplicate result for %s: already recorded and billed", aid)
            self.emit(ResultProcessed(status=result.status, outcome=DUPLICATE))
            return ACK

        usage = usage_event(result, current, received_at_ms)
        pub_ack = await self.publisher.publish(
            self.settings.usage_subject,
            encode(usage),
            headers=usage_headers(usage),
            msg_id=usage_msg_id(aid),
            expected_stream=self.settings.usage_stream,
            plugin=PLUGIN,
        )
        self.emit(UsageEmitted(assignment_id=aid, duplicate=pub_ack.duplicate))

        seen: list[AssignmentRecord | None] = [current]
        job_type = result.job.type if result.job is not None else None

        def change(record: AssignmentRecord | None) -> AssignmentRecord | None:
            seen[0] = record
            return state.resulted(
                record,
                assignment_id=aid,
                status=result.status,
                at=received_at_ms,
                tenant_id=result.tenant_id,
                request_id=result.request_id,
                provider_id=result.provider_id,
                job_type=job_type,
                trace_id=result.trace_id,
            )

        record, changed = await self.store.apply(aid, change)
        if not changed or record is None:
            # another delivery of a result for this assignment won the race; its usage event is
            # the one stored (ours was dropped as a duplicate of the same msg-id)
            self.emit(ResultProcessed(status=result.status, outcome=DUPLICATE))
            return ACK

        outcome = UNKNOWN if is_unknown(seen[0]) else APPLIED
        if outcome == UNKNOWN:
            log.info("result for unknown assignment %s (%s), billed", aid, result.status)
        await self.notify("caf_assignment_completed", record=record, result=result)
        self.emit(
            ResultProcessed(status=result.status, outcome=outcome, latency_ms=record.end_to_end_ms)
        )
        return ACK
