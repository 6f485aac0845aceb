"""Test kit for jetplug plugins: a real nats-server, a host running your plugins, and helpers.

Opt in from the root ``conftest.py`` with ``pytest_plugins = ["jetplug.testing"]``, or import the
fixtures in any ``conftest.py`` (``from jetplug.testing import nats_server, fresh_server, nc``);
install ``jetplug[testing]``. Everything runs against a real nats-server with JetStream on a free
127.0.0.1 port; nothing is mocked. docs/testing_plugins.md is the guide.

Fixtures: ``nats_server`` (session scoped), ``fresh_server`` (per test, for restarts), ``nc`` (a
plain nats-py client).

Helpers: :func:`running_host` (a host with the given plugins and config, as a
:class:`HostHarness`), :func:`publish_and_wait` (publish, then the message's
:class:`MessageOutcome`), :func:`wait_until`, and :func:`check_consumer_plugin`, the conformance
check every consumer plugin can run (it returns a :class:`ConformanceReport`).
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from .config import build_config, parse_toml
from .embedded import EmbeddedServer
from .errors import ConfigError
from .events import Event, MessageDeadLettered, MessageHandled
from .hookspecs import hookimpl
from .host import Host
from .message import Message
from .plugins import Selection, discover
from .types import ACK, ConsumerSpec, Decision, PubAck, StreamSpec

E = TypeVar("E", bound=Event)

#: outcomes after which JetStream never delivers the message to the consumer again
FINAL_OUTCOMES = ("ack", "term")
#: every outcome of :class:`~jetplug.events.MessageHandled`
ALL_OUTCOMES = ("ack", "term", "nak", "dropped", "released")


async def wait_until(
    predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.01, message: str = ""
) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy; return that value.

    Raises AssertionError after ``timeout`` seconds, with ``message`` if given.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(message or f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def subject_matches(pattern: str, subject: str) -> bool:
    """Whether a NATS subject filter (``*`` one token, ``>`` the rest) matches ``subject``."""
    wanted = pattern.split(".")
    parts = subject.split(".")
    for i, part in enumerate(wanted):
        if part == ">":
            return len(parts) > i
        if i >= len(parts) or part not in ("*", parts[i]):
            return False
    return len(wanted) == len(parts)


class _Recorder:
    """Internal plugin that records every telemetry event."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.changed = asyncio.Event()

    @hookimpl
    def track_event(self, event: Event) -> None:
        self.events.append(event)
        self.changed.set()


@dataclass
class MessageOutcome:
    """What the host did with one published message.

    ``handled`` is the :class:`~jetplug.events.MessageHandled` waited for (the final one by
    default), ``history`` every ``MessageHandled`` of the message so far (one per delivery), and
    ``dead_letter`` the :class:`~jetplug.events.MessageDeadLettered` when it was dead-lettered.
    """

    pub_ack: PubAck
    handled: MessageHandled
    history: list[MessageHandled] = field(default_factory=list)
    dead_letter: MessageDeadLettered | None = None

    @property
    def outcome(self) -> str:
        """``ack``, ``term``, ``nak``, ``dropped`` or ``released`` (see :data:`ALL_OUTCOMES`)."""
        return self.handled.outcome

    @property
    def acked(self) -> bool:
        """The message was acknowledged."""
        return self.handled.outcome == "ack"

    @property
    def terminated(self) -> bool:
        """The message was terminated (a Term decision, or max_deliver reached)."""
        return self.handled.outcome == "term"

    @property
    def dead_lettered(self) -> bool:
        """A copy went to the dead-letter stream."""
        return self.dead_letter is not None

    @property
    def stream_seq(self) -> int:
        """The message's sequence in its stream."""
        return self.pub_ack.seq

    @property
    def deliveries(self) -> int:
        """Delivery count of the awaited outcome (1 = first delivery)."""
        return self.handled.deliveries

    @property
    def plugin(self) -> str:
        """The plugin whose decision (or failure) produced the outcome."""
        return self.handled.plugin

    @property
    def reason(self) -> str:
        """The Term reason (``invalid_payload``, ``max_deliver``...); ``error``/``nak`` for naks."""
        return self.handled.reason

    @property
    def error(self) -> str:
        """The handler's error (an exception's text) or the Term's error message."""
        return self.handled.error

    def describe(self) -> str:
        """One line for assertion messages: ``term (invalid_payload: ...) by plugin x ...``."""
        detail = ", ".join(p for p in (self.reason, self.error) if p)
        by = f" by plugin {self.plugin!r}" if self.plugin else ""
        return (
            f"{self.outcome}{f' ({detail})' if detail else ''}{by} on delivery "
            f"{self.deliveries} of {self.pub_ack.stream}#{self.pub_ack.seq}"
        )


@dataclass(frozen=True)
class ConsumerState:
    """One consumer seen from both sides: this host's runner and the server.

    ``runner`` is :meth:`ConsumerRunner.status` (``state``, ``in_flight``, ``handled``...) or None
    when this host does not run the consumer; ``info`` is the server's ``CONSUMER.INFO`` answer.
    """

    stream: str
    durable: str
    runner: dict[str, Any] | None
    info: dict[str, Any]

    @property
    def state(self) -> str:
        """The runner's state (``running``, ``stalled``...), or ``""`` without a runner."""
        return str(self.runner["state"]) if self.runner else ""

    @property
    def config(self) -> dict[str, Any]:
        """The consumer's configuration as the server stores it (durations in nanoseconds)."""
        return dict(self.info.get("config", {}))

    @property
    def num_pending(self) -> int:
        """Messages in the stream not yet delivered to the consumer."""
        return int(self.info.get("num_pending", 0))

    @property
    def num_ack_pending(self) -> int:
        """Messages delivered and not yet acked or terminated."""
        return int(self.info.get("num_ack_pending", 0))

    @property
    def num_redelivered(self) -> int:
        """Messages currently pending that were delivered more than once."""
        return int(self.info.get("num_redelivered", 0))

    @property
    def ack_floor(self) -> int:
        """Stream sequence up to which every message is acked or terminated."""
        return int(self.info.get("ack_floor", {}).get("stream_seq", 0))

    @property
    def settled(self) -> bool:
        """Nothing pending and nothing waiting for an ack."""
        return self.num_pending == 0 and self.num_ack_pending == 0


class HostHarness:
    """A running host plus what a test needs to drive and observe it."""

    def __init__(self, host: Host, recorder: _Recorder) -> None:
        self.host = host
        self._recorder = recorder

    # --- telemetry ------------------------------------------------------------------------------

    @property
    def events(self) -> list[Event]:
        """Every telemetry event so far, in order."""
        return self._recorder.events

    def events_of(self, kind: type[E], **fields: Any) -> list[E]:
        """Events of one class (subclasses included) whose attributes equal ``fields``.

        ``h.events_of(MessageHandled, outcome="term", consumer="orders")``
        """
        return [
            e
            for e in self._recorder.events
            if isinstance(e, kind) and all(getattr(e, k, _MISSING) == v for k, v in fields.items())
        ]

    async def wait_event(self, predicate: Callable[[Any], bool], timeout: float = 10.0) -> Any:
        """The first recorded event (past or future) for which ``predicate`` is true."""

        def find() -> Any:
            return next((e for e in self._recorder.events if predicate(e)), None)

        return await wait_until(find, timeout, message="no matching event")

    # --- messages -------------------------------------------------------------------------------

    async def publish(
        self, subject: str, data: bytes, headers: Mapping[str, str] | None = None, msg_id: str = ""
    ) -> PubAck:
        """Publish through the host's publisher and return the pub-ack."""
        return await self.host.publisher.publish(
            subject, data, headers=dict(headers or {}), msg_id=msg_id
        )

    async def outcome(
        self, stream_seq: int, consumer: str = "", timeout: float = 10.0, final: bool = True
    ) -> MessageHandled:
        """The :class:`MessageHandled` of a stream sequence; with ``final``, ack or term only.

        Prefer :meth:`wait_outcome`, which also matches the stream.
        """
        finals = FINAL_OUTCOMES if final else ALL_OUTCOMES

        def match(e: Any) -> bool:
            return (
                isinstance(e, MessageHandled)
                and e.stream_seq == stream_seq
                and (not consumer or e.consumer == consumer)
                and e.outcome in finals
            )

        result: MessageHandled = await self.wait_event(match, timeout)
        return result

    async def wait_outcome(
        self, pub_ack: PubAck, consumer: str = "", *, final: bool = True, timeout: float = 10.0
    ) -> MessageOutcome:
        """Wait until the message ``pub_ack`` points at reaches an outcome.

        :param consumer: durable name, when several consumers read the message.
        :param final: wait for ``ack`` or ``term`` (a nak is followed by a redelivery); False
            returns the first outcome of any kind, e.g. to see a nak.
        :raises AssertionError: on timeout, listing what happened to the message so far.
        """
        wanted = FINAL_OUTCOMES if final else ALL_OUTCOMES

        def history() -> list[MessageHandled]:
            return [
                e
                for e in self._recorder.events
                if isinstance(e, MessageHandled)
                and e.stream == pub_ack.stream
                and e.stream_seq == pub_ack.seq
                and (not consumer or e.consumer == consumer)
            ]

        def found() -> MessageHandled | None:
            return next((e for e in history() if e.outcome in wanted), None)

        try:
            handled: MessageHandled = await wait_until(found, timeout)
        except AssertionError:
            seen = ", ".join(f"{e.outcome}@{e.deliveries}" for e in history()) or "nothing"
            kind = "final outcome (ack or term)" if final else "outcome"
            raise AssertionError(
                f"{pub_ack.stream}#{pub_ack.seq} reached no {kind} within {timeout}s; seen so "
                f"far: {seen}" + (f" (consumer {consumer!r})" if consumer else "")
            ) from None
        letters = self.events_of(MessageDeadLettered, stream=pub_ack.stream, stream_seq=pub_ack.seq)
        dead = next((e for e in letters if not consumer or e.consumer == consumer), None)
        return MessageOutcome(
            pub_ack, handled, history(), dead if handled.outcome == "term" else None
        )

    async def publish_and_wait(
        self,
        subject: str,
        data: bytes,
        headers: Mapping[str, str] | None = None,
        *,
        msg_id: str = "",
        consumer: str = "",
        final: bool = True,
        timeout: float = 10.0,
    ) -> MessageOutcome:
        """Publish ``data`` and wait for its outcome (see :meth:`wait_outcome`)."""
        pub_ack = await self.publish(subject, data, headers, msg_id)
        return await self.wait_outcome(pub_ack, consumer, final=final, timeout=timeout)

    # --- consumers and dead letters -------------------------------------------------------------

    @property
    def consumers(self) -> list[ConsumerSpec]:
        """Every consumer the plugins declared, with ``owner`` set."""
        return list(self.host.declarations.consumers)

    def _spec(self, durable: str, stream: str) -> ConsumerSpec | None:
        return next(
            (
                c
                for c in self.host.declarations.consumers
                if c.durable == durable and (not stream or c.stream == stream)
            ),
            None,
        )

    async def consumer_state(self, durable: str, stream: str = "") -> ConsumerState:
        """The runner status and the server's info of one consumer.

        :param stream: needed only for a consumer this host did not declare.
        :raises AssertionError: when the consumer is unknown or missing on the server.
        """
        from .engine.jsapi import ApiError

        spec = self._spec(durable, stream)
        stream = stream or (spec.stream if spec else "")
        if not stream:
            declared = ", ".join(c.key for c in self.host.declarations.consumers) or "none"
            raise AssertionError(
                f"consumer {durable!r} is not declared by any plugin of this host "
                f"(declared: {declared}); pass stream= for another one"
            )
        engine = self.host.engine
        assert engine is not None, "the host is not started"
        try:
            info = await engine.api.consumer_info(stream, durable)
        except ApiError as exc:
            if exc.not_found:
                raise AssertionError(
                    f"consumer {stream}/{durable} does not exist on the server: {exc}"
                ) from None
            raise
        runner = engine.runners.get(f"{stream}/{durable}")
        return ConsumerState(stream, durable, runner.status() if runner else None, info)

    async def wait_settled(
        self, durable: str, stream: str = "", timeout: float = 10.0
    ) -> ConsumerState:
        """Wait until the consumer has nothing pending and nothing awaiting an ack."""
        last: list[ConsumerState] = []

        async def settled() -> bool:
            state = await self.consumer_state(durable, stream)
            last[:] = [state]
            return state.settled

        try:
            await wait_until(settled, timeout, interval=0.05)
        except AssertionError:
            s = last[0] if last else None
            counts = (
                f": num_pending={s.num_pending}, num_ack_pending={s.num_ack_pending}" if s else ""
            )
            raise AssertionError(
                f"consumer {durable!r} not settled within {timeout}s{counts}"
            ) from None
        return last[0]

    async def dead_letters(self, consumer: str = "", reason: str = "") -> list[Any]:
        """Dead letters in the host's DLQ stream (``jetplug.engine.dlq.DeadLetter``, oldest first).

        :param consumer: a durable name or ``STREAM/DURABLE``; empty for all.
        :param reason: only this ``Jetplug-Dlq-Reason``.
        :return: an empty list when nothing was dead-lettered yet on this server.
        """
        from .engine.dlq import DeadLetterStore, DlqError
        from .engine.dlq import Selection as DlqSelection

        engine = self.host.engine
        assert engine is not None, "the host is not started"
        store = DeadLetterStore(engine.api, self.host.config.core.jetstream.dlq)
        try:
            return list(await store.select(DlqSelection(consumer=consumer, reason=reason)))
        except DlqError:
            return []


_MISSING = object()


async def publish_and_wait(
    harness: HostHarness,
    subject: str,
    data: bytes,
    headers: Mapping[str, str] | None = None,
    *,
    msg_id: str = "",
    consumer: str = "",
    final: bool = True,
    timeout: float = 10.0,
) -> MessageOutcome:
    """Publish through ``harness``'s host and return the message's outcome.

    With ``final`` (the default) this waits for ``ack`` or ``term`` (``outcome.dead_letter`` is
    set when a copy went to the dead-letter stream); with ``final=False`` for the first outcome of
    any kind, e.g. the ``nak`` after a handler raised. Raises AssertionError after ``timeout``
    seconds with what happened so far.
    """
    return await harness.publish_and_wait(
        subject, data, headers, msg_id=msg_id, consumer=consumer, final=final, timeout=timeout
    )


def _config_data(config: str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(config, str):
        return parse_toml(config)
    return copy.deepcopy(dict(config))


@asynccontextmanager
async def running_host(
    *plugins: object | tuple[str, object],
    config: str | Mapping[str, Any] = "",
    server: EmbeddedServer | None = None,
    autoload: bool = False,
    environ: Mapping[str, str] | None = None,
) -> AsyncIterator[HostHarness]:
    """Run a host with ``plugins`` (objects, or ``(name, object)``) until the block ends.

    :param config: TOML text or a dict, validated like a real config file.
    :param server: the nats-server to use; ``[nats] servers`` is set to it.
    :param autoload: also load installed entry-point plugins (off: only the ones given).
    :param environ: ``JETPLUG_*`` overrides to apply (the process environment is not read).
    """
    data = _config_data(config)
    if server is not None:
        data.setdefault("nats", {})["servers"] = [server.url]
    data.setdefault("host", {}).setdefault("data_dir", tempfile.mkdtemp(prefix="jetplug-test-"))
    named = [
        p if isinstance(p, tuple) else (getattr(p, "__name__", type(p).__name__).split(".")[-1], p)
        for p in plugins
    ]
    recorder = _Recorder()
    registry = discover(Selection(), extra=[*named, ("test_recorder", recorder)], autoload=autoload)
    models = registry.config_schemas()
    cfg = build_config(data, models, environ=environ or {}, known_plugins=set(registry.records))
    problems = registry.validate_config(cfg)
    if problems:
        raise ConfigError(problems)
    host = Host(cfg, registry)
    try:
        await host.start()
        yield HostHarness(host, recorder)
    finally:
        await host.shutdown()


# --- conformance -------------------------------------------------------------------------------


@dataclass
class Check:
    """One conformance check: ``ok`` is True (passed), False (failed) or None (skipped)."""

    name: str
    ok: bool | None
    detail: str

    def line(self) -> str:
        """``PASS name: detail``."""
        word = {True: "PASS", False: "FAIL", None: "SKIP"}[self.ok]
        return f"{word} {self.name}: {self.detail}"


@dataclass
class ConformanceReport:
    """The result of :func:`check_consumer_plugin`: one :class:`Check` per property."""

    plugin: str
    consumer: str = ""
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no check failed (skipped checks do not count)."""
        return not self.failures

    @property
    def failures(self) -> list[Check]:
        """The failed checks."""
        return [c for c in self.checks if c.ok is False]

    def check(self, name: str) -> Check:
        """The check called ``name`` (KeyError if it did not run)."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def add(self, name: str, ok: bool | None, detail: str) -> None:
        """Record a check."""
        self.checks.append(Check(name, ok, detail))

    def assert_ok(self) -> None:
        """Raise AssertionError with the whole report when a check failed."""
        if not self.ok:
            raise AssertionError(str(self))

    def __str__(self) -> str:
        passed = sum(1 for c in self.checks if c.ok)
        skipped = sum(1 for c in self.checks if c.ok is None)
        where = f" (consumer {self.consumer})" if self.consumer else ""
        head = (
            f"conformance of plugin {self.plugin!r}{where}: {passed} passed, "
            f"{len(self.failures)} failed" + (f", {skipped} skipped" if skipped else "")
        )
        return "\n".join([head, *("  " + c.line() for c in self.checks)])


class InjectedFailure(RuntimeError):
    """The exception the conformance check raises inside the handler chain."""


#: header the conformance check marks messages with (``hold`` or ``fail``); plugins ignore it
ACTION_HEADER = "Jetplug-Conformance-Action"


class _Interceptor:
    """``tryfirst`` handler of the conformance check: holds or fails marked first deliveries.

    It works without the plugin's cooperation: it runs before the plugin's ``handle_message``,
    delays the first delivery of messages marked ``hold`` (:data:`ACTION_HEADER`), and for those
    marked ``fail`` calls the plugin's own handler and then raises anyway, as a crash between
    the handler's work and the ack would.
    """

    def __init__(self, plugin: str, hold_seconds: float) -> None:
        self.plugin = plugin
        self.hold_seconds = hold_seconds
        self.held = 0
        self.decided: dict[tuple[str, int], Decision | None] = {}
        self._handlers: list[Callable[[Message], Any]] = []

    @hookimpl
    def startup(self, host: Host) -> None:
        self._handlers = [fn for n, fn in host.plugins.message_handlers() if n == self.plugin]

    @hookimpl(tryfirst=True)
    async def handle_message(self, msg: Message) -> Decision | None:
        action = msg.headers.get(ACTION_HEADER, "") if msg.deliveries == 1 else ""
        key = (msg.stream, msg.stream_seq)
        if action == "hold":
            self.held += 1
            await asyncio.sleep(self.hold_seconds)
        elif action == "fail":
            decided = None
            for fn in self._handlers:
                decided = fn(msg)
                if inspect.isawaitable(decided):
                    decided = await decided
                if decided is not None:
                    break
            self.decided[key] = decided
            raise InjectedFailure(
                f"jetplug conformance: failure injected after plugin {self.plugin!r} decided "
                f"{decided!r}"
            )
        return None


class _ForeignConsumer:
    """A consumer owned by another plugin, to check the owner test in ``handle_message``."""

    NAME = "jetplug_conformance_foreign"

    def __init__(self, token: str) -> None:
        self.stream = f"JETPLUG_CONFORMANCE_{token}"
        self.subject = f"jetplug.conformance.{token}"
        self.durable = f"conformance-{token}"

    @hookimpl
    def register_streams(self) -> list[StreamSpec]:
        return [StreamSpec(self.stream, (self.subject,), storage="memory", max_age=600.0)]

    @hookimpl
    def register_consumers(self) -> list[ConsumerSpec]:
        return [ConsumerSpec(self.stream, self.durable, max_deliver=2, retry_delays=(0.1,))]

    @hookimpl(trylast=True)
    def handle_message(self, msg: Message) -> Decision | None:
        return ACK if msg.consumer.owner == self.NAME else None


class _Skip(Exception):
    """A check that cannot run because an earlier one failed."""


@dataclass
class _Context:
    """What the checks of one conformance run share."""

    name: str
    subject: str
    message: Callable[[int], bytes]
    headers: dict[str, str]
    timeout: float
    target: ConsumerSpec | None = None
    #: the pub-ack of the first valid message (published by routes_subject)
    first: PubAck | None = None
    counter: int = 0

    def next_message(self) -> bytes:
        self.counter += 1
        return self.message(self.counter - 1)

    def headers_with(self, action: str) -> dict[str, str]:
        """The check's headers plus the interceptor's action mark."""
        return {**self.headers, ACTION_HEADER: action}

    def require_target(self) -> ConsumerSpec:
        if self.target is None:
            raise _Skip("no consumer of the plugin receives the subject (see routes_subject)")
        return self.target


async def _run(report: ConformanceReport, name: str, check: Callable[[], Awaitable[str]]) -> bool:
    """Run one check, record its result; True when it passed."""
    try:
        detail = await check()
    except _Skip as skip:
        report.add(name, None, f"not run: {skip}")
        return False
    except AssertionError as exc:
        report.add(name, False, str(exc))
        return False
    except Exception as exc:  # noqa: BLE001 - any failure of the plugin is a finding, not a crash
        report.add(name, False, f"{type(exc).__name__}: {exc}")
        return False
    report.add(name, True, detail)
    return True


async def check_consumer_plugin(
    plugin: object,
    *,
    name: str,
    server: EmbeddedServer,
    subject: str,
    valid_message: bytes | Callable[[int], bytes],
    config: str | Mapping[str, Any] = "",
    bad_payload: bytes = b"\xff not json",
    failing_message: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    consumer: str = "",
    extra_plugins: Sequence[object | tuple[str, object]] = (),
    batch: int = 8,
    hold: float = 0.3,
    timeout: float = 15.0,
    raise_on_failure: bool = True,
) -> ConformanceReport:
    """Check that a consumer plugin behaves as the host expects, on a real server.

    Runs the plugin in a host (twice: the second run after a shutdown mid-work) and checks:

    ``starts``
        the host starts with the plugin and ``config``;
    ``declares_consumer``
        the plugin declares at least one consumer, each exists on the server and runs;
    ``routes_subject``
        a message on ``subject`` is stored and reaches one of the plugin's consumers;
    ``acks_valid_message``
        ``valid_message`` is acked by the plugin on its first delivery;
    ``owner_check``
        ``handle_message`` passes (returns None) on a message of another plugin's consumer;
    ``dead_letters_bad_payload``
        ``bad_payload`` is terminated by the plugin on its first delivery (not retried, not a
        crash), a copy is in the dead-letter stream, and the consumer keeps running;
    ``redelivers_after_failure``
        an exception raised after the plugin's handler ran (a crash before the ack, injected
        by a ``tryfirst`` interceptor) leads to a nak and a redelivery, which the plugin acks:
        handlers must be idempotent;
    ``failing_message_redelivered`` (only with ``failing_message``)
        a message the plugin's own handler raises on is nak'ed and delivered again;
    ``shutdown_loses_nothing``
        ``batch`` valid messages are published and held in their handlers (``hold`` seconds),
        the host stops while they are in flight, more messages are published while no host
        runs, a new host starts, and every message is eventually acked, none terminated.

    :param plugin: the plugin object (usually its ``plugin`` module).
    :param name: the plugin's name (its entry-point name): the owner of its consumers.
    :param server: the nats-server to use (the ``nats_server`` fixture).
    :param subject: a subject the plugin consumes.
    :param valid_message: a payload the plugin acks, or a function of ``i`` returning the
        i-th distinct one (for plugins that treat repeated payloads as duplicates).
    :param config: the host configuration (TOML or dict), e.g. the plugin's table with unique
        stream names; ``[jetstream.dlq] enabled`` is forced on.
    :param bad_payload: a payload the plugin must dead-letter at once.
    :param failing_message: a payload the plugin's handler raises on (optional).
    :param headers: headers sent with every message.
    :param consumer: durable name of the consumer to check, when several of the plugin's
        consumers receive ``subject``.
    :param extra_plugins: other plugins to run alongside (objects or ``(name, object)``).
    :param timeout: seconds to wait for each outcome.
    :param raise_on_failure: raise AssertionError with the whole report if a check failed.
    :return: the report (``str(report)`` lists every check with its detail).
    """
    message = valid_message if callable(valid_message) else (lambda i: valid_message)
    ctx = _Context(name, subject, message, dict(headers or {}), timeout)
    report = ConformanceReport(name)
    data = _config_data(config)
    data.setdefault("jetstream", {}).setdefault("dlq", {})["enabled"] = True
    token = uuid.uuid4().hex[:8]
    foreign = _ForeignConsumer(token)
    interceptor = _Interceptor(name, hold)
    under_test: list[object | tuple[str, object]] = [(name, plugin), *extra_plugins]
    batch_acks: list[PubAck] = []
    runs: list[HostHarness] = []
    in_flight_at_stop = 0
    batch_failure = ""
    try:
        helpers = [(foreign.NAME, foreign), ("jetplug_conformance", interceptor)]
        async with running_host(*under_test, *helpers, config=data, server=server) as h:
            runs.append(h)
            report.add("starts", True, "the host started with the plugin")
            # held handlers must finish within the drain, or they wait for ack_wait
            interceptor.hold_seconds = min(hold, h.host.config.core.host.shutdown_timeout / 3)
            await _run(report, "declares_consumer", lambda: _declares_consumer(h, ctx))
            await _run(report, "routes_subject", lambda: _routes_subject(h, ctx, consumer))
            report.consumer = ctx.target.key if ctx.target else ""
            await _run(report, "acks_valid_message", lambda: _acks_valid(h, ctx))
            await _run(report, "owner_check", lambda: _owner_check(h, ctx, foreign))
            await _run(
                report, "dead_letters_bad_payload", lambda: _dead_letters(h, ctx, bad_payload)
            )
            await _run(report, "redelivers_after_failure", lambda: _redelivers(h, ctx, interceptor))
            if failing_message is not None:
                await _run(
                    report,
                    "failing_message_redelivered",
                    lambda: _failing_redelivered(h, ctx, failing_message),
                )
            if ctx.target is not None:
                try:
                    in_flight_at_stop = await _publish_batch(h, ctx, interceptor, batch, batch_acks)
                except AssertionError as exc:
                    batch_failure = str(exc)
    except Exception as exc:  # noqa: BLE001 - reported as a failed check
        if not runs:
            report.add(
                "starts",
                False,
                f"the host did not start with the plugin: {type(exc).__name__}: {exc}",
            )
        else:
            report.add(
                "stops",
                False,
                f"the host failed while stopping or between checks: {type(exc).__name__}: {exc}",
            )
    if batch_failure:
        report.add("shutdown_loses_nothing", False, batch_failure)
    elif runs and batch_acks:
        await _run(
            report,
            "shutdown_loses_nothing",
            lambda: _restart_and_count(
                runs, ctx, under_test, data, server, batch_acks, in_flight_at_stop, foreign.stream
            ),
        )
    elif runs:
        report.add("shutdown_loses_nothing", None, "not run: no batch was published")
    if raise_on_failure:
        report.assert_ok()
    return report


async def _declares_consumer(h: HostHarness, ctx: _Context) -> str:
    owned = [c for c in h.consumers if c.owner == ctx.name]
    if not owned:
        others = (
            ", ".join(
                f"{c.key} (owner {c.owner})"
                for c in h.consumers
                if c.owner != _ForeignConsumer.NAME
            )
            or "none"
        )
        raise AssertionError(
            f"plugin {ctx.name!r} declares no consumer: register_consumers "
            f"returned nothing (other consumers: {others})"
        )
    lines = []
    for spec in owned:
        state = await h.consumer_state(spec.durable, spec.stream)
        assert state.state == "running", (
            f"consumer {spec.key} exists on the server but its runner is {state.state!r}: "
            f"{(state.runner or {}).get('reason', '')}"
        )
        lines.append(spec.key)
    return f"{', '.join(lines)} on the server, running"


async def _routes_subject(h: HostHarness, ctx: _Context, consumer: str) -> str:
    owned = [c for c in h.consumers if c.owner == ctx.name]
    if not owned:
        raise _Skip("the plugin declares no consumer")
    pub_ack = await h.publish(ctx.subject, ctx.next_message(), ctx.headers)

    def reads(c: ConsumerSpec) -> bool:
        filters = c.filter_subjects
        return not filters or any(subject_matches(f, ctx.subject) for f in filters)

    candidates = [
        c
        for c in owned
        if c.stream == pub_ack.stream and reads(c) and (not consumer or c.durable == consumer)
    ]
    if not candidates:
        listed = ", ".join(f"{c.key} filter {list(c.filter_subjects) or 'all'}" for c in owned)
        raise AssertionError(
            f"{ctx.subject!r} is stored in stream {pub_ack.stream!r}, but no "
            f"consumer of plugin {ctx.name!r} reads it there (its consumers: "
            f"{listed})"
        )
    if len(candidates) > 1:
        raise AssertionError(
            f"several consumers of plugin {ctx.name!r} read {ctx.subject!r} "
            f"({', '.join(c.key for c in candidates)}): pass consumer=DURABLE"
        )
    ctx.target = candidates[0]
    ctx.first = pub_ack
    return f"stored in {pub_ack.stream}, read by {ctx.target.key}"


async def _acks_valid(h: HostHarness, ctx: _Context) -> str:
    target = ctx.require_target()
    assert ctx.first is not None
    out = await h.wait_outcome(ctx.first, target.durable, final=False, timeout=ctx.timeout)
    other = out.plugin and out.plugin != ctx.name
    hint = (
        (
            " (another plugin decided: does handle_message return None when "
            f"msg.consumer.owner != {ctx.name!r}?)"
        )
        if other
        else ""
    )
    assert out.acked and out.deliveries == 1, (
        f"valid_message was not acked on its first delivery: {out.describe()}{hint}"
    )
    assert not other, f"valid_message was acked by plugin {out.plugin!r}, not {ctx.name!r}"
    return f"acked on delivery 1 ({out.handled.duration * 1000:.1f} ms)"


async def _owner_check(h: HostHarness, ctx: _Context, foreign: _ForeignConsumer) -> str:
    out = await h.publish_and_wait(
        foreign.subject,
        ctx.next_message(),
        ctx.headers,
        consumer=foreign.durable,
        final=False,
        timeout=ctx.timeout,
    )
    assert out.plugin == foreign.NAME, (
        f"handle_message of plugin {ctx.name!r} answered a message of a consumer it does not own "
        f"({out.describe()}); start it with `if msg.consumer.owner != {ctx.name!r}: return None`"
    )
    return "passes messages of other plugins' consumers"


async def _dead_letters(h: HostHarness, ctx: _Context, bad_payload: bytes) -> str:
    target = ctx.require_target()
    out = await h.publish_and_wait(
        ctx.subject,
        bad_payload,
        ctx.headers,
        consumer=target.durable,
        final=False,
        timeout=ctx.timeout,
    )
    if out.outcome == "nak":
        raise AssertionError(
            f"bad_payload {bad_payload[:40]!r} was not terminated on its first delivery but "
            f"nak'ed ({out.error or out.reason}): it would be retried {target.max_deliver} times. "
            "Return Term('invalid_payload', '<what is wrong>') for a payload that can never be "
            "processed instead of raising"
        )
    assert out.terminated, (
        f"bad_payload {bad_payload[:40]!r} was not dead-lettered: {out.describe()}"
    )
    assert out.plugin == ctx.name, f"bad_payload was terminated by {out.plugin!r}, not {ctx.name!r}"
    assert out.dead_letter is not None, "terminated but no MessageDeadLettered event"
    letters = [d for d in await h.dead_letters(target.key) if d.original_seq == out.stream_seq]
    assert letters, (
        f"no copy of {target.stream}#{out.stream_seq} in the dead-letter stream "
        f"({h.host.config.core.jetstream.dlq.stream})"
    )
    letter = letters[0]
    assert letter.data == bad_payload, "the dead letter's data differs from the original payload"
    assert letter.reason == out.reason, f"dead letter reason {letter.reason!r} != {out.reason!r}"
    state = await h.consumer_state(target.durable, target.stream)
    assert state.state == "running", f"the consumer is {state.state!r} after a bad payload"
    return (
        f"terminated on delivery 1 with reason {out.reason!r}, dead letter #{letter.seq} "
        f"stored, consumer still running"
    )


async def _redelivers(h: HostHarness, ctx: _Context, interceptor: _Interceptor) -> str:
    target = ctx.require_target()
    if target.max_deliver == 1:
        raise AssertionError(
            f"consumer {target.key} has max_deliver = 1: an exception "
            "dead-letters the message at once instead of retrying it"
        )
    pub_ack = await h.publish(ctx.subject, ctx.next_message(), ctx.headers_with("fail"))
    first = await h.wait_outcome(pub_ack, target.durable, final=False, timeout=ctx.timeout)
    assert first.outcome == "nak", (
        f"after an exception the message was not nak'ed: {first.describe()}"
    )
    final = await h.wait_outcome(
        pub_ack, target.durable, timeout=ctx.timeout + target.retry_delay(1)
    )
    decided = interceptor.decided.get((target.stream, pub_ack.seq))
    assert final.acked and final.deliveries >= 2, (
        f"after a failure following the handler (which decided {decided!r}), the redelivery "
        f"ended {final.describe()}; a message can be delivered again after the handler ran, so "
        "handlers must be idempotent (the second run must also ack)"
    )
    return (
        f"nak'ed after the injected failure, redelivered and acked on delivery {final.deliveries}"
    )


async def _failing_redelivered(h: HostHarness, ctx: _Context, failing: bytes) -> str:
    target = ctx.require_target()
    pub_ack = await h.publish(ctx.subject, failing, ctx.headers)
    first = await h.wait_outcome(pub_ack, target.durable, final=False, timeout=ctx.timeout)
    assert first.outcome == "nak" and first.error, (
        f"failing_message did not fail with an exception on delivery 1: {first.describe()}"
    )
    if target.max_deliver > 1:
        wait = ctx.timeout + target.retry_delay(1)
        await h.wait_event(
            lambda e: (
                isinstance(e, MessageHandled)
                and e.stream == pub_ack.stream
                and e.stream_seq == pub_ack.seq
                and e.deliveries >= 2
            ),
            wait,
        )
    return f"nak'ed with {first.error[:80]!r} and delivered again"


async def _publish_batch(
    h: HostHarness, ctx: _Context, interceptor: _Interceptor, batch: int, acks: list[PubAck]
) -> int:
    """Publish ``batch`` held messages; return how many are in flight when the host is stopped.

    The stop comes once the consumer's in-flight budget is full of held handlers (or every
    message is held), so no message reaches the host after it stopped taking messages: those
    would be handed back (released) while the stopping host still has pull requests open.
    """
    target = ctx.require_target()
    held_before = interceptor.held
    for _ in range(batch):
        acks.append(await h.publish(ctx.subject, ctx.next_message(), ctx.headers_with("hold")))
    want = min(batch, target.in_flight)
    await wait_until(
        lambda: interceptor.held - held_before >= want,
        ctx.timeout,
        message=f"{want} batch message(s) never reached the plugin at once",
    )
    assert h.host.engine is not None
    runner = h.host.engine.runners.get(target.key)
    return len(runner.in_flight) if runner else 0


async def _restart_and_count(
    runs: list[HostHarness],
    ctx: _Context,
    under_test: list[object | tuple[str, object]],
    data: dict[str, Any],
    server: EmbeddedServer,
    acks: list[PubAck],
    in_flight_at_stop: int,
    scratch_stream: str,
) -> str:
    target = ctx.require_target()
    wanted = {(a.stream, a.seq) for a in acks}

    def outcomes() -> dict[tuple[str, int], set[str]]:
        seen: dict[tuple[str, int], set[str]] = {}
        for run in runs:
            for e in run.events_of(MessageHandled, consumer=target.durable):
                if (e.stream, e.stream_seq) in wanted:
                    seen.setdefault((e.stream, e.stream_seq), set()).add(e.outcome)
        return seen

    # a rolling restart: more messages arrive while no host runs
    down = await _publish_while_down(server, ctx, max(1, len(acks) // 2))
    acks.extend(down)
    wanted |= {(a.stream, a.seq) for a in down}
    async with running_host(*under_test, config=data, server=server) as h2:
        runs.append(h2)

        def all_acked() -> bool:
            seen = outcomes()
            return all("ack" in seen.get(k, ()) for k in wanted)

        # a delivery cut off by the stop comes back after ack_wait: late, not lost
        try:
            await wait_until(all_acked, ctx.timeout + target.ack_wait)
        except AssertionError:
            seen = outcomes()
            missing = sorted(k[1] for k in wanted if "ack" not in seen.get(k, ()))
            raise AssertionError(
                f"after stopping with {in_flight_at_stop} message(s) in flight and starting again, "
                f"{len(missing)} of {len(wanted)} were never acked: seqs {missing}; outcomes seen "
                f"{ {k[1]: sorted(v) for k, v in seen.items() if k[1] in missing} }"
            ) from None
        await _delete_stream(h2, scratch_stream)
    terminated = sorted(k[1] for k, v in outcomes().items() if "term" in v)
    assert not terminated, f"messages terminated around the restart: seqs {terminated}"

    def first_run(outcome: str) -> set[tuple[str, int]]:
        events = runs[0].events_of(MessageHandled, outcome=outcome)
        return {(e.stream, e.stream_seq) for e in events}

    released = first_run("released")
    before = len(wanted & first_run("ack"))
    return (
        f"{len(wanted) - len(down)} published, the host stopped with {in_flight_at_stop} in "
        f"flight, {len(down)} published while it was down; {before} acked by the first host "
        f"(in-flight ones during its shutdown), {len(wanted & released)} released by it, "
        f"{len(wanted) - before} acked after the restart; none lost"
    )


async def _publish_while_down(server: EmbeddedServer, ctx: _Context, count: int) -> list[PubAck]:
    """Publish ``count`` valid messages with a plain nats-py client (no host runs)."""
    import nats

    client = await nats.connect(server.url)
    try:
        js = client.jetstream()
        acks = []
        for _ in range(count):
            ack = await js.publish(ctx.subject, ctx.next_message(), headers=ctx.headers or None)
            acks.append(PubAck(ack.stream, ack.seq, bool(ack.duplicate)))
        return acks
    finally:
        await client.close()


async def _delete_stream(h: HostHarness, stream: str) -> None:
    engine = h.host.engine
    if engine is None:
        return
    try:
        await engine.api.request(f"STREAM.DELETE.{stream}")
    except Exception:  # noqa: BLE001 - cleanup only; the stream is in memory and ages out
        return


# --- pytest fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedServer]:
    """One nats-server with JetStream for the whole session; use unique stream names per test."""
    server = EmbeddedServer(store_dir=tmp_path_factory.mktemp("nats-session"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[EmbeddedServer]:
    """A nats-server of this test alone (kill, restart, other settings)."""
    server = EmbeddedServer(store_dir=tmp_path / "nats")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def nc(nats_server: EmbeddedServer) -> AsyncIterator[Any]:
    """A plain nats-py client connected to ``nats_server``: the test's own view of the broker."""
    import nats

    client = await nats.connect(nats_server.url)
    yield client
    await client.close()


Predicate = Callable[[], "bool | Awaitable[bool]"]

__all__ = [
    "ACTION_HEADER",
    "ALL_OUTCOMES",
    "FINAL_OUTCOMES",
    "Check",
    "ConformanceReport",
    "ConsumerState",
    "HostHarness",
    "InjectedFailure",
    "MessageOutcome",
    "check_consumer_plugin",
    "fresh_server",
    "nats_server",
    "nc",
    "publish_and_wait",
    "running_host",
    "subject_matches",
    "wait_until",
]
