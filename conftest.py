"""Every test in the repository uses the test kit plugin authors get (jetplug.testing)."""

pytest_plugins = ["jetplug.testing"]
