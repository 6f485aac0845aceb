"""The typed model of the core configuration (``[host]``, ``[nats]``, ``[jetstream]``, ``[http]``).

Every field here appears in ``jetplug config schema`` and in docs/configuration.md. Plugins
contribute the models of their own ``[plugins.<name>]`` tables through ``register_config_schema``.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]


class Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Base of every config table: unknown keys are errors."""


class HostSettings(Section):
    """``[host]``: the process itself."""

    #: directory for everything the host keeps on disk (embedded server store, ...)
    data_dir: str = ".jetplug"
    #: allowlist of plugin names to enable; empty means every installed plugin
    plugins: list[str] = msgspec.field(default_factory=list)
    #: seconds to let in-flight handlers finish after SIGTERM before leaving them to redelivery
    shutdown_timeout: PositiveFloat = 10.0
    #: level of every logger unless set per logger (the CLI's --log-level wins)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    #: text for people, json (one object per line) for machines (the CLI's --log-format wins)
    log_format: Literal["text", "json"] = "text"
    #: per-logger levels that override log_level,
    #: e.g. {"jetplug.consumer" = "debug", "nats" = "error"}
    log_levels: dict[str, Literal["debug", "info", "warning", "error", "critical"]] = msgspec.field(
        default_factory=dict
    )


class TlsSettings(Section):
    """``[nats.tls]``: TLS towards the NATS servers."""

    #: use TLS (implied by a tls:// server URL or by setting ca or cert)
    enabled: bool = False
    #: CA bundle that signed the server certificate; system trust store when empty
    ca: str = ""
    #: client certificate and key, for servers that require mutual TLS
    cert: str = ""
    #: private key of the client certificate
    key: str = ""
    #: verify the server certificate and hostname; turning it off is for throwaway setups only
    verify: bool = True
    #: name to check the server certificate against when it differs from the URL host
    hostname: str = ""
    #: start TLS before the server's INFO (server option ``handshake_first``)
    handshake_first: bool = False


class AuthSettings(Section):
    """``[nats.auth]``: at most one way to authenticate.

    Secrets can come from files (``token_file``, ``password_file``) or environment variables
    (``JETPLUG_NATS__AUTH__TOKEN``) so that none needs to sit in the TOML.
    """

    #: token authentication (a secret: prefer token_file or the environment)
    token: str = ""
    #: file whose content is the token
    token_file: str = ""
    #: user name for user/password authentication
    user: str = ""
    #: password of ``user`` (a secret: prefer password_file or the environment)
    password: str = ""
    #: file whose content is the password
    password_file: str = ""
    #: file holding an nkey user seed (``SU...``)
    nkey_seed_file: str = ""
    #: decentralized-auth credentials file (JWT + seed)
    creds_file: str = ""


class NatsSettings(Section):
    """``[nats]``: the connection."""

    #: server URLs; empty starts an embedded nats-server on loopback
    servers: list[str] = msgspec.field(default_factory=list)
    #: connection name, shown in the server's monitoring
    name: str = "jetplug"
    #: seconds for the first connect to succeed before a clear error (never a hang)
    connect_timeout: PositiveFloat = 5.0
    #: reconnect attempts after a lost connection; -1 retries for ever, 0 does not reconnect
    reconnect_attempts: Annotated[int, msgspec.Meta(ge=-1)] = -1
    #: seconds between reconnect attempts to the same server
    reconnect_wait: NonNegativeFloat = 0.25
    #: random extra wait added to each reconnect wait, in seconds
    reconnect_jitter: NonNegativeFloat = 0.1
    #: seconds between client pings; a dead connection is noticed after max_outstanding_pings
    ping_interval: PositiveFloat = 20.0
    #: unanswered pings before the connection counts as lost
    max_outstanding_pings: Annotated[int, msgspec.Meta(ge=1)] = 3
    tls: TlsSettings = msgspec.field(default_factory=TlsSettings)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)


class EmbeddedSettings(Section):
    """``[embedded]``: the nats-server the host starts when ``nats.servers`` is empty."""

    #: client port on 127.0.0.1; 0 picks a free one
    port: Port = 0
    #: monitoring port on 127.0.0.1; 0 disables it
    http_port: Port = 0
    #: fsync every write before the pub-ack (slower, survives power loss)
    sync_always: bool = False


class DlqSettings(Section):
    """``[jetstream.dlq]``: the dead-letter stream the host owns."""

    #: copy terminated and exhausted messages to the dead-letter stream
    enabled: bool = True
    #: name of the dead-letter stream
    stream: str = "JETPLUG_DLQ"
    #: dead letters are stored on <subject_prefix>.<stream>.<consumer>
    subject_prefix: str = "jetplug.dlq"
    #: seconds a dead letter is kept
    max_age: NonNegativeFloat = 14 * 24 * 3600.0


class JetStreamSettings(Section):
    """``[jetstream]``: how the host treats streams, consumers and publishes."""

    #: manage: create and update; verify: compare and refuse to start on drift;
    #: off: trust the server
    provision: Literal["manage", "verify", "off"] = "manage"
    #: JetStream domain, for leaf-node setups
    domain: str = ""
    #: seconds to wait for each pub-ack
    publish_timeout: PositiveFloat = 5.0
    #: attempts for a publish that times out (same msg-id each time); failures that come back
    #: at once (no responders during a leader election) are retried for as long as these could take
    publish_attempts: Annotated[int, msgspec.Meta(ge=1)] = 4
    #: first retry delay in seconds; doubles each attempt
    publish_retry_wait: NonNegativeFloat = 0.2
    #: cap of the doubling retry delay, in seconds
    publish_retry_max_wait: NonNegativeFloat = 2.0
    #: publishes in flight at once through the pipelined publisher
    publish_window: Annotated[int, msgspec.Meta(ge=1)] = 1024
    #: seconds one pull request stays open on the server before it is renewed
    pull_expires: PositiveFloat = 10.0
    #: seconds between the server's heartbeats on an idle pull request; 3 missed = stalled
    idle_heartbeat: PositiveFloat = 2.0
    dlq: DlqSettings = msgspec.field(default_factory=DlqSettings)


class HttpSettings(Section):
    """``[http]``: health and metrics endpoints."""

    #: serve /healthz, /readyz and /metrics
    enabled: bool = False
    #: address to listen on (loopback by default)
    host: str = "127.0.0.1"
    #: port to listen on; 0 picks a free one (``Host.http_port`` tells which)
    port: Port = 9222
    #: seconds between the stream/consumer info checks behind /readyz and the lag metrics
    check_interval: PositiveFloat = 5.0
    #: event-loop lag in seconds above which /healthz answers 503
    max_loop_lag: PositiveFloat = 2.0


class CoreSettings(Section):
    """The whole core configuration; ``plugins`` tables are validated by each plugin's model."""

    host: HostSettings = msgspec.field(default_factory=HostSettings)
    nats: NatsSettings = msgspec.field(default_factory=NatsSettings)
    embedded: EmbeddedSettings = msgspec.field(default_factory=EmbeddedSettings)
    jetstream: JetStreamSettings = msgspec.field(default_factory=JetStreamSettings)
    http: HttpSettings = msgspec.field(default_factory=HttpSettings)


#: keys whose values are secrets wherever they appear; redacted in ``config show`` and errors
SECRET_KEYS = frozenset({"token", "password", "seed", "secret", "api_key"})
