"""``host.metrics``: the Prometheus registry of one host.

Every host owns its own :class:`prometheus_client.CollectorRegistry` (never the global default
one), so several hosts in one process (tests, embedding) keep separate numbers. The built-in
``metrics`` plugin registers the host's ``jetplug_*`` metrics on it; plugins add their own in
``startup``::

    from prometheus_client import Counter

    @hookimpl
    def startup(host):
        global orders
        orders = Counter("myplugin_orders", "Orders seen", ["kind"], registry=host.metrics.registry)

``/metrics`` (``[http] enabled = true``) serves everything registered on it. Label values must
have bounded cardinality: consumer, stream, outcome, kind, status, never ids or subjects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

T = TypeVar("T")

#: prefix of every metric the host itself registers
NAMESPACE = "jetplug"


class Metrics:
    """The metrics of one host: ``registry`` plus a place for shared metric sets."""

    def __init__(self) -> None:
        #: register your collectors here (``registry=host.metrics.registry``)
        self.registry = CollectorRegistry(auto_describe=True)
        self._shared: dict[str, Any] = {}

    def shared(self, key: str, factory: Callable[[CollectorRegistry], T]) -> T:
        """The metric set stored under ``key``, created with ``factory(registry)`` the first time.

        Lets several plugins share one set of metrics without registering a name twice (which
        prometheus-client refuses).
        """
        found = self._shared.get(key)
        if found is None:
            found = self._shared[key] = factory(self.registry)
        result: T = found
        return result

    def exposition(self) -> tuple[bytes, str]:
        """``(body, content type)`` of the Prometheus text exposition of :attr:`registry`."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


__all__ = ["NAMESPACE", "Metrics"]
