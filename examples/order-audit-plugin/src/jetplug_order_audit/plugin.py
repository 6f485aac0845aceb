"""Hook implementations of ``order_audit`` (thin: the logic lives in :mod:`.handler`).

jetplug finds this module through the entry point in pyproject.toml
(``[project.entry-points.jetplug] order_audit = "jetplug_order_audit.plugin"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jetplug import ConsumerSpec, Decision, KeyValueSpec, StreamSpec, hookimpl

from .config import Settings
from .handler import Auditor

if TYPE_CHECKING:
    from jetplug.config import Config
    from jetplug.host import Host
    from jetplug.message import Message

#: the plugin's name: its entry point, its ``[plugins.order_audit]`` table, its consumers' owner
NAME = "order_audit"
#: opt-in: installed, it stays off until named (``[plugins.order_audit] enabled = true``,
#: ``-p order_audit``, ``JETPLUG_PLUGINS`` or ``[host] plugins``)
JETPLUG_OPT_IN = True

_auditor: Auditor | None = None


def settings(config: Config) -> Settings:
    """The validated ``[plugins.order_audit]`` table."""
    value: Settings = config.plugin(NAME, Settings)
    return value


def covers(pattern: str, subject: str) -> bool:
    """Whether a stream subject (``*`` one token, ``>`` the rest) stores ``subject``."""
    want, have = pattern.split("."), subject.split(".")
    for i, part in enumerate(want):
        if part == ">":
            return len(have) > i
        if i >= len(have) or part not in ("*", have[i]):
            return False
    return len(want) == len(have)


@hookimpl
def register_config_schema() -> type[Settings]:
    """The ``[plugins.order_audit]`` table."""
    return Settings


@hookimpl
def validate_config(config: Config) -> list[str]:
    """Both subjects must be stored by the stream, and differ (no reading our own events)."""
    s = settings(config)
    problems = []
    for key in ("subject", "audited_subject"):
        value = getattr(s, key)
        if not any(covers(p, value) for p in s.stream_subjects):
            problems.append(
                f"plugins.{NAME}.{key}: {value!r} is not in stream_subjects {s.stream_subjects}"
            )
    if covers(s.subject, s.audited_subject):
        problems.append(
            f"plugins.{NAME}.audited_subject: the consumer (subject {s.subject!r}) "
            "would read the plugin's own events"
        )
    return problems


@hookimpl
def register_streams(config: Config) -> list[StreamSpec]:
    """The orders stream."""
    return [settings(config).stream_spec()]


@hookimpl
def register_consumers(config: Config) -> list[ConsumerSpec]:
    """The durable consumer of placed orders."""
    return [settings(config).consumer_spec()]


@hookimpl
def register_kv_buckets(config: Config) -> list[KeyValueSpec]:
    """The audit records' bucket."""
    return [settings(config).bucket_spec()]


@hookimpl
def startup(host: Host) -> None:
    """Build the auditor on the running host's bucket and publisher."""
    global _auditor
    s = settings(host.config)
    _auditor = Auditor(s, host.kv(s.bucket), host.publisher.publish)


@hookimpl
def shutdown(host: Host) -> None:
    """Drop the auditor (in-flight messages have finished)."""
    global _auditor
    _auditor = None


@hookimpl
async def handle_message(msg: Message) -> Decision | None:
    """Decide the fate of a placed order; pass (None) on other plugins' consumers."""
    if msg.consumer.owner != NAME:
        return None
    assert _auditor is not None, "order_audit: message before startup"
    return await _auditor.handle(msg.data, msg.timestamp_ns // 1_000_000)
