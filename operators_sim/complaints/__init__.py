"""Complaint traffic of an attach simulation (docs/simulation.md, "Complaints").

Subscribers whose attaches were denied, or who were told that their device
will be blocked, complain at a desk of the register's ``ComplaintService``
(their operator's, the register's own, or Kemenperin's once the desk has
moved); the desks work them by the desk agents' rules: diagnose first
(``DiagnoseImei``), then act only through the register's audited actions.
Time at the desks is simulated time (hours), so that a run of seconds can
show deadlines of days; every call is a real call to the register.

================  ============================================================
module            what it holds
================  ============================================================
``settings``      the settings and the simulated clock
``intake``        who complains, about what, with which documents
``calls``         the ``ComplaintService`` calls of one desk
``rules``         the desk agents' rules: from a diagnosis to an action
``engine``        the desks' queues in simulated time, in their own thread
``figures``       the report's figures
================  ============================================================
"""

from .engine import ComplaintEngine
from .figures import ComplaintSummary, summarize_complaints
from .settings import ComplaintSettings

__all__ = ["ComplaintEngine", "ComplaintSettings", "ComplaintSummary", "summarize_complaints"]
