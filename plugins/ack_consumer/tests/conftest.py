"""The ack consumer's tests run against a real nats-server through jetplug's test kit.

The kit's fixtures are imported rather than named in ``pytest_plugins``: pytest refuses
``pytest_plugins`` in a conftest below the rootdir when the whole repository is tested at once,
and an import works both there and when this plugin's tests run on their own.
"""

from jetplug.testing import fresh_server, nats_server, nc  # noqa: F401
