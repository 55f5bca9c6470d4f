"""The drill's verdict: ``verdict.json``, with exactly the issue's keys.

=========================  ===================================================
key                        meaning
=========================  ===================================================
scenario                   the scenario's name
outcome                    ``handed_over``, ``aborted`` or ``refused``
attaches                   attaches the nodes decided
attaches_undecided         attaches sent to a node and never answered (0)
max_decision_ms            the longest attach decision, ms
acknowledged_writes_lost   acknowledged writes with no change in the final log
writes_applied_twice       acknowledged writes with two or more changes in it
freeze_seconds             FROZEN to the first write accepted after it (null:
                           no freeze, or no write accepted after it)
final_size                 the size of the custodian's log at the end
roots_equal                the incoming register's tree at the final size has
                           the final checkpoint's root (null: no freeze)
operators_verified         nodes that verified the handover, by name
alerts                     each node's alerts by reason
complaints_filed           complaints filed at Telkomsel's desk before the
                           ceremony, one in every state
complaints_lost            of those, not found at the custodian at the end
complaints_doubled         of those, listed twice or more there
complaints_changed         of those, with another tracking id's content,
                           deadline or history there (an open one may have
                           moved desks: a MOVED step and a new owner)
=========================  ===================================================
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ceir.v1 import types_pb2 as pb

__all__ = ["KEYS", "OUTCOMES", "Verdict", "count_writes"]

OUTCOMES = ("handed_over", "aborted", "refused")
KEYS = (
    "scenario",
    "outcome",
    "attaches",
    "attaches_undecided",
    "max_decision_ms",
    "acknowledged_writes_lost",
    "writes_applied_twice",
    "freeze_seconds",
    "final_size",
    "roots_equal",
    "operators_verified",
    "alerts",
    "complaints_filed",
    "complaints_lost",
    "complaints_doubled",
    "complaints_changed",
)


@dataclass
class Verdict:
    scenario: str
    outcome: str
    attaches: int
    attaches_undecided: int
    max_decision_ms: float
    acknowledged_writes_lost: int
    writes_applied_twice: int
    freeze_seconds: float | None
    final_size: int
    roots_equal: bool | None
    operators_verified: list[str] = field(default_factory=list)
    alerts: dict[str, dict[str, int]] = field(default_factory=dict)
    complaints_filed: int = 0
    complaints_lost: int = 0
    complaints_doubled: int = 0
    complaints_changed: int = 0

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome {self.outcome!r} is not one of {', '.join(OUTCOMES)}")

    def as_dict(self) -> dict[str, object]:
        values: dict[str, object] = {
            "scenario": self.scenario,
            "outcome": self.outcome,
            "attaches": self.attaches,
            "attaches_undecided": self.attaches_undecided,
            "max_decision_ms": round(self.max_decision_ms, 3),
            "acknowledged_writes_lost": self.acknowledged_writes_lost,
            "writes_applied_twice": self.writes_applied_twice,
            "freeze_seconds": None
            if self.freeze_seconds is None
            else round(self.freeze_seconds, 3),
            "final_size": self.final_size,
            "roots_equal": self.roots_equal,
            "operators_verified": sorted(self.operators_verified),
            "alerts": {
                node: dict(sorted(reasons.items()))
                for node, reasons in sorted(self.alerts.items())
                if reasons
            },
            "complaints_filed": self.complaints_filed,
            "complaints_lost": self.complaints_lost,
            "complaints_doubled": self.complaints_doubled,
            "complaints_changed": self.complaints_changed,
        }
        assert tuple(values) == KEYS
        return values

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.as_dict(), indent=2) + "\n", encoding="utf-8")

    def lines(self) -> list[str]:
        """The verdict in words, one line per key."""
        freeze = "no freeze" if self.freeze_seconds is None else f"{self.freeze_seconds:.2f} s"
        roots = {True: "equal", False: "DIFFERENT", None: "not compared (no freeze)"}
        alerts = (
            "; ".join(
                f"{node}: " + ", ".join(f"{reason} x{count}" for reason, count in reasons.items())
                for node, reasons in sorted(self.alerts.items())
                if reasons
            )
            or "none"
        )
        return [
            f"scenario: {self.scenario}",
            f"outcome: {self.outcome}",
            f"attaches: {self.attaches:,} decided, {self.attaches_undecided} undecided, "
            f"longest decision {self.max_decision_ms:.1f} ms",
            f"acknowledged writes lost: {self.acknowledged_writes_lost}, "
            f"applied twice: {self.writes_applied_twice}",
            f"write freeze: {freeze}",
            f"final log size: {self.final_size:,}; roots {roots[self.roots_equal]}",
            "operators that verified the handover: "
            + (", ".join(sorted(self.operators_verified)) or "none"),
            f"alerts: {alerts}",
            f"complaints: {self.complaints_filed} filed before the ceremony; "
            f"{self.complaints_lost} lost, {self.complaints_doubled} doubled, "
            f"{self.complaints_changed} changed at the custodian at the end",
        ]

    @property
    def complaints_kept(self) -> bool:
        """Every complaint filed before the ceremony is at the custodian, once, as filed."""
        return self.complaints_lost == self.complaints_doubled == self.complaints_changed == 0


def count_writes(
    acknowledged_keys: Sequence[int], changes: Iterable[pb.ListChange]
) -> tuple[int, int]:
    """(lost, applied twice) among the acknowledged writes' IMEI keys, from
    the ``WHITELIST_ADDED`` changes of the final log."""
    wanted = set(acknowledged_keys)
    added: Counter[int] = Counter(
        int(change.imei_key)
        for change in changes
        if change.kind == pb.CHANGE_KIND_WHITELIST_ADDED and int(change.imei_key) in wanted
    )
    lost = sum(1 for key in wanted if added[key] == 0)
    twice = sum(1 for key in wanted if added[key] >= 2)
    return lost, twice
