"""Key-value buckets on JetStream, written through the host's publisher.

A bucket is the stream ``KV_<bucket>`` on subjects ``$KV.<bucket>.<key>`` (the layout every NATS
client understands), declared by plugins with :class:`~jetplug.KeyValueSpec` and provisioned like
any stream. Writes go through the host's publisher (pub-ack, msg-id, retries); reads ask the
stream for the last message of the key. :meth:`KeyValue.update` is a compare-and-set loop on the
key's revision, so concurrent writers in several processes never lose each other's updates.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .engine.advisories import parse_raw_headers
from .engine.jsapi import ApiError, JsApi
from .errors import JetplugError, PublishError

if TYPE_CHECKING:
    from .engine.publisher import Publisher

log = logging.getLogger("jetplug.kv")

EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
KV_OPERATION = "KV-Operation"


class ConflictError(JetplugError):
    """A compare-and-set update kept losing to concurrent writers."""


@dataclass(frozen=True)
class Entry:
    """One key's current value and revision (the stream sequence that stored it)."""

    key: str
    value: bytes
    revision: int


class KeyValue:
    """One bucket: ``get``, ``put``, ``create``, compare-and-set ``update``, ``keys``."""

    def __init__(self, bucket: str, api: JsApi, publisher: Publisher) -> None:
        self.bucket = bucket
        self.stream = f"KV_{bucket}"
        self.prefix = f"$KV.{bucket}."
        self.api = api
        self.publisher = publisher

    async def get(self, key: str) -> Entry | None:
        """The current entry of ``key``, or None when it does not exist (or was deleted)."""
        try:
            answer = await self.api.request(
                f"STREAM.MSG.GET.{self.stream}", {"last_by_subj": self.prefix + key}
            )
        except ApiError as exc:
            if exc.not_found:
                return None
            raise
        stored = answer["message"]
        if stored.get("hdrs"):
            headers = parse_raw_headers(base64.b64decode(stored["hdrs"]))
            if headers.get(KV_OPERATION) in ("DEL", "PURGE"):
                return None
        return Entry(key, base64.b64decode(stored.get("data") or b""), int(stored["seq"]))

    async def put(self, key: str, value: bytes) -> int:
        """Store ``value`` unconditionally; returns the new revision."""
        ack = await self.publisher.publish(self.prefix + key, value, expected_stream=self.stream)
        return ack.seq

    async def create(self, key: str, value: bytes) -> int | None:
        """Store ``value`` only if ``key`` does not exist; None if it does."""
        return await self._write(key, value, 0)

    async def _write(self, key: str, value: bytes, last: int) -> int | None:
        try:
            ack = await self.publisher.publish(
                self.prefix + key,
                value,
                headers={EXPECTED_LAST_SUBJECT_SEQ: str(last)},
                expected_stream=self.stream,
            )
        except PublishError as exc:
            if exc.kind == "conflict":
                return None
            raise
        return ack.seq

    async def update(
        self,
        key: str,
        change: Callable[[bytes | None], bytes | None],
        attempts: int = 25,
    ) -> tuple[bytes | None, bool]:
        """Read, change, write with compare-and-set until it sticks.

        :param change: gets the current value (None if absent) and returns the new value, or
            None to leave the key as it is. It may be called several times: keep it pure.
        :return: ``(value now stored, whether this call changed it)``.
        :raises ConflictError: after ``attempts`` lost races.
        """
        for attempt in range(attempts):
            if attempt:
                # lost a race: back off a little, randomly, so racing writers spread out
                await asyncio.sleep(random.uniform(0, 0.002 * 2 ** min(attempt, 6)))
            entry = await self.get(key)
            current = entry.value if entry else None
            new = change(current)
            if new is None or new == current:
                return current, False
            stored = await self._write(key, new, entry.revision if entry else 0)
            if stored is not None:
                return new, True
        raise ConflictError(
            f"key {key!r} in bucket {self.bucket!r}: {attempts} concurrent updates in a row"
        )

    async def keys(self) -> list[str]:
        """Every key currently in the bucket (the server pages long subject lists)."""
        keys: list[str] = []
        while True:
            info = await self.api.request(
                f"STREAM.INFO.{self.stream}",
                {"subjects_filter": self.prefix + ">", "offset": len(keys)},
            )
            page = (info.get("state") or {}).get("subjects") or {}
            keys.extend(s[len(self.prefix) :] for s in page)
            if not page or len(keys) >= int(info.get("total") or 0):
                return sorted(keys)


def encode_json(value: object) -> bytes:
    """Compact JSON bytes (the bucket values the bundled plugins use)."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
