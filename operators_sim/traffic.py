"""Attach traffic and list changes during a run.

Attaches arrive as a Poisson process at ``rate`` per second: each tick draws
how many arrived and which devices; a device attaches with its owner's SIM
in slot 1, with its second SIM in slot 2, or after a SIM swap with someone
else's SIM; a cloned IMEI attaches with any of its SIMs; an inbound roamer's
foreign SIM attaches to an operator chosen by market share. Each attach goes
to the EIR node of the operator the SIM attaches to.

The injector makes list changes while traffic runs: late registrations of
black-market devices, stolen reports, recoveries. Each is recorded in the
ground truth at the sequence the register gave it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass

import grpc
import numpy as np
import numpy.typing as npt

from .loader import Admin, register_now, report_recovered, report_stolen
from .node import OPERATORS, AttachBatch
from .population import Category, Population
from .truth import Event, Truth

log = logging.getLogger("operators_sim.traffic")
Ints = npt.NDArray[np.int64]
SWAP_SHARE = 0.03
SECOND_SLOT_SHARE = 0.35


@dataclass
class Attaches:
    """One tick's attaches: who, and the batch per operator."""

    device: Ints
    slot: Ints
    sim: Ints
    operator: Ints

    def __len__(self) -> int:
        return int(self.device.shape[0])

    def batch(self, population: Population, rows: npt.NDArray[np.intp]) -> AttachBatch:
        sims = self.sim[rows]
        return AttachBatch(
            population.imeis[self.device[rows], self.slot[rows]],
            population.sim_imsi[sims],
            population.sim_msisdn[sims],
        )


class Traffic:
    """Draws attaches from a population, deterministically from a seed."""

    def __init__(self, population: Population, seed: int) -> None:
        self.population = population
        self.rng = np.random.default_rng(seed + 1)
        self.domestic_sims = np.flatnonzero(population.sim_operator >= 0)
        shares = np.array([op.share for op in OPERATORS])
        self.shares = shares / shares.sum()

    def draw(self, count: int) -> Attaches:
        population, rng = self.population, self.rng
        device = rng.integers(0, population.devices, size=count)
        slot = np.zeros(count, dtype=np.int64)
        sim = population.sim[device].astype(np.int64)
        roll = rng.random(count)
        second = population.second_sim[device]
        use_second = (second >= 0) & (roll < SECOND_SLOT_SHARE)
        slot[use_second] = 1
        sim[use_second] = second[use_second]
        swapped = roll > 1 - SWAP_SHARE
        sim[swapped] = self.domestic_sims[
            rng.integers(0, self.domestic_sims.shape[0], int(swapped.sum()))
        ]
        clone_row = population.clone_of[device]
        cloned = clone_row >= 0
        pick = rng.integers(
            0, population.clone_sims.shape[1] if population.clone_sims.size else 1, count
        )
        if cloned.any():
            sim[cloned] = population.clone_sims[clone_row[cloned], pick[cloned]]
            slot[cloned] = 0
        operator = population.sim_operator[sim].astype(np.int64)
        visiting = operator < 0
        operator[visiting] = rng.choice(len(OPERATORS), size=int(visiting.sum()), p=self.shares)
        return Attaches(device.astype(np.int64), slot, sim, operator)

    def arrivals(self, rate: float, seconds: float) -> int:
        """How many attaches a Poisson process at ``rate`` brings in ``seconds``."""
        return int(self.rng.poisson(rate * seconds))


@dataclass
class InjectorStats:
    registered: int = 0
    stolen: int = 0
    recovered: int = 0
    failed: int = 0


class Injector:
    """Makes list changes at ``rate`` per second from its own thread."""

    def __init__(
        self,
        admin: Admin,
        population: Population,
        truth: Truth,
        rate: float,
        seed: int,
        reserved: Iterable[int] = (),
    ) -> None:
        """``reserved``: black-market devices another actor registers (the
        insider scenario's burst); the injector leaves them alone."""
        self.admin = admin
        self.population = population
        self.truth = truth
        self.rate = rate
        self.rng = np.random.default_rng(seed + 2)
        self.stats = InjectorStats()
        skip = set(reserved)
        self._black_market = [
            device
            for device in self.rng.permutation(population.of(Category.BLACK_MARKET)).tolist()
            if device not in skip
        ]
        self._registered = list(self.rng.permutation(population.of(Category.TPP)).tolist())
        self._stolen = list(population.of(Category.STOLEN).tolist())
        self._pending: tuple[Event, int] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.rate > 0:
            self._thread = threading.Thread(target=self._run, name="injector", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(float(self.rng.exponential(1.0 / self.rate))):
            try:
                self.inject_one()
            except grpc.RpcError as error:  # the CEIR may be down: try the next one later
                self.stats.failed += 1
                log.info("injection failed: %s", error.code() if hasattr(error, "code") else error)

    def inject_one(self) -> None:
        """Make one change. A change whose answer was lost (the CEIR went
        down) is retried with the same request id on the next call, so the
        truth records the sequence the register really gave it."""
        if self._pending is None:
            self._pending = self._pick()
        if self._pending is None:
            return
        action, device = self._pending
        if action is Event.REGISTERED:
            sequence = register_now(self.admin, self.population, device)
            self.stats.registered += 1
        elif action is Event.STOLEN:
            sequence = report_stolen(self.admin, self.population, device, f"LP/run/{device}")
            self._stolen.append(device)
            self.stats.stolen += 1
        else:
            sequence = report_recovered(self.admin, self.population, device, f"LP/found/{device}")
            self.stats.recovered += 1
        self.truth.record(device, action, sequence)
        self._pending = None

    def _pick(self) -> tuple[Event, int] | None:
        choice = int(self.rng.integers(0, 3))
        if choice == 0 and self._black_market:
            return Event.REGISTERED, self._black_market.pop()
        if choice == 1 and self._registered:
            return Event.STOLEN, self._registered.pop()
        if self._stolen:
            return Event.RECOVERED, self._stolen.pop(int(self.rng.integers(0, len(self._stolen))))
        return None
