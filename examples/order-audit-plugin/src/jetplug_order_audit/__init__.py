"""jetplug plugin ``order_audit``."""
