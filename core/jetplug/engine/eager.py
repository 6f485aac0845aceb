"""Run a coroutine's first step inline; make a task only if it really has to wait.

Most message handlers finish without waiting on I/O (or are plain functions). Creating an
asyncio Task per message costs several microseconds and dominates the per-message cost of the
engine, so the engine starts each handler coroutine by hand and hands it to a Task only when it
suspends (Python 3.12's eager tasks do the same; this works on 3.10 and 3.11).
"""

from __future__ import annotations

import asyncio
import contextvars
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def start(
    coro: Coroutine[Any, Any, T], context: contextvars.Context | None = None
) -> tuple[bool, Any]:
    """Run ``coro`` until it first suspends, in ``context`` when given.

    :return: ``(True, result)`` when it finished, ``(False, task)`` when it suspended; the task
        resumes it, in the same context, and yields the result. Exceptions raised in the first
        step propagate.
    """
    if context is not None:
        return context.run(_start, coro, context)
    return _start(coro, None)


def _start(coro: Coroutine[Any, Any, T], context: contextvars.Context | None) -> tuple[bool, Any]:
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        return True, stop.value
    loop = asyncio.get_running_loop()
    if context is not None and sys.version_info >= (3, 11):
        # the rest of the coroutine must see the context its first step ran in (values set and
        # tokens taken there), not a copy of it, which create_task would make by default
        return False, loop.create_task(_resume(coro, yielded), context=context)
    return False, loop.create_task(_resume(coro, yielded))


async def _resume(coro: Coroutine[Any, Any, T], yielded: Any) -> T:
    """Drive ``coro`` from a suspension point the way asyncio.Task would."""
    while True:
        value: Any = None
        error: BaseException | None = None
        try:
            if yielded is None:
                await asyncio.sleep(0)  # a bare yield: give the loop one turn
            else:
                # the coroutine yielded a future it waits on; wait for it here instead
                yielded._asyncio_future_blocking = False
                try:
                    await _wait(yielded)
                except asyncio.CancelledError as exc:
                    if not yielded.done():
                        yielded.cancel()
                    error = exc
        except asyncio.CancelledError as exc:
            error = exc
        try:
            yielded = coro.throw(error) if error is not None else coro.send(value)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]


async def _wait(fut: asyncio.Future[Any]) -> None:
    """Wait until ``fut`` is done without raising its exception (the coroutine will see it)."""
    if not fut.done():
        waiter = asyncio.get_running_loop().create_future()

        def wake(_: asyncio.Future[Any]) -> None:
            if not waiter.done():
                waiter.set_result(None)

        fut.add_done_callback(wake)
        try:
            await waiter
        finally:
            fut.remove_done_callback(wake)
