"""Reading, replaying and deleting dead letters (the logic behind ``jetplug dlq``).

Dead letters live in the host-owned stream ``[jetstream.dlq] stream`` (``JETPLUG_DLQ``) on
``<subject_prefix>.<stream>.<consumer>``; :mod:`.outcomes` writes them with the original data and
headers plus the ``Jetplug-*`` context headers. This module reads them one by one by stream
sequence (``STREAM.MSG.GET``), filters them by consumer and reason, republishes them to their
original subject through the host's publisher and deletes them.

Every walk over the stream stops at the last sequence it saw when it started, so dead letters that
arrive while a replay runs (a replayed message failing again) are never picked up by the same run.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import JetplugError, PublishError
from .jsapi import ApiError, JsApi

if TYPE_CHECKING:
    from ..settings import DlqSettings
    from .publisher import Publisher

H_REASON = "Jetplug-Dlq-Reason"
H_ERROR = "Jetplug-Dlq-Error"
H_TIME = "Jetplug-Dlq-Time"
H_SUBJECT = "Jetplug-Original-Subject"
H_STREAM = "Jetplug-Original-Stream"
H_SEQ = "Jetplug-Original-Seq"
H_MSG_ID = "Jetplug-Original-Msg-Id"
H_CONSUMER = "Jetplug-Consumer"
H_DELIVERIES = "Jetplug-Deliveries"
H_PLUGIN = "Jetplug-Plugin"
MSG_ID = "Nats-Msg-Id"
#: publish preconditions of the original publish; replaying them would make the replay fail
_PRECONDITION_PREFIX = "nats-expected-"
_CONTEXT_PREFIX = "jetplug-"


class DlqError(JetplugError):
    """A dead-letter command cannot do what was asked (no DLQ stream, unknown sequence, ...)."""


def parse_headers(block: bytes) -> dict[str, str]:
    """Decode a NATS header block (``NATS/1.0\\r\\nKey: Value\\r\\n...``); the first value of a
    repeated key wins."""
    headers: dict[str, str] = {}
    lines = block.decode("utf-8", errors="replace").split("\r\n")
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        key = key.strip()
        if sep and key and key not in headers:
            headers[key] = value.strip()
    return headers


def _int_or_none(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class DeadLetter:
    """One message of the DLQ stream, with its ``Jetplug-*`` context decoded."""

    seq: int
    subject: str
    data: bytes
    headers: dict[str, str]
    #: the time the server stored it (RFC 3339)
    stored: str = ""

    @property
    def reason(self) -> str:
        """``Jetplug-Dlq-Reason`` (``invalid_payload``, ``max_deliver``, ...)."""
        return self.headers.get(H_REASON, "")

    @property
    def error(self) -> str:
        """``Jetplug-Dlq-Error``: the human-readable cause."""
        return self.headers.get(H_ERROR, "")

    @property
    def consumer(self) -> str:
        """The durable name of the consumer that dead-lettered it."""
        return self.headers.get(H_CONSUMER, "")

    @property
    def original_stream(self) -> str:
        """The stream the original message was in."""
        return self.headers.get(H_STREAM, "")

    @property
    def original_subject(self) -> str:
        """The subject the original message was published to (where replay sends it)."""
        return self.headers.get(H_SUBJECT, "")

    @property
    def original_seq(self) -> int | None:
        """The original message's stream sequence, if recorded."""
        return _int_or_none(self.headers.get(H_SEQ, ""))

    @property
    def deliveries(self) -> int | None:
        """How many times the original was delivered before it was dead-lettered."""
        return _int_or_none(self.headers.get(H_DELIVERIES, ""))

    @property
    def plugin(self) -> str:
        """The plugin that decided (or failed)."""
        return self.headers.get(H_PLUGIN, "")

    @property
    def time(self) -> str:
        """When it was dead-lettered (``Jetplug-Dlq-Time``, else the server's store time)."""
        return self.headers.get(H_TIME, "") or self.stored

    def replay_headers(self) -> dict[str, str]:
        """The original headers: without the ``Jetplug-*`` context, the DLQ's own ``Nats-Msg-Id``
        and ``Nats-Expected-*`` preconditions; the original ``Nats-Msg-Id`` restored if there was
        one."""
        headers = {
            k: v
            for k, v in self.headers.items()
            if not k.lower().startswith((_CONTEXT_PREFIX, _PRECONDITION_PREFIX))
            and k.lower() != "nats-msg-id"
        }
        original_id = self.headers.get(H_MSG_ID, "")
        if original_id:
            headers[MSG_ID] = original_id
        return headers

    def summary(self) -> dict[str, Any]:
        """The stable JSON form of ``dlq list --json`` (see :data:`SUMMARY_KEYS`)."""
        return {
            "seq": self.seq,
            "time": self.time,
            "subject": self.subject,
            "consumer": self.consumer,
            "reason": self.reason,
            "error": self.error,
            "plugin": self.plugin,
            "original_stream": self.original_stream,
            "original_subject": self.original_subject,
            "original_seq": self.original_seq,
            "deliveries": self.deliveries,
            "size": len(self.data),
        }

    def detail(self) -> dict[str, Any]:
        """The stable JSON form of ``dlq show --json``: the summary plus headers and payload."""
        try:
            text, encoding = self.data.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(self.data).decode("ascii"), "base64"
        return {
            **self.summary(),
            "headers": dict(self.headers),
            "data": text,
            "data_encoding": encoding,
        }


#: keys of every ``dlq list --json`` item, in order
SUMMARY_KEYS = (
    "seq",
    "time",
    "subject",
    "consumer",
    "reason",
    "error",
    "plugin",
    "original_stream",
    "original_subject",
    "original_seq",
    "deliveries",
    "size",
)
#: keys of ``dlq show --json`` beyond :data:`SUMMARY_KEYS`
DETAIL_KEYS = (*SUMMARY_KEYS, "headers", "data", "data_encoding")


@dataclass(frozen=True)
class Selection:
    """Which dead letters a command works on; every given criterion must match.

    ``consumer`` is a durable name (any stream) or ``STREAM/DURABLE``.
    """

    consumer: str = ""
    reason: str = ""
    seqs: tuple[int, ...] = ()

    @property
    def empty(self) -> bool:
        """True when nothing narrows the selection (it selects every dead letter)."""
        return not (self.consumer or self.reason or self.seqs)

    def _consumer_parts(self) -> tuple[str, str]:
        stream, sep, durable = self.consumer.rpartition("/")
        return (stream if sep else ""), durable

    def subject(self, prefix: str) -> str:
        """The DLQ subject filter that covers the selection (``<prefix>.>`` without a consumer)."""
        if not self.consumer:
            return f"{prefix}.>"
        stream, durable = self._consumer_parts()
        return f"{prefix}.{stream or '*'}.{durable}"

    def matches(self, letter: DeadLetter) -> bool:
        """True when ``letter`` meets every criterion."""
        if self.seqs and letter.seq not in self.seqs:
            return False
        if self.reason and letter.reason != self.reason:
            return False
        if self.consumer:
            stream, durable = self._consumer_parts()
            if letter.consumer != durable or (stream and letter.original_stream != stream):
                return False
        return True


@dataclass
class ReplayResult:
    """What replay did with one dead letter (``dlq replay --json`` item).

    ``status``: ``replayed`` (stored again; ``deleted`` says whether the dead letter was removed),
    ``would_replay`` (dry run), ``duplicate`` (the original stream still remembers the restored
    ``Nats-Msg-Id`` within its duplicate window, so nothing was stored; the dead letter is kept),
    ``failed`` (``error`` says why; the dead letter is kept).
    """

    seq: int
    original_subject: str
    status: str
    stream: str = ""
    new_seq: int | None = None
    msg_id: str = ""
    deleted: bool = False
    error: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (keys: :data:`REPLAY_KEYS`)."""
        return {
            "seq": self.seq,
            "original_subject": self.original_subject,
            "status": self.status,
            "stream": self.stream,
            "new_seq": self.new_seq,
            "msg_id": self.msg_id,
            "deleted": self.deleted,
            "error": self.error,
        }


#: keys of every ``dlq replay --json`` item
REPLAY_KEYS = (
    "seq",
    "original_subject",
    "status",
    "stream",
    "new_seq",
    "msg_id",
    "deleted",
    "error",
)


@dataclass
class PurgeResult:
    """What purge removed."""

    deleted: int
    seqs: list[int] = field(default_factory=list)


class DeadLetterStore:
    """The DLQ stream of one server, read and changed through the JetStream API."""

    def __init__(self, api: JsApi, settings: DlqSettings) -> None:
        self.api = api
        self.stream = settings.stream
        self.prefix = settings.subject_prefix

    async def info(self) -> dict[str, Any]:
        """``STREAM.INFO`` of the DLQ stream; :class:`DlqError` when it does not exist."""
        try:
            return await self.api.stream_info(self.stream)
        except ApiError as exc:
            if exc.not_found:
                raise DlqError(
                    f"the dead-letter stream {self.stream!r} does not exist (nothing was "
                    "dead-lettered on this server yet, or [jetstream.dlq] stream names another "
                    "stream)"
                ) from None
            raise

    @staticmethod
    def _letter(raw: dict[str, Any]) -> DeadLetter:
        data = base64.b64decode(raw["data"]) if raw.get("data") else b""
        headers = parse_headers(base64.b64decode(raw["hdrs"])) if raw.get("hdrs") else {}
        return DeadLetter(
            int(raw["seq"]), str(raw.get("subject", "")), data, headers, str(raw.get("time", ""))
        )

    async def get(self, seq: int) -> DeadLetter:
        """The dead letter with DLQ sequence ``seq``; :class:`DlqError` if there is none."""
        await self.info()
        try:
            raw = await self.api.get_message(self.stream, seq)
        except ApiError as exc:
            if exc.not_found:
                raise DlqError(f"no dead letter with sequence {seq} in {self.stream}") from None
            raise
        return self._letter(raw)

    async def scan(self, selection: Selection | None = None) -> AsyncIterator[DeadLetter]:
        """Yield the selected dead letters in sequence order, up to the last one stored now."""
        selection = selection or Selection()
        info = await self.info()
        state = info.get("state", {})
        last = int(state.get("last_seq", 0))
        if not int(state.get("messages", 0)):
            return
        subject = selection.subject(self.prefix)
        seqs = sorted(set(selection.seqs))
        seq = max(int(state.get("first_seq", 1)), seqs[0] if seqs else 1, 1)
        while seq <= last:
            try:
                raw = await self.api.next_message(self.stream, seq, subject)
            except ApiError as exc:
                if exc.not_found:
                    return
                raise
            letter = self._letter(raw)
            if letter.seq > last or (seqs and letter.seq > seqs[-1]):
                return
            if selection.matches(letter):
                yield letter
            seq = letter.seq + 1

    async def select(self, selection: Selection | None = None, limit: int = 0) -> list[DeadLetter]:
        """The selected dead letters (at most ``limit``; 0 = all).

        With ``selection.seqs``, every listed sequence must exist, else :class:`DlqError`.
        """
        selection = selection or Selection()
        letters: list[DeadLetter] = []
        if selection.seqs:
            for seq in sorted(set(selection.seqs)):
                letter = await self.get(seq)
                if selection.matches(letter):
                    letters.append(letter)
                    if limit and len(letters) >= limit:
                        break
            return letters
        async for letter in self.scan(selection):
            letters.append(letter)
            if limit and len(letters) >= limit:
                break
        return letters

    async def delete(self, seq: int) -> None:
        """Delete one dead letter; :class:`DlqError` if it is not there."""
        try:
            await self.api.delete_message(self.stream, seq)
        except ApiError as exc:
            if exc.not_found:
                raise DlqError(f"no dead letter with sequence {seq} in {self.stream}") from None
            raise

    async def replay(
        self,
        letters: Iterable[DeadLetter],
        publisher: Publisher,
        *,
        keep: bool = False,
        dry_run: bool = False,
        new_msg_id: bool = False,
    ) -> list[ReplayResult]:
        """Republish each dead letter's data to its original subject, one after the other.

        Headers are :meth:`DeadLetter.replay_headers`; without an original ``Nats-Msg-Id`` (or
        with ``new_msg_id``) the publisher generates a fresh one. A dead letter is deleted
        only after its replay was pub-acked as newly stored, and only without ``keep``. Failures
        are reported per dead letter and do not stop the others.
        """
        results: list[ReplayResult] = []
        for letter in letters:
            headers = letter.replay_headers()
            if new_msg_id:
                headers.pop(MSG_ID, None)
            result = ReplayResult(
                letter.seq, letter.original_subject, "would_replay", msg_id=headers.get(MSG_ID, "")
            )
            results.append(result)
            if not letter.original_subject:
                result.status = "failed"
                result.error = f"no {H_SUBJECT} header: not a jetplug dead letter"
                continue
            if dry_run:
                continue
            result.msg_id = result.msg_id or publisher.new_msg_id()
            try:
                ack = await publisher.publish(
                    letter.original_subject, letter.data, headers=headers, msg_id=result.msg_id
                )
            except PublishError as exc:
                result.status = "failed"
                result.error = str(exc)
                continue
            result.stream, result.new_seq = ack.stream, ack.seq
            if ack.duplicate:
                result.status = "duplicate"
                result.error = (
                    f"stream {ack.stream} already stored Nats-Msg-Id {result.msg_id!r} "
                    f"(seq {ack.seq}) within its duplicate window, so nothing was stored; the dead "
                    "letter is kept (replay with --new-msg-id to store it again)"
                )
                continue
            result.status = "replayed"
            if not keep:
                try:
                    await self.delete(letter.seq)
                    result.deleted = True
                except (DlqError, ApiError) as exc:
                    result.error = f"replayed, but the dead letter was not deleted: {exc}"
        return results

    async def count(self, selection: Selection | None = None) -> int:
        """How many dead letters the selection covers (cheap without ``reason`` and ``seqs``)."""
        selection = selection or Selection()
        if selection.reason or selection.seqs:
            return len(await self.select(selection))
        if not selection.consumer:
            return int((await self.info()).get("state", {}).get("messages", 0))
        await self.info()
        subject = selection.subject(self.prefix)
        answer = await self.api.stream_info(self.stream, subjects_filter=subject)
        subjects: dict[str, int] = answer.get("state", {}).get("subjects") or {}
        return sum(int(n) for n in subjects.values())

    async def purge(self, selection: Selection | None = None, upto: int = 0) -> PurgeResult:
        """Delete the selected dead letters (every one with an empty selection).

        :param upto: only dead letters with a sequence up to this one (0 = the last stored now),
            so what arrives after a confirmation prompt is not removed unseen.
        """
        selection = selection or Selection()
        info = await self.info()
        last = int(info.get("state", {}).get("last_seq", 0))
        upto = min(upto, last) if upto else last
        if not selection.reason and not selection.seqs:
            subject = selection.subject(self.prefix) if selection.consumer else ""
            deleted = await self.api.purge_stream(self.stream, subject, before_seq=upto + 1)
            return PurgeResult(deleted)
        result = PurgeResult(0)
        for letter in await self.select(selection):
            if letter.seq > upto:
                break
            await self.delete(letter.seq)
            result.deleted += 1
            result.seqs.append(letter.seq)
        return result

    async def last_seq(self) -> int:
        """The DLQ stream's last sequence now (the bound for :meth:`purge` after a prompt)."""
        return int((await self.info()).get("state", {}).get("last_seq", 0))


def truncate(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters with an ellipsis."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def table(letters: Sequence[DeadLetter], error_width: int = 60) -> list[str]:
    """The ``dlq list`` table, one line per dead letter after a header line."""
    rows = [("SEQ", "TIME", "CONSUMER", "REASON", "SUBJECT", "ORIG_SEQ", "DELIVERIES", "ERROR")]
    for d in letters:
        stream = f"{d.original_stream}/" if d.original_stream else ""
        rows.append(
            (
                str(d.seq),
                d.time[:19].replace("T", " "),
                f"{stream}{d.consumer}" if d.consumer else "-",
                d.reason or "-",
                d.original_subject or "-",
                "-" if d.original_seq is None else str(d.original_seq),
                "-" if d.deliveries is None else str(d.deliveries),
                truncate(d.error.replace("\n", " "), error_width) or "-",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return [
        "  ".join(c.ljust(widths[i]) for i, c in enumerate(r[:-1])) + "  " + r[-1] for r in rows
    ]
