"""jetplug plugin ``result_consumer``: reads ExecResult messages and bills usage."""
