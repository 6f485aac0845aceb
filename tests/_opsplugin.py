"""A throw-away entry-point plugin for the operations tests (`jetplug status`, `jetplug run` logs).

:func:`install` writes the module and a minimal ``.dist-info`` (METADATA + entry_points.txt) into
a directory; put it on ``PYTHONPATH`` of a ``jetplug`` subprocess and select it with ``-p opstest``.
Nothing is installed into the venv.

The plugin declares stream ``[plugins.opstest] stream`` (subjects ``<stream lowercased>.>``) and
pull consumer ``worker`` (max_deliver 2, retry delay 0.05 s). Its handler acks, except payload
``boom`` (raises an error that quotes the configured NATS token and password, which the log
scrubber must hide) and ``bad`` (Term ``bad_input``: dead-lettered). It logs one line per message
with ``msg.log_fields()``.
"""

from __future__ import annotations

from pathlib import Path

MODULE = '''
"""opstest: jetplug test plugin (operations tests)."""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from jetplug import ACK, ConsumerSpec, StreamSpec, Term, hookimpl

log = logging.getLogger("jetplug_test_ops")
_config: Any = None


class OpsSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    stream: str = "OPSTEST"


@hookimpl
def register_config_schema() -> type[OpsSettings]:
    return OpsSettings


@hookimpl
def configure(config: Any) -> None:
    global _config
    _config = config


@hookimpl
def register_streams(config: Any) -> list[StreamSpec]:
    s = config.plugin("opstest")
    return [StreamSpec(s.stream, (f"{s.stream.lower()}.>",))]


@hookimpl
def register_consumers(config: Any) -> list[ConsumerSpec]:
    s = config.plugin("opstest")
    return [ConsumerSpec(s.stream, "worker", max_deliver=2, retry_delays=(0.05,))]


@hookimpl
def handle_message(msg: Any) -> Any:
    log.info("deciding", extra=msg.log_fields())
    if msg.data == b"boom":
        auth = _config.core.nats.auth
        raise RuntimeError(f"upstream refused token={auth.token} password={auth.password}")
    if msg.data == b"bad":
        return Term("bad_input", "payload rejected")
    return ACK
'''


def install(target: Path) -> Path:
    """Write the plugin into ``target`` (created); return it, for ``PYTHONPATH``."""
    target.mkdir(parents=True, exist_ok=True)
    (target / "jetplug_test_ops.py").write_text(MODULE, encoding="utf-8")
    info = target / "jetplug_test_ops-0.0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: jetplug-test-ops\nVersion: 0.0.1\n", encoding="utf-8"
    )
    entry_points = "[jetplug]\nopstest = jetplug_test_ops\n"
    (info / "entry_points.txt").write_text(entry_points, encoding="utf-8")
    return target
