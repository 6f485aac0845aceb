"""The NATS connection: options from config, a fail-fast first connect, events for plugins.

nats-py hangs for ever in ``connect()`` after a TLS failure when reconnect is on
(nats-io/nats.py#718) and loops for ever on bad credentials with unlimited reconnects. So the
first connect is probed with reconnect off and a timeout, and its failure is explained in words a
user can act on. Only then is the long-lived connection opened with the configured reconnect
policy. Credentials are passed as options, never inside URLs, and never logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import random
import re
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import nats
import nats.errors
from nats.aio.client import Client as NATS

from .errors import ConnectError, ConnectionLostError
from .events import ConnectionChanged, Event
from .settings import NatsSettings

log = logging.getLogger("jetplug.connection")
#: TLS alerts a server sends when it does not accept the client certificate
_CLIENT_CERT_ALERTS = (
    "ALERT_UNKNOWN_CA",
    "ALERT_BAD_CERTIFICATE",
    "ALERT_CERTIFICATE_UNKNOWN",
    "ALERT_DECRYPT_ERROR",
    "ALERT_ACCESS_DENIED",
)
_PERMISSION = re.compile(r'permissions violation for publish to "([^"]+)"', re.IGNORECASE)


def redact_url(url: str) -> str:
    """The URL without user info, safe to log."""
    parts = urlsplit(url if "://" in url else f"nats://{url}")
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def wants_tls(settings: NatsSettings) -> bool:
    """True when ``[nats.tls]`` or a ``tls://`` server URL asks for TLS."""
    tls = settings.tls
    return (
        tls.enabled
        or tls.handshake_first
        or bool(tls.ca or tls.cert or tls.hostname)
        or any(s.startswith("tls://") for s in settings.servers)
    )


def tls_context(settings: NatsSettings) -> ssl.SSLContext | None:
    """The client SSL context for ``[nats.tls]``, or None when TLS is not configured.

    Files are checked here so a wrong path is named before any connection attempt.
    """
    tls = settings.tls
    if not wants_tls(settings):
        return None
    problems = []
    for key in ("ca", "cert", "key"):
        value = getattr(tls, key)
        if value and not Path(value).is_file():
            problems.append(f"nats.tls.{key}: file not found: {value}")
    if bool(tls.cert) != bool(tls.key):
        problems.append("nats.tls: set both cert and key for a client certificate, or neither")
    if problems:
        raise ConnectError("; ".join(problems))
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    try:
        if tls.ca:
            ctx.load_verify_locations(cafile=tls.ca)
        if tls.cert:
            ctx.load_cert_chain(certfile=tls.cert, keyfile=tls.key)
    except ssl.SSLError as exc:
        reason = exc.reason or exc
        raise ConnectError(f"nats.tls: cannot load certificate files: {reason}") from None
    if not tls.verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def auth_method(settings: NatsSettings) -> str:
    """The authentication the config selects: none, token, user, nkey or creds."""
    auth = settings.auth
    if auth.creds_file:
        return "creds"
    if auth.nkey_seed_file:
        return "nkey"
    if auth.user:
        return "user"
    if auth.token:
        return "token"
    return "none"


def connect_options(settings: NatsSettings, servers: list[str]) -> dict[str, Any]:
    """Keyword arguments for ``nats.connect`` (without callbacks) built from ``[nats]``."""
    auth = settings.auth
    chosen = [
        name
        for name, on in (
            ("token", bool(auth.token)),
            ("user/password", bool(auth.user)),
            ("nkey_seed_file", bool(auth.nkey_seed_file)),
            ("creds_file", bool(auth.creds_file)),
        )
        if on
    ]
    if len(chosen) > 1:
        raise ConnectError(f"nats.auth: choose one way to authenticate, got {' and '.join(chosen)}")
    if auth.password and not auth.user:
        raise ConnectError("nats.auth: password is set but user is empty")
    for key in ("nkey_seed_file", "creds_file"):
        value = getattr(auth, key)
        if value and not Path(value).is_file():
            raise ConnectError(f"nats.auth.{key}: file not found: {value}")
    opts: dict[str, Any] = {
        "servers": servers,
        "name": settings.name,
        "connect_timeout": settings.connect_timeout,
        # jitter per process: a fleet of hosts losing the same server spreads its reconnects
        "reconnect_time_wait": settings.reconnect_wait
        + random.uniform(0, settings.reconnect_jitter),
        # nats-py treats 0 like -1 (no limit); 0 here means "do not reconnect"
        "allow_reconnect": settings.reconnect_attempts != 0,
        "max_reconnect_attempts": settings.reconnect_attempts,
        "ping_interval": settings.ping_interval,
        "max_outstanding_pings": settings.max_outstanding_pings,
        "tls": tls_context(settings),
        "tls_handshake_first": settings.tls.handshake_first,
        # the host drains subscriptions itself; nats-py's drain would wait on pull buffers
        "drain_timeout": 5,
    }
    if settings.tls.hostname:
        opts["tls_hostname"] = settings.tls.hostname
    if auth.token:
        opts["token"] = auth.token
    if auth.user:
        opts["user"] = auth.user
        opts["password"] = auth.password
    if auth.nkey_seed_file:
        opts["nkeys_seed"] = auth.nkey_seed_file
    if auth.creds_file:
        opts["user_credentials"] = auth.creds_file
    return opts


def explain(exc: BaseException, settings: NatsSettings, server: str) -> str:
    """Turn a failed first connect into a message that says what to check (never a secret)."""
    where = redact_url(server)
    text = str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        if "Hostname mismatch" in text or "IP address mismatch" in text or exc.verify_code == 62:
            return (
                f"TLS to {where}: the server certificate is not valid for this host name; connect "
                "by a name in the certificate or set nats.tls.hostname to one"
            )
        ca = settings.tls.ca or "the system trust store"
        return (
            f"TLS to {where}: the server certificate is not trusted by {ca} "
            f"({exc.verify_message}); set nats.tls.ca to the CA that signed it"
        )
    if isinstance(exc, ssl.SSLError):
        if "CERTIFICATE_REQUIRED" in text.upper():
            return (
                f"TLS to {where}: the server requires a client certificate; set nats.tls.cert "
                "and nats.tls.key"
            )
        if any(alert in text.upper() for alert in _CLIENT_CERT_ALERTS):
            return (
                f"TLS to {where}: the server rejected the client certificate in nats.tls.cert "
                f"({exc.reason or text}); use a certificate signed by a CA the server trusts"
            )
        if "WRONG_VERSION_NUMBER" in text.upper() or "RECORD_LAYER" in text.upper():
            return (
                f"TLS to {where}: the server did not answer in TLS; check the port and whether the "
                "server expects TLS first (nats.tls.handshake_first)"
            )
        return f"TLS to {where} failed: {exc.reason or text}"
    refused = isinstance(exc, ConnectionRefusedError | nats.errors.NoServersError) or (
        isinstance(exc, OSError) and exc.errno in (errno.ECONNREFUSED,)
    )
    closed = isinstance(exc, ConnectionError | nats.errors.UnexpectedEOF) and not refused
    if closed and wants_tls(settings):
        # a TLS 1.3 server checks the client certificate after the client finished its side of
        # the handshake, so a rejection arrives as a reset, a broken pipe or an EOF
        if settings.tls.cert:
            return (
                f"TLS to {where}: the server closed the connection during the handshake; it most "
                "likely does not trust the client certificate in nats.tls.cert"
            )
        return (
            f"TLS to {where}: the server closed the connection during the handshake; it most "
            "likely requires a client certificate: set nats.tls.cert and nats.tls.key"
        )
    if "authorization violation" in text.lower() or isinstance(exc, nats.errors.AuthorizationError):
        method = auth_method(settings)
        hint = {
            "none": "the server requires authentication; configure [nats.auth]",
            "token": "the token was rejected; check nats.auth.token / token_file",
            "user": "user or password was rejected; check nats.auth.user and password",
            "nkey": "the nkey was rejected; check that nats.auth.nkey_seed_file holds the seed "
            "of a user the server knows",
            "creds": "the credentials were rejected; check nats.auth.creds_file",
        }[method]
        return f"authorization failed at {where}: {hint}"
    if "expecting info" in text.lower():
        hint = "check that it is a NATS client port"
        if not settings.tls.handshake_first:
            hint = (
                "if the server uses TLS handshake_first, set nats.tls.handshake_first = true; "
                "otherwise " + hint
            )
        return f"{where} closed the connection without a NATS greeting: {hint}"
    if "secure connection" in text.lower() or "tls required" in text.lower():
        return f"{where} requires TLS: set nats.tls.enabled = true (and nats.tls.ca if needed)"
    if refused:
        return f"nothing is listening at {where}: start nats-server or fix nats.servers"
    if isinstance(exc, asyncio.TimeoutError | TimeoutError | nats.errors.TimeoutError):
        hint = "check the address and firewalls"
        if wants_tls(settings) and not settings.tls.handshake_first:
            hint += (
                "; a server with TLS handshake_first waits for the client to start TLS: "
                "set nats.tls.handshake_first = true"
            )
        return (
            f"no answer from {where} within {settings.connect_timeout:g}s "
            f"(nats.connect_timeout): {hint}"
        )
    return f"cannot connect to {where}: {type(exc).__name__}: {text}"


class _DeadOnArrival(ConnectionResetError):
    """nats-py returned from connect() although the server had already closed the connection."""


async def _probe(settings: NatsSettings, server: str, opts: dict[str, Any]) -> None:
    """One connection attempt without reconnect; raises the error that ended it.

    nats-py takes ``max_reconnect_attempts=0`` as "no limit" and retries a refused TCP connect
    until the timeout, so the probe allows one retry without waiting and then reports the
    error its ``error_cb`` saw (not the bare NoServersError).
    """
    probe_opts = dict(
        opts,
        servers=[server],
        allow_reconnect=False,
        max_reconnect_attempts=1,
        reconnect_time_wait=0,
    )
    seen: list[Exception] = []

    async def record(exc: Exception) -> None:
        seen.append(exc)

    nc = NATS()
    try:
        await asyncio.wait_for(
            nc.connect(**probe_opts, error_cb=record), timeout=settings.connect_timeout + 1
        )
        if not nc.is_connected:
            # the server closed the socket right after the handshake (e.g. a TLS 1.3 server that
            # rejects the client certificate) and nats-py did not notice
            raise _DeadOnArrival("the server closed the connection right after connecting")
    except nats.errors.NoServersError:
        if seen:
            raise seen[-1] from None
        raise
    finally:
        await _discard(nc)


async def _discard(nc: NATS) -> None:
    """Close a probe or failed client without waiting on a broken TLS socket (nats.py#718)."""
    if nc.is_connected:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(nc.close(), timeout=2)
        return
    transport = getattr(nc, "_transport", None)
    if transport is not None:
        with contextlib.suppress(Exception):
            transport.close()


class Connection:
    """The host's connection: first connect, events, and the fatal "reconnect exhausted" signal."""

    def __init__(self, settings: NatsSettings, servers: list[str], emit: Callable[[Event], None]):
        self.settings = settings
        self.servers = servers
        self.emit = emit
        self.nc: NATS | None = None
        #: set with ConnectionLostError when reconnecting gave up
        self.lost: asyncio.Future[ConnectionLostError] | None = None
        self._closing = False
        #: increments on every reconnect; the engine drops messages fetched before it
        self.generation = 0
        self.reconnected = asyncio.Event()
        #: called (synchronously) after every reconnect, e.g. to re-issue pull requests
        self.on_reconnect: list[Callable[[], None]] = []
        self._denied: dict[str, str] = {}
        self._last_server = ""
        self._last_error: Exception | None = None

    @property
    def client(self) -> NATS:
        """The connected nats-py client."""
        assert self.nc is not None, "not connected"
        return self.nc

    async def connect(self) -> NATS:
        """Open the connection or raise ConnectError explaining why not (never hangs)."""
        opts = connect_options(self.settings, self.servers)
        failures = []
        for server in self.servers:
            try:
                await _probe(self.settings, server, opts)
                break
            except Exception as exc:  # noqa: BLE001 - every cause is explained below
                failures.append(explain(exc, self.settings, server))
        else:
            raise ConnectError("; ".join(failures))
        loop = asyncio.get_running_loop()
        self.lost = loop.create_future()
        nc = NATS()
        try:
            await asyncio.wait_for(
                nc.connect(
                    **opts,
                    error_cb=self._on_error,
                    disconnected_cb=self._on_disconnected,
                    reconnected_cb=self._on_reconnected,
                    closed_cb=self._on_closed,
                    lame_duck_mode_cb=self._on_lame_duck,
                ),
                timeout=self.settings.connect_timeout * 2 + 1,
            )
        except Exception as exc:  # noqa: BLE001
            # the server went away between the probe and now; do not leave a client reconnecting
            # (and calling our callbacks) in the background
            self._closing = True
            await _discard(nc)
            raise ConnectError(explain(exc, self.settings, self.servers[0])) from None
        self.nc = nc
        log.info("connected to %s", self._server())
        self.emit(ConnectionChanged(state="connected", detail=self._server()))
        return nc

    def _server(self) -> str:
        """The (redacted) server URL; while disconnected, the one last connected to."""
        nc = self.nc
        if nc is not None and nc.connected_url is not None:
            self._last_server = redact_url(nc.connected_url.geturl())
        return self._last_server

    def permission_denied(self, subject: str) -> str | None:
        """The server's permission error for publishing to ``subject``, if it reported one."""
        return self._denied.get(subject)

    async def _on_error(self, exc: Exception) -> None:
        detail = safe_error_text(exc)
        if not isinstance(exc, nats.errors.NoServersError):
            self._last_error = exc
        match = _PERMISSION.search(str(exc))
        if match:
            self._denied[match.group(1)] = f"permission denied: {match.group(0)}"
        log.warning("nats error: %s", detail)
        self.emit(ConnectionChanged(state="error", detail=detail))

    async def _on_disconnected(self) -> None:
        if self._closing:
            return
        log.warning("disconnected from NATS")
        self.reconnected.clear()
        self.emit(ConnectionChanged(state="disconnected", detail=self._server()))

    async def _on_reconnected(self) -> None:
        self.generation += 1
        self._last_error = None
        log.info("reconnected to %s", self._server())
        self.reconnected.set()
        self.emit(ConnectionChanged(state="reconnected", detail=self._server()))
        for callback in list(self.on_reconnect):
            try:
                callback()
            except Exception:
                log.exception("reconnect listener failed")

    async def _on_lame_duck(self) -> None:
        log.warning("server %s entered lame duck mode", self._server())
        self.emit(ConnectionChanged(state="lame_duck", detail=self._server()))

    async def _on_closed(self) -> None:
        self.emit(ConnectionChanged(state="closed", detail=self._server()))
        if not self._closing and self.lost is not None and not self.lost.done():
            attempts = self.settings.reconnect_attempts
            if attempts > 0:
                what = (
                    f"lost the connection to NATS and gave up after {attempts} reconnect "
                    "attempts (nats.reconnect_attempts)"
                )
            elif attempts == 0:
                what = (
                    "lost the connection to NATS; reconnecting is off (nats.reconnect_attempts = 0)"
                )
            else:
                what = "the connection to NATS was closed"
            # nats-py's own last_error is only "no servers available" once it gives up
            last = self._last_error or (self.nc.last_error if self.nc is not None else None)
            if last is not None:
                what += f"; last error: {safe_error_text(last)}"
            self.lost.set_result(
                ConnectionLostError(f"{what}; a supervisor should restart jetplug")
            )

    async def close(self) -> None:
        """Close the connection on purpose (no ConnectionLostError)."""
        self._closing = True
        if self.nc is not None and not self.nc.is_closed:
            try:
                await asyncio.wait_for(self.nc.close(), timeout=5)
            except Exception:  # closing must not fail the shutdown
                log.debug("close failed", exc_info=True)


def safe_error_text(exc: BaseException) -> str:
    """Error text without message payloads (nats-py puts the whole Msg repr in some errors)."""
    if isinstance(exc, nats.errors.MsgAlreadyAckdError):
        return "message was already acknowledged"
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:300]


__all__ = ["Connection", "auth_method", "connect_options", "explain", "redact_url", "tls_context"]
