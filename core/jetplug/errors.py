"""Error types with messages a user can act on.

Startup-class errors (config, plugin loading, connection, provisioning) are caught by the CLI and
shown as one clean message with a documented exit code; a traceback only with ``--traceback``.
"""

from __future__ import annotations

from collections.abc import Sequence


class JetplugError(Exception):
    """Base class of every error jetplug raises on purpose."""

    #: process exit code the CLI uses when this error ends a command
    exit_code = 1


class ConfigError(JetplugError):
    """The configuration is invalid; ``problems`` lists every problem found, each naming its key."""

    exit_code = 2

    def __init__(self, problems: Sequence[str], source: str | None = None) -> None:
        self.problems = list(problems)
        self.source = source
        where = f" in {source}" if source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        count = len(self.problems)
        noun = "problem" if count == 1 else "problems"
        super().__init__(f"configuration{where} has {count} {noun}:\n{lines}")


class UsageError(JetplugError):
    """A command-line argument is wrong (unknown plugin name, bad header syntax, ...)."""

    exit_code = 2


class PluginLoadError(JetplugError):
    """A plugin could not be imported or registered."""

    def __init__(
        self, name: str, distribution: str | None, version: str | None, cause: str
    ) -> None:
        self.name = name
        self.distribution = distribution
        self.version = version
        self.cause = cause
        dist = f"{distribution} {version}" if distribution else "unknown distribution"
        super().__init__(f"plugin {name!r} ({dist}) failed to load: {cause}")


class StartupError(JetplugError):
    """The host cannot start: a plugin refused, or declarations conflict."""


class ConnectError(JetplugError):
    """The first connection to NATS failed; the message says why and what to check."""

    exit_code = 3


class ConnectionLostError(JetplugError):
    """The connection was lost and reconnect attempts are exhausted."""

    exit_code = 3


class ProvisioningError(StartupError):
    """Declared streams or consumers do not match the server and cannot be made to."""


class PublishError(JetplugError):
    """A JetStream publish did not get a pub-ack.

    ``kind`` is a short stable code (``no_stream``, ``timeout``, ``permission``, ``too_large``,
    ``wrong_stream``, ``not_connected``, ``server_error``); ``retryable`` says whether retrying with
    the same msg-id can still succeed.
    """

    def __init__(self, kind: str, subject: str, detail: str, *, retryable: bool = False) -> None:
        self.kind = kind
        self.subject = subject
        self.detail = detail
        self.retryable = retryable
        super().__init__(f"publish to {subject!r} failed ({kind}): {detail}")
