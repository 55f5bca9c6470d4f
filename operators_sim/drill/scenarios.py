"""The drill's scenarios: what goes wrong, and the outcome each must end with.

docs/simulation.md ("Handover drill") has the same table for people; each
scenario has a test in tests/operators_sim/test_drill_scenarios.py.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SCENARIOS", "Scenario", "scenario"]


@dataclass(frozen=True)
class Scenario:
    """One way the ceremony runs, and the outcome it must end with."""

    name: str
    expected: str  # handed_over, aborted or refused
    summary: str
    expiry: float = 3_600.0  # seconds from the proposal to policy 1's expiry


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "clean",
            "handed_over",
            "every step as planned: announced, ready, frozen, transferred, active, retired",
        ),
        Scenario(
            "officer-missing",
            "aborted",
            "one Telkomsel officer of the two needed never signs policy 1: it is never "
            "announced, and the register drops it when it expires; nothing changed",
            expiry=10.0,
        ),
        Scenario(
            "wrong-signer",
            "refused",
            "policy 1 signed by an officer no policy lists, then by one officer twice: the "
            "register refuses the first and counts the second once; never announced",
        ),
        Scenario(
            "old-keys-only",
            "refused",
            "policy 1 signed by the outgoing side alone (Telkomsel's officers and the "
            "witness, no Kemenperin officer): every node and the register refuse it",
        ),
        Scenario(
            "not-ready",
            "aborted",
            "one operator never reports readiness for policy 1: the register does not "
            "freeze, and the ceremony aborts when policy 1 expires",
            expiry=12.0,
        ),
        Scenario(
            "incoming-crash",
            "handed_over",
            "Kemenperin's register is killed (SIGKILL) during the transfer and started "
            "again on its database: it resumes the pull; Telkomsel's is in charge until "
            "the activation",
        ),
        Scenario(
            "transfer-corrupt",
            "aborted",
            "a proxy between the registers alters one change in transit: the roots differ, "
            "the transfer is refused, nothing is activated, and the officers abort",
        ),
        Scenario(
            "operator-offline",
            "handed_over",
            "one operator's node is cut off from the freeze until after the retirement, "
            "then catches up: all five verify the handover",
        ),
        Scenario(
            "split-view",
            "handed_over",
            "after the freeze the old log key (a copy the drill holds) signs a checkpoint "
            "larger than the final size, and a proxy feeds it to every node: each alerts "
            "SPLIT_VIEW, refuses it and writes evidence; the handover itself goes on",
        ),
        Scenario(
            "witness-down",
            "handed_over",
            "the witness is stopped at the freeze: the register stays frozen and writes "
            "are refused with retry information until it is back (8 s later); the freeze "
            "time says how long",
        ),
    )
}


def scenario(name: str) -> Scenario:
    """The scenario called ``name``; ``KeyError`` naming the known ones."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise KeyError(f"no scenario {name!r}; known: {', '.join(SCENARIOS)}") from None
