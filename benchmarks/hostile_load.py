"""Hostile connections held open against a server, from processes of their own.

Issue 7's load, in three kinds, each held by one child process so that it
shares no interpreter lock with the server it loads nor with the client
that measures:

- ``silent``: calls with no credentials that never send their request
  message, spread over the unary, server-streaming, client-streaming and
  bidirectional methods and the open health service. A unary client call
  sends its message at once, so every one is started as a raw
  bidirectional call on the method's path and nothing is ever written: the
  wire is the same, and the server sees a call whose message never comes.
- ``watches``: authenticated ``WatchChanges`` streams from the head, idle
  until a change commits: operator replicas following the feed as designed.
- ``frozen``: connections each with an authenticated call under way
  (alternately a ``WatchChanges`` and a ``CheckEquipmentStream`` that has
  sent one check), whose process is then stopped with SIGSTOP: the kernel
  keeps the TCP connections open but nothing reads them or answers an
  HTTP/2 ping, as with a client gone behind a frozen NAT.

A child holds its calls with grpc.aio, so a held call costs it a coroutine,
not a thread. Calls are spread over separate connections (a local
subchannel pool per channel), a bounded number per connection, since a
server may cap the streams of one connection. Everything is bounded: the
counts, the setup time, and the life of a child (it closes its calls and
exits after ``lifetime`` seconds, or when the parent goes away); loopback
addresses only.

Use ``HostileLoad`` as a context manager; its ``status()`` says how many
calls the server still holds and how the others ended (a server that
checks credentials from the metadata refuses the silent calls to the
register's methods at once: they end ``UNAUTHENTICATED``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import os
import resource
import signal
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from types import TracebackType
from typing import Any

import grpc
import grpc.aio

from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import equipment_check_pb2_grpc as check_grpc
from ceir.v1 import list_sync_pb2 as sync_pb
from ceir.v1 import list_sync_pb2_grpc as sync_grpc

_SPAWN = multiprocessing.get_context("spawn")

# The methods a silent call is started on, in turn. The register's methods
# can refuse a caller from its metadata before waiting for a message; the
# health check is open to all, so a server can only hold those cheaply.
SILENT_METHODS = (
    "/ceir.v1.EquipmentCheckService/CheckEquipment",
    "/ceir.v1.ListSyncService/WatchChanges",
    "/ceir.v1.EquipmentCheckService/CheckEquipmentStream",
    "/ceir.v1.RegistryService/ImportRegistrations",
    "/ceir.v1.EquipmentCheckService/CheckEquipmentBatch",
    "/grpc.health.v1.Health/Check",
)
# One TCP connection per channel object, not one shared by every channel
# to the same target.
CHANNEL_OPTIONS = (("grpc.use_local_subchannel_pool", 1),)
LOOPBACK = ("127.0.0.1:", "localhost:", "[::1]:")
SETUP_TIMEOUT = 60.0  # seconds for a child to connect and open its calls
SETTLE = 0.5  # seconds between opening the calls and reporting ready
STOP_TIMEOUT = 5.0
PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class HostileSpec:
    """How many calls of each kind, over how many connections, for how long."""

    silent: int = 1_000  # unauthenticated calls that never send a message
    watches: int = 1_000  # authenticated idle WatchChanges streams
    frozen: int = 100  # connections, each with one call, frozen mid-call
    silent_per_connection: int = 50
    watches_per_connection: int = 20
    lifetime: float = 600.0  # a child ends its calls and exits after this long

    def describe(self) -> str:
        kinds = (
            (
                self.silent,
                f"{self.silent:,} unauthenticated calls that never send a message "
                f"({self.silent_per_connection} a connection)",
            ),
            (
                self.watches,
                f"{self.watches:,} authenticated idle WatchChanges streams "
                f"({self.watches_per_connection} a connection)",
            ),
            (self.frozen, f"{self.frozen:,} connections frozen mid-call (SIGSTOP)"),
        )
        return ", ".join(text for count, text in kinds if count) or "nothing"


ISSUE_7 = HostileSpec()  # the issue's target load, held together


@dataclass(frozen=True)
class Tally:
    """What became of one kind's calls: how many opened, how each ended."""

    kind: str
    opened: int
    # Status code name, how many calls ended with it, the first one's details.
    ended: tuple[tuple[str, int, str], ...] = ()

    @property
    def held(self) -> int:
        """Calls still open (as the client sees it)."""
        return self.opened - sum(count for _code, count, _details in self.ended)

    def describe(self) -> str:
        ended = "".join(
            f", {count:,} ended {code} ({details!r})" for code, count, details in self.ended
        )
        return f"{self.kind}: {self.opened:,} opened, {self.held:,} held{ended}"


class LoadFailed(RuntimeError):
    """The load could not be put in place (no connection, a child died)."""


@dataclass(frozen=True)
class _Plan:
    """One child's orders."""

    kind: str  # "silent", "watches" or "frozen"
    target: str
    token: str
    count: int
    per_connection: int
    after_sequence: int
    lifetime: float


class HostileLoad:
    """The load of ``spec`` held against ``target`` while inside ``with``.

    ``token`` is a valid bearer token (the watches' and frozen calls'
    organisation); ``after_sequence`` is where the watches start, the
    register's head (asked for with ``token``) when None.
    """

    def __init__(
        self,
        target: str,
        token: str,
        spec: HostileSpec = ISSUE_7,
        after_sequence: int | None = None,
    ) -> None:
        if not target.startswith(LOOPBACK):
            raise ValueError(f"the hostile load is for loopback targets only, not {target!r}")
        self.target = target
        self.token = token
        self.spec = spec
        self.after_sequence = after_sequence
        self._children: dict[str, tuple[BaseProcess, Connection]] = {}
        self._frozen_tally: Tally | None = None

    def __enter__(self) -> HostileLoad:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def start(self) -> None:
        """Open every call, wait until each child holds its share, then
        freeze the frozen child. Raises LoadFailed (after tearing down)."""
        spec = self.spec
        after = self.after_sequence
        if after is None:
            # Imported here, not above: each child imports this module, and
            # this import would cost it a second of start-up for nothing.
            from operators_sim.simulation import head_sequence

            after = head_sequence(self.target, self.token)
        plans = [
            _Plan(kind, self.target, self.token, count, per_connection, after, spec.lifetime)
            for kind, count, per_connection in (
                ("silent", spec.silent, spec.silent_per_connection),
                ("watches", spec.watches, spec.watches_per_connection),
                ("frozen", spec.frozen, 1),
            )
            if count > 0
        ]
        try:
            for plan in plans:  # all start at once: each takes a while to import grpc
                parent, child = _SPAWN.Pipe()
                process = _SPAWN.Process(
                    target=_child_main, args=(plan, child), name=f"hostile-{plan.kind}", daemon=True
                )
                process.start()
                child.close()
                self._children[plan.kind] = (process, parent)
            for plan in plans:
                tally = self._receive(plan.kind, SETUP_TIMEOUT)
                if plan.kind == "frozen":
                    self._frozen_tally = tally
                    _freeze(self._children["frozen"][0])
        except BaseException:
            self.close()
            raise

    def status(self) -> list[Tally]:
        """Each kind's calls as its child sees them now; the frozen ones as
        they were when frozen, until thawed."""
        tallies = []
        for kind, (_process, pipe) in self._children.items():
            if kind == "frozen" and self._frozen_tally is not None:
                tallies.append(self._frozen_tally)
            else:
                pipe.send("status")
                tallies.append(self._receive(kind, STOP_TIMEOUT))
        return tallies

    def thaw(self, settle: float = 1.0) -> Tally | None:
        """Resume the frozen child; after ``settle`` seconds, say what became
        of its calls meanwhile (a server that pings idle connections has
        closed them: they end UNAVAILABLE). None if there is no frozen child."""
        if "frozen" not in self._children or self._frozen_tally is None:
            return None
        process, pipe = self._children["frozen"]
        assert process.pid is not None
        os.kill(process.pid, signal.SIGCONT)
        self._frozen_tally = None
        time.sleep(settle)  # for it to read what the server sent while it was stopped
        pipe.send("status")
        return self._receive("frozen", STOP_TIMEOUT)

    def close(self) -> None:
        """End every call: a frozen child is killed where it stands, the
        others close their channels; any child still there is killed."""
        children, self._children = self._children, {}
        for kind, (process, pipe) in children.items():
            if kind == "frozen" and self._frozen_tally is not None and process.pid is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(process.pid, signal.SIGKILL)  # also ends a stopped process
            else:
                with contextlib.suppress(OSError):
                    pipe.send("stop")
        self._frozen_tally = None
        for _kind, (process, pipe) in children.items():
            process.join(STOP_TIMEOUT)
            if process.is_alive():
                process.kill()
                process.join(STOP_TIMEOUT)
            pipe.close()

    def _receive(self, kind: str, timeout: float) -> Tally:
        process, pipe = self._children[kind]
        if not pipe.poll(timeout):
            raise LoadFailed(f"the {kind} child did not answer in {timeout:.0f} s")
        try:
            message: Tally | str = pipe.recv()
        except EOFError:
            raise LoadFailed(f"the {kind} child died (exit code {process.exitcode})") from None
        if isinstance(message, str):
            raise LoadFailed(f"the {kind} child could not open its calls: {message}")
        return message


def _freeze(process: BaseProcess) -> None:
    """SIGSTOP the process and wait until the kernel says it is stopped."""
    assert process.pid is not None
    os.kill(process.pid, signal.SIGSTOP)
    deadline = time.monotonic() + STOP_TIMEOUT
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{process.pid}/stat", encoding="ascii") as stat:
                state = stat.read().rsplit(")", 1)[1].split()[0]
        except OSError:  # not Linux: the signal is delivered soon enough
            time.sleep(0.1)
            return
        if state in ("T", "t"):
            return
        time.sleep(0.01)
    raise LoadFailed(f"the frozen child (pid {process.pid}) did not stop")


# --- in the child process -----------------------------------------------------------


def _child_main(plan: _Plan, pipe: Connection) -> None:
    _die_with_parent()
    _raise_file_limit(plan.count // plan.per_connection + 64)
    asyncio.run(_Holder(plan, pipe).run())


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies, even while stopped
    (a stopped child cannot notice its pipe closing)."""
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _raise_file_limit(wanted: int) -> None:
    """One descriptor per connection: raise the soft limit (up to the hard
    one) if it is lower than that."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        limit = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def _quiet_stderr() -> None:
    """Send this process's stderr to /dev/null. Thawed after the server closed
    its connections, grpc logs a line per connection there; how the calls
    ended reaches the parent through the pipe."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stderr.fileno())
    os.close(devnull)


# Every call of the load: each may receive responses, though few do.
_StreamingCall = grpc.aio.UnaryStreamCall[Any, Any] | grpc.aio.StreamStreamCall[Any, Any]


class _Holder:
    """Opens a kind's calls, reports, then holds them until told to stop."""

    def __init__(self, plan: _Plan, pipe: Connection) -> None:
        self.plan = plan
        self.pipe = pipe
        self.metadata = (("authorization", f"Bearer {plan.token}"),)
        self.opened = 0
        self.ended: Counter[str] = Counter()
        self.details: dict[str, str] = {}  # the first details seen of each code
        self.tasks: list[asyncio.Task[None]] = []

    def tally(self) -> Tally:
        ended = tuple(
            (code, count, self.details[code]) for code, count in sorted(self.ended.items())
        )
        return Tally(self.plan.kind, self.opened, ended)

    async def run(self) -> None:
        plan = self.plan
        loop = asyncio.get_running_loop()
        commands: asyncio.Queue[str] = asyncio.Queue()

        def readable() -> None:
            try:
                commands.put_nowait(self.pipe.recv())
            except EOFError:  # the parent is gone: do not outlive it
                loop.remove_reader(self.pipe.fileno())
                commands.put_nowait("stop")

        loop.add_reader(self.pipe.fileno(), readable)
        connections = -(-plan.count // plan.per_connection)
        channels = [
            grpc.aio.insecure_channel(plan.target, options=CHANNEL_OPTIONS)
            for _ in range(connections)
        ]
        try:
            try:
                await asyncio.wait_for(self._open(channels), SETUP_TIMEOUT)
            except (TimeoutError, grpc.RpcError, OSError) as error:
                self.pipe.send(f"{type(error).__name__}: {error}")
                return
            await asyncio.sleep(SETTLE)
            if plan.kind == "frozen":
                _quiet_stderr()
            self.pipe.send(self.tally())
            deadline = loop.time() + plan.lifetime
            while True:
                try:
                    command = await asyncio.wait_for(commands.get(), deadline - loop.time())
                except TimeoutError:
                    break
                if command != "status":
                    break
                self.pipe.send(self.tally())
        finally:
            await asyncio.gather(*(channel.close(grace=None) for channel in channels))
            for task in self.tasks:
                task.cancel()

    async def _open(self, channels: Sequence[grpc.aio.Channel]) -> None:
        await asyncio.gather(*(channel.channel_ready() for channel in channels))
        openers: dict[str, Callable[[Sequence[grpc.aio.Channel]], Awaitable[None]]] = {
            "silent": self._open_silent,
            "watches": self._open_watches,
            "frozen": self._open_frozen,
        }
        await openers[self.plan.kind](channels)

    async def _open_silent(self, channels: Sequence[grpc.aio.Channel]) -> None:
        per_connection = self.plan.per_connection
        for number in range(self.plan.count):
            method = SILENT_METHODS[number % len(SILENT_METHODS)]
            # No request iterator and no write: the headers go, no message does.
            call = channels[number // per_connection].stream_stream(method, None, None)(None)
            self._follow(call, read=False)

    async def _open_watches(self, channels: Sequence[grpc.aio.Channel]) -> None:
        per_connection = self.plan.per_connection
        request = sync_pb.WatchChangesRequest(after_sequence=self.plan.after_sequence)
        for number in range(self.plan.count):
            stub = sync_grpc.ListSyncServiceStub(channels[number // per_connection])
            self._follow(stub.WatchChanges(request, metadata=self.metadata), read=True)

    async def _open_frozen(self, channels: Sequence[grpc.aio.Channel]) -> None:
        watch = sync_pb.WatchChangesRequest(after_sequence=self.plan.after_sequence)
        # A malformed IMEI: answered on the stream, recording nothing.
        check = check_pb.CheckEquipmentStreamRequest(
            correlation_id=1, check=check_pb.CheckEquipmentRequest(imei="0")
        )
        writes = []
        for number, channel in enumerate(channels[: self.plan.count]):
            if number % 2 == 0:
                stub = sync_grpc.ListSyncServiceStub(channel)
                self._follow(stub.WatchChanges(watch, metadata=self.metadata), read=True)
            else:
                checks = check_grpc.EquipmentCheckServiceStub(channel)
                call = checks.CheckEquipmentStream(None, metadata=self.metadata)
                writes.append(call.write(check))
                self._follow(call, read=True)
        for outcome in await asyncio.gather(*writes, return_exceptions=True):
            # A write fails when the server has ended the call already (how
            # it ended is counted by _follow); anything else is a fault.
            if isinstance(outcome, BaseException) and not isinstance(outcome, grpc.RpcError):
                raise outcome

    def _follow(self, call: _StreamingCall, read: bool) -> None:
        """Count the call, and count how it ends; read (and drop) what it receives."""
        self.opened += 1

        async def follow() -> None:
            if read:
                with contextlib.suppress(grpc.RpcError):
                    async for _message in call:
                        pass
            code = await call.code()
            self.details.setdefault(code.name, await call.details())
            self.ended[code.name] += 1

        self.tasks.append(asyncio.create_task(follow()))
