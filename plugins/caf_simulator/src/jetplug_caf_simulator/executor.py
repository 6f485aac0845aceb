"""The simulated executor: what a CAF worker would send back for an assignment.

Each assignment's fate is drawn from a random generator seeded with the assignment id, so a
redelivered assignment gets the same fate (a real executor would not, but it keeps the demo's
numbers explainable).
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jetplug_caf_common.contracts import ContractError, ExecAssignment, decode

from .config import SimulatorSettings

if TYPE_CHECKING:
    from jetplug.engine.publisher import Publisher


@dataclass(frozen=True)
class Fate:
    """What the executor will do with one assignment."""

    ack: str  # accepted | rejected | error
    result: str | None  # success | error | timeout | cancelled | None (never finishes)
    latency: float  # seconds of simulated execution
    malformed_ack: bool
    malformed_result: bool
    duplicate_result: bool
    result_first: bool


def draw(assignment: ExecAssignment, s: SimulatorSettings) -> Fate:
    """The fate of an assignment (deterministic per assignment id and seed)."""
    rng = random.Random(f"{s.seed}:{assignment.assignment_id}")
    roll = rng.random()
    ack = (
        "rejected"
        if roll < s.rejected
        else "error"
        if roll < s.rejected + s.ack_error
        else "accepted"
    )
    result: str | None = None
    if ack == "accepted" and rng.random() >= s.never_finish:
        r = rng.random()
        if r < s.result_error:
            result = "error"
        elif r < s.result_error + s.result_timeout:
            result = "timeout"
        elif r < s.result_error + s.result_timeout + s.result_cancelled:
            result = "cancelled"
        else:
            result = "success"
    expected = assignment.decision.expected_latency_ms / 1000
    latency = min(s.max_latency, expected * s.time_scale * rng.uniform(0.5, 1.5))
    return Fate(
        ack=ack,
        result=result,
        latency=latency,
        malformed_ack=rng.random() < s.malformed,
        malformed_result=rng.random() < s.malformed,
        duplicate_result=rng.random() < s.duplicate,
        result_first=rng.random() < s.result_first,
    )


class SimulatedExecutor:
    """Consumes assignments and answers with acks and results through the host's publisher."""

    def __init__(self, settings: SimulatorSettings, publisher: Publisher) -> None:
        self.s = settings
        self.publisher = publisher

    async def work(self, data: bytes, headers: dict[str, str]) -> Fate | None:
        """Answer one assignment; None when the assignment itself is invalid (dead-lettered)."""
        try:
            assignment = decode(data, ExecAssignment, headers)
        except ContractError:
            return None
        fate = draw(assignment, self.s)
        if fate.result is not None and fate.result_first:
            await asyncio.sleep(fate.latency)
            await self._result(assignment, fate)
            await self._ack(assignment, fate)
            return fate
        await asyncio.sleep(min(0.02, fate.latency))
        await self._ack(assignment, fate)
        if fate.result is not None:
            await asyncio.sleep(fate.latency)
            await self._result(assignment, fate)
        return fate

    async def _send(self, subject: str, body: dict[str, object] | bytes, tenant: str) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        await self.publisher.publish(
            subject, data, headers={"tenant_id": tenant}, plugin="caf_simulator"
        )

    async def _ack(self, a: ExecAssignment, fate: Fate) -> None:
        body: dict[str, object] = {
            "assignment_id": a.assignment_id,
            "status": fate.ack,
            "request_id": a.request_id,
            "acknowledged_at": int(time.time() * 1000),
            "message": {
                "accepted": "Assignment queued for execution",
                "rejected": "Provider unavailable",
                "error": "Executor failed to schedule",
            }[fate.ack],
        }
        if fate.malformed_ack:
            body["status"] = "maybe"  # not in the contract: the ack consumer dead-letters it
        await self._send(self.s.ack_subject, body, a.tenant_id)

    async def _result(self, a: ExecAssignment, fate: Fate) -> None:
        body: dict[str, object] = {
            "assignment_id": a.assignment_id,
            "request_id": a.request_id,
            "status": fate.result,
            "provider_id": a.executor.provider_id,
            "job": {"type": a.job.get("type")},
            "latency_ms": round(fate.latency * 1000 / self.s.time_scale),
            "cost": round(a.decision.expected_cost, 6),
            "timestamp": int(time.time() * 1000),
        }
        if a.correlation.trace_id:
            body["trace_id"] = a.correlation.trace_id
        if fate.result == "error":
            body["error_code"] = "PROVIDER_ERROR"
            body["error_message"] = "simulated provider failure"
        if fate.malformed_result:
            await self._send(
                self.s.result_subject,
                b'{"assignment_id": "' + a.assignment_id.encode() + b'", ',
                a.tenant_id,
            )  # truncated JSON: dead-lettered as invalid_payload
            return
        await self._send(self.s.result_subject, body, a.tenant_id)
        if fate.duplicate_result:
            await self._send(self.s.result_subject, body, a.tenant_id)
