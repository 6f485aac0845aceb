"""Deadline expiry: assignments past deadline (+ grace), without a result and not rejected,
become ``expired``.

The scheduler keeps a heap of ``(due time, assignment_id)`` for what this process published, and
fills it at startup (and every ``expiry_rescan_interval``) from the shared bucket, so assignments
published by a process that has stopped still expire. Each due assignment gets one compare-and-set
update with :func:`jetplug_caf_common.state.expire`; only the process whose update changed the
record reports it, so two routers never both announce the same expiry.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

from jetplug_caf_common import state
from jetplug_caf_common.state import FINAL, AssignmentRecord

if TYPE_CHECKING:
    from jetplug_caf_common.store import AssignmentStore

log = logging.getLogger("jetplug.caf_adapter.expiry")

OnExpired = Callable[[AssignmentRecord], Awaitable[None]]


def now_ms() -> int:
    """Wall-clock Unix milliseconds (records are shared between processes, so not monotonic)."""
    return int(time.time() * 1000)


class ExpiryScheduler:
    """Expire overdue assignments of one bucket; :meth:`run` until cancelled."""

    def __init__(
        self,
        store: AssignmentStore,
        on_expired: OnExpired,
        *,
        interval: float = 1.0,
        grace: float = 5.0,
        rescan_interval: float = 60.0,
        concurrency: int = 32,
    ) -> None:
        self.store = store
        self.on_expired = on_expired
        self.interval = interval
        self.grace_ms = int(grace * 1000)
        self.rescan_interval = rescan_interval
        self._heap: list[tuple[int, str]] = []
        #: assignment id -> due time (ms) of its heap entry; the heap may hold stale entries
        self._due: dict[str, int] = {}
        #: ids found final in the bucket, so rescans do not read them again
        self._settled: set[str] = set()
        self._limit = asyncio.Semaphore(concurrency)
        #: set after the first full scan of the bucket
        self.scanned = asyncio.Event()
        #: completed checks so far (tests wait on it)
        self.checks = 0

    # --- what is scheduled --------------------------------------------------------------------

    def schedule(self, assignment_id: str, deadline_at: int) -> None:
        """Check ``assignment_id`` once ``deadline_at`` (Unix ms) plus the grace has passed."""
        due = deadline_at + self.grace_ms
        if self._due.get(assignment_id) == due:
            return
        self._due[assignment_id] = due
        heapq.heappush(self._heap, (due, assignment_id))

    def scheduled(self, assignment_id: str) -> bool:
        """Whether ``assignment_id`` still waits for its check."""
        return assignment_id in self._due

    def __len__(self) -> int:
        return len(self._due)

    # --- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Scan the bucket, then check due assignments every ``interval`` s (rescanning now and
        then) until cancelled. Failures are logged and retried at the next round."""
        await self._scan_logged()
        self.scanned.set()
        next_scan = time.monotonic() + self.rescan_interval
        while True:
            await asyncio.sleep(self.interval)
            if self.rescan_interval and time.monotonic() >= next_scan:
                await self._scan_logged()
                next_scan = time.monotonic() + self.rescan_interval
            await self.tick()

    async def _scan_logged(self) -> None:
        try:
            found = await self.scan()
        except Exception:
            log.warning("scanning the assignment bucket failed", exc_info=True)
        else:
            if found:
                log.info("scheduled %d assignment(s) found in the bucket for expiry", found)

    async def scan(self) -> int:
        """Schedule every open assignment in the bucket not scheduled yet; return how many."""
        ids = await self.store.ids()
        present = set(ids)
        self._settled &= present  # forget ids the bucket's TTL removed
        todo = [i for i in ids if i not in self._due and i not in self._settled]
        records = await asyncio.gather(*(self._read(i) for i in todo))
        found = 0
        for aid, record in zip(todo, records, strict=True):
            if record is None:
                continue
            if record.status in FINAL or record.deadline_at is None:
                if record.status in FINAL:
                    self._settle(aid)
                continue
            self.schedule(aid, record.deadline_at)
            found += 1
        return found

    async def _read(self, assignment_id: str) -> AssignmentRecord | None:
        async with self._limit:
            return await self.store.get(assignment_id)

    def due(self, now: int) -> list[str]:
        """Pop every assignment whose check is due at ``now`` (Unix ms)."""
        out: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            due, aid = heapq.heappop(self._heap)
            if self._due.get(aid) == due:
                del self._due[aid]
                out.append(aid)
        return out

    async def tick(self, now: int | None = None) -> None:
        """Check every due assignment (concurrently, bounded)."""
        ids = self.due(now_ms() if now is None else now)
        if ids:
            await asyncio.gather(*(self._check_logged(aid) for aid in ids))

    async def _check_logged(self, assignment_id: str) -> None:
        async with self._limit:
            try:
                await self.check(assignment_id)
            except Exception:
                log.warning("expiry check of %s failed; retrying", assignment_id, exc_info=True)
                self.schedule(assignment_id, now_ms() - self.grace_ms)
            finally:
                self.checks += 1

    async def check(self, assignment_id: str) -> AssignmentRecord | None:
        """Expire ``assignment_id`` if it is overdue; reschedule it if its deadline moved.

        :return: the record when this call expired it, else None.
        """
        grace = self.grace_ms
        record, changed = await self.store.apply(
            assignment_id, lambda r: state.expire(r, now=now_ms(), grace_ms=grace)
        )
        if changed and record is not None:
            self._settle(assignment_id)
            await self.on_expired(record)
            return record
        if record is None:
            return None  # gone (TTL) or never written
        if record.status in FINAL:
            self._settle(assignment_id)
        elif record.deadline_at is not None:
            self.schedule(
                assignment_id, record.deadline_at
            )  # not due yet (clock skew between hosts)
        return None

    def _settle(self, assignment_id: str) -> None:
        if self.rescan_interval:  # only rescans need to remember what is done
            self._settled.add(assignment_id)

    def forget(self, ids: Iterable[str]) -> None:
        """Stop tracking ``ids`` (their heap entries become stale and are skipped)."""
        for aid in ids:
            self._due.pop(aid, None)
