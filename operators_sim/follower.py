"""Keeping a replica current: bootstrap from a snapshot, follow the feed,
resume after a break, resynchronize when resuming is impossible.

A snapshot's first chunk carries the policy in force at its sequence; later
changes arrive as POLICY_CHANGED in the feed. With a server that does not
send it (``GetSnapshotResponse.policy`` unset), the follower reads the policy
before and after the snapshot and accepts the pair only when both reads are
the same policy with the same ``update_time``: then no policy change was
committed while the snapshot was taken.

With a ``LogVerifier`` (the node knows the custodian's key) the follower
does not take snapshots: it starts from an empty replica and replays the
feed from sequence 0, and every message passes the verifier before any of
its changes is applied (``operators_sim.verification``). A refused message
is never resolved by a snapshot (a snapshot cannot be verified): the node
keeps its last verified state and retries from its last verified sequence.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from ceir.audit.errors import AuditError
from ceir.v1 import list_sync_pb2 as sync_pb
from ceir.v1 import types_pb2 as pb

from .codec import subscriber_code
from .replica import Policy, Replica, SequenceError, Snapshot
from .snapshot_check import SNAPSHOT_MISMATCH, SnapshotDigest, check_snapshot
from .transport import CeirLink, LinkDown, LinkError
from .verification import LogVerifier, Refused

log = logging.getLogger("operators_sim.follower")
ChangeListener = Callable[[Sequence[pb.ListChange], float], None]
MovedListener = Callable[[str], None]
REGISTER_MOVED = "REGISTER_MOVED"
HOLDING_REASONS = ("SPLIT_VIEW",)  # refused on purpose: the lists held are still the verified ones
POLICY_READS = 5


class BootstrapError(Exception):
    """No consistent (snapshot, policy) pair could be read."""


def read_snapshot(chunks: Iterator[sync_pb.GetSnapshotResponse]) -> Snapshot:
    """Assemble streamed chunks into one ``Snapshot``; every chunk must carry
    the same sequence and the stream must end with ``last``. The lists'
    digest is computed on the way (``snapshot_check``)."""
    parts: dict[int, dict[str, list[np.ndarray]]] = {}
    sequence: int | None = None
    policy: Policy | None = None
    checkpoint = statement = ""
    frontier: tuple[bytes, ...] = ()
    digest = SnapshotDigest()
    complete = False
    for chunk in chunks:
        if sequence is None:
            sequence = chunk.sequence
            checkpoint = chunk.checkpoint
            if chunk.HasField("policy"):
                policy = Policy.from_message(chunk.policy)
        elif chunk.sequence != sequence:
            raise LinkError(f"snapshot chunk at sequence {chunk.sequence}, expected {sequence}")
        try:
            digest.add(chunk)
        except ValueError as error:
            raise LinkError(f"snapshot chunk at sequence {sequence}: {error}") from None
        columns = parts.setdefault(chunk.list, {})
        columns.setdefault("keys", []).append(np.array(chunk.imei_keys, dtype=np.uint64))
        if chunk.list == sync_pb.SNAPSHOT_LIST_WHITELIST:
            columns.setdefault("a", []).append(np.array(chunk.valid_until_unix, dtype=np.int64))
        elif chunk.list == sync_pb.SNAPSHOT_LIST_BLACKLIST:
            columns.setdefault("a", []).append(np.array(chunk.blacklist_causes, dtype=np.int64))
        else:
            commitments = list(chunk.subscriber_commitments) or [b""] * len(chunk.imsis)
            codes = np.array(
                [subscriber_code(i, c) for i, c in zip(chunk.imsis, commitments, strict=True)],
                dtype=np.uint64,
            )
            columns.setdefault("a", []).append(codes)
            if chunk.list == sync_pb.SNAPSHOT_LIST_NOTIFICATION:
                columns.setdefault("b", []).append(np.array(chunk.block_dates_unix, dtype=np.int64))
        if chunk.last:
            statement = chunk.lists_statement
            frontier = tuple(chunk.frontier_hashes)
        complete = chunk.last
    if sequence is None or not complete:
        raise LinkDown("the snapshot stream ended before its last chunk")

    def column(list_id: int, name: str, dtype: type[np.generic]) -> np.ndarray:
        pieces = parts.get(list_id, {}).get(name)
        return np.concatenate(pieces).astype(dtype) if pieces else np.empty(0, dtype)

    w, b = sync_pb.SNAPSHOT_LIST_WHITELIST, sync_pb.SNAPSHOT_LIST_BLACKLIST
    n, e = sync_pb.SNAPSHOT_LIST_NOTIFICATION, sync_pb.SNAPSHOT_LIST_EXCEPTION
    return Snapshot(
        sequence=sequence,
        whitelist_keys=column(w, "keys", np.uint64),
        whitelist_valid_until=column(w, "a", np.int64),
        blacklist_keys=column(b, "keys", np.uint64),
        blacklist_causes=column(b, "a", np.int64),
        notification_keys=column(n, "keys", np.uint64),
        notification_imsis=column(n, "a", np.uint64),
        notification_block_dates=column(n, "b", np.int64),
        exception_keys=column(e, "keys", np.uint64),
        exception_imsis=column(e, "a", np.uint64),
        policy=policy,
        checkpoint=checkpoint,
        statement=statement,
        frontier=frontier,
        digest=digest.digest(),
    )


def bootstrap(link: CeirLink, replica: Replica, chunk_size: int = 0) -> Snapshot:
    """Load a snapshot and the policy in force at its sequence."""
    for _ in range(POLICY_READS):
        before = link.get_policy()
        snapshot = read_snapshot(link.snapshot(chunk_size))
        if snapshot.policy is not None:  # the server says which policy held at the sequence
            replica.load(snapshot, snapshot.policy)
            return snapshot
        after = link.get_policy()
        if before == after:  # same fields and same update_time: no change in between
            replica.load(snapshot, Policy.from_message(after))
            return snapshot
    raise BootstrapError(
        f"the policy changed during each of {POLICY_READS} snapshots; cannot tell which "
        "policy was in force at the snapshot's sequence"
    )


@dataclass
class Backoff:
    """Exponential reconnect delays: first, doubling, capped."""

    first: float = 0.05
    cap: float = 1.0
    _next: float = field(default=0.0, init=False)

    def reset(self) -> None:
        self._next = 0.0

    def next(self) -> float:
        self._next = self.first if self._next == 0.0 else min(self._next * 2, self.cap)
        return self._next


@dataclass
class FollowerStats:
    snapshots: int = 0
    reconnects: int = 0
    refused: int = 0  # messages refused (a gap, a duplicate, disorder, a failed verification)
    applied: int = 0
    head_sequence: int = 0
    last_error: str = ""


class Follower:
    """Runs in its own thread: snapshot, then the feed, forever."""

    def __init__(
        self,
        link: CeirLink,
        replica: Replica,
        *,
        listener: ChangeListener | None = None,
        backoff: Backoff | None = None,
        chunk_size: int = 0,
        name: str = "follower",
        verifier: LogVerifier | None = None,
        on_moved: MovedListener | None = None,
    ) -> None:
        """``on_moved``: told the new endpoint when the register answers
        REGISTER_MOVED (a custody handover: ``operators_sim.custody``)."""
        self.link = link
        self.verifier = verifier
        self.on_moved = on_moved
        self._switching = False
        self.replica = replica
        self.listener = listener
        self.backoff = backoff or Backoff()
        self.chunk_size = chunk_size
        self.name = name
        self.stats = FollowerStats()
        self._streaming = False
        self.disconnected_since = time.monotonic()
        self._last_refused: int | None = None
        self._resync = not replica.loaded
        self._target = 0  # verifying: the size of the checkpoint read at start
        self._stop = threading.Event()
        self._stream_lock = threading.Lock()
        self._stream: object | None = None
        self._thread: threading.Thread | None = None
        self._caught_up = threading.Condition()
        # Wall-clock time (the register's commit times are wall clock) the
        # replica first became ready: changes committed before it are the
        # backlog the node caught up on, not live propagation.
        self.ready_since: float | None = None

    # --- public state -------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while the feed is open and the CEIR reachable."""
        return self._streaming and self.link.reachable()

    @property
    def applied_sequence(self) -> int:
        return self.replica.sequence

    @property
    def ready(self) -> bool:
        """A replica to decide with: the snapshot loaded or, when verifying,
        the log replayed and verified up to the checkpoint read at start."""
        return self.replica.loaded and self.replica.sequence >= self._target

    @property
    def lag(self) -> int:
        """Changes the CEIR had that this replica has not applied (as of the
        last message received)."""
        return max(self.stats.head_sequence - self.replica.sequence, 0)

    def wait_for(self, sequence: int, timeout: float) -> bool:
        """Block until the replica has applied ``sequence`` (tests, drills)."""
        with self._caught_up:
            return self._caught_up.wait_for(lambda: self.replica.sequence >= sequence, timeout)

    # --- running ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._cancel_stream()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                if self._resync:
                    self._bootstrap()
                self._follow()
            except Refused as error:
                # Verification failed: nothing of the message was applied; the
                # verifier counted the alert. Retry from the last verified sequence.
                self.stats.refused += 1
                self.stats.last_error = f"{error.reason}: {error}"
                if error.reason not in HOLDING_REASONS:
                    # A split view is refused on purpose: the node goes on deciding
                    # from its verified lists, as up to date as the register lets it be.
                    self._mark_down()
            except SequenceError as error:
                self.stats.refused += 1
                self.stats.last_error = str(error)
                log.warning("%s: refused the feed: %s", self.name, error)
                self._mark_down()
                # A refused change is never applied: resume from the last
                # applied sequence; if the same sequence is refused twice in a
                # row, the feed cannot be resumed: take a fresh snapshot.
                if error.expected == self._last_refused:
                    self._resync = True
                self._last_refused = error.expected
            except (LinkError, BootstrapError) as error:
                self.stats.last_error = str(error)
                self._mark_down()
                moved = isinstance(error, LinkError) and error.reason == REGISTER_MOVED
                if moved and self.on_moved is not None:
                    assert isinstance(error, LinkError)
                    self.on_moved(error.metadata.get("endpoint", ""))
            if not self._stop.is_set():
                self.stats.reconnects += 1
                self._stop.wait(self.backoff.next())

    def _bootstrap(self) -> None:
        if self.verifier is None:
            bootstrap(self.link, self.replica, self.chunk_size)
            self.stats.snapshots += 1
        elif not self._bootstrap_verified(self.verifier):
            # Replay the log from its first change (the register's initial policy).
            self._target = self.verifier.open(self.link.checkpoint()).size
            self.replica.load(Snapshot(sequence=0), Policy())
        self._resync = False
        self._notify()

    def _bootstrap_verified(self, verifier: LogVerifier) -> bool:
        """Load a snapshot proven against the signed log (``snapshot_check``)
        and verify the feed from it; False when the server gives no proof or
        the proof fails (an alert): the node then replays the log instead."""
        if verifier.trust.replay_log:
            return False
        snapshot = read_snapshot(self.link.snapshot(self.chunk_size))
        if not snapshot.statement or snapshot.policy is None:
            return False
        try:
            checkpoint = verifier.open(snapshot.checkpoint)
            frontier = check_snapshot(
                verifier.trust,
                checkpoint,
                snapshot.sequence,
                snapshot.digest,
                snapshot.statement,
                snapshot.frontier,
            )
        except Refused:
            return False
        except AuditError as error:
            verifier.refuse(SNAPSHOT_MISMATCH, str(error))
            return False
        verifier.adopt(checkpoint, frontier)
        self.replica.load(snapshot, snapshot.policy)
        self._target = snapshot.sequence
        self.stats.snapshots += 1
        return True

    def _follow(self) -> None:
        replica = self.replica
        verifier = self.verifier
        if verifier is not None:
            verifier.drop_stage()
        stream = self.link.watch(replica.sequence)
        with self._stream_lock:
            self._stream = stream
        self._mark_up()
        try:
            for message in stream:
                if self._stop.is_set():
                    return
                self.stats.head_sequence = message.head_sequence
                if message.head_sequence < replica.sequence:
                    # The register is behind this replica (restored from an
                    # older copy): nothing it sends can be trusted to follow.
                    # A verified log never shrinks: keep the verified state.
                    if verifier is not None:
                        raise verifier.refuse(
                            "LOG_SHRANK",
                            f"the CEIR's head {message.head_sequence} is behind the verified "
                            f"size {replica.sequence}",
                        )
                    self._resync = True
                    raise LinkError(
                        f"the CEIR's head {message.head_sequence} is behind the replica's "
                        f"sequence {replica.sequence}"
                    )
                changes: Sequence[pb.ListChange] = message.changes
                if verifier is not None:
                    changes = verifier.receive(changes, message.checkpoint)
                if not changes:
                    continue
                before = replica.sequence
                try:
                    replica.apply(changes)
                finally:
                    applied = replica.sequence - before
                    self.stats.applied += applied
                    self._notify()
                    if applied and self.listener is not None:
                        self.listener(changes[:applied], time.time())
                self._last_refused = None
            if not self._stop.is_set():
                raise LinkDown("the change feed ended")
        finally:
            stream.cancel()
            with self._stream_lock:
                self._stream = None

    def reconnect(self) -> None:
        """Reopen the feed on the link as it is now (after a custody switch),
        without counting the moment as an outage."""
        self._switching = True
        self._cancel_stream()

    def _notify(self) -> None:
        if self.ready_since is None and self.ready:
            self.ready_since = time.time()
        with self._caught_up:
            self._caught_up.notify_all()

    def _mark_up(self) -> None:
        self._streaming = True
        self._switching = False
        self.backoff.reset()

    def _mark_down(self) -> None:
        if self._switching:  # the stream the switch cancelled: not an outage
            self._switching = False
            return
        if self._streaming:
            self._streaming = False
            self.disconnected_since = time.monotonic()

    def _cancel_stream(self) -> None:
        with self._stream_lock:
            stream = self._stream
        if stream is not None:
            stream.cancel()  # type: ignore[attr-defined]
