"""Plugins that ship with the host; registered last so they run first."""
