"""Liveness and readiness of one host, and the cached server state behind them.

* Liveness: a ticker measures how late the event loop wakes it; a loop blocked by a handler
  (a synchronous call, a CPU-bound loop) shows as lag.
* Readiness: connected, every declared stream and consumer exists, every consumer runs and makes
  progress. Existence comes from stream/consumer info requests made every
  ``[http] check_interval`` seconds in the background (never on the request path); progress comes
  from the consumer runners (state, heartbeats).

The cached consumer info also feeds the lag metrics (``num_pending``, ``num_ack_pending``, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .engine.jsapi import ApiError

if TYPE_CHECKING:
    from .host import Host

log = logging.getLogger("jetplug.health")

#: seconds between loop-lag ticks
TICK = 0.25
#: how many recent ticks the reported lag covers (the worst of them)
WINDOW = 8


@dataclass
class Checked:
    """The last info request about one stream or consumer."""

    #: ``time.monotonic()`` of the answer
    at: float
    #: the server's info, or None when the server said it does not exist
    info: dict[str, Any] | None


class Health:
    """Loop-lag ticker, periodic info checks, and the liveness/readiness verdicts of a host."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.streams: dict[str, Checked] = {}
        #: keyed by ``"<stream>/<durable>"`` (the ConsumerSpec key)
        self.consumers: dict[str, Checked] = {}
        self._lags: deque[float] = deque([0.0], maxlen=WINDOW)
        self._last_tick = time.monotonic()
        self._tasks: list[asyncio.Task[None]] = []

    # --- background work ------------------------------------------------------------------------

    def start_ticker(self) -> None:
        """Start measuring the event loop's lag."""
        self._last_tick = time.monotonic()
        self._tasks.append(asyncio.get_running_loop().create_task(self._tick()))

    def start_checks(self) -> None:
        """Start the periodic stream/consumer info checks (the engine must be started)."""
        self._tasks.append(asyncio.get_running_loop().create_task(self._check_loop()))

    async def stop(self) -> None:
        """Cancel the background tasks."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _tick(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(TICK)
            now = time.monotonic()
            self._lags.append(max(0.0, now - before - TICK))
            self._last_tick = now

    async def _check_loop(self) -> None:
        interval = self.host.config.core.http.check_interval
        while True:
            try:
                await self.refresh()
            except Exception:  # a failed round is retried next interval
                log.debug("health check round failed", exc_info=True)
            await asyncio.sleep(interval)

    def stream_names(self) -> list[str]:
        """Every stream the host depends on: declared ones, key-value buckets, the DLQ."""
        host = self.host
        names = [s.name for _, s in host.declarations.streams]
        names += [f"KV_{b.bucket}" for _, b in host.declarations.buckets]
        dlq = host.config.core.jetstream.dlq
        if dlq.enabled:
            names.append(dlq.stream)
        return list(dict.fromkeys(names))

    async def refresh(self) -> None:
        """One round of info requests (skipped while disconnected; errors keep the old answer)."""
        host = self.host
        engine = host.engine
        conn = host.connection
        if engine is None or conn is None or conn.nc is None or not conn.nc.is_connected:
            return
        api = engine.api
        for name in self.stream_names():
            try:
                info: dict[str, Any] | None = await api.stream_info(name)
            except ApiError as exc:
                if not exc.not_found:
                    continue
                info = None
            except Exception as exc:  # noqa: BLE001 - timeouts while reconnecting: keep the old answer
                log.debug("stream info of %s failed: %s", name, exc)
                continue
            self.streams[name] = Checked(time.monotonic(), info)
        for spec in host.declarations.consumers:
            try:
                info = await api.consumer_info(spec.stream, spec.durable)
            except ApiError as exc:
                if not exc.not_found:
                    continue
                info = None
            except Exception as exc:  # noqa: BLE001
                log.debug("consumer info of %s failed: %s", spec.key, exc)
                continue
            self.consumers[spec.key] = Checked(time.monotonic(), info)

    # --- verdicts -------------------------------------------------------------------------------

    @property
    def loop_lag(self) -> float:
        """Worst event-loop lag of the last ~2 s (or the time the ticker is overdue, if longer)."""
        overdue = time.monotonic() - self._last_tick - TICK
        return max(max(self._lags), overdue if self._tasks else 0.0)

    def liveness(self) -> list[str]:
        """Why the process is not alive (empty = alive)."""
        lag = self.loop_lag
        limit = self.host.config.core.http.max_loop_lag
        if lag > limit:
            return [f"event loop: lag {lag:.2f}s exceeds {limit:g}s"]
        return []

    def readiness(self) -> list[str]:
        """Why the host is not ready (empty = ready), one short line per problem."""
        host = self.host
        if host.stopping:
            return ["host: shutting down"]
        if not host.started.is_set():
            return ["host: starting"]
        problems: list[str] = []
        nc = host.connection.nc if host.connection is not None else None
        connected = nc is not None and nc.is_connected
        if not connected:
            state = (
                "closed"
                if nc is not None and nc.is_closed
                else ("reconnecting" if nc is not None and nc.is_reconnecting else "disconnected")
            )
            problems.append(f"connection: {state}")
        for name in self.stream_names():
            checked = self.streams.get(name)
            if checked is not None and checked.info is None:
                problems.append(f"stream {name}: missing on the server")
        engine = host.engine
        runners = engine.runners if engine is not None else {}
        now = time.monotonic()
        for key, runner in runners.items():
            if runner.state != "running":
                reason = f": {runner.state_reason}" if runner.state_reason else ""
                problems.append(f"consumer {key}: {runner.state}{reason}")
                continue
            checked = self.consumers.get(key)
            # a heartbeat or message after the check proves the consumer exists again
            if checked is not None and checked.info is None and runner.last_activity <= checked.at:
                problems.append(f"consumer {key}: missing on the server")
                continue
            if connected and runner.spec.mode == "pull":
                silent = now - runner.last_activity
                busy = bool(runner.in_flight) and runner.outstanding == 0
                if silent > 3 * runner.heartbeat + 0.5 and not busy:
                    problems.append(f"consumer {key}: stalled: no heartbeat for {silent:.1f}s")
        return problems

    def consumer_info(self, key: str) -> dict[str, Any] | None:
        """The cached consumer info of ``"<stream>/<durable>"`` (None if unknown or missing)."""
        checked = self.consumers.get(key)
        return checked.info if checked is not None else None

    def stream_info(self, name: str) -> dict[str, Any] | None:
        """The cached stream info of ``name`` (None if unknown or missing)."""
        checked = self.streams.get(name)
        return checked.info if checked is not None else None


__all__ = ["Checked", "Health"]
