"""Consumer declarations are checked before anything reaches a server."""

from __future__ import annotations

import pytest
from jetplug import ConsumerSpec
from jetplug.engine.provisioning import check_consumer, collect
from jetplug.errors import ProvisioningError


def test_a_sane_consumer_passes() -> None:
    assert check_consumer(ConsumerSpec("S", "d", owner="p")) == []


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        (ConsumerSpec("S", "d", in_flight=0), "in_flight"),
        (ConsumerSpec("S", "d", max_deliver=0), "max_deliver"),
        (ConsumerSpec("S", "d", ack_wait=0), "ack_wait"),
        (ConsumerSpec("S", "d", ack_wait=0.1), "in-progress heartbeats"),
        (ConsumerSpec("S", "d", progress_fraction=1.5), "progress_fraction"),
        (ConsumerSpec("S", "d", deliver_group="g"), "deliver_group needs mode"),
        (ConsumerSpec("S", "d", retry_delays=(-1.0,)), "retry_delays"),
    ],
)
def test_bad_declarations_are_named(spec: ConsumerSpec, words: str) -> None:
    problems = check_consumer(spec)
    assert len(problems) == 1 and words in problems[0] and "S/d" in problems[0]


def test_collect_reports_every_problem_naming_the_plugins() -> None:
    with pytest.raises(ProvisioningError) as err:
        collect(
            [],
            [
                ("a", ConsumerSpec("S", "d")),
                ("b", ConsumerSpec("S", "d")),
                ("c", ConsumerSpec("S", "e", in_flight=0)),
            ],
        )
    text = str(err.value)
    assert "'a'" in text and "'b'" in text and "in_flight" in text
