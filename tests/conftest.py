"""Host tests use the same test kit plugin authors get (jetplug.testing)."""

pytest_plugins = ["jetplug.testing"]
