"""jetplug plugin ``caf_adapter``: publishes ExecAssignment messages to CAF executors."""
