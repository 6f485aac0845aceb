"""Declared streams and consumers versus the server: plan, apply, verify.

``manage`` creates what is missing and updates what changed; a change the server cannot apply
(an immutable field) stops startup with a message naming the target, field, current and wanted
value. ``verify`` computes the same plan and refuses to start on any difference. ``off`` trusts
the server. ``jetplug streams plan`` prints the plan; ``jetplug streams apply`` applies it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ProvisioningError
from ..events import Event, ProvisioningDrift
from ..types import ConsumerSpec, KeyValueSpec, StreamSpec
from .jsapi import ApiError, JsApi

NS = 1_000_000_000

#: fields the server refuses to change on an existing stream / consumer (``retention`` only
#: to or from ``workqueue``: limits <-> interest is allowed)
IMMUTABLE_STREAM = frozenset({"storage", "retention"})
IMMUTABLE_CONSUMER = frozenset(
    {"deliver_policy", "ack_policy", "replay_policy", "deliver_subject", "mode"}
)


def _stream_field_immutable(key: str, current: Any, wanted: Any) -> bool:
    if key == "retention":
        return "workqueue" in (current, wanted)
    return key in IMMUTABLE_STREAM


def stream_config(spec: StreamSpec) -> dict[str, Any]:
    """The server JSON for a declared stream.

    The duplicate window is capped at ``max_age`` (the server refuses a longer one, and keeps a
    message id no longer than the message itself anyway).
    """
    window = min(spec.duplicate_window, spec.max_age) if spec.max_age > 0 else spec.duplicate_window
    cfg: dict[str, Any] = {
        "name": spec.name,
        "subjects": list(spec.subjects),
        "storage": spec.storage,
        "num_replicas": spec.replicas,
        "retention": spec.retention,
        "max_age": int(spec.max_age * NS),
        "max_msgs": spec.max_msgs,
        "max_bytes": spec.max_bytes,
        "max_msg_size": spec.max_msg_size,
        "duplicate_window": int(window * NS),
        "discard": spec.discard,
    }
    if spec.description:
        cfg["description"] = spec.description
    return cfg


def kv_stream_config(spec: KeyValueSpec) -> dict[str, Any]:
    """The server JSON of the stream behind a key-value bucket (``KV_<bucket>``)."""
    cfg: dict[str, Any] = {
        "name": f"KV_{spec.bucket}",
        "subjects": [f"$KV.{spec.bucket}.>"],
        "storage": spec.storage,
        "num_replicas": spec.replicas,
        "retention": "limits",
        "max_age": int(spec.ttl * NS),
        "max_msgs_per_subject": spec.history,
        "max_msgs": -1,
        "max_bytes": -1,
        "max_msg_size": -1,
        "discard": "new",
        "allow_rollup_hdrs": True,
        "deny_delete": True,
        "allow_direct": True,
        "duplicate_window": int(min(spec.ttl, 120.0) * NS) if spec.ttl else 120 * NS,
    }
    if spec.description:
        cfg["description"] = spec.description
    return cfg


def deliver_subject(spec: ConsumerSpec) -> str:
    """The deliver subject of a push consumer: stable, so every host of a group shares it."""
    return f"jetplug.deliver.{spec.stream}.{spec.durable}"


def consumer_config(spec: ConsumerSpec) -> dict[str, Any]:
    """The server JSON for a declared consumer.

    ``max_ack_pending`` is the in-flight budget, so the server never hands out more than the host
    will work on. No ``backoff`` list: the host applies retry delays as nak delays.
    """
    cfg: dict[str, Any] = {
        "durable_name": spec.durable,
        "ack_policy": "explicit",
        "ack_wait": int(spec.ack_wait * NS),
        "max_deliver": spec.max_deliver,
        "max_ack_pending": spec.in_flight,
        "deliver_policy": spec.deliver_policy,
        "replay_policy": "instant",
    }
    if len(spec.filter_subjects) == 1:
        cfg["filter_subject"] = spec.filter_subjects[0]
    elif spec.filter_subjects:
        cfg["filter_subjects"] = list(spec.filter_subjects)
    if spec.mode == "push":
        cfg["deliver_subject"] = deliver_subject(spec)
        if spec.deliver_group:
            cfg["deliver_group"] = spec.deliver_group
    if spec.description:
        cfg["description"] = spec.description
    return cfg


@dataclass(frozen=True)
class FieldDiff:
    """One field whose server value differs from the declaration."""

    field: str
    current: Any
    wanted: Any
    immutable: bool = False

    def __str__(self) -> str:
        mark = " (immutable: the server cannot change it)" if self.immutable else ""
        return f"{self.field}: {_fmt(self.current)} -> {_fmt(self.wanted)}{mark}"


@dataclass
class Change:
    """What provisioning would do for one stream or consumer."""

    kind: Literal["stream", "consumer"]
    target: str
    action: Literal["create", "update", "none"]
    config: dict[str, Any]
    stream: str = ""
    diffs: list[FieldDiff] = field(default_factory=list)
    owner: str = ""

    @property
    def blocked(self) -> list[FieldDiff]:
        """Diffs the server cannot apply."""
        return [d for d in self.diffs if d.immutable]

    def describe(self) -> str:
        """One human line (plus one line per diff) for ``streams plan``."""
        head = {"create": "+ create", "update": "~ update", "none": "= keep"}[self.action]
        owner = f"  (declared by {self.owner})" if self.owner else ""
        lines = [f"{head} {self.kind} {self.target}{owner}"]
        lines += [f"    {d}" for d in self.diffs]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for ``streams plan --json``."""
        return {
            "kind": self.kind,
            "target": self.target,
            "action": self.action,
            "owner": self.owner,
            "diffs": [
                {
                    "field": d.field,
                    "current": d.current,
                    "wanted": d.wanted,
                    "immutable": d.immutable,
                }
                for d in self.diffs
            ],
        }


def _fmt(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def _norm_filters(cfg: dict[str, Any]) -> list[str]:
    if cfg.get("filter_subjects"):
        return sorted(cfg["filter_subjects"])
    if cfg.get("filter_subject"):
        return [cfg["filter_subject"]]
    return []


def diff_stream(current: dict[str, Any], wanted: dict[str, Any]) -> list[FieldDiff]:
    """Fields of ``wanted`` whose value on the server differs."""
    diffs = []
    for key, value in wanted.items():
        have = current.get(key)
        if key == "subjects":
            if sorted(have or []) != sorted(value):
                diffs.append(FieldDiff(key, have or [], value))
            continue
        if key == "description" and not value and not have:
            continue
        if have != value:
            diffs.append(FieldDiff(key, have, value, _stream_field_immutable(key, have, value)))
    return diffs


def diff_consumer(current: dict[str, Any], wanted: dict[str, Any]) -> list[FieldDiff]:
    """Fields of ``wanted`` whose value on the server differs (filter subjects compared as sets)."""
    diffs = []
    cur_mode = "push" if current.get("deliver_subject") else "pull"
    want_mode = "push" if wanted.get("deliver_subject") else "pull"
    if cur_mode != want_mode:
        diffs.append(FieldDiff("mode", cur_mode, want_mode, True))
    if _norm_filters(current) != _norm_filters(wanted):
        diffs.append(FieldDiff("filter_subjects", _norm_filters(current), _norm_filters(wanted)))
    for key, value in wanted.items():
        if key in ("filter_subject", "filter_subjects", "durable_name"):
            continue
        if key == "deliver_subject" and cur_mode != want_mode:
            continue
        have = current.get(key)
        if have != value:
            immutable = key in IMMUTABLE_CONSUMER or key == "deliver_group"
            diffs.append(FieldDiff(key, have, value, immutable))
    for key in ("deliver_group",):
        if key in current and key not in wanted:
            diffs.append(FieldDiff(key, current[key], None, True))
    return diffs


@dataclass
class Declarations:
    """Everything plugins declared, with owners; built and checked by :func:`collect`."""

    streams: list[tuple[str, StreamSpec]] = field(default_factory=list)
    consumers: list[ConsumerSpec] = field(default_factory=list)
    buckets: list[tuple[str, KeyValueSpec]] = field(default_factory=list)


def collect(
    streams: Iterable[tuple[str, StreamSpec]],
    consumers: Iterable[tuple[str, ConsumerSpec]],
    buckets: Iterable[tuple[str, KeyValueSpec]] = (),
) -> Declarations:
    """Merge declarations; conflicting ones raise a StartupError naming both plugins."""
    from dataclasses import replace

    problems: list[str] = []
    seen_streams: dict[str, tuple[str, StreamSpec]] = {}
    out = Declarations()
    for owner, s in streams:
        prev = seen_streams.get(s.name)
        if prev is None:
            seen_streams[s.name] = (owner, s)
            out.streams.append((owner, s))
        elif prev[1] != s:
            problems.append(
                f"stream {s.name!r} is declared differently by plugins {prev[0]!r} and {owner!r}"
            )
    seen_consumers: dict[str, ConsumerSpec] = {}
    for owner, c in consumers:
        c = replace(c, owner=owner)
        prev_c = seen_consumers.get(c.key)
        if prev_c is not None:
            problems.append(
                f"consumer {c.durable!r} on stream {c.stream!r} is declared by both "
                f"{prev_c.owner!r} and {owner!r}; a consumer has one owner"
            )
            continue
        seen_consumers[c.key] = c
        out.consumers.append(c)
        problems.extend(check_consumer(c))
    seen_buckets: dict[str, tuple[str, KeyValueSpec]] = {}
    for owner, b in buckets:
        prev_b = seen_buckets.get(b.bucket)
        if prev_b is None:
            seen_buckets[b.bucket] = (owner, b)
            out.buckets.append((owner, b))
        elif prev_b[1] != b:
            problems.append(
                f"key-value bucket {b.bucket!r} is declared differently by {prev_b[0]!r} "
                f"and {owner!r}"
            )
    if problems:
        listing = "\n".join(f"  - {p}" for p in problems)
        raise ProvisioningError("declarations conflict:\n" + listing)
    return out


#: shortest interval between two in-progress heartbeats the host will keep up with
MIN_PROGRESS_INTERVAL = 0.1


def check_consumer(c: ConsumerSpec) -> list[str]:
    """Rules a consumer declaration must follow before anything is sent to a server."""
    where = f"consumer {c.stream}/{c.durable} (plugin {c.owner!r})"
    problems = []
    if c.in_flight < 1:
        problems.append(f"{where}: in_flight must be >= 1, got {c.in_flight}")
    if c.max_deliver < 1:
        problems.append(f"{where}: max_deliver must be >= 1, got {c.max_deliver}")
    if c.ack_wait <= 0:
        problems.append(f"{where}: ack_wait must be > 0, got {c.ack_wait}")
    if not 0 < c.progress_fraction < 1:
        problems.append(
            f"{where}: progress_fraction must be between 0 and 1, got {c.progress_fraction}"
        )
    elif c.ack_wait > 0 and c.ack_wait * c.progress_fraction < MIN_PROGRESS_INTERVAL:
        # every fetched message is handed to a handler at once (the budget is also the server's
        # max_ack_pending), so only a running handler can outlive ack_wait, and in-progress
        # covers it: that keep-alive needs room to run before the server redelivers
        problems.append(
            f"{where}: ack_wait {c.ack_wait:g}s x progress_fraction {c.progress_fraction:g} leaves "
            f"less than {MIN_PROGRESS_INTERVAL:g}s between in-progress heartbeats; raise ack_wait"
        )
    if c.deliver_group and c.mode != "push":
        problems.append(f"{where}: deliver_group needs mode = 'push'")
    if any(d < 0 for d in c.retry_delays):
        problems.append(f"{where}: retry_delays must not be negative")
    return problems


async def plan(
    api: JsApi,
    decl: Declarations,
    extra_streams: Iterable[tuple[str, dict[str, Any]]] = (),
) -> list[Change]:
    """Compare every declaration with the server; nothing is changed."""
    changes: list[Change] = []
    wanted_streams = [(o, stream_config(s)) for o, s in decl.streams]
    wanted_streams += [(o, kv_stream_config(b)) for o, b in decl.buckets]
    wanted_streams += list(extra_streams)
    for owner, cfg in wanted_streams:
        try:
            info = await api.stream_info(cfg["name"])
        except ApiError as exc:
            if not exc.not_found:
                raise
            changes.append(Change("stream", cfg["name"], "create", cfg, owner=owner))
            continue
        diffs = diff_stream(info["config"], cfg)
        action: Literal["update", "none"] = "update" if diffs else "none"
        changes.append(Change("stream", cfg["name"], action, cfg, diffs=diffs, owner=owner))
    for c in decl.consumers:
        cfg = consumer_config(c)
        target = f"{c.stream}/{c.durable}"
        try:
            info = await api.consumer_info(c.stream, c.durable)
        except ApiError as exc:
            if not exc.not_found:
                raise
            changes.append(
                Change("consumer", target, "create", cfg, stream=c.stream, owner=c.owner)
            )
            continue
        diffs = diff_consumer(info["config"], cfg)
        changes.append(
            Change(
                "consumer",
                target,
                "update" if diffs else "none",
                cfg,
                stream=c.stream,
                diffs=diffs,
                owner=c.owner,
            )
        )
    return changes


def blocked_message(changes: Iterable[Change]) -> str | None:
    """A startup error text listing every immutable change, or None if there is none."""
    lines = [
        f"  - {ch.kind} {ch.target}: {d.field} is {_fmt(d.current)} on the server, declared "
        f"{_fmt(d.wanted)}; the server cannot change it (delete and re-create the {ch.kind}, "
        "or keep the old value)"
        for ch in changes
        for d in ch.blocked
    ]
    if not lines:
        return None
    return "declared JetStream configuration cannot be applied:\n" + "\n".join(lines)


async def apply(api: JsApi, changes: Iterable[Change]) -> list[Change]:
    """Create and update as planned; immutable diffs raise before anything is changed."""
    changes = list(changes)
    blocked = blocked_message(changes)
    if blocked:
        raise ProvisioningError(blocked)
    done = []
    for ch in changes:
        if ch.action == "none":
            continue
        try:
            if ch.kind == "stream":
                if ch.action == "create":
                    await api.create_stream(ch.config)
                else:
                    await api.update_stream(ch.config)
            else:
                await api.create_consumer(ch.stream, ch.config, action=ch.action)
        except ApiError as exc:
            what = ", ".join(str(d) for d in ch.diffs) or "new"
            raise ProvisioningError(
                f"server refused to {ch.action} {ch.kind} {ch.target} ({what}): {exc.description} "
                f"(err_code {exc.err_code})"
            ) from None
        done.append(ch)
    return done


async def provision(
    api: JsApi,
    mode: str,
    decl: Declarations,
    emit: Callable[[Event], None],
    extra_streams: Iterable[tuple[str, dict[str, Any]]] = (),
) -> list[Change]:
    """Run provisioning in ``mode`` (manage / verify / off) and report drift as events."""
    if mode == "off":
        return []
    changes = await plan(api, decl, extra_streams)
    applying = mode == "manage"
    for ch in changes:
        for d in ch.diffs:
            emit(
                ProvisioningDrift(
                    kind=ch.kind,
                    target=ch.target,
                    field_name=d.field,
                    current=_fmt(d.current),
                    wanted=_fmt(d.wanted),
                    applied=applying and not d.immutable,
                )
            )
    if applying:
        await apply(api, changes)
        return changes
    pending = [ch for ch in changes if ch.action != "none"]
    if pending:
        raise ProvisioningError(
            "[jetstream] provision = 'verify' and the server differs from the declarations "
            "(run `jetplug streams plan` to see, `jetplug streams apply` to fix):\n"
            + "\n".join(ch.describe() for ch in pending)
        )
    return changes
