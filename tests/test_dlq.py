"""Dead letters: reading, filtering, replaying and purging them (engine/dlq.py and `jetplug dlq`).

Every test gets its own DLQ stream and subject prefix on the shared server, so counts are exact.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from jetplug import ACK, ConsumerSpec, StreamSpec, Term, hookimpl
from jetplug.engine.dlq import (
    DETAIL_KEYS,
    REPLAY_KEYS,
    SUMMARY_KEYS,
    DeadLetterStore,
    DlqError,
    Selection,
    parse_headers,
)
from jetplug.message import Message
from jetplug.settings import DlqSettings
from jetplug.testing import HostHarness, running_host, wait_until

JETPLUG = Path(sys.executable).parent / "jetplug"


class Sorter:
    """Stream <NAME> with consumers ``alpha`` (``<name>.a.>``) and ``beta`` (``<name>.b.>``).

    Payloads containing ``bad`` are terminated as ``invalid_payload``, those containing ``tenant``
    as ``tenant_not_allowed``; everything else (and everything once ``accept`` is set) is acked.
    """

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.prefix = stream.lower()
        self.accept = False
        self.acked: list[tuple[str, bytes, dict[str, str], int]] = []  # subject, data, headers, seq

    @hookimpl
    def register_streams(self) -> list[StreamSpec]:
        return [StreamSpec(self.stream, (f"{self.prefix}.>",))]

    @hookimpl
    def register_consumers(self) -> list[ConsumerSpec]:
        return [
            ConsumerSpec(self.stream, "alpha", (f"{self.prefix}.a.>",)),
            ConsumerSpec(self.stream, "beta", (f"{self.prefix}.b.>",)),
        ]

    @hookimpl
    def handle_message(self, msg: Message) -> Any:
        if msg.consumer.owner != "sorter":
            return None
        if not self.accept:
            if b"bad" in msg.data:
                return Term("invalid_payload", "field x: missing")
            if b"tenant" in msg.data:
                return Term("tenant_not_allowed", "tenant t9 is not allowed")
        self.acked.append((msg.subject, msg.data, dict(msg.headers), msg.stream_seq))
        return ACK


def dlq_toml(name: str) -> str:
    return f'[jetstream.dlq]\nstream = "DLQ_{name}"\nsubject_prefix = "dlq{name.lower()}"\n'


def store_of(h: HostHarness) -> DeadLetterStore:
    engine = h.host.engine
    assert engine is not None
    return DeadLetterStore(engine.api, engine.settings.dlq)


async def publish_all(h: HostHarness, items: list[tuple[str, bytes, dict[str, str]]]) -> list[int]:
    """Publish and wait until each message is acked or terminated; return stream sequences."""
    seqs = []
    for subject, data, headers in items:
        ack = await h.publish(subject, data, headers=headers)
        seqs.append(ack.seq)
    for seq in seqs:
        await h.outcome(seq)
    return seqs


async def stream_last_seq(h: HostHarness, stream: str) -> int:
    info = await h.host.engine.api.stream_info(stream)
    return int(info["state"]["last_seq"])


async def test_list_filter_and_show_dead_letters(nats_server) -> None:
    sorter = Sorter("DQA")
    async with running_host(("sorter", sorter), server=nats_server, config=dlq_toml("a")) as h:
        seqs = await publish_all(
            h,
            [
                ("dqa.a.1", b"bad one", {"tenant_id": "acme"}),
                ("dqa.a.2", b"fine", {}),
                ("dqa.a.3", b"tenant nine", {}),
                ("dqa.b.1", b"bad two", {}),
                ("dqa.b.2", b"\xff\x00bad\xfe", {"kind": "binary"}),
            ],
        )
        store = store_of(h)
        letters = await store.select()
        assert [d.original_seq for d in letters] == [seqs[0], seqs[2], seqs[3], seqs[4]]
        assert [d.seq for d in letters] == sorted(d.seq for d in letters)
        first = letters[0]
        assert (first.consumer, first.reason, first.error) == (
            "alpha",
            "invalid_payload",
            "field x: missing",
        )
        assert (first.original_stream, first.original_subject) == ("DQA", "dqa.a.1")
        assert (
            first.subject == "dlqa.DQA.alpha" and first.deliveries == 1 and first.plugin == "sorter"
        )
        assert first.data == b"bad one" and first.headers["tenant_id"] == "acme"
        assert first.time.startswith("20")
        assert tuple(first.summary()) == SUMMARY_KEYS

        async def origs(**kw: Any) -> list[int | None]:
            return [d.original_seq for d in await store.select(Selection(**kw))]

        assert await origs(reason="invalid_payload") == [seqs[0], seqs[3], seqs[4]]
        assert await origs(reason="tenant_not_allowed") == [seqs[2]]
        assert await origs(consumer="alpha") == [seqs[0], seqs[2]]
        assert await origs(consumer="DQA/beta") == [seqs[3], seqs[4]]
        assert await origs(consumer="OTHER/beta") == []
        assert await origs(consumer="alpha", reason="invalid_payload") == [seqs[0]]
        assert await origs(reason="no_such_reason") == []
        assert [d.original_seq for d in await store.select(limit=2)] == [seqs[0], seqs[2]]
        assert await store.count() == 4
        assert await store.count(Selection(consumer="beta")) == 2
        assert await store.count(Selection(reason="invalid_payload")) == 3

        text = (await store.get(letters[0].seq)).detail()
        assert tuple(text) == DETAIL_KEYS
        assert text["data"] == "bad one" and text["data_encoding"] == "utf-8"
        assert text["headers"]["Jetplug-Dlq-Reason"] == "invalid_payload"
        binary = (await store.get(letters[3].seq)).detail()
        assert binary["data_encoding"] == "base64"
        assert base64.b64decode(binary["data"]) == b"\xff\x00bad\xfe"
        assert binary["headers"]["kind"] == "binary"

        with pytest.raises(DlqError, match="no dead letter with sequence 9999"):
            await store.get(9999)
        with pytest.raises(DlqError, match="no dead letter with sequence 9999"):
            await store.select(Selection(seqs=(letters[0].seq, 9999)))
        missing = DeadLetterStore(h.host.engine.api, DlqSettings(stream="DLQ_NEVER_CREATED"))
        with pytest.raises(DlqError, match="DLQ_NEVER_CREATED' does not exist"):
            await missing.select()


def test_parse_headers_keeps_colons_and_first_value() -> None:
    block = b"NATS/1.0\r\nA: 1\r\nUrl: http://x:80/y\r\nA: 2\r\n\r\n"
    assert parse_headers(block) == {"A": "1", "Url": "http://x:80/y"}


async def test_replay_republishes_original_data_and_headers_and_loses_nothing(
    nats_server, nc
) -> None:
    sorter = Sorter("DQB")
    async with running_host(("sorter", sorter), server=nats_server, config=dlq_toml("b")) as h:
        # one message published without a Nats-Msg-Id (plain nats-py), one through the host
        raw = await nc.jetstream().publish(
            "dqb.a.raw", b"bad raw", headers={"tenant_id": "acme", "x-trace": "t1"}
        )
        await h.outcome(raw.seq)
        seqs = await publish_all(
            h,
            [
                ("dqb.b.1", b"bad with id", {"tenant_id": "globex"}),
                ("dqb.a.2", b"tenant later fixed", {}),
            ],
        )
        store = store_of(h)
        letters = await store.select()
        assert len(letters) == 3
        assert "Nats-Msg-Id" not in letters[0].replay_headers()
        assert letters[1].headers["Jetplug-Original-Msg-Id"]
        assert (
            letters[1].replay_headers()["Nats-Msg-Id"]
            == letters[1].headers["Jetplug-Original-Msg-Id"]
        )
        assert not any(k.startswith("Jetplug-") for d in letters for k in d.replay_headers())
        before = await stream_last_seq(h, "DQB")

        # dry run: nothing published, nothing deleted
        dry = await store.replay(letters, h.host.publisher, dry_run=True)
        assert [r.status for r in dry] == ["would_replay"] * 3
        assert tuple(dry[0].to_dict()) == REPLAY_KEYS
        assert await stream_last_seq(h, "DQB") == before
        assert await store.count() == 3

        sorter.accept = True
        results = await store.replay(letters, h.host.publisher)
        by_seq = {r.seq: r for r in results}
        # no original msg-id: stored again, handled, acked, dead letter deleted
        replayed = by_seq[letters[0].seq]
        assert replayed.status == "replayed" and replayed.deleted and replayed.stream == "DQB"
        assert replayed.new_seq is not None and replayed.new_seq > before
        handled = await h.outcome(replayed.new_seq)
        assert handled.outcome == "ack"
        subject, data, headers, _ = next(a for a in sorter.acked if a[3] == replayed.new_seq)
        assert (subject, data) == ("dqb.a.raw", b"bad raw")
        assert headers["tenant_id"] == "acme" and headers["x-trace"] == "t1"
        assert not any(k.startswith("Jetplug-") for k in headers)
        # the original Nats-Msg-Id is still in the stream's duplicate window: nothing stored, kept
        dup = by_seq[letters[1].seq]
        assert dup.status == "duplicate" and not dup.deleted and dup.new_seq == seqs[0]
        assert "--new-msg-id" in dup.error
        assert by_seq[letters[2].seq].status == "duplicate"
        assert [d.seq for d in await store.select()] == [letters[1].seq, letters[2].seq]

        # --new-msg-id stores them again; --keep leaves the dead letter in place
        kept = await store.replay([letters[2]], h.host.publisher, new_msg_id=True, keep=True)
        assert kept[0].status == "replayed" and not kept[0].deleted
        assert kept[0].msg_id and kept[0].msg_id != letters[2].headers["Jetplug-Original-Msg-Id"]
        await h.outcome(kept[0].new_seq)
        rest = await store.replay(await store.select(), h.host.publisher, new_msg_id=True)
        assert [r.status for r in rest] == ["replayed", "replayed"] and all(r.deleted for r in rest)
        for r in rest:
            await h.outcome(r.new_seq)
        assert await store.count() == 0

        # nothing lost: every payload that was dead-lettered was finally acked with its headers
        acked = {(s, d) for s, d, _, _ in sorter.acked}
        assert {
            ("dqb.a.raw", b"bad raw"),
            ("dqb.b.1", b"bad with id"),
            ("dqb.a.2", b"tenant later fixed"),
        } <= acked
        globex = [hd for s, _, hd, _ in sorter.acked if s == "dqb.b.1"]
        assert globex and all(hd["tenant_id"] == "globex" for hd in globex)


async def test_replay_of_a_still_failing_message_does_not_loop(nats_server) -> None:
    sorter = Sorter("DQC")
    async with running_host(("sorter", sorter), server=nats_server, config=dlq_toml("c")) as h:
        await publish_all(h, [("dqc.a.1", b"bad", {})])
        store = store_of(h)
        letters = await store.select()
        results = await store.replay(letters, h.host.publisher, new_msg_id=True)
        assert [r.status for r in results] == ["replayed"]
        # the replay fails again and becomes a new dead letter; the old one is gone
        await h.outcome(results[0].new_seq)
        again = await wait_until(store.select)
        assert len(again) == 1 and again[0].seq > letters[0].seq
        assert again[0].original_seq == results[0].new_seq


async def test_purge_by_consumer_and_reason(nats_server) -> None:
    sorter = Sorter("DQD")
    async with running_host(("sorter", sorter), server=nats_server, config=dlq_toml("d")) as h:
        await publish_all(
            h,
            [
                ("dqd.a.1", b"bad", {}),
                ("dqd.a.2", b"tenant", {}),
                ("dqd.b.1", b"bad", {}),
                ("dqd.b.2", b"tenant", {}),
                ("dqd.b.3", b"bad", {}),
            ],
        )
        store = store_of(h)
        assert await store.count() == 5
        purged = await store.purge(Selection(reason="tenant_not_allowed"))
        assert purged.deleted == 2 and len(purged.seqs) == 2
        assert {d.reason for d in await store.select()} == {"invalid_payload"}
        assert (await store.purge(Selection(consumer="DQD/beta"))).deleted == 2
        assert [(d.consumer, d.reason) for d in await store.select()] == [
            ("alpha", "invalid_payload")
        ]
        assert (await store.purge()).deleted == 1
        assert await store.count() == 0


# --- the CLI -----------------------------------------------------------------------------------


def cli_config(tmp_path: Path, url: str, name: str) -> Path:
    path = tmp_path / "jetplug.toml"
    path.write_text(f'[nats]\nservers = ["{url}"]\n\n{dlq_toml(name)}')
    return path


async def jetplug(config: Path, *args: str, stdin: bytes = b"") -> tuple[int, str, str]:
    """Run the real `jetplug` console script; return (exit code, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JETPLUG_")}
    proc = await asyncio.create_subprocess_exec(
        str(JETPLUG),
        "--log-level",
        "warning",
        *args,
        "-c",
        str(config),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=config.parent,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), 30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def cli_setup(h: HostHarness, prefix: str) -> tuple[list[int], list[int]]:
    """Three dead letters: alpha invalid_payload, alpha tenant_not_allowed, beta invalid_payload.

    Returns (original stream sequences, DLQ sequences).
    """
    seqs = await publish_all(
        h,
        [
            (f"{prefix}.a.1", b"bad one", {"tenant_id": "acme"}),
            (f"{prefix}.a.2", b"tenant nine", {}),
            (f"{prefix}.b.1", b"bad two " + b"y" * 10, {}),
        ],
    )
    return seqs, [d.seq for d in await store_of(h).select()]


async def test_cli_list_and_show(nats_server, tmp_path) -> None:
    sorter = Sorter("DQE")
    config = cli_config(tmp_path, nats_server.url, "e")
    async with running_host(("sorter", sorter), server=nats_server, config=dlq_toml("e")) as h:
        seqs, dlq_seqs = await cli_setup(h, "dqe")

        # read-only commands: run them side by side
        first = str(dlq_seqs[0])
        runs = await asyncio.gather(
            jetplug(config, "dlq", "list"),
            jetplug(config, "dlq", "list", "--json", "--consumer", "beta"),
            jetplug(config, "dlq", "list", "--json", "--reason", "tenant_not_allowed"),
            jetplug(config, "dlq", "list", "--limit", "1"),
            jetplug(config, "dlq", "show", first),
            jetplug(config, "dlq", "show", first, "--json"),
            jetplug(config, "dlq", "show", "9999"),
        )
        table, by_consumer, by_reason, limited, show, show_json, unknown = runs
        for code, _, err in runs[:-1]:
            assert code == 0, err

        lines = table[1].splitlines()
        header = "SEQ TIME CONSUMER REASON SUBJECT ORIG_SEQ DELIVERIES ERROR"
        assert lines[0].split() == header.split()
        assert len(lines) == 4
        assert lines[1].split()[0] == first
        assert "DQE/alpha" in lines[1] and "invalid_payload" in lines[1] and "dqe.a.1" in lines[1]
        assert str(seqs[0]) in lines[1].split() and "field x: missing" in lines[1]

        items = json.loads(by_consumer[1])
        assert [i["original_seq"] for i in items] == [seqs[2]]
        assert tuple(items[0]) == SUMMARY_KEYS and items[0]["error"] == "field x: missing"
        assert [i["original_subject"] for i in json.loads(by_reason[1])] == ["dqe.a.2"]
        assert len(limited[1].splitlines()) == 3 and "use --limit 0" in limited[1]

        assert "Jetplug-Dlq-Reason: invalid_payload" in show[1]
        assert "tenant_id: acme" in show[1] and show[1].rstrip().endswith("bad one")
        detail = json.loads(show_json[1])
        assert tuple(detail) == DETAIL_KEYS and detail["data"] == "bad one"
        code, _, err = unknown
        assert code == 1 and "no dead letter with sequence 9999" in err and "Traceback" not in err


async def test_cli_replay_and_purge(nats_server, tmp_path) -> None:
    sorter = Sorter("DQF")
    config = cli_config(tmp_path, nats_server.url, "f")
    async with running_host(("sorter", sorter), server=nats_server, config=dlq_toml("f")) as h:
        _, dlq_seqs = await cli_setup(h, "dqf")
        store = store_of(h)

        # dry run: prints, changes nothing
        before = await stream_last_seq(h, "DQF")
        code, out, err = await jetplug(config, "dlq", "replay", "--consumer", "alpha", "--dry-run")
        assert code == 0, err
        assert out.count("would replay") == 2 and "dqf.a.1" in out and "dqf.a.2" in out
        assert await stream_last_seq(h, "DQF") == before and await store.count() == 3
        code, _, err = await jetplug(config, "dlq", "replay")
        assert code == 2 and "nothing selected" in err

        # the original msg-id is still remembered: duplicate, kept, exit 1
        sorter.accept = True
        code, out, err = await jetplug(config, "dlq", "replay", "--seq", str(dlq_seqs[0]))
        assert code == 1 and "DUPLICATE" in out and await store.count() == 3
        code, out, err = await jetplug(
            config, "dlq", "replay", "--seq", str(dlq_seqs[0]), "--new-msg-id", "--json"
        )
        assert code == 0, err
        (result,) = json.loads(out)
        assert tuple(result) == REPLAY_KEYS and result["status"] == "replayed" and result["deleted"]
        handled = await h.outcome(result["new_seq"])
        assert handled.outcome == "ack"
        assert next(a for a in sorter.acked if a[3] == result["new_seq"])[:2] == (
            "dqf.a.1",
            b"bad one",
        )
        assert await store.count() == 2

        # purge: refused without confirmation, then by reason, then everything
        code, out, err = await jetplug(
            config, "dlq", "purge", "--reason", "invalid_payload", stdin=b"n\n"
        )
        assert code == 130 and await store.count() == 2
        code, out, err = await jetplug(
            config, "dlq", "purge", "--reason", "invalid_payload", "--yes"
        )
        assert code == 0 and "deleted 1 dead letter(s)" in out
        assert [d.reason for d in await store.select()] == ["tenant_not_allowed"]
        code, out, err = await jetplug(config, "dlq", "purge", "--json", stdin=b"y\n")
        assert code == 0, err
        assert "Delete every dead letter in DLQ_f (1)?" in out
        assert json.loads(out[out.index("{") :]) == {"deleted": 1} and await store.count() == 0


async def test_cli_without_dead_letters(nats_server, tmp_path) -> None:
    config = cli_config(tmp_path, nats_server.url, "never")
    code, out, err = await jetplug(config, "dlq", "list")
    assert code == 1
    assert "dead-letter stream 'DLQ_never' does not exist" in err and "Traceback" not in err
    async with running_host(server=nats_server, config=dlq_toml("never")):
        pass  # provisions the (empty) DLQ stream
    code, out, err = await jetplug(config, "dlq", "list")
    assert code == 0 and out.strip() == "no dead letters", err
