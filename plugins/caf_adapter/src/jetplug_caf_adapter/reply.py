"""The request-reply service: core NATS requests ``{"request": ..., "decision": ...}`` in, the
assignment's pub-ack or a structured error out.

Off unless ``reply_subject`` is set. The subscription is a plain core NATS one in a queue group
(several routers share the requests); the answer goes to the request's reply inbox. A request
without a reply inbox is still processed (fire and forget). Nothing a client sends can crash the
service: bad JSON is answered with ``{"error": {"kind": "invalid", ...}}``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

from .adapter import AssignmentError

if TYPE_CHECKING:
    from .adapter import Adapter

log = logging.getLogger("jetplug.caf_adapter.reply")


def parse(data: bytes) -> tuple[Any, Any, str | None]:
    """``(request, decision, assignment_id)`` from a request body.

    :raises AssignmentError: ``invalid`` naming the field (``request``, ``decision``, ...).
    """
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise AssignmentError("invalid", f"payload: not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise AssignmentError(
            "invalid", f"payload: expected a JSON object, got {type(body).__name__}"
        )
    for key in ("request", "decision"):
        if key not in body:
            raise AssignmentError("invalid", f"{key}: required field is missing", key)
    aid = body.get("assignment_id")
    if aid is not None and not isinstance(aid, str):
        raise AssignmentError("invalid", "assignment_id: expected a string", "assignment_id")
    return body["request"], body["decision"], aid


async def answer(adapter: Adapter, data: bytes) -> dict[str, Any]:
    """The reply to one request body: the :class:`~.adapter.AssignResult` as a dict
    (``assignment_id``, ``stream``, ``seq``, ``duplicate``, ``outcome`` ...) or
    ``{"error": {"kind", "message", "field"}}``."""
    try:
        request, decision, aid = parse(data)
        result = await adapter.assign(request, decision, assignment_id=aid)
    except AssignmentError as exc:
        return {"error": exc.to_dict()}
    except Exception as exc:
        log.exception("request-reply: unexpected failure")
        return {
            "error": {"kind": "internal", "message": f"{type(exc).__name__}: {exc}", "field": ""}
        }
    return result.to_dict()


class ReplyService:
    """The subscription and its in-flight handlers."""

    def __init__(self, adapter: Adapter, subject: str, queue: str, concurrency: int) -> None:
        self.adapter = adapter
        self.subject = subject
        self.queue = queue
        self._limit = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._sub: Any = None

    async def start(self) -> None:
        """Subscribe ``subject`` in the queue group."""
        nc = self.adapter.host.nc
        self._sub = await nc.subscribe(self.subject, queue=self.queue, cb=self._on_message)
        # twice: nats-py writes flush()'s PING straight to the socket, so it can overtake the SUB
        # still in its pending buffer; the second PING goes out after it, and its PONG proves the
        # server has the subscription (requests right after startup would see "no responders")
        await nc.flush()
        await nc.flush()
        log.info("answering assignment requests on %s", self.subject, extra={"queue": self.queue})

    async def _on_message(self, msg: Any) -> None:
        # nats-py awaits callbacks one at a time per subscription: hand off, bounded
        await self._limit.acquire()
        task = asyncio.get_running_loop().create_task(self._handle(msg.data, msg.reply))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._limit.release()

    async def _handle(self, data: bytes, reply: str) -> None:
        body = await answer(self.adapter, data)
        if not reply:
            return
        try:
            await self.adapter.host.nc.publish(
                reply, json.dumps(body, separators=(",", ":")).encode()
            )
        except Exception:
            log.warning("request-reply: could not send the answer", exc_info=True)

    async def stop(self) -> None:
        """Unsubscribe, then let the requests in flight finish (the host bounds the wait)."""
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:
                log.debug("unsubscribe failed", exc_info=True)
            self._sub = None
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
