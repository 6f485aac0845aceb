"""Shared pieces of the jetplug CAF plugins (contracts, assignment state, hooks, events)."""
