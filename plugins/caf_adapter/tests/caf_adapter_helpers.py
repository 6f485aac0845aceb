"""Shared helpers of the caf_adapter tests (a uniquely named module: test dirs share sys.path)."""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import jetplug_caf_adapter.plugin as caf_plugin
from jetplug import hookimpl
from jetplug.embedded import EmbeddedServer
from jetplug.testing import HostHarness, running_host

REQUEST: dict[str, Any] = {
    "tenant_id": "acme",
    "request_id": "e3b0c442-98fc-4c14-9afb-4c8996fb9242",
    "task": {"type": "text.generate", "payload_ref": "s3://bucket/key"},
    "trace_id": "tr-123",
    "metadata": {"user_id": "u-42"},
}
DECISION: dict[str, Any] = {
    "provider_id": "openai:gpt-4o",
    "priority": 50,
    "expected_latency_ms": 850,
    "expected_cost": 0.012,
    "reason": "best_score",
}


def request(**changes: Any) -> dict[str, Any]:
    """A copy of REQUEST with top-level changes (None removes the key)."""
    out = copy.deepcopy(REQUEST)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def decision(**changes: Any) -> dict[str, Any]:
    """A copy of DECISION with changes (None removes the key)."""
    out = copy.deepcopy(DECISION)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


class Names:
    """Stream, subject and bucket of one test, so tests sharing a server never meet."""

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.stream = f"CAF_ASSIGN_{tag.upper()}"
        self.subject = f"caf.exec.assign.v1.{tag}"
        self.bucket = f"caf_{tag}"
        self.reply_subject = f"caf.assign.request.{tag}"

    def settings(self, **extra: Any) -> dict[str, Any]:
        """The ``[plugins.caf_adapter]`` table with this test's names."""
        return {
            "stream": self.stream,
            "assignment_subject": self.subject,
            "bucket": self.bucket,
            **extra,
        }

    def config(self, jetstream: dict[str, Any] | None = None, **settings: Any) -> dict[str, Any]:
        """A whole config dict."""
        cfg: dict[str, Any] = {"plugins": {"caf_adapter": self.settings(**settings)}}
        if jetstream:
            cfg["jetstream"] = jetstream
        return cfg


class Observer:
    """A plugin implementing the CAF hooks the adapter fires."""

    def __init__(self) -> None:
        self.published: list[tuple[Any, Any]] = []
        self.expired: list[Any] = []

    @hookimpl
    def caf_assignment_published(self, record: Any, assignment: Any) -> None:
        self.published.append((record, assignment))

    @hookimpl
    async def caf_assignment_expired(self, record: Any) -> None:
        self.expired.append(record)


@asynccontextmanager
async def adapter_host(
    server: EmbeddedServer | None, config: dict[str, Any], *others: object
) -> AsyncIterator[HostHarness]:
    """A running host with caf_adapter (and ``others``, e.g. ``("observer", Observer())``)."""
    async with running_host(
        ("caf_adapter", caf_plugin), *others, server=server, config=config
    ) as h:
        yield h
