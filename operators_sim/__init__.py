"""Operator EIR nodes and attach simulations, talking to the CEIR only
through the published ``ceir.v1`` API, as a real operator would.

Nodes (``SyncNode``, ``AuthorizeNode``) decide attaches from a replica of the
lists or by asking the register; ``ceir-sim`` (``operators_sim.cli``) runs a
population of devices through the five operators' nodes and reports.
"""

from .decision import Decision, Decisions, Outcome, Source
from .fake import FakeLink
from .node import (
    OPERATORS,
    AttachBatch,
    AuthorizeNode,
    Failover,
    Mode,
    Operator,
    SyncNode,
)
from .replica import Policy, Replica, SequenceError, Snapshot
from .transport import CeirLink, GrpcLink, LinkDown, LinkError

__all__ = [
    "OPERATORS",
    "AttachBatch",
    "AuthorizeNode",
    "CeirLink",
    "Decision",
    "Decisions",
    "Failover",
    "FakeLink",
    "GrpcLink",
    "LinkDown",
    "LinkError",
    "Mode",
    "Operator",
    "Outcome",
    "Policy",
    "Replica",
    "SequenceError",
    "Snapshot",
    "Source",
    "SyncNode",
]
