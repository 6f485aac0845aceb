"""The ``[plugins.ack_consumer]`` table and the declarations it implies."""

from __future__ import annotations

from typing import ClassVar

from jetplug_caf_common.consumer_settings import ConsumerSettings


class AckConsumerSettings(ConsumerSettings, forbid_unknown_fields=True, kw_only=True):
    """Settings of the ack consumer (defaults from the Router <-> CAF contract)."""

    STREAM_DESCRIPTION: ClassVar[str] = "CAF -> router: ExecAssignmentAck"
    CONSUMER_DESCRIPTION: ClassVar[str] = "jetplug ack_consumer: executor acks of assignments"

    #: subject the executors publish ExecAssignmentAck messages on
    subject: str = "caf.exec.assign.v1.ack"
    #: stream that stores them (declared by this plugin)
    stream: str = "CAF_ACK"
    #: durable consumer name (the origin's ``router-acks``)
    durable: str = "router-acks"
    #: push only: the deliver group (queue) the hosts join
    deliver_group: str = "router-acks-group"
