"""jetplug plugin ``caf_adapter``: publishes ExecAssignment messages to CAF executors.

Other plugins publish through :func:`publish_assignment`; see the README.
"""

from .adapter import AssignmentError, AssignResult, publish_assignment
from .build import compute_deadline

__all__ = ["AssignResult", "AssignmentError", "compute_deadline", "publish_assignment"]
