"""The JetStream engine: provisioning, consumers, outcomes, dead letters and publishing."""
