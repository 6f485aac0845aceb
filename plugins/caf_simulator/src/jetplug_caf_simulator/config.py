"""The ``[plugins.caf_simulator]`` table."""

from __future__ import annotations

from typing import Annotated

import msgspec

Fraction = Annotated[float, msgspec.Meta(ge=0, le=1)]


class SimulatorSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """How the simulated executor behaves. Fractions are of all assignments unless noted."""

    assignment_subject: str = "caf.exec.assign.v1"
    assignment_stream: str = "CAF_ASSIGN"
    ack_subject: str = "caf.exec.assign.v1.ack"
    result_subject: str = "caf.exec.result.v1"
    durable: str = "caf-simulator"
    #: assignments worked on at once
    in_flight: Annotated[int, msgspec.Meta(ge=1)] = 256
    rejected: Fraction = 0.05
    ack_error: Fraction = 0.02
    #: of accepted assignments: the result never comes (they expire at their deadline)
    never_finish: Fraction = 0.02
    #: of results: status error / timeout / cancelled (the rest succeed)
    result_error: Fraction = 0.07
    result_timeout: Fraction = 0.03
    result_cancelled: Fraction = 0.02
    #: of acks and results: sent malformed (dead-lettered by the consumers)
    malformed: Fraction = 0.01
    #: of results: sent twice (the consumers drop the second)
    duplicate: Fraction = 0.02
    #: of accepted assignments: the result is sent before the ack
    result_first: Fraction = 0.03
    #: execution takes expected_latency_ms x this (demo time runs faster than real time)
    time_scale: Annotated[float, msgspec.Meta(gt=0)] = 0.05
    #: longest simulated execution, in seconds
    max_latency: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    seed: int = 7
    #: `jetplug caf demo`: assignments to submit, and how many per second
    demo_count: Annotated[int, msgspec.Meta(ge=1)] = 3000
    demo_rate: Annotated[float, msgspec.Meta(gt=0)] = 500.0
    #: seconds the demo waits, after the last publish, for every assignment to settle
    demo_settle_timeout: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    #: tenants the demo's requests come from
    demo_tenants: list[str] = msgspec.field(default_factory=lambda: ["acme", "globex", "initech"])
