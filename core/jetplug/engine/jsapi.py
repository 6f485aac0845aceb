"""Thin requests to the JetStream API (``$JS.API.*``) with typed errors.

Provisioning and the operations CLI need the exact server JSON (to diff and to show it), so they
talk to the API directly instead of through nats-py's dataclasses.
"""

from __future__ import annotations

import json
from typing import Any

from nats.aio.client import Client as NATS

NOT_FOUND_STREAM = 10059
NOT_FOUND_CONSUMER = 10014
NOT_FOUND_MESSAGE = 10037


class ApiError(Exception):
    """The server answered a JetStream API request with an error."""

    def __init__(self, subject: str, code: int, err_code: int, description: str) -> None:
        self.subject = subject
        self.code = code
        self.err_code = err_code
        self.description = description
        super().__init__(f"{description} (code {code}, err_code {err_code})")

    @property
    def not_found(self) -> bool:
        """True when the stream, consumer or message does not exist."""
        return self.code == 404 or self.err_code in (
            NOT_FOUND_STREAM,
            NOT_FOUND_CONSUMER,
            NOT_FOUND_MESSAGE,
        )


class JsApi:
    """Request/response calls on ``$JS.API`` (or ``$JS.<domain>.API``)."""

    def __init__(self, nc: NATS, domain: str = "", timeout: float = 5.0) -> None:
        self.nc = nc
        self.prefix = f"$JS.{domain}.API" if domain else "$JS.API"
        self.timeout = timeout

    async def request(self, suffix: str, payload: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send one API request; return the JSON answer or raise :class:`ApiError`."""
        subject = f"{self.prefix}.{suffix}"
        body = json.dumps(payload).encode() if payload is not None else b""
        try:
            msg = await self.nc.request(subject, body, timeout=self.timeout)
        except Exception as exc:
            name = type(exc).__name__
            if "NoResponders" in name:
                raise ApiError(
                    subject, 503, 0, "JetStream is not enabled or not available"
                ) from None
            raise
        answer: dict[str, Any] = json.loads(msg.data) if msg.data else {}
        err = answer.get("error")
        if err:
            raise ApiError(
                subject,
                int(err.get("code", 0)),
                int(err.get("err_code", 0)),
                str(err.get("description", "")),
            )
        return answer

    async def account_info(self) -> dict[str, Any]:
        """Account limits and usage; fails when JetStream is off."""
        return await self.request("INFO")

    async def stream_info(self, name: str, subjects_filter: str = "") -> dict[str, Any]:
        """``STREAM.INFO``: config and state of one stream.

        With ``subjects_filter``, ``state["subjects"]`` maps each matching subject to its count.
        """
        payload = {"subjects_filter": subjects_filter} if subjects_filter else None
        return await self.request(f"STREAM.INFO.{name}", payload)

    async def stream_names(self, subject: str = "") -> list[str]:
        """Names of streams, optionally only those that store ``subject``."""
        names: list[str] = []
        offset = 0
        while True:
            payload: dict[str, Any] = {"offset": offset}
            if subject:
                payload["subject"] = subject
            answer = await self.request("STREAM.NAMES", payload)
            page = answer.get("streams") or []
            names.extend(page)
            offset += len(page)
            if not page or offset >= int(answer.get("total", 0)):
                return names

    async def create_stream(self, config: dict[str, Any]) -> dict[str, Any]:
        """``STREAM.CREATE``."""
        return await self.request(f"STREAM.CREATE.{config['name']}", config)

    async def update_stream(self, config: dict[str, Any]) -> dict[str, Any]:
        """``STREAM.UPDATE``."""
        return await self.request(f"STREAM.UPDATE.{config['name']}", config)

    async def purge_stream(self, name: str, subject: str = "", before_seq: int = 0) -> int:
        """``STREAM.PURGE``; returns how many messages were removed.

        :param subject: only messages on this subject (wildcards allowed).
        :param before_seq: only messages with a sequence below this one (0 = all).
        """
        payload: dict[str, Any] = {}
        if subject:
            payload["filter"] = subject
        if before_seq:
            payload["seq"] = before_seq
        answer = await self.request(f"STREAM.PURGE.{name}", payload or None)
        return int(answer.get("purged", 0))

    async def consumer_info(self, stream: str, durable: str) -> dict[str, Any]:
        """``CONSUMER.INFO``: config and state of one consumer."""
        return await self.request(f"CONSUMER.INFO.{stream}.{durable}")

    async def create_consumer(
        self, stream: str, config: dict[str, Any], action: str = ""
    ) -> dict[str, Any]:
        """``CONSUMER.CREATE`` of a durable (``action`` = ``create``/``update``/"" for either)."""
        payload: dict[str, Any] = {"stream_name": stream, "config": config}
        if action:
            payload["action"] = action
        return await self.request(f"CONSUMER.CREATE.{stream}.{config['durable_name']}", payload)

    async def delete_consumer(self, stream: str, durable: str) -> None:
        """``CONSUMER.DELETE``."""
        await self.request(f"CONSUMER.DELETE.{stream}.{durable}")

    async def get_message(self, stream: str, seq: int) -> dict[str, Any]:
        """``STREAM.MSG.GET`` by sequence.

        :return: ``{"subject", "seq", "data" (base64), "hdrs" (base64), "time"}``.
        """
        answer = await self.request(f"STREAM.MSG.GET.{stream}", {"seq": seq})
        message: dict[str, Any] = answer["message"]
        return message

    async def next_message(self, stream: str, seq: int, subject: str = "") -> dict[str, Any]:
        """The first message at or after ``seq`` (optionally matching ``subject``)."""
        payload: dict[str, Any] = {"seq": seq, "next_by_subj": subject or ">"}
        answer = await self.request(f"STREAM.MSG.GET.{stream}", payload)
        message: dict[str, Any] = answer["message"]
        return message

    async def delete_message(self, stream: str, seq: int) -> None:
        """``STREAM.MSG.DELETE`` (no erase)."""
        await self.request(f"STREAM.MSG.DELETE.{stream}", {"seq": seq, "no_erase": True})
