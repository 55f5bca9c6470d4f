"""The desk-move drill: ``ceir-sim drill desk-move`` (docs/simulation.md,
"Desk-move drill").

One register under a custody policy whose ``complaints`` line names an
operator (each operator runs its own desk); complaints in every state at
several operators' desks; then a new policy version, signed as the
handover drill signs its policies, moves the desk to Kemenperin. The drill
checks that every open complaint moved with its tracking id, history and
deadline and one MOVED step, that closed ones were left alone, that none
was lost or duplicated, that an old desk is refused naming the owner, and
that Kemenperin can work them to the end.

============  ==================================================================
module        what it holds
============  ==================================================================
``desks``     the complaints filed and worked into each state
``move``      the register, its policies and the move
``checks``    the comparisons before and after, as named checks
``report``    report.json and report.html
``run``       ``DeskMoveDrill``: all of the above, in order
``command``   the ``ceir-sim drill desk-move`` command line
============  ==================================================================
"""

from .run import DeskMoveConfig, DeskMoveDrill

__all__ = ["DeskMoveConfig", "DeskMoveDrill"]
