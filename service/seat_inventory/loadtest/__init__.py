"""`seat-inventory loadtest`: a flash-sale load against any running server,
with a verification that nothing was sold twice or lost."""

from .scenario import Scenario

__all__ = ["Scenario"]
