"""A simulated CAF executor for demos and tests: not a real executor, off unless enabled."""
