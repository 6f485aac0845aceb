"""Built-in plugin: log the telemetry events an operator needs to see, structured."""

from __future__ import annotations

import logging

from ..events import (
    ConnectionChanged,
    ConsumerStateChanged,
    Event,
    MessageDeadLettered,
    ProvisioningDrift,
    PublishFailed,
    listens_to,
)
from ..hookspecs import hookimpl

log = logging.getLogger("jetplug.events")


@hookimpl
@listens_to(
    ConnectionChanged, ConsumerStateChanged, MessageDeadLettered, PublishFailed, ProvisioningDrift
)
def track_event(event: Event) -> None:
    """Log connection changes, consumer state, dead letters, drift and failed publishes."""
    if isinstance(event, ConnectionChanged):
        if event.state not in ("connected", "reconnected", "error"):
            log.info("connection %s", event.state, extra={"detail": event.detail})
    elif isinstance(event, ConsumerStateChanged):
        level = logging.WARNING if event.state == "stalled" else logging.INFO
        log.log(
            level,
            "consumer %s is %s",
            event.consumer,
            event.state,
            extra={"consumer": event.consumer, "stream": event.stream, "reason": event.reason},
        )
    elif isinstance(event, MessageDeadLettered):
        log.warning(
            "dead-lettered message (%s)",
            event.reason,
            extra={
                "consumer": event.consumer,
                "stream": event.stream,
                "stream_seq": event.stream_seq,
                "deliveries": event.deliveries,
                "error": event.error,
            },
        )
    elif isinstance(event, PublishFailed) and event.kind != "conflict":  # conflict: a lost CAS race
        log.warning(
            "publish failed (%s)",
            event.kind,
            extra={"subject": event.subject, "error": event.error, "attempts": event.attempts},
        )
    elif isinstance(event, ProvisioningDrift):
        log.warning(
            "%s %s: %s is %s, declared %s%s",
            event.kind,
            event.target,
            event.field_name,
            event.current,
            event.wanted,
            " (updated)" if event.applied else "",
        )
