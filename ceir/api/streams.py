"""The streaming RPCs, as coroutines on the server's event loop.

A stream waits on the loop (for its client's next message, for the next
change, for a slow reader), never in a thread; what blocks — a check that
writes, a chunk's transaction, a read of the change table — runs in a
worker thread through ``Call.run``. No business rule lives here.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import Iterator

from ceir.domain.commands import ImportChunk
from ceir.domain.errors import InvalidArgument, ResourceExhausted
from ceir.domain.model import Caller, Change
from ceir.domain.permissions import require, visible_imsi_prefixes
from ceir.service.checks import CheckQuery, CheckService
from ceir.service.collection import collection_paused
from ceir.service.register import Register
from ceir.service.sync import SnapshotChunk, SyncService
from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import list_sync_pb2 as sync_pb
from ceir.v1 import registry_pb2 as registry_pb

from . import commands, convert
from .calls import Call
from .servicers import MAX_REJECTIONS, answer, chunk_response, fingerprint_of, serialised

# Snapshots copy the lists: at most this many are built at once, and at
# most this many for one organisation, so readers cannot multiply copies.
MAX_SNAPSHOTS = 8
MAX_SNAPSHOTS_PER_ORG = 2
# An idle feed wakes this often to notice a closed register or a gone client.
FEED_IDLE_SECONDS = 1.0
# Feed messages kept for streams that reach the same cursor.
SHARED_BATCHES = 64
# The last sequence of a feed message and the message, serialised (None: nothing new).
FeedBatch = tuple[int, bytes] | None
BatchKey = tuple[int, int, tuple[str, ...] | None]  # cursor, head, view


class ChangeSignal:
    """Wakes the loop's feed watchers when the register moves (from any thread)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Called by the register, in whichever thread applied the change."""
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
            self._loop.call_soon_threadsafe(self._fire)

    def _fire(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        """Until the next change or ``timeout``, whichever comes first."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)


class EquipmentCheckStreams:
    def __init__(self, checks: CheckService) -> None:
        self.checks = checks

    async def CheckEquipmentStream(self, call: Call) -> None:
        self.checks.authorize(call.caller)  # before the first message
        request_type = check_pb.CheckEquipmentStreamRequest
        while (request := await call.read(request_type)) is not None:
            answer = self._answer_at_once(call.caller, request)
            if answer is None:
                answer = await call.run(self._answer, call.caller, request)
            await call.write(answer)

    def _answer_at_once(
        self, caller: Caller, request: check_pb.CheckEquipmentStreamRequest
    ) -> check_pb.CheckEquipmentStreamResponse | None:
        """The answer if it needs no write (on the event loop), else None."""
        check = request.check
        query = CheckQuery(check.imei, check.imsi, check.msisdn)
        decision = self.checks.decide_at_once(caller, query)
        if decision is None:
            return None
        answer = check_pb.CheckEquipmentStreamResponse(correlation_id=request.correlation_id)
        convert.fill_decision(answer.result, decision)
        return answer

    def _answer(
        self, caller: Caller, request: check_pb.CheckEquipmentStreamRequest
    ) -> check_pb.CheckEquipmentStreamResponse:
        check = request.check
        answer = check_pb.CheckEquipmentStreamResponse(correlation_id=request.correlation_id)
        try:
            decision = self.checks.check(caller, CheckQuery(check.imei, check.imsi, check.msisdn))
            convert.fill_decision(answer.result, decision)
        except InvalidArgument as error:  # one bad check does not end the stream
            answer.error_message = error.message
        return answer


class ImportStreams:
    def __init__(self, register: Register) -> None:
        self.register = register

    async def ImportRegistrations(self, call: Call) -> registry_pb.ImportRegistrationsResponse:
        require(call.caller, ImportChunk.action)  # before the first chunk
        total = registry_pb.ImportRegistrationsResponse()
        request_id = ""
        number = 0
        request_type = registry_pb.ImportRegistrationsRequest
        while (chunk := await call.read(request_type)) is not None:
            if number == 0:
                request_id = chunk.request_id
            part = await call.run(self._import_chunk, call.caller, request_id, number, chunk)
            total.rows_received += part.rows_received
            total.rows_accepted += part.rows_accepted
            total.rows_rejected += part.rows_rejected
            room = MAX_REJECTIONS - len(total.rejections)
            total.rejections.extend(part.rejections[: max(room, 0)])
            total.sequence = max(total.sequence, part.sequence)
            number += 1
        if not total.sequence:
            total.sequence = self.register.state.sequence
        return total

    def _import_chunk(
        self,
        caller: Caller,
        request_id: str,
        number: int,
        chunk: registry_pb.ImportRegistrationsRequest,
    ) -> registry_pb.ImportRegistrationsResponse:
        with collection_paused():  # a chunk allocates per row, nothing in a cycle
            command = commands.import_chunk(chunk, number, self.register.clock.now_us())
            outcome = self.register.execute(
                caller, command, request_id, fingerprint_of(chunk), serialised(chunk_response)
            )
        return answer(outcome, registry_pb.ImportRegistrationsResponse, chunk_response)


class ListSyncStreams:
    def __init__(self, sync: SyncService, signal: ChangeSignal) -> None:
        self.sync = sync
        self.signal = signal
        self._snapshots: dict[str, int] = {}  # organisation -> snapshots being sent
        # (cursor, head, view) -> the next feed message: the many replicas
        # that wait at the same cursor with the same view of subscribers (an
        # operator's own, or all for regulators) share one read and one
        # serialisation of it.
        self._batches: OrderedDict[BatchKey, asyncio.Future[FeedBatch]] = OrderedDict()

    async def GetSnapshot(self, call: Call) -> None:
        request = await call.request(sync_pb.GetSnapshotRequest)
        with self._snapshot_slot(call.caller.name):
            chunks = await call.run(self.sync.snapshot, call.caller, request.chunk_size)
            while (message := await call.run(_next_snapshot_message, chunks)) is not None:
                await call.write(message)

    @contextlib.contextmanager
    def _snapshot_slot(self, org: str) -> Iterator[None]:
        # Only the loop's thread touches the counts: no lock needed.
        if sum(self._snapshots.values()) >= MAX_SNAPSHOTS:
            raise ResourceExhausted(
                f"{MAX_SNAPSHOTS} snapshots are being sent already; retry shortly",
                reason="TOO_MANY_SNAPSHOTS",
            )
        if self._snapshots.get(org, 0) >= MAX_SNAPSHOTS_PER_ORG:
            raise ResourceExhausted(
                f"{org} has {MAX_SNAPSHOTS_PER_ORG} snapshots being sent already; "
                "finish or cancel one first",
                reason="TOO_MANY_SNAPSHOTS",
            )
        self._snapshots[org] = self._snapshots.get(org, 0) + 1
        try:
            yield
        finally:
            self._snapshots[org] -= 1
            if not self._snapshots[org]:
                del self._snapshots[org]

    async def WatchChanges(self, call: Call) -> None:
        request = await call.request(sync_pb.WatchChangesRequest)
        cursor = await call.run(self.sync.open_feed, call.caller, request.after_sequence)
        view = visible_imsi_prefixes(call.caller)
        register = self.sync.register
        while not register.closed:
            if register.state.sequence <= cursor:
                await self.signal.wait(FEED_IDLE_SECONDS)
                continue
            batch = await self._next_batch(call, cursor, view)
            if batch is None:
                await self.signal.wait(FEED_IDLE_SECONDS)
                continue
            cursor, message = batch
            await call.write(message)

    async def _next_batch(self, call: Call, cursor: int, view: tuple[str, ...] | None) -> FeedBatch:
        """The feed message after ``cursor``, shared by every stream at that
        cursor with the same view."""
        key = (cursor, self.sync.register.state.sequence, view)
        batch = self._batches.get(key)
        if batch is None:
            batch = asyncio.ensure_future(call.run(self._feed_message, cursor, view))
            self._batches[key] = batch
            batch.add_done_callback(lambda done: self._forget_failed(key, done))
            while len(self._batches) > SHARED_BATCHES:
                self._batches.popitem(last=False)
        # Shielded: one reader that goes away must not cancel the others' read.
        return await asyncio.shield(batch)

    def _forget_failed(self, key: BatchKey, batch: asyncio.Future[FeedBatch]) -> None:
        if (batch.cancelled() or batch.exception() is not None) and self._batches.get(key) is batch:
            del self._batches[key]

    def _feed_message(self, cursor: int, view: tuple[str, ...] | None) -> FeedBatch:
        """The next batch after ``cursor`` as a serialised message for
        receivers of ``view``, and its last sequence."""
        changes: list[Change] = self.sync.changes_after(cursor)
        if not changes:
            return None
        last = changes[-1].sequence
        message = sync_pb.WatchChangesResponse(
            changes=[convert.change_for(c, view) for c in changes],
            head_sequence=max(last, self.sync.register.state.sequence),
            checkpoint=self.sync.checkpoint_at(last),
        )
        return last, message.SerializeToString()


def _next_snapshot_message(chunks: Iterator[SnapshotChunk]) -> bytes | None:
    """The next chunk as a serialised message (None after the last)."""
    chunk = next(chunks, None)
    if chunk is None:
        return None
    message = sync_pb.GetSnapshotResponse(
        sequence=chunk.sequence,
        list=SNAPSHOT_LISTS[chunk.list_name],
        last=chunk.last,
        total_entries=chunk.total_entries,
        checkpoint=chunk.checkpoint,
    )
    if chunk.policy is not None:
        message.policy.CopyFrom(convert.policy(chunk.policy))
    message.imei_keys.extend(chunk.imei_keys)
    message.valid_until_unix.extend(chunk.valid_until_s)
    message.blacklist_causes.extend(chunk.causes)  # type: ignore[arg-type]
    message.imsis.extend(chunk.imsis)
    message.msisdns.extend(chunk.msisdns)
    message.block_dates_unix.extend(chunk.block_dates_s)
    message.subscriber_commitments.extend(chunk.commitments)
    message.subscriber_salts.extend(chunk.salts)
    message.lists_statement = chunk.statement
    message.frontier_hashes.extend(chunk.frontier)
    return message.SerializeToString()


SNAPSHOT_LISTS = {
    "whitelist": sync_pb.SNAPSHOT_LIST_WHITELIST,
    "blacklist": sync_pb.SNAPSHOT_LIST_BLACKLIST,
    "notification": sync_pb.SNAPSHOT_LIST_NOTIFICATION,
    "exception": sync_pb.SNAPSHOT_LIST_EXCEPTION,
}
