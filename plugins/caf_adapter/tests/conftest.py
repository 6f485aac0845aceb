"""Fixtures of the caf_adapter tests: a real nats-server (jetplug.testing) and per-test names.

The fixtures of ``jetplug.testing`` are imported rather than enabled with ``pytest_plugins``:
pytest refuses ``pytest_plugins`` in a conftest below the rootdir when the whole repository is
tested at once (``make test``); importing them works from the root and from this directory.
"""

from __future__ import annotations

import uuid

import pytest
from caf_adapter_helpers import Names
from jetplug.testing import fresh_server, nats_server, nc

__all__ = ["fresh_server", "nats_server", "nc"]


@pytest.fixture
def names() -> Names:
    """Fresh stream, subject and bucket names for this test."""
    return Names(uuid.uuid4().hex[:10])
