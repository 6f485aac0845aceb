"""What the adapter declares: the assignment stream and the shared record bucket."""

from __future__ import annotations

from jetplug import KeyValueSpec, StreamSpec
from jetplug_caf_common.store import bucket_spec

from .config import CafAdapterSettings


def stream_spec(settings: CafAdapterSettings) -> StreamSpec:
    """The stream that stores assignments (limits retention: every executor group may read them)."""
    return StreamSpec(
        name=settings.stream,
        subjects=(settings.assignment_subject,),
        storage=settings.stream_storage,
        replicas=settings.stream_replicas,
        max_age=settings.stream_max_age,
        duplicate_window=settings.duplicate_window,
        description="jetplug caf_adapter: ExecAssignment messages (router -> CAF)",
    )


def kv_spec(settings: CafAdapterSettings) -> KeyValueSpec:
    """The shared assignment-record bucket (the same declaration every CAF plugin makes)."""
    return bucket_spec(settings.bucket, settings.record_ttl)
