"""Structured logging on the standard library: text for people, JSON lines for machines.

Secrets are scrubbed from every record by value: the host registers each configured secret with
:func:`register_secret`, and :class:`SecretFilter` replaces any occurrence in the final message.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

_SECRETS: set[str] = set()
#: attributes of a LogRecord that are not "extra" fields
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


def register_secret(value: str) -> None:
    """Never let ``value`` appear in a log line (ignored when shorter than 4 characters)."""
    if value and len(value) >= 4:
        _SECRETS.add(value)


def scrub(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    for secret in _SECRETS:
        if secret in text:
            text = text.replace(secret, "***")
    return text


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra=`` fields of a record (consumer, stream_seq, deliveries, ...)."""
    return {
        k: v for k, v in record.__dict__.items() if k not in _STANDARD and not k.startswith("_")
    }


class SecretFilter(logging.Filter):
    """Render the message once, scrub secrets from it, from string extra fields and from the
    traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _SECRETS:
            record.msg = scrub(record.getMessage())
            record.args = None
            for key, value in extra_fields(record).items():
                if isinstance(value, str):
                    setattr(record, key, scrub(value))
            if record.exc_info and record.exc_info[1] is not None:
                record.exc_text = scrub(logging.Formatter().formatException(record.exc_info))
                record.exc_info = None
        return True


class TextFormatter(logging.Formatter):
    """``time level logger: message key=value ...``"""

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        line = f"{stamp} {record.levelname:<7} {record.name}: {record.getMessage()}"
        fields = extra_fields(record)
        if fields:
            line += " " + " ".join(f"{k}={v}" for k, v in fields.items())
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        elif record.exc_text:
            line += "\n" + record.exc_text
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and every extra field."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        data.update(extra_fields(record))
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            data["exception"] = record.exc_text
        return json.dumps(data, default=str)


def setup_logging(
    level: str = "info", fmt: str = "text", levels: dict[str, str] | None = None
) -> None:
    """Configure the root ``jetplug`` logger family (idempotent); ``levels`` sets per-logger
    levels."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(SecretFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_jetplug", False):
            root.removeHandler(old)
    handler._jetplug = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    # nats-py logs reconnect noise at ERROR with tracebacks; the host reports it as events
    logging.getLogger("nats").setLevel(logging.CRITICAL)
    logging.getLogger("asyncio").setLevel(logging.WARNING)
    for name, lvl in (levels or {}).items():
        logging.getLogger(name).setLevel(lvl.upper())
