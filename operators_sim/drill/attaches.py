"""Attach traffic through the five nodes for as long as the drill runs.

The same traffic as ``ceir-sim attach`` (``traffic.Traffic``, a Poisson
process of attaches, each operator's decided by its node in the node's own
thread), from a thread of its own so that the drill can run the ceremony
meanwhile. Every attach sent to a node is counted, so that one never
answered shows (``undecided``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import numpy as np

from ..node import Node
from ..population import Population
from ..simulation import Records, _Recorder, _Worker
from ..traffic import Traffic

TICK = 0.01


class AttachLoad:
    """Poisson attaches at ``rate`` per second, from ``start`` to ``stop``."""

    def __init__(
        self, nodes: Sequence[Node], population: Population, rate: float, seed: int, started: float
    ) -> None:
        """``started``: the ``time.perf_counter()`` the drill's timeline counts from."""
        self.nodes = nodes
        self.population = population
        self.rate = rate
        self.traffic = Traffic(population, seed)
        self.recorder = _Recorder()
        self.started = started
        self.submitted = 0
        self._workers: list[_Worker] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="attaches", daemon=True)

    def start(self) -> None:
        self._workers = [
            _Worker(i, node, self.population, self.recorder, self.started)
            for i, node in enumerate(self.nodes)
        ]
        self._thread.start()

    def stop(self) -> Records:
        """No more attaches; wait for the nodes to decide those sent."""
        self._stop.set()
        self._thread.join()
        for worker in self._workers:
            worker.finish()
        return self.recorder.records()

    @property
    def decided(self) -> int:
        return self.recorder.attaches

    def _run(self) -> None:
        last = time.perf_counter()
        while not self._stop.is_set():
            now = time.perf_counter()
            count = self.traffic.arrivals(self.rate, now - last)
            last = now
            if count:
                attaches = self.traffic.draw(count)
                for index, worker in enumerate(self._workers):
                    rows = np.flatnonzero(attaches.operator == index)
                    if rows.size:
                        worker.submit(attaches, rows)
                        self.submitted += int(rows.size)
            time.sleep(max(0.0, TICK - (time.perf_counter() - now)))
