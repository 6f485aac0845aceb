"""Hooks the CAF plugins offer other plugins.

Every CAF plugin returns this module from ``register_hookspecs``; implement the hooks with
``@jetplug.hookimpl`` in any plugin. All are notifications (return value ignored), may be
``async def``, fire once per change (the process whose compare-and-set made the change fires
it), and a failing implementation is logged without affecting the message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jetplug import hookspec

if TYPE_CHECKING:
    from .contracts import ExecAssignment, ExecAssignmentAck, ExecResult
    from .state import AssignmentRecord


@hookspec
def caf_assignment_published(record: AssignmentRecord, assignment: ExecAssignment) -> None:
    """An assignment got its pub-ack and its record says ``published``.

    :param record: the record after the change.
    :param assignment: the message as published.
    """


@hookspec
def caf_assignment_acked(record: AssignmentRecord, ack: ExecAssignmentAck) -> None:
    """An executor's ack changed a record (``accepted``, ``rejected`` or ``error``).

    :param record: the record after the change.
    :param ack: the validated ack message.
    """


@hookspec
def caf_assignment_completed(record: AssignmentRecord, result: ExecResult) -> None:
    """A result was processed: its usage event is stored and the record carries the result.

    :param record: the record after the change (status ``completed``, ``failed``,
        ``timed_out`` or ``cancelled``).
    :param result: the validated result message.
    """


@hookspec
def caf_assignment_expired(record: AssignmentRecord) -> None:
    """An assignment passed its deadline with no result and was not rejected.

    :param record: the record after the change (status ``expired``).
    """
