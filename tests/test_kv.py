"""Key-value buckets through the host: compare-and-set updates never lose a concurrent write."""

from __future__ import annotations

import asyncio
import json

from jetplug import KeyValueSpec, hookimpl
from jetplug.testing import running_host


class Bucket:
    @hookimpl
    def register_kv_buckets(self) -> list[KeyValueSpec]:
        return [KeyValueSpec("counters", ttl=3600)]


def increment(current: bytes | None) -> bytes:
    value = json.loads(current) if current else {"n": 0, "by": []}
    value["n"] += 1
    return json.dumps(value).encode()


async def test_get_put_create(nats_server) -> None:
    async with running_host(("b", Bucket()), server=nats_server) as h:
        kv = h.host.kv("counters")
        assert await kv.get("missing") is None
        rev = await kv.create("k1", b"one")
        assert rev is not None
        assert await kv.create("k1", b"again") is None, "create refuses an existing key"
        entry = await kv.get("k1")
        assert entry is not None and entry.value == b"one" and entry.revision == rev
        await kv.put("k1", b"two")
        assert (await kv.get("k1")).value == b"two"  # type: ignore[union-attr]
        assert "k1" in await kv.keys()


async def test_concurrent_updates_from_two_hosts_are_all_kept(nats_server) -> None:
    async with (
        running_host(("b", Bucket()), server=nats_server) as h1,
        running_host(("b", Bucket()), server=nats_server) as h2,
    ):
        kv1, kv2 = h1.host.kv("counters"), h2.host.kv("counters")

        async def writer(kv, n: int) -> None:  # type: ignore[no-untyped-def]
            for _ in range(n):
                await kv.update("race", increment)

        # two writers per host, four in all, racing on one key
        await asyncio.gather(writer(kv1, 20), writer(kv1, 20), writer(kv2, 20), writer(kv2, 20))
        entry = await kv1.get("race")
        assert entry is not None and json.loads(entry.value)["n"] == 80


async def test_update_returning_none_changes_nothing(nats_server) -> None:
    async with running_host(("b", Bucket()), server=nats_server) as h:
        kv = h.host.kv("counters")
        await kv.put("same", b"v")
        value, changed = await kv.update("same", lambda cur: None)
        assert (value, changed) == (b"v", False)
