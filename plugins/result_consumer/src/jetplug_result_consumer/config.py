"""The ``[plugins.result_consumer]`` table and the declarations it implies."""

from __future__ import annotations

from typing import Annotated, ClassVar

import msgspec
from jetplug import StreamSpec
from jetplug_caf_common.consumer_settings import ConsumerSettings, NonNegativeFloat, PositiveFloat


class ResultConsumerSettings(ConsumerSettings, forbid_unknown_fields=True, kw_only=True):
    """Settings of the result consumer (defaults from the Router <-> CAF contract)."""

    STREAM_DESCRIPTION: ClassVar[str] = "CAF -> router: ExecResult"
    CONSUMER_DESCRIPTION: ClassVar[str] = (
        "jetplug result_consumer: execution results, billed once each"
    )

    #: subject the executors publish ExecResult messages on
    subject: str = "caf.exec.result.v1"
    #: stream that stores them (declared by this plugin)
    stream: str = "CAF_RESULT"
    #: durable consumer name (the origin's ``router-results``)
    durable: str = "router-results"
    #: push only: the deliver group (queue) the hosts join
    deliver_group: str = "router-results-group"
    #: payloads larger than this many bytes are terminated as ``too_large`` (0 = no limit)
    max_bytes: Annotated[int, msgspec.Meta(ge=0)] = 256 * 1024
    #: subject the UsageEvent of each processed result is published on
    usage_subject: str = "beamline.usage.v1.metered"
    #: stream that stores usage events (declared here unless ``declare_usage_stream`` is off)
    usage_stream: str = "USAGE"
    #: off when billing owns the usage stream; publishing then fails (and naks) until it exists
    declare_usage_stream: bool = True
    #: seconds the usage stream keeps events (0 = for ever: billing decides when they go)
    usage_max_age: NonNegativeFloat = 0.0
    #: seconds in which a repeated ``usage-<assignment_id>`` is dropped by the server
    usage_duplicate_window: PositiveFloat = 3600.0

    def stream_specs(self) -> list[StreamSpec]:
        """The result stream, and the usage stream when this plugin declares it."""
        streams = [self.stream_spec()]
        if self.declare_usage_stream:
            streams.append(
                StreamSpec(
                    self.usage_stream,
                    (self.usage_subject,),
                    max_age=self.usage_max_age,
                    duplicate_window=self.usage_duplicate_window,
                    description="router -> billing: UsageEvent, one per processed result",
                )
            )
        return streams
