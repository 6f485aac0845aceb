"""What the ack consumer does with one message: the contract's fate table, then the shared state.

The handler is plain Python: it gets its settings, the assignment store and two callables
(telemetry and plugin hooks), so it can be driven without pluggy or a host.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from jetplug import ACK, Decision, Term
from jetplug.events import Event
from jetplug_caf_common import state
from jetplug_caf_common.contracts import ContractError, ExecAssignmentAck
from jetplug_caf_common.events import AckProcessed
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

from .config import AckConsumerSettings

log = logging.getLogger("jetplug.ack_consumer")

#: outcome of an ack too late to change the record (see "Stale acks" in the README)
STALE = "stale"


class Refused(Exception):
    """Raised inside a merge when the message must be terminated instead (carries the Term)."""

    def __init__(self, decision: Term) -> None:
        super().__init__(decision.error)
        self.decision = decision


def refuse(
    record: AssignmentRecord | None, tenant_id: str, assignment_id: str, *, strict: bool
) -> None:
    """Raise :class:`Refused` when a message must not touch ``record`` (see ``refusal``)."""
    decision = refusal(record, tenant_id, assignment_id, strict=strict)
    if decision is not None:
        raise Refused(decision)


class AckHandler:
    """Validates ExecAssignmentAck messages and merges them into the assignment records."""

    def __init__(
        self,
        settings: AckConsumerSettings,
        store: Store,
        emit: Callable[[Event], None],
        notify: Notify,
    ) -> None:
        """
        :param settings: the plugin's configuration.
        :param store: the shared assignment store (compare-and-set updates).
        :param emit: sends a telemetry event (``host.emit``).
        :param notify: calls a plugin hook (``host.plugins.notify``).
        """
        self.settings = settings
        self.store = store
        self.emit = emit
        self.notify = notify
        self.allowed = frozenset(settings.allowed_tenants)

    async def handle(
        self, data: bytes, headers: Mapping[str, str], received_at_ms: int
    ) -> Decision:
        """Decide the fate of one ack.

        :param data: the payload.
        :param headers: the NATS headers (``tenant_id``, ``trace_id``, ``version`` win over
            the payload).
        :param received_at_ms: when the stream stored the message (Unix ms); the ack time, so a
            redelivery does not change the measured latency.
        :return: ACK when the ack is stored (or was already), Term for a message that can never
            be processed. Store failures raise, so the host naks with backoff.
        """
        try:
            ack = admit(
                data,
                headers,
                ExecAssignmentAck,
                max_bytes=self.settings.max_bytes,
                allowed_tenants=self.allowed,
            )
        except ContractError as exc:
            log.debug("ack rejected (%s): %s", exc.reason, exc.error)
            return term(exc)

        aid = ack.assignment_id
        seen: list[AssignmentRecord | None] = [None]

        def change(record: AssignmentRecord | None) -> AssignmentRecord | None:
            refuse(record, ack.tenant_id, aid, strict=self.settings.strict)
            seen[0] = record
            return state.acknowledged(
                record,
                assignment_id=aid,
                status=ack.status,
                at=received_at_ms,
                message=ack.message,
                tenant_id=ack.tenant_id,
                request_id=ack.request_id,
                trace_id=ack.trace_id,
            )

        try:
            record, changed = await self.store.apply(aid, change)
        except Refused as refused:
            decision = refused.decision
            log.debug("ack for %s refused (%s): %s", aid, decision.reason, decision.error)
            return refused.decision
        before = seen[0]
        if not changed or record is None:
            outcome = DUPLICATE if before is not None and before.ack_status == ack.status else STALE
            log.debug("ack for %s not applied (%s)", aid, outcome)
            self.emit(AckProcessed(status=ack.status, outcome=outcome))
            return ACK

        outcome = UNKNOWN if is_unknown(before) else APPLIED
        if outcome == UNKNOWN:
            log.info("ack for unknown assignment %s (%s)", aid, ack.status)
        await self.notify("caf_assignment_acked", record=record, ack=ack)
        self.emit(
            AckProcessed(status=ack.status, outcome=outcome, latency_ms=record.ack_latency_ms)
        )
        return ACK
