"""The handover drill: ``ceir-sim drill handover`` (docs/simulation.md, "Handover drill").

Two registers (Telkomsel's, the custodian, and Kemenperin's, its standby),
a witness, the five operators' nodes, attach traffic and list writes, and
the ceremony that hands the register over, run step by step through the
public API, with one fault staged per scenario; the verdict, the report and
the evidence say how it went.

================  =============================================================
module            what it holds
================  =============================================================
``scenarios``     the scenarios and the outcome each must end with
``keys``          the drill's keys and custody policies
``cluster``       the registers, the witness and proxies, and channels to them
``processes``     a server process: start, kill, restart
``proxy``         a gRPC proxy that alters or injects feed messages
``links``         node links the drill can cut (an operator offline)
``errors``        a refusal's ErrorInfo reason, metadata and RetryInfo
``ceremony``      the ceremony's steps through CustodyService and the witness
``script``        who does what in each scenario
``attaches``      the attach traffic through the nodes
``writer``        list writes that follow the custodian
``feed``          a register's whole log, read through its feed
``timeline``      when each step and each write happened
``verdict``       verdict.json
``report``        report.html, report.md and the timeline chart
``run``           ``Drill``: all of the above, in order
``command``       the ``ceir-sim drill`` command line
================  =============================================================
"""

from .scenarios import SCENARIOS, Scenario

__all__ = ["SCENARIOS", "Scenario"]
