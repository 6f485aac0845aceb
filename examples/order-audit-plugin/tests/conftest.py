"""The test kit's fixtures: a real nats-server for the session (``nats_server``), one per test
(``fresh_server``) and a plain client (``nc``). Imported, so this works from any directory."""

from jetplug.testing import fresh_server, nats_server, nc  # noqa: F401
