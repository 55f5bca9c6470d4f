"""A scripted ``CeirLink`` for unit tests: crafted snapshots, crafted change
streams (gaps, duplicates, disorder), and a record of what the node asked.

Like httpx's ``MockTransport``: the node under test cannot tell it from the
real link, and the test decides every answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from ceir.audit.checkpoint import Checkpoint, sign_checkpoint
from ceir.audit.merkle import MemoryHashStore, Prover
from ceir.audit.note import Signer
from ceir.v1 import custody_pb2 as custody_pb
from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import list_sync_pb2 as sync_pb
from ceir.v1 import types_pb2 as pb

from .leaf import leaf_hash
from .transport import LinkDown, LinkError
from .verification import DEFAULT_ORIGIN

CheckHandler = Callable[[check_pb.CheckEquipmentRequest], check_pb.CheckEquipmentResponse]


def change(sequence: int, kind: int, imei_key: int | str = "", **fields: object) -> pb.ListChange:
    """A ListChange with the key written as the API writes it."""
    key = f"{imei_key:014d}" if isinstance(imei_key, int) else imei_key
    return pb.ListChange(sequence=sequence, kind=kind, imei_key=key, **fields)  # type: ignore[arg-type]


class SignedLog:
    """Changes, their Merkle tree and checkpoints signed by ``signer``: what
    a custodian publishes, for crafted verified feeds (and the benchmark)."""

    def __init__(self, signer: Signer, origin: str = DEFAULT_ORIGIN) -> None:
        self.signer = signer
        self.origin = origin
        self.changes: list[pb.ListChange] = []
        self.store = MemoryHashStore()
        self.prover = Prover(self.store)

    @property
    def size(self) -> int:
        return len(self.changes)

    def append(self, change: pb.ListChange) -> None:
        """Add the next change (its sequence must be size + 1)."""
        if change.sequence != self.size + 1:
            raise ValueError(f"change {change.sequence} appended at size {self.size}")
        self.changes.append(change)
        self.store.append(leaf_hash(change))

    def checkpoint(self, size: int | None = None, time_us: int = 1_600_000_000_000_000) -> str:
        """The signed checkpoint of the first ``size`` changes (all by default)."""
        size = self.size if size is None else size
        state = Checkpoint(self.origin, size, self.prover.root(size), time_us)
        return sign_checkpoint(state, [self.signer])

    def message(self, first: int, last: int) -> sync_pb.WatchChangesResponse:
        """Changes ``first`` to ``last`` with the checkpoint at ``last``."""
        return sync_pb.WatchChangesResponse(
            changes=self.changes[first - 1 : last],
            head_sequence=self.size,
            checkpoint=self.checkpoint(last),
        )

    def messages(self, per_message: int, after: int = 0) -> list[sync_pb.WatchChangesResponse]:
        """The feed after ``after``, ``per_message`` changes a message."""
        return [
            self.message(first, min(first + per_message - 1, self.size))
            for first in range(after + 1, self.size + 1, per_message)
        ]

    def consistency_proof(self, first_size: int, second_size: int) -> list[bytes]:
        return self.prover.consistency_proof(first_size, second_size)


@dataclass
class _Feed:
    messages: list[sync_pb.WatchChangesResponse]
    hold_open: bool
    cancelled: threading.Event = field(default_factory=threading.Event)

    def __iter__(self) -> Iterator[sync_pb.WatchChangesResponse]:
        for message in self.messages:
            if self.cancelled.is_set():
                return
            yield message
        if self.hold_open:  # like a live feed with nothing new: wait until cancelled
            self.cancelled.wait()
            return
        raise LinkDown("UNAVAILABLE: scripted end of stream")

    def cancel(self) -> None:
        self.cancelled.set()


class FakeLink:
    """A link whose snapshot, feed and check answers are scripted.

    ``feeds`` holds one list of messages per ``watch`` call, in call order;
    once they run out, ``watch`` serves ``log`` (every change after the
    requested sequence) and holds the stream open.
    """

    def __init__(
        self,
        *,
        snapshot: Sequence[sync_pb.GetSnapshotResponse] = (),
        policy: pb.Policy | None = None,
        feeds: Sequence[Sequence[sync_pb.WatchChangesResponse]] = (),
        log: Sequence[pb.ListChange] = (),
        check: CheckHandler | None = None,
        signed: SignedLog | None = None,
    ) -> None:
        """``signed``: serve its changes (as ``log``) with its checkpoints,
        and its consistency proofs."""
        self.snapshot_chunks = list(snapshot) or [
            sync_pb.GetSnapshotResponse(sequence=0, last=True)
        ]
        self.policy = policy or pb.Policy(
            phase=pb.PHASE_NOTIFY, grace_days=30, clone_threshold=3, clone_window_seconds=86_400
        )
        self.feeds = [list(f) for f in feeds]
        self.signed = signed
        self.log = list(log) if signed is None else signed.changes
        self.proofs_asked: list[tuple[int, int]] = []
        self.check = check
        self.up = True
        self.watch_calls: list[int] = []
        self.snapshot_calls = 0
        self.checks_received: list[check_pb.CheckEquipmentRequest] = []
        self.custody: custody_pb.Custody | None = None  # None: no CustodyService
        self.readiness: list[tuple[int, str]] = []
        self._open: list[_Feed] = []

    def _require_up(self) -> None:
        if not self.up:
            raise LinkDown("UNAVAILABLE: the fake CEIR is down")

    def get_policy(self) -> pb.Policy:
        self._require_up()
        return self.policy

    def snapshot(self, chunk_size: int = 0) -> Iterator[sync_pb.GetSnapshotResponse]:
        self._require_up()
        self.snapshot_calls += 1
        yield from self.snapshot_chunks

    def watch(self, after_sequence: int) -> _Feed:
        self.watch_calls.append(after_sequence)
        if not self.up:
            feed = _Feed([], hold_open=False)
        elif self.feeds:
            feed = _Feed(self.feeds.pop(0), hold_open=False)
        else:
            tail = [c for c in self.log if c.sequence > after_sequence]
            head = max((c.sequence for c in self.log), default=after_sequence)
            if self.signed is not None and tail:
                messages = self.signed.messages(len(tail), after_sequence)
            else:
                messages = [sync_pb.WatchChangesResponse(changes=tail, head_sequence=head)]
            feed = _Feed(messages if tail else [], hold_open=True)
        self._open.append(feed)
        return feed

    def check_batch(
        self, checks: Sequence[check_pb.CheckEquipmentRequest]
    ) -> list[check_pb.CheckEquipmentResponse]:
        self._require_up()
        self.checks_received.extend(checks)
        if self.check is None:
            raise LinkDown("UNAVAILABLE: no check handler scripted")
        return [self.check(c) for c in checks]

    def checkpoint(self) -> str:
        self._require_up()
        if self.signed is None:
            raise LinkDown("UNAVAILABLE: no signed log scripted")
        return self.signed.checkpoint()

    def consistency_proof(self, first_size: int, second_size: int) -> list[bytes]:
        self._require_up()
        self.proofs_asked.append((first_size, second_size))
        if self.signed is None:
            raise LinkDown("UNAVAILABLE: no signed log scripted")
        return self.signed.consistency_proof(first_size, second_size)

    def get_custody(self) -> custody_pb.Custody:
        self._require_up()
        if self.custody is None:
            raise LinkError("UNIMPLEMENTED: no custody scripted", "UNIMPLEMENTED")
        return self.custody

    def report_readiness(self, policy_version: int, policy_sha256: str) -> custody_pb.Custody:
        custody = self.get_custody()
        self.readiness.append((policy_version, policy_sha256))
        return custody

    def reachable(self) -> bool:
        return self.up

    def go_down(self) -> None:
        """Make the CEIR unreachable and break open streams."""
        self.up = False
        for feed in self._open:
            feed.cancel()

    def close(self) -> None:
        for feed in self._open:
            feed.cancel()
