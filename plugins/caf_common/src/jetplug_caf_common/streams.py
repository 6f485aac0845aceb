"""The streams of the contract, declared identically by every plugin that needs them.

The host refuses two different declarations of one stream, so plugins that share a stream (the
adapter and the simulator share the assignments) build it with these functions.
"""

from __future__ import annotations

from jetplug import StreamSpec

#: long enough to cover any redelivery of a message whose publish it deduplicates
DUPLICATE_WINDOW = 3600.0


def assignment_stream(name: str = "CAF_ASSIGN", subject: str = "caf.exec.assign.v1") -> StreamSpec:
    """ExecAssignment messages (router -> CAF)."""
    return StreamSpec(name, (subject,), duplicate_window=DUPLICATE_WINDOW, description="CAF assignments")


def ack_stream(name: str = "CAF_ACK", subject: str = "caf.exec.assign.v1.ack") -> StreamSpec:
    """ExecAssignmentAck messages (CAF -> router)."""
    return StreamSpec(name, (subject,), duplicate_window=DUPLICATE_WINDOW, description="CAF assignment acks")


def result_stream(name: str = "CAF_RESULT", subject: str = "caf.exec.result.v1") -> StreamSpec:
    """ExecResult messages (CAF -> router)."""
    return StreamSpec(name, (subject,), duplicate_window=DUPLICATE_WINDOW, description="CAF results")


def usage_stream(name: str = "USAGE", subject: str = "beamline.usage.v1.metered") -> StreamSpec:
    """UsageEvent messages (router -> billing); the window makes usage-<id> bill once."""
    return StreamSpec(name, (subject,), duplicate_window=DUPLICATE_WINDOW, description="metered usage")
