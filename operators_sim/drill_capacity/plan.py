"""The drill's sizes and IMEIs, all derived from the capacity and a seed.

At the default capacity of 1,200,000 IMEIs (1/1000 of Indonesia's 1.2
billion): 20 % of it are legitimate units already registered, scattered
over ten TACs (a model's units are a few percent of its TAC's serials); the
importer then uploads whole ranges of ``capacity / 5`` serials of other
TACs, more than there is room for; ``late`` new phones are registered one by
one while the register is full; ``unregistered`` phones (black market) keep
attaching throughout; ``in_use`` IMEIs inside the first range are real
phones that attach (the cure must keep them).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

SERIALS = 1_000_000
LEGIT_TACS = tuple(35_300_000 + 1_111 * i for i in range(10))
RANGE_TACS = tuple(86_500_000 + 7 * i for i in range(8))  # the importer's allocations
GUARDED_TAC = 86_600_001  # the range tried again once the guard is on
UNREGISTERED_TAC = 35_999_001
LATE_TAC = 35_888_001
U64 = npt.NDArray[np.uint64]


@dataclass(frozen=True)
class Plan:
    capacity: int
    raised: int  # the capacity after the cure (2 billion / 1.2 billion of it)
    guard: int  # the range guard's K
    legit: U64  # registered before the ranges (sorted)
    ranges: tuple[tuple[int, int], ...]  # (first key, IMEIs) per range upload
    late: U64  # new phones registered one by one while the register is full
    unregistered: U64  # phones nobody registers
    in_use: U64  # range IMEIs that are real phones on a network

    @property
    def range_imeis(self) -> int:
        return sum(size for _, size in self.ranges)


def make_plan(capacity: int, seed: int = 1, guard: int = 1_000) -> Plan:
    if capacity < 2_000:
        raise ValueError("the drill needs a capacity of at least 2,000 IMEIs")
    rng = np.random.default_rng(seed)
    legit_count = capacity // 5
    per_tac = -(-legit_count // len(LEGIT_TACS))
    legit = np.concatenate(
        [
            np.uint64(tac * SERIALS)
            + rng.choice(SERIALS, size=per_tac, replace=False).astype(np.uint64)
            for tac in LEGIT_TACS
        ]
    )[:legit_count]
    legit.sort()
    size = min(SERIALS, max(capacity // 5, 5 * guard))
    count = min(len(RANGE_TACS), -(-(capacity - legit_count) // size) + 1)  # past the capacity
    ranges = tuple((tac * SERIALS, size) for tac in RANGE_TACS[:count])
    late_count = max(50, min(600, capacity // 2_000))
    late = np.uint64(LATE_TAC * SERIALS) + np.arange(0, 3 * late_count, 3, dtype=np.uint64)
    unregistered = np.uint64(UNREGISTERED_TAC * SERIALS) + np.arange(0, 5 * 200, 5, dtype=np.uint64)
    # Three real phones inside the first range, a quarter of it apart: they
    # split it into runs still longer than the guard, which the cure finds.
    first = ranges[0][0]
    in_use = np.uint64(first) + np.array([1, 2, 3], dtype=np.uint64) * np.uint64(size // 4)
    return Plan(
        capacity=capacity,
        raised=capacity * 5 // 3,
        guard=guard,
        legit=legit,
        ranges=ranges,
        late=late,
        unregistered=unregistered,
        in_use=in_use,
    )
