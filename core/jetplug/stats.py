"""Statistics as plain numbers, kept where the work happens and exposed by the metrics plugin.

The publisher counts its pub-acks here itself (a few integer increments per publish), so no
telemetry event has to be built per publish unless a plugin listens for it.
"""

from __future__ import annotations

from bisect import bisect_left

#: upper bounds of the handler and publish latency buckets, in seconds (+Inf is implied)
DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
_LE = [repr(float(b)) for b in DURATION_BUCKETS] + ["+Inf"]


class Latency:
    """A histogram as plain numbers: per-bucket counts (not cumulative) and the sum."""

    __slots__ = ("counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(DURATION_BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        """Count one observation."""
        self.counts[bisect_left(DURATION_BUCKETS, seconds)] += 1
        self.total += seconds

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs for the exposition."""
        out = []
        running = 0
        for le, n in zip(_LE, self.counts, strict=True):
            running += n
            out.append((le, float(running)))
        return out


class PublishStats:
    """Pub-acks of one stream."""

    __slots__ = ("duplicate", "duration", "retries", "stored")

    def __init__(self) -> None:
        self.stored = 0
        self.duplicate = 0
        self.retries = 0
        self.duration = Latency()


class HandledStats:
    """Outcomes and handler durations of one consumer, counted by the engine itself."""

    __slots__ = ("duration", "outcomes")

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = {}
        self.duration = Latency()

    def count(self, outcome: str, seconds: float) -> None:
        """One message reached ``outcome`` after ``seconds``."""
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        self.duration.observe(seconds)
