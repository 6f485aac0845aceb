"""The ``[plugins.result_consumer]`` table."""

from __future__ import annotations

from typing import Annotated

import msgspec


class ResultConsumerSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Settings of the result consumer (defaults from the Router <-> CAF contract)."""

    subject: str = "caf.exec.result.v1"
    stream: str = "CAF_RESULT"
    durable: str = "router-results"
    usage_subject: str = "beamline.usage.v1.metered"
    max_deliver: Annotated[int, msgspec.Meta(ge=1)] = 5
