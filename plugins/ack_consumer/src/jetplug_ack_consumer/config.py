"""The ``[plugins.ack_consumer]`` table."""

from __future__ import annotations

import msgspec


class AckConsumerSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Settings of the ack consumer (defaults from the Router <-> CAF contract)."""

    subject: str = "caf.exec.assign.v1.ack"
    stream: str = "CAF_ACK"
    durable: str = "router-acks"
