"""The ``[plugins.caf_adapter]`` table, and the checks that span several of its keys."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Literal

import msgspec
from jetplug_caf_common.store import DEFAULT_BUCKET, DEFAULT_TTL

if TYPE_CHECKING:
    from jetplug.config import Config

PLUGIN = "caf_adapter"

PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
Name = Annotated[str, msgspec.Meta(min_length=1)]


class CafAdapterSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Settings of the CAF adapter (defaults from the Router <-> CAF contract)."""

    # --- where assignments go ---------------------------------------------------------------
    #: subject ExecAssignment messages are published on
    assignment_subject: Name = "caf.exec.assign.v1"
    #: stream the adapter declares for ``assignment_subject``
    stream: Name = "CAF_ASSIGN"
    #: seconds the stream keeps an assignment (0 = for ever)
    stream_max_age: NonNegativeFloat = 24 * 3600.0
    #: file or memory storage for the stream
    stream_storage: Literal["file", "memory"] = "file"
    #: stream replicas (1 on a single server, 3 in a cluster)
    stream_replicas: Annotated[int, msgspec.Meta(ge=1, le=5)] = 1
    #: seconds in which the server drops a repeated assignment_id (Nats-Msg-Id); must cover
    #: every publish retry, and callers retrying with ``assignment_id=``
    duplicate_window: PositiveFloat = 300.0

    # --- switch and allow-list --------------------------------------------------------------
    #: global on/off switch: off = every assignment is skipped (nothing is published)
    assignments_enabled: bool = True
    #: tenants allowed to receive assignments; empty allows all
    allowed_tenants: list[str] = msgspec.field(default_factory=list)

    # --- publish retries --------------------------------------------------------------------
    #: publish attempts in total (1 = no retry); only retryable errors are retried
    retry_attempts: Annotated[int, msgspec.Meta(ge=1, le=20)] = 3
    #: first retry delay in ms; doubles each retry (200, 400, ...)
    retry_base_ms: NonNegativeInt = 200
    #: random extra delay, as a fraction of each retry delay (0.1 = up to 10 %)
    retry_jitter: Annotated[float, msgspec.Meta(ge=0, le=1)] = 0.1

    # --- the assignment's contents ----------------------------------------------------------
    #: deadline_ms = clamp(expected_latency_ms * multiplier, min, max)
    deadline_multiplier: PositiveFloat = 5.0
    #: lower bound of the computed deadline, in ms
    deadline_min_ms: PositiveInt = 5000
    #: upper bound of the computed deadline, in ms
    deadline_max_ms: PositiveInt = 60000
    #: ``executor.channel`` of every assignment
    executor_channel: Literal["nats", "grpc"] = "nats"
    #: ``executor.endpoint`` of every assignment ("" = omitted)
    executor_endpoint: str = ""
    #: default ``options.retry.max_attempts`` (for the executor)
    executor_max_attempts: PositiveInt = 2
    #: default ``options.retry.backoff_ms`` (for the executor)
    executor_backoff_ms: NonNegativeInt = 200

    # --- shared assignment state ------------------------------------------------------------
    #: key-value bucket of the assignment records (shared with ack_consumer and result_consumer)
    bucket: Name = DEFAULT_BUCKET
    #: seconds a record lives in the bucket
    record_ttl: PositiveFloat = DEFAULT_TTL

    # --- expiry -----------------------------------------------------------------------------
    #: mark assignments ``expired`` when their deadline passes without a result
    expiry_enabled: bool = True
    #: seconds between two expiry checks
    expiry_interval: PositiveFloat = 1.0
    #: seconds after the deadline before an assignment counts as expired (results in flight)
    expiry_grace: NonNegativeFloat = 5.0
    #: seconds between scans of the whole bucket for assignments other processes published
    #: (0 = scan only at startup)
    expiry_rescan_interval: NonNegativeFloat = 60.0

    # --- request-reply ----------------------------------------------------------------------
    #: core NATS subject answering ``{"request", "decision"}`` requests ("" = off)
    reply_subject: str = ""
    #: queue group of the reply subscription, so several routers share the requests
    reply_queue: str = "caf_adapter"
    #: requests handled at once
    reply_concurrency: Annotated[int, msgspec.Meta(ge=1, le=10000)] = 64


def settings_of(config: Config) -> CafAdapterSettings:
    """The typed table (defaults when the file has none)."""
    settings = config.plugin(PLUGIN, CafAdapterSettings)
    assert isinstance(settings, CafAdapterSettings)
    return settings


def retry_horizon_s(settings: CafAdapterSettings, publish_timeout: float) -> float:
    """Longest time from the first to the last publish attempt's timeout, jitter included."""
    waits = sum(
        settings.retry_base_ms / 1000 * 2.0 ** (n - 1) * (1 + settings.retry_jitter)
        for n in range(1, settings.retry_attempts)
    )
    return publish_timeout * settings.retry_attempts + waits


def problems(settings: CafAdapterSettings, publish_timeout: float) -> list[str]:
    """Rules that span several keys; each problem starts with the key path it is about."""
    where = f"plugins.{PLUGIN}"
    out: list[str] = []
    if settings.deadline_min_ms > settings.deadline_max_ms:
        out.append(
            f"{where}.deadline_min_ms: {settings.deadline_min_ms} is greater than "
            f"deadline_max_ms ({settings.deadline_max_ms})"
        )
    horizon = retry_horizon_s(settings, publish_timeout)
    if settings.duplicate_window < horizon:
        out.append(
            f"{where}.duplicate_window: {settings.duplicate_window:g}s is shorter than the publish "
            f"retry horizon {horizon:g}s (retry_attempts x [jetstream] publish_timeout + backoff), "
            "so a retried assignment could be stored twice"
        )
    for i, tenant in enumerate(settings.allowed_tenants):
        size = len(tenant.encode())
        if not 1 <= size <= 256:
            out.append(f"{where}.allowed_tenants[{i}]: a tenant id is 1-256 bytes, got {size}")
    if settings.reply_subject and any(c.isspace() for c in settings.reply_subject):
        out.append(f"{where}.reply_subject: {settings.reply_subject!r} contains whitespace")
    if any(c.isspace() or c in "*>" for c in settings.assignment_subject):
        out.append(
            f"{where}.assignment_subject: {settings.assignment_subject!r} must be a plain subject "
            "(no wildcards, no whitespace)"
        )
    return out
