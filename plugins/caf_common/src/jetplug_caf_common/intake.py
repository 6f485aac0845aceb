"""What both consumers do first with a message: size, contract, tenant (the fate table's top
rows)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping
from typing import TypeVar

from jetplug import Term

from .contracts import ContractError, ExecAssignmentAck, ExecResult, decode
from .state import AssignmentRecord

T = TypeVar("T", ExecAssignmentAck, ExecResult)

#: outcome and DLQ reason for messages about assignments this router has no record of
UNKNOWN = "unknown_assignment"
#: outcome of a message merged into its record
APPLIED = "applied"
#: outcome of a message whose fact the record already holds
DUPLICATE = "duplicate"

#: calls a plugin hook by name with keyword arguments (``host.plugins.notify``)
Notify = Callable[..., Awaitable[None]]


def admit(
    data: bytes,
    headers: Mapping[str, str],
    kind: type[T],
    *,
    max_bytes: int,
    allowed_tenants: Collection[str],
) -> T:
    """The validated message, or ContractError (``too_large``, ``invalid_payload``,
    ``unsupported_version``, ``tenant_not_allowed``)."""
    message = decode(data, kind, headers, max_bytes=max_bytes)
    if allowed_tenants and message.tenant_id not in allowed_tenants:
        raise ContractError(
            "tenant_not_allowed",
            f"tenant_id: {message.tenant_id!r} is not in the allow-list",
            "tenant_id",
        )
    return message


def term(exc: ContractError) -> Term:
    """The decision for a contract violation: terminate and dead-letter with its reason."""
    return Term(exc.reason, exc.error)


def is_unknown(record: AssignmentRecord | None) -> bool:
    """True when this router never recorded publishing the assignment (no record, or no
    ``published`` fact: the record only holds facts from executors)."""
    return record is None or record.published_at is None


def refusal(
    record: AssignmentRecord | None, tenant_id: str, assignment_id: str, *, strict: bool
) -> Term | None:
    """The Term for an ack or result that must not touch ``record``, else None.

    ``tenant_mismatch``: the record belongs to another tenant. ``unknown_assignment``: strict
    mode and this router has no record of publishing the assignment.
    """
    if record is not None and record.tenant_id is not None and record.tenant_id != tenant_id:
        return Term(
            "tenant_mismatch",
            f"tenant_id: {tenant_id!r} does not match the assignment's tenant {record.tenant_id!r}",
        )
    if strict and is_unknown(record):
        return Term(
            UNKNOWN,
            f"assignment_id: no record of assignment {assignment_id!r} (not published by this "
            "router, or its record expired)",
        )
    return None
