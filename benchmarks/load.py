"""Client load: a few threads calling one channel, bounded in time and count."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc


@dataclass(frozen=True)
class Rate:
    """How many calls (and items in them) completed in how many seconds."""

    calls: int
    items: int
    seconds: float

    @property
    def calls_per_second(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    @property
    def items_per_second(self) -> float:
        return self.items / self.seconds if self.seconds else 0.0


class LoadFailed(RuntimeError):
    """A call of the load failed: the figure would be meaningless."""


def drive(
    call: Callable[[Any], Any],
    requests: Sequence[Any],
    *,
    threads: int,
    seconds: float,
    max_calls: int | None = None,
    items_per_call: Callable[[Any], int] = lambda _request: 1,
) -> Rate:
    """Call ``call`` from ``threads`` threads, cycling through ``requests``,
    until ``seconds`` have passed or ``max_calls`` calls were started.

    Without ``max_calls`` the requests are reused in a cycle; with it, each
    request is sent at most once when ``max_calls <= len(requests)``.
    """
    numbers = itertools.count()  # next() on it is atomic under the GIL
    limit = max_calls if max_calls is not None else 2**62
    counts = [0] * threads
    items = [0] * threads
    failures: list[BaseException] = []
    start = threading.Barrier(threads + 1)
    deadline = 0.0

    def worker(slot: int) -> None:
        start.wait()
        done = 0
        done_items = 0
        size = len(requests)
        try:
            while time.perf_counter() < deadline:
                number = next(numbers)
                if number >= limit:
                    break
                request = requests[number % size]
                call(request)
                done += 1
                done_items += items_per_call(request)
        except grpc.RpcError as error:
            failures.append(error)
        finally:
            counts[slot] = done
            items[slot] = done_items

    workers = [
        threading.Thread(target=worker, args=(slot,), name=f"load-{slot}", daemon=True)
        for slot in range(threads)
    ]
    for thread in workers:
        thread.start()
    began = time.perf_counter()
    deadline = began + seconds
    start.wait()
    for thread in workers:
        thread.join()
    elapsed = time.perf_counter() - began
    if failures:
        raise LoadFailed(f"{len(failures)} call(s) failed; first: {failures[0]}")
    return Rate(sum(counts), sum(items), elapsed)
