"""A standby register: it follows the custodian's log before a handover.

The incoming custodian's register (``ceir serve --standby-of``) pulls the
custodian's change feed from its own head, so that the freeze of a handover
only waits for a short tail (docs/custody.md). For every feed message:

1. the message's signed checkpoint must verify under a log key of the
   custodian it was given, for the log's origin, at exactly the message's
   last sequence;
2. ``Register.replicate`` recomputes every leaf from the received fields,
   and stores the changes, their tree nodes, their list rows and the
   checkpoint in one transaction only if the leaves give the checkpoint's
   root. Nothing is signed.

So the standby's database never holds a change that a verified checkpoint
does not cover: a change altered on the way or at the source is refused
with its whole message and nothing after it is trusted. The standby then
stops following and keeps the error (``error``); a person must look.
Transient failures (the custodian restarting, the network) are retried
with backoff; after its own restart the standby resumes from its head.

The transport (gRPC, mutual TLS, ``ListChange`` conversion) is the API
layer's (``ceir.api.standby_feed``): this module sees a ``Feed`` of domain
changes and signed notes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from ceir.audit import AuditError, Checkpoint, Verifier, open_checkpoint
from ceir.domain.model import Change
from ceir.storage import log_repository as log_repo

from .register import Register, ReplicaGap, ReplicaMismatch

__all__ = ["Feed", "FeedBatch", "FeedRefused", "FeedUnavailable", "Standby"]

log = logging.getLogger("ceir.standby")

# Changes held in memory waiting for a checkpoint (a custodian without a
# signing key sends none): beyond this the standby gives up.
MAX_UNCHECKED = 200_000
BACKOFF_FIRST, BACKOFF_MAX = 0.2, 5.0


@dataclass(frozen=True)
class FeedBatch:
    """One feed message: consecutive changes and the signed checkpoint at the last."""

    changes: Sequence[Change]
    checkpoint: str  # the signed note ("" when the custodian sent none)
    head: int  # the custodian's head when it sent the message


class FeedUnavailable(Exception):
    """The feed broke off for a reason that may pass (retried with backoff)."""


class FeedRefused(Exception):
    """The custodian refused the feed, or sent something no retry will mend."""


class Feed(Protocol):
    """The custodian's change feed, from after a sequence."""

    def watch(self, after: int) -> Iterator[FeedBatch]:
        """Feed messages after ``after``, live; raises ``FeedUnavailable`` or
        ``FeedRefused`` when it ends."""
        ...

    def cancel(self) -> None:
        """End the current ``watch`` (from another thread)."""
        ...


class Standby:
    """Follows the custodian's feed into ``register`` in a thread of its own."""

    def __init__(
        self,
        register: Register,
        feed: Feed,
        custodian_keys: Sequence[Verifier],
        origin: str,
        *,
        backoff: tuple[float, float] = (BACKOFF_FIRST, BACKOFF_MAX),
    ) -> None:
        if not custodian_keys:
            raise ValueError("a standby verifies the custodian's checkpoints: give its log key")
        self.register = register
        self.feed = feed
        self.keys = list(custodian_keys)
        self.origin = origin
        self._backoff = backoff
        self._changed = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._size = 0
        self._checkpoint = ""
        self._error = ""
        self.reconnects = 0  # feed connections after the first (for tests and logs)
        self._pending: list[Change] = []  # received, waiting for a checkpoint
        self._resume()

    # --- what others read -------------------------------------------------------------

    @property
    def size(self) -> int:
        """The tree size held and covered by a verified checkpoint of the custodian."""
        return self._size

    @property
    def latest_checkpoint(self) -> str:
        """The custodian's signed note at ``size`` ("" before the first)."""
        return self._checkpoint

    @property
    def error(self) -> str:
        """Why the standby stopped following ("" while it follows)."""
        return self._error

    @property
    def following(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait_for(self, size: int, timeout: float) -> bool:
        """Wait until the standby holds ``size`` verified leaves; False on
        timeout or once it has stopped with an error."""
        with self._changed:
            self._changed.wait_for(lambda: self._size >= size or bool(self._error), timeout)
            return self._size >= size

    # --- running ------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ceir-standby", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop following (the database keeps what was verified)."""
        self._stop.set()
        self.feed.cancel()
        with self._changed:
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _resume(self) -> None:
        """Start from the latest stored checkpoint, if the custodian signed it
        and the stored log has its root (the start-up proof checked the log)."""
        with self.register.db.read() as connection:
            latest = log_repo.latest_checkpoint(connection)
        if latest is None:
            return
        size, note = latest
        try:
            checkpoint = open_checkpoint(note, self.keys, self.origin)
        except AuditError:
            return  # not the custodian's: the next verified message sets it
        if checkpoint.size == size <= self.register.log.size and (
            self.register.log.root(size) == checkpoint.root_hash
        ):
            self._size, self._checkpoint = size, note

    def _run(self) -> None:
        delay = self._backoff[0]
        first = True
        while not self._stop.is_set():
            if not first:
                self.reconnects += 1
            first = False
            self._pending.clear()  # the feed starts again after the head
            try:
                for batch in self.feed.watch(self.register.state.sequence):
                    self._take(batch)
                    delay = self._backoff[0]
                    if self._stop.is_set():
                        return
            except FeedUnavailable as problem:
                if self._stop.is_set():
                    return
                log.warning(
                    "the custodian's feed broke off; retrying",
                    extra={"problem": str(problem), "retry_in_seconds": delay},
                )
            except (FeedRefused, ReplicaMismatch, ReplicaGap, AuditError, ValueError) as error:
                self._fail(str(error))
                return
            except Exception as error:  # the database: keep the error, do not spin
                log.exception("the standby stopped")
                self._fail(f"{type(error).__name__}: {error}")
                return
            self._stop.wait(delay)
            delay = min(delay * 2, self._backoff[1])

    def _take(self, batch: FeedBatch) -> None:
        """Verify one message's checkpoint, then replicate its changes under it."""
        pending = self._pending
        pending.extend(batch.changes)
        if not batch.checkpoint:
            if len(pending) > MAX_UNCHECKED:
                raise FeedRefused(
                    f"{len(pending)} changes came without a signed checkpoint: the custodian "
                    "must run with a signing key for a standby to follow it"
                )
            return
        checkpoint = self._open(batch.checkpoint)
        last = pending[-1].sequence if pending else self.register.state.sequence
        if checkpoint.size != last:
            raise FeedRefused(
                f"the feed message ending at change {last} carries a checkpoint of size "
                f"{checkpoint.size}"
            )
        # Nothing new: the root held must be the one signed.
        if not pending and self.register.log.root(last) != checkpoint.root_hash:
            raise ReplicaMismatch(last)
        try:
            self.register.replicate(
                pending,
                expect_root=checkpoint.root_hash,
                checkpoint=batch.checkpoint,
                checkpoint_time_us=checkpoint.time_us,
            )
        finally:
            pending.clear()
        with self._changed:
            self._size, self._checkpoint = checkpoint.size, batch.checkpoint
            self._changed.notify_all()

    def _open(self, note: str) -> Checkpoint:
        try:
            return open_checkpoint(note, self.keys, self.origin)
        except AuditError as error:
            raise FeedRefused(f"the custodian's checkpoint is refused: {error}") from error

    def _fail(self, problem: str) -> None:
        log.error(
            "the standby stopped following the custodian",
            extra={"problem": problem, "verified_size": self._size},
        )
        with self._changed:
            self._error = problem
            self._changed.notify_all()
