"""Assignment records in a JetStream key-value bucket, shared by every router process."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from jetplug import KeyValueSpec

from . import state
from .state import AssignmentRecord

if TYPE_CHECKING:
    from jetplug.host import Host

DEFAULT_BUCKET = "caf_assignments"
DEFAULT_TTL = 24 * 3600.0


def bucket_spec(bucket: str = DEFAULT_BUCKET, ttl: float = DEFAULT_TTL) -> KeyValueSpec:
    """The declaration of the shared bucket; every CAF plugin declares the same one."""
    return KeyValueSpec(bucket, ttl=ttl, history=1, description="jetplug CAF assignment records")


#: a pure merge: the stored record (None when absent) -> the record to store (None: keep as is)
Change = Callable[[AssignmentRecord | None], AssignmentRecord | None]


class Store(Protocol):
    """What the consumers' handlers need from :class:`AssignmentStore` (unit tests pass fakes)."""

    async def get(self, assignment_id: str) -> AssignmentRecord | None:
        """The record, or None."""

    async def apply(
        self, assignment_id: str, change: Change
    ) -> tuple[AssignmentRecord | None, bool]:
        """Compare-and-set a pure merge; ``(record now stored, changed)``."""


class AssignmentStore:
    """Read and change records; every change is a compare-and-set on the key's revision."""

    def __init__(self, host: Host, bucket: str = DEFAULT_BUCKET) -> None:
        self.kv = host.kv(bucket)

    async def get(self, assignment_id: str) -> AssignmentRecord | None:
        """The record, or None when there is none (unknown or expired by TTL)."""
        entry = await self.kv.get(assignment_id)
        return state.decode(entry.value) if entry else None

    async def apply(
        self, assignment_id: str, change: Change
    ) -> tuple[AssignmentRecord | None, bool]:
        """Apply a pure merge function; returns ``(record now stored, whether it changed)``."""

        def on_bytes(current: bytes | None) -> bytes | None:
            record = state.decode(current) if current else None
            updated = change(record)
            return state.encode(updated) if updated is not None else None

        stored, changed = await self.kv.update(assignment_id, on_bytes)
        return (state.decode(stored) if stored else None), changed

    async def ids(self) -> list[str]:
        """Every assignment id in the bucket."""
        return await self.kv.keys()
