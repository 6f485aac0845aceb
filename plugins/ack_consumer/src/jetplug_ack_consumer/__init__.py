"""jetplug plugin ``ack_consumer``: reads the executor's ExecAssignmentAck messages."""
