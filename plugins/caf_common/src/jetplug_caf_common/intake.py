"""What both consumers do first with a message: size, contract, tenant (the fate table's top
rows)."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TypeVar

from jetplug import Term

from .contracts import ContractError, ExecAssignmentAck, ExecResult, decode

T = TypeVar("T", ExecAssignmentAck, ExecResult)


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
