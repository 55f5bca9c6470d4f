"""Ground truth: what each attach *should* get, from the population's
categories and the list changes injected during the run, and the decisions
that contradict it (mismatches).

The expected answer for an attach of (device slot, SIM) at register version
``sequence``, first rule that matches, as the brief states it:

- a malformed IMEI: denied;
- a foreign SIM (inbound roamer): allowed;
- the device's paired IMEI with its owner's SIM: allowed;
- a stolen device (as of ``sequence``): denied;
- a registered slot (as of ``sequence``; expired tourists are not): allowed;
- otherwise unregistered: denied in the enforce phase; allowed in the notify
  phase, where a denial is right only once the IMEI's block date has passed
  (a denial that says NOTIFICATION_EXPIRED with a block date before the
  decision).

Changes injected during the run are evaluated at the sequence the register
gave them, so a decision taken at version S is judged by the truth at S:
a replica that lags is not wrong, only late (the report shows its lag).
Forced answers (fail-open, fail-closed) are not judged: they say nothing
about the device, and are counted on their own.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ceir.v1 import types_pb2 as pb

from .decision import ALLOWED, Outcome, Source
from .population import REGISTERED_CATEGORIES, Category, Population

Bools = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]
_GRACE_EXPIRED = (Outcome.NOT_REGISTERED_GRACE_EXPIRED, Outcome.REGISTRATION_EXPIRED_GRACE_EXPIRED)


class Event(enum.IntEnum):
    REGISTERED = 0
    STOLEN = 1
    RECOVERED = 2
    REVOKED = 3  # a bulk revocation took the device's registration back (insider scenario)


@dataclass(frozen=True)
class Verdicts:
    expected: Bools  # expected allowed
    judged: Bools  # not forced
    mismatch: Bools


class Truth:
    """The population's ground truth, with a timeline of injected changes."""

    def __init__(self, population: Population, phase: int) -> None:
        self.population = population
        self.phase = phase
        category = population.category
        devices = population.devices
        self.registered = np.zeros((devices, 2), dtype=bool)
        for cat in REGISTERED_CATEGORIES:
            rows = category == cat
            self.registered[rows, 0] = True
            self.registered[rows, 1] = (population.slots[rows] == 2) & (
                cat != Category.GRANDFATHERED
            )
        self.stolen = category == Category.STOLEN
        # device -> (sequence, event, slot): slot -1 for every slot of the device
        self._timeline: dict[int, list[tuple[int, Event, int]]] = {}
        # (device, slot, sim) -> sequence: pairs a complaint desk added during the run
        self._pairs: dict[tuple[int, int, int], int] = {}
        self._lock = threading.Lock()

    def record(self, device: int, event: Event, sequence: int, slot: int = -1) -> None:
        """A change the register committed at ``sequence``, to one ``slot`` of
        the device or (-1) to all of them."""
        with self._lock:
            self._timeline.setdefault(device, []).append((sequence, event, slot))

    def record_pair(self, device: int, slot: int, sim: int, sequence: int) -> None:
        """A pairing of the device's ``slot`` IMEI with ``sim``, committed at ``sequence``."""
        with self._lock:
            self._pairs[(device, slot, sim)] = sequence

    def judge(
        self,
        device: Ints,
        slot: Ints,
        sim: Ints,
        outcome: npt.NDArray[np.uint8],
        source: npt.NDArray[np.uint8],
        sequence: npt.NDArray[np.uint64],
        block_date: Ints,
        decided_at: npt.NDArray[np.float64],
    ) -> Verdicts:
        population = self.population
        category = population.category[device]
        registered = self.registered[device, slot]
        stolen = self.stolen[device].copy()
        with self._lock:
            timeline = {d: sorted(events) for d, events in self._timeline.items()}
            pairs = dict(self._pairs)
        if timeline:
            changed = np.flatnonzero(np.isin(device, np.fromiter(timeline, dtype=np.int64)))
            for row in changed.tolist():
                for at, event, only in timeline[int(device[row])]:
                    if at > int(sequence[row]):
                        break
                    if only >= 0 and only != int(slot[row]):
                        continue
                    if event in (Event.REGISTERED, Event.REVOKED):
                        registered[row] = event is Event.REGISTERED
                    else:
                        stolen[row] = event is Event.STOLEN
        malformed = (category == Category.MALFORMED) & (slot == 0)
        foreign = population.sim_operator[sim] == -1
        paired = (category == Category.PAIRED) & (slot == 0) & (sim == population.sim[device])
        if pairs:
            paired = paired | _paired_later(pairs, device, slot, sim, sequence)
        unregistered_allowed = self.phase == pb.PHASE_NOTIFY
        expected = np.where(
            malformed,
            False,
            np.where(
                foreign | paired,
                True,
                np.where(stolen, False, np.where(registered, True, unregistered_allowed)),
            ),
        )
        allowed = ALLOWED[outcome]
        judged = source != Source.FORCED
        grace_over = (
            np.isin(outcome, _GRACE_EXPIRED)
            & (block_date > 0)
            & (block_date <= decided_at)
            & ~registered
            & ~stolen
        )
        mismatch = judged & (allowed != expected) & ~(expected & grace_over)
        return Verdicts(expected, judged, mismatch)


def _paired_later(
    pairs: dict[tuple[int, int, int], int],
    device: Ints,
    slot: Ints,
    sim: Ints,
    sequence: npt.NDArray[np.uint64],
) -> Bools:
    """Rows whose (device, slot, sim) a desk paired at or before the row's sequence."""
    out = np.zeros(device.shape[0], dtype=bool)
    candidates = np.flatnonzero(np.isin(device, np.fromiter((d for d, _, _ in pairs), np.int64)))
    for row in candidates.tolist():
        at = pairs.get((int(device[row]), int(slot[row]), int(sim[row])))
        out[row] = at is not None and at <= int(sequence[row])
    return out
