"""The adapter: validate, switch, allow-list, publish with retries, record, report.

One :class:`Adapter` serves one host. The plugin creates it at ``startup`` (with expiry and the
request-reply service), the ``jetplug caf assign`` command creates one on a client connection
(without them). Other plugins reach the running one through :func:`publish_assignment`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from jetplug import JetplugError, PubAck, PublishError
from jetplug_caf_common import state
from jetplug_caf_common.events import (
    AssignmentBlocked,
    AssignmentExpired,
    AssignmentFailed,
    AssignmentPublished,
    AssignmentRetried,
    AssignmentSkipped,
)
from jetplug_caf_common.metrics import emitter
from jetplug_caf_common.store import AssignmentStore

from .build import Built, InvalidInput, build
from .config import PLUGIN, CafAdapterSettings
from .expiry import ExpiryScheduler, now_ms

if TYPE_CHECKING:
    from jetplug.host import Host
    from jetplug_caf_common.state import AssignmentRecord

    from .reply import ReplyService

log = logging.getLogger("jetplug.caf_adapter")

Outcome = Literal["published", "blocked", "skipped"]


@dataclass(frozen=True)
class AssignResult:
    """What became of one assignment that did not fail.

    ``published``: the server stored it (``duplicate``: it already had this ``assignment_id``).
    ``blocked``: the tenant is not in the allow-list; ``skipped``: assignments are switched off.
    Nothing is published for those two, so they carry no id.
    """

    outcome: Outcome
    assignment_id: str | None = None
    stream: str | None = None
    seq: int | None = None
    duplicate: bool = False
    #: publish attempts it took (0 when nothing was published)
    attempts: int = 0
    #: the assignment's ``options.deadline_ms``
    deadline_ms: int | None = None
    #: whether the ``published`` fact reached the shared record (a failure there is logged; the
    #: assignment is out either way)
    recorded: bool = False
    #: why nothing was published (``tenant_not_allowed``, ``disabled``)
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data."""
        return asdict(self)


class AssignmentError(JetplugError):
    """An assignment was not published.

    ``kind`` is ``invalid`` (the input breaks the contract; ``field`` names the path, nothing was
    sent) or the :class:`~jetplug.PublishError` kind of the final attempt (``no_stream``,
    ``too_large``, ``permission``, ``timeout``, ``no_responders``, ``not_connected`` ...), or
    ``not_started``. ``assignment_id`` is the id that was tried, when one was: after a
    ``timeout`` the server may have stored it, so a caller that retries should pass the same id
    (``assignment_id=``) and the server drops the second copy.
    """

    def __init__(
        self, kind: str, message: str, field: str = "", assignment_id: str | None = None
    ) -> None:
        self.kind = kind
        self.message = message
        self.field = field
        self.assignment_id = assignment_id
        #: the CLI's exit code: 2 for invalid input, 1 otherwise
        self.exit_code = 2 if kind == "invalid" else 1
        super().__init__(message)

    def to_dict(self) -> dict[str, Any]:
        """``{"kind", "message", "field"}`` (+ ``assignment_id`` when one was tried)."""
        out: dict[str, Any] = {"kind": self.kind, "message": self.message, "field": self.field}
        if self.assignment_id:
            out["assignment_id"] = self.assignment_id
        return out


class Adapter:
    """Publishes assignments for one host; see the module docstring."""

    def __init__(self, host: Host, settings: CafAdapterSettings) -> None:
        self.host = host
        self.settings = settings
        self.store = AssignmentStore(host, settings.bucket)
        #: counts CAF metrics, then emits the event as telemetry
        self.emit = emitter(host)
        self.expiry: ExpiryScheduler | None = None
        self.reply: ReplyService | None = None
        self._expiry_task: asyncio.Task[None] | None = None

    # --- lifecycle ------------------------------------------------------------------------------

    async def start(self, *, expiry: bool = True, reply: bool = True) -> None:
        """Start deadline expiry and the request-reply service, as the settings ask."""
        s = self.settings
        if expiry and s.expiry_enabled:
            self.expiry = ExpiryScheduler(
                self.store,
                self._expired,
                interval=s.expiry_interval,
                grace=s.expiry_grace,
                rescan_interval=s.expiry_rescan_interval,
            )
            self._expiry_task = asyncio.get_running_loop().create_task(
                self.expiry.run(), name="caf_adapter-expiry"
            )
        if reply and s.reply_subject:
            from .reply import ReplyService

            self.reply = ReplyService(self, s.reply_subject, s.reply_queue, s.reply_concurrency)
            try:
                await self.reply.start()
            except BaseException:
                self.reply = None
                await self.stop()  # the host will not call shutdown after a failed startup
                raise

    async def stop(self) -> None:
        """Stop taking requests, finish the ones in flight, stop expiry."""
        if self.reply is not None:
            await self.reply.stop()
        if self._expiry_task is not None:
            self._expiry_task.cancel()
            try:
                await self._expiry_task
            except asyncio.CancelledError:
                pass
            except Exception:
                log.debug("expiry task ended with an error", exc_info=True)
            self._expiry_task = None

    # --- the one entry point --------------------------------------------------------------------

    async def assign(
        self,
        request: Mapping[str, Any],
        decision: Mapping[str, Any],
        *,
        assignment_id: str | None = None,
    ) -> AssignResult:
        """Publish one assignment; see :func:`publish_assignment`."""
        s = self.settings
        aid = assignment_id if assignment_id is not None else str(uuid.uuid4())
        try:
            built = build(request, decision, s, aid)
        except InvalidInput as exc:
            self.emit(
                AssignmentFailed(assignment_id=assignment_id or "", kind="invalid", error=str(exc))
            )
            log.info("invalid assignment input: %s", exc)
            raise AssignmentError("invalid", str(exc), exc.field) from None
        if not s.assignments_enabled:
            self.emit(AssignmentSkipped(reason="disabled"))
            return AssignResult("skipped", reason="disabled")
        if s.allowed_tenants and built.tenant_id not in s.allowed_tenants:
            self.emit(AssignmentBlocked(tenant_id=built.tenant_id))
            log.warning(
                "assignment blocked: tenant %r is not in the allow-list",
                built.tenant_id,
                extra={"tenant_id": built.tenant_id, "request_id": built.assignment.request_id},
            )
            return AssignResult("blocked", reason="tenant_not_allowed")
        ack, attempts = await self._publish(built)
        # a new id can only be on the server from an earlier attempt of this very call (stored,
        # but its pub-ack was lost): that is not a duplicate to the caller
        duplicate = ack.duplicate and assignment_id is not None
        recorded = await self._record(built, ack)
        self.emit(
            AssignmentPublished(
                assignment_id=built.assignment_id,
                tenant_id=built.tenant_id,
                stream=ack.stream,
                seq=ack.seq,
                duplicate=duplicate,
                attempts=attempts,
            )
        )
        return AssignResult(
            "published",
            assignment_id=built.assignment_id,
            stream=ack.stream,
            seq=ack.seq,
            duplicate=duplicate,
            attempts=attempts,
            deadline_ms=built.deadline_ms,
            recorded=recorded,
        )

    # --- steps ----------------------------------------------------------------------------------

    def backoff(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (1-based):
        base x 2^(attempt-1), + jitter."""
        delay = self.settings.retry_base_ms / 1000 * 2.0 ** (attempt - 1)
        return delay + random.uniform(0, delay * self.settings.retry_jitter)

    async def _publish(self, built: Built) -> tuple[PubAck, int]:
        """Our own retry loop: one publisher attempt each, the same msg-id every time."""
        s = self.settings
        aid = built.assignment_id
        for attempt in range(1, s.retry_attempts + 1):
            try:
                ack = await self.host.publisher.publish(
                    s.assignment_subject,
                    built.data,
                    headers=dict(built.headers),
                    msg_id=aid,
                    attempts=1,
                    plugin=PLUGIN,
                )
                return ack, attempt
            except PublishError as exc:
                if exc.retryable and attempt < s.retry_attempts:
                    self.emit(AssignmentRetried(assignment_id=aid, attempt=attempt, kind=exc.kind))
                    log.info(
                        "assignment %s: attempt %d failed (%s), retrying", aid, attempt, exc.kind
                    )
                    await asyncio.sleep(self.backoff(attempt))
                    continue
                tried = f"after {attempt} attempt{'s' if attempt > 1 else ''}"
                message = f"assignment {aid} not published {tried}: {exc}"
                self._failed(aid, exc.kind, message)
                raise AssignmentError(exc.kind, message, assignment_id=aid) from None
            except (
                Exception
            ) as exc:  # a before_publish hook or the client broke: report, never hide
                message = f"assignment {aid} not published: {type(exc).__name__}: {exc}"
                self._failed(aid, "internal", message)
                raise AssignmentError("internal", message, assignment_id=aid) from exc
        raise AssertionError("unreachable: retry_attempts >= 1")  # pragma: no cover

    def _failed(self, aid: str, kind: str, message: str) -> None:
        self.emit(AssignmentFailed(assignment_id=aid, kind=kind, error=message))
        log.warning("%s", message, extra={"assignment_id": aid, "kind": kind})

    async def _record(self, built: Built, ack: PubAck) -> bool:
        """Write the ``published`` fact (merging with an ack/result that came first), notify
        ``caf_assignment_published`` if this changed the record, and schedule the expiry check."""
        a = built.assignment
        published_at = now_ms()
        try:
            record, changed = await self.store.apply(
                a.assignment_id,
                lambda r: state.published(
                    r,
                    assignment_id=a.assignment_id,
                    published_at=published_at,
                    tenant_id=a.tenant_id,
                    request_id=a.request_id,
                    provider_id=a.executor.provider_id,
                    job_type=a.job.get("type"),
                    trace_id=a.correlation.trace_id,
                    deadline_ms=built.deadline_ms,
                    stream_seq=ack.seq,
                ),
            )
        # the assignment is out: a record that could not be written must not undo that
        except Exception as exc:  # noqa: BLE001
            log.warning(
                "assignment %s was published (stream %s seq %d) but its record was not written: %s",
                a.assignment_id,
                ack.stream,
                ack.seq,
                exc,
                extra={"assignment_id": a.assignment_id},
            )
            return False
        if changed and record is not None:
            await self.host.plugins.notify("caf_assignment_published", record=record, assignment=a)
        if self.expiry is not None and record is not None and record.status not in state.FINAL:
            due = record.deadline_at
            if due is not None:
                self.expiry.schedule(a.assignment_id, due)
        return True

    async def _expired(self, record: AssignmentRecord) -> None:
        self.emit(
            AssignmentExpired(assignment_id=record.assignment_id, tenant_id=record.tenant_id or "")
        )
        log.info(
            "assignment %s expired (deadline %s ms, no result)",
            record.assignment_id,
            record.deadline_ms,
            extra={"assignment_id": record.assignment_id, "tenant_id": record.tenant_id},
        )
        await self.host.plugins.notify("caf_assignment_expired", record=record)


# --- the running adapters, for publish_assignment ------------------------------------------------

_running: dict[int, Adapter] = {}


def attach(adapter: Adapter) -> None:
    """Make ``adapter`` the one :func:`publish_assignment` uses for its host."""
    _running[id(adapter.host)] = adapter


def detach(host: Host) -> Adapter | None:
    """Forget the adapter of ``host`` (at shutdown); return it."""
    return _running.pop(id(host), None)


def running_adapter(host: Host | None = None) -> Adapter:
    """The adapter of ``host``, or of the one running host when ``host`` is None.

    :raises AssignmentError: ``not_started`` when there is none (or several and no host given).
    """
    if host is not None:
        adapter = _running.get(id(host))
        if adapter is None:
            raise AssignmentError(
                "not_started", "the caf_adapter plugin is not started on this host (is it enabled?)"
            )
        return adapter
    if not _running:
        raise AssignmentError(
            "not_started",
            "the caf_adapter plugin is not started: call publish_assignment from a running host "
            "(after the startup hooks), with caf_adapter enabled",
        )
    if len(_running) > 1:
        raise AssignmentError(
            "not_started", "several hosts run caf_adapter in this process: pass host= to choose one"
        )
    return next(iter(_running.values()))


async def publish_assignment(
    request: Mapping[str, Any],
    decision: Mapping[str, Any],
    *,
    assignment_id: str | None = None,
    host: Host | None = None,
) -> AssignResult:
    """Publish an ExecAssignment for a decide ``request`` and its route ``decision``.

    Validates both against the contract before anything is sent; honours the on/off switch and
    the tenant allow-list; publishes with pub-ack, retrying only retryable errors; writes the
    ``published`` record and fires ``caf_assignment_published``.

    :param request: the decide request: ``tenant_id``, ``request_id``, ``task`` (``type``
        required), optional ``options``, ``trace_id``, ``metadata``.
    :param decision: the route decision: ``provider_id``, ``priority``, ``expected_latency_ms``,
        ``expected_cost``, ``reason``, optional ``metadata``.
    :param assignment_id: reuse an id (a UUID v4) when retrying a call that failed; default new.
    :param host: the host whose adapter to use, when one process runs several.
    :return: an :class:`AssignResult` (``published``, ``blocked`` or ``skipped``).
    :raises AssignmentError: ``invalid`` (with ``field``) before any publish, the publish error
        kind after the final attempt, or ``not_started``.
    """
    return await running_adapter(host).assign(request, decision, assignment_id=assignment_id)
