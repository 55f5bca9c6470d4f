"""A load client in a process of its own, cheap enough not to hide the server.

Why not threads in the benchmark's process (the register bench once did
that): a synchronous gRPC client spends about as much interpreter time per
call as a bare server does, and its threads share one interpreter lock, so
the client became the bottleneck. Every server then looked about as fast as
the client let it be, and the register's ratio to a bare server came out
higher than an independent client measures (0.67x against 0.42x).

This client runs in a child process, holds ``in_flight`` calls open at once
on one ``grpc.aio`` channel, sends requests serialised beforehand (the
generic ``channel.unary_unary`` with no serialisers passes bytes through),
and does not parse the answers. One child serves every run of a benchmark:
``LoadClient.run`` sends it the work over a pipe and waits for the count.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection

import grpc

from .child import ChildProcess
from .load import LoadFailed, Rate

Metadata = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Work:
    """One run: where, what, how many calls in flight, for how long."""

    target: str
    method: str  # "/package.Service/Method"
    requests: tuple[bytes, ...]
    items: tuple[int, ...]  # items (checks) in each request, for items/s
    metadata: Metadata
    in_flight: int
    seconds: float
    warmup: float = 0.0
    once: bool = False  # send each request once, then stop (``seconds`` is a limit)
    timeout: float = 60.0


class LoadClient(ChildProcess):
    """The child process, started once and reused for every run."""

    def __init__(self) -> None:
        super().__init__(_serve, stop_timeout=10)

    def run(self, work: Work) -> Rate:
        """Run ``work``; LoadFailed if any call failed (the figure would lie)."""
        self._pipe.send(work)
        answer: tuple[int, int, float, str] = self._pipe.recv()
        calls, items, seconds, failure = answer
        if failure:
            raise LoadFailed(failure)
        return Rate(calls, items, seconds)


def work(
    target: str,
    method: str,
    requests: Sequence[bytes],
    metadata: Metadata,
    *,
    in_flight: int,
    seconds: float,
    warmup: float = 0.0,
    items: Sequence[int] | None = None,
    once: bool = False,
) -> Work:
    return Work(
        target,
        method,
        tuple(requests),
        tuple(items) if items is not None else (1,) * len(requests),
        metadata,
        in_flight,
        seconds,
        warmup,
        once,
    )


# --- in the child process -----------------------------------------------------------


def _serve(pipe: Connection) -> None:
    loop = asyncio.new_event_loop()
    channels: dict[str, grpc.aio.Channel] = {}
    pipe.send("ready")
    while True:
        try:
            command = pipe.recv()
        except EOFError:  # the benchmark died
            break
        if command == "stop":
            break
        if command == "cpu":
            pipe.send(time.process_time())
            continue
        try:
            pipe.send(loop.run_until_complete(_drive(channels, command)))
        except Exception as error:  # reported to the parent as a failed run
            pipe.send((0, 0, 0.0, f"{type(error).__name__}: {error}"))
    for channel in channels.values():
        loop.run_until_complete(channel.close(None))
    loop.close()


async def _drive(channels: dict[str, grpc.aio.Channel], work: Work) -> tuple[int, int, float, str]:
    channel = channels.get(work.target)
    if channel is None:
        channel = grpc.aio.insecure_channel(
            work.target, options=[("grpc.max_receive_message_length", 64 * 1024 * 1024)]
        )
        await channel.channel_ready()
        channels[work.target] = channel
    # No serialisers: bytes both ways.
    call = channel.unary_unary(work.method, None, None)
    if work.warmup > 0 and not work.once:
        await _window(call, work, work.warmup)
    return await _window(call, work, work.seconds)


async def _window(
    call: grpc.aio.UnaryUnaryMultiCallable[bytes, bytes], work: Work, seconds: float
) -> tuple[int, int, float, str]:
    """Calls completed by ``in_flight`` callers within ``seconds``."""
    numbers = itertools.count()
    size = len(work.requests)
    limit = size if work.once else 2**62
    counts = [0, 0]
    failures: list[str] = []
    began = time.perf_counter()
    deadline = began + seconds

    async def caller() -> None:
        requests, items, metadata = work.requests, work.items, work.metadata
        while time.perf_counter() < deadline and not failures:
            number = next(numbers)
            if number >= limit:
                return
            index = number % size
            try:
                await call(requests[index], metadata=metadata, timeout=work.timeout)
            except grpc.RpcError as error:
                failures.append(f"{error}")
                return
            counts[0] += 1
            counts[1] += items[index]

    await asyncio.gather(*(caller() for _ in range(work.in_flight)))
    elapsed = time.perf_counter() - began
    failure = f"{len(failures)} call(s) failed; first: {failures[0]}" if failures else ""
    return counts[0], counts[1], elapsed, failure
