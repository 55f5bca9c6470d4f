"""Operator EIR nodes: one per operator, in synchronize or authorize mode.

A node decides attaches a batch at a time (``decide_batch``) and answers
single checks (``decide``). When the CEIR is unreachable it applies its
``Failover`` policy, and counts every decision taken that way:

- ``fail-open``: allow (GREYLISTED, "allowed, tracked"), a forced answer;
- ``fail-closed``: deny (BLACKLISTED), a forced answer;
- ``last-known``: the replica (synchronize) or the cached answer, even past
  its time-to-live (authorize). With nothing known (no replica yet, a device
  never answered), the node denies: a forced answer.

Forced answers carry no reasons and ``Source.FORCED``; answers from a
replica or cache while degraded carry ``Source.LAST_KNOWN``.
"""

from __future__ import annotations

import collections
import enum
import threading
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from ceir.organisations import operators as brief_operators
from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import types_pb2 as pb

from . import rules
from .clones import CloneTracker
from .codec import MALFORMED, imei_keys, imsi_code, imsi_text
from .custody_follower import CustodyFollower, CustodySetup
from .decision import PENDING_OUTCOMES, Decision, Decisions, Outcome, Source, outcome_of
from .follower import Follower
from .replica import DEFAULT_MERGE_THRESHOLD, Replica
from .reporter import Reporter, Sighting
from .transport import MAX_BATCH, CeirLink, LinkDown
from .verification import Gossip, LogVerifier, Trust

U64 = npt.NDArray[np.uint64]


class Failover(enum.StrEnum):
    """What a node answers while the CEIR is unreachable."""

    FAIL_OPEN = "fail-open"
    FAIL_CLOSED = "fail-closed"
    LAST_KNOWN = "last-known"


class Mode(enum.StrEnum):
    SYNCHRONIZE = "synchronize"
    AUTHORIZE = "authorize"


@dataclass(frozen=True)
class Operator:
    """An operator of the brief: its organisation name and MCC-MNCs."""

    name: str
    display: str
    mcc_mncs: tuple[str, ...]
    share: float

    def owns(self, imsi: str) -> bool:
        return any(imsi.startswith(code.replace("-", "")) for code in self.mcc_mncs)


OPERATORS = tuple(
    Operator(org.name, org.display, org.mcc_mncs, org.market_share) for org in brief_operators()
)
"""The operators of ``ceir.organisations``' table, in its order."""


@dataclass
class AttachBatch:
    """Attaches to decide: IMEIs as the network sent them (ASCII bytes),
    IMSI codes (``codec.imsi_code``) and MSISDNs as integers (0 = none)."""

    imeis: npt.NDArray[np.bytes_]
    imsis: U64
    msisdns: U64

    def __len__(self) -> int:
        return int(self.imeis.shape[0])

    @classmethod
    def one(cls, imei: str, imsi: str = "", msisdn: str = "") -> AttachBatch:
        return cls(
            np.array([imei.encode()], dtype="S16")
            if len(imei) <= 16 and imei.isascii()
            else np.array([b"?" * 17], dtype="S17"),
            np.array([imsi_code(imsi)], dtype=np.uint64),
            np.array([int(msisdn.lstrip("+") or 0)], dtype=np.uint64),
        )


@dataclass(frozen=True)
class Sms:
    """A notification SMS to a subscriber."""

    msisdn: str
    imsi: str
    imei_key: int
    block_date: int  # Unix seconds
    sent_at: float

    @property
    def text(self) -> str:
        day = time.strftime("%d %b %Y", time.gmtime(self.block_date))
        return (
            f"IMEI {self.imei_key:014d} is not registered. Register it before {day} "
            "or it will be blocked on every network."
        )


@dataclass
class NodeStats:
    decisions: int = 0
    by_source: dict[str, int] = field(default_factory=lambda: {s.name: 0 for s in Source})
    degraded: int = 0  # decisions taken while the CEIR was unreachable
    forced_allow: int = 0
    forced_deny: int = 0
    cache_hits: int = 0
    ceir_calls: int = 0

    def count(self, decisions: Decisions, degraded: bool) -> None:
        self.decisions += len(decisions)
        sources = np.bincount(decisions.source, minlength=len(Source))
        for source in Source:
            self.by_source[source.name] += int(sources[source])
        outcomes = np.bincount(decisions.outcome, minlength=len(Outcome))
        self.forced_allow += int(outcomes[Outcome.FORCED_ALLOW])
        self.forced_deny += int(outcomes[Outcome.FORCED_DENY])
        if degraded:
            self.degraded += len(decisions)


def _forced(count: int, allow: bool, sequence: int) -> Decisions:
    result = Decisions.empty(count)
    result.outcome[:] = Outcome.FORCED_ALLOW if allow else Outcome.FORCED_DENY
    result.source[:] = Source.FORCED
    result.sequence[:] = sequence
    return result


def now_us() -> int:
    return time.time_ns() // 1_000


class _Node:
    """What both modes share: identity, failover, the outbox, the counters."""

    mode: Mode

    def __init__(self, operator: Operator, link: CeirLink, failover: Failover) -> None:
        self.operator = operator
        self.link = link
        self.failover = failover
        self.stats = NodeStats()
        self.outbox: list[Sms] = []
        self._outbox_lock = threading.Lock()
        self._decide_lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.operator.name

    def _send_sms(self, sms: Sms) -> None:
        with self._outbox_lock:
            self.outbox.append(sms)

    def decide(
        self, imei: str, imsi: str = "", msisdn: str = "", at_us: int | None = None
    ) -> Decision:
        """Decide one attach."""
        batch = AttachBatch.one(imei, imsi, msisdn)
        decisions = self.decide_batch(batch, now_us() if at_us is None else at_us)
        key = int(imei_keys(batch.imeis)[0])
        return decisions.at(0, None if key == int(MALFORMED) else key)

    def decide_batch(self, batch: AttachBatch, at_us: int) -> Decisions:
        raise NotImplementedError

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError


class SyncNode(_Node):
    """Synchronize mode: a replica from the snapshot and the feed; every
    attach decided locally; sightings the register must record are reported."""

    mode = Mode.SYNCHRONIZE

    def __init__(
        self,
        operator: Operator,
        link: CeirLink,
        failover: Failover = Failover.LAST_KNOWN,
        *,
        merge_threshold: int = DEFAULT_MERGE_THRESHOLD,
        chunk_size: int = 0,
        trust: Trust | None = None,
        gossip: Gossip | None = None,
        custody: CustodySetup | None = None,
    ) -> None:
        """``trust``: the custodian's key and the log's origin; with it the
        node verifies the feed (``operators_sim.verification``) and publishes
        its verified checkpoints to ``gossip``. ``custody``: the node trusts
        its policy 0 instead, and follows the register's custody handovers
        (``operators_sim.custody_follower``); it verifies the feed with the
        keys of the policies it walked to."""
        self.custody: CustodyFollower | None = None
        if custody is not None:
            self.custody = custody.follower(link, operator.name)
            link = self.custody.link
            trust = self.custody.verifier_trust(trust.replay_log if trust is not None else False)
        super().__init__(operator, link, failover)
        self.replica = Replica(merge_threshold)
        self.clones = CloneTracker()
        self.verifier = (
            LogVerifier(
                trust,
                link.consistency_proof,
                gossip=gossip,
                name=operator.name,
                guard=self.custody,
            )
            if trust is not None
            else None
        )
        self.follower = Follower(
            link,
            self.replica,
            listener=self._on_changes,
            chunk_size=chunk_size,
            name=f"{operator.name}-feed",
            verifier=self.verifier,
            on_moved=self.custody.moved if self.custody is not None else None,
        )
        if self.custody is not None and self.verifier is not None:
            verifier = self.verifier
            self.custody.alert = verifier.stats.alert
            self.custody.restart = self.follower.reconnect
            self.custody.retrusted = lambda new: setattr(verifier, "trust", new)
        self.reporter = Reporter(link, name=f"{operator.name}-reports")
        # Seconds from commit to applied, per live change: one the register
        # committed after this replica was ready. The changes a node catches up
        # on at start (the log it replays, the tail after its snapshot) were
        # committed before the node existed: they are counted, not timed.
        self.propagation = array("d")
        self.backlog_changes = 0
        self._own_prefixes = tuple(code.replace("-", "") for code in operator.mcc_mncs)

    @property
    def applied_sequence(self) -> int:
        return self.replica.sequence

    @property
    def lag(self) -> int:
        return self.follower.lag

    def start(self) -> None:
        self.replica.start_merging()
        self.follower.start()
        self.reporter.start()
        if self.custody is not None:
            self.custody.start()

    def stop(self) -> None:
        if self.custody is not None:
            self.custody.stop()
        self.follower.stop()
        self.reporter.stop()
        self.replica.close()

    def wait_ready(self, timeout: float) -> bool:
        """Wait for the first snapshot (verifying: the log replayed up to the
        checkpoint the node read at start)."""
        deadline = time.monotonic() + timeout
        while not self.follower.ready:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def decide_batch(self, batch: AttachBatch, at_us: int) -> Decisions:
        keys = imei_keys(batch.imeis)
        degraded = not self.follower.connected
        if not self.follower.ready or (degraded and self.failover != Failover.LAST_KNOWN):
            allow = self.failover == Failover.FAIL_OPEN
            result = _forced(len(batch), allow, self.replica.sequence)
            self.stats.count(result, degraded=True)
            return result
        with self._decide_lock, self.replica.lock:
            result, effects = rules.decide(self.replica, self.clones, keys, batch.imsis, at_us)
        if degraded:
            result.source[:] = Source.LAST_KNOWN
        self._report(keys, batch, effects)
        self.stats.count(result, degraded)
        return result

    def _report(self, keys: U64, batch: AttachBatch, effects: rules.Effects) -> None:
        rows = np.concatenate([effects.new_notification, effects.grace_expired])
        if rows.size == 0:
            return
        sightings = []
        notifying = effects.new_notification.size
        for position, index in enumerate(rows.tolist()):
            code = int(batch.imsis[index])
            imsi = imsi_text(code)
            # The register records notifications only for the reporting
            # operator's own subscribers: another's would be sent for nothing.
            if position < notifying and not imsi.startswith(self._own_prefixes):
                continue
            msisdn = int(batch.msisdns[index])
            sightings.append(Sighting(int(keys[index]), imsi, code, str(msisdn) if msisdn else ""))
        if sightings:
            self.reporter.submit(sightings)

    def _on_changes(self, changes: Sequence[pb.ListChange], applied_at: float) -> None:
        live_since = self.follower.ready_since
        for change in changes:
            committed = change.commit_time.ToNanoseconds() / 1e9
            if live_since is not None and committed >= live_since:
                self.propagation.append(applied_at - committed)
            else:
                self.backlog_changes += 1
            kind = change.kind
            if kind == pb.CHANGE_KIND_NOTIFICATION_NEW:
                key = int(change.imei_key)
                self.reporter.confirm(key, imsi_code(change.imsi))
                if change.imsi.startswith(self._own_prefixes) and change.msisdn:
                    self._send_sms(
                        Sms(change.msisdn, change.imsi, key, change.block_date.seconds, applied_at)
                    )
            elif kind in (pb.CHANGE_KIND_BLACKLIST_BLOCKED, pb.CHANGE_KIND_WHITELIST_ADDED):
                self.reporter.forget_key(int(change.imei_key))


@dataclass
class _Cached:
    outcome: int
    block_date: int
    sequence: int
    expires: float  # monotonic


class AuthorizeNode(_Node):
    """Authorize mode: every attach asked of the CEIR (in batches), with a
    bounded answer cache that has a time-to-live."""

    mode = Mode.AUTHORIZE

    def __init__(
        self,
        operator: Operator,
        link: CeirLink,
        failover: Failover = Failover.LAST_KNOWN,
        *,
        cache_ttl: float = 5.0,
        cache_size: int = 200_000,
        custody: CustodySetup | None = None,
    ) -> None:
        """``custody``: the node reports readiness for announced policies and
        moves its checks to the new custodian once the handover verifies
        (it learns of the ceremony from GetCustody: it has no feed)."""
        self.custody: CustodyFollower | None = None
        if custody is not None:
            self.custody = custody.follower(link, operator.name, polling=True)
            link = self.custody.link
        super().__init__(operator, link, failover)
        self.cache_ttl = cache_ttl
        self.cache_size = cache_size
        self._cache: collections.OrderedDict[tuple[int, int], _Cached] = collections.OrderedDict()
        self._notified: set[tuple[int, int]] = set()
        self.last_sequence = 0

    def start(self) -> None:
        if self.custody is not None:
            self.custody.start()

    def stop(self) -> None:
        if self.custody is not None:
            self.custody.stop()
        self.link.close()

    def decide_batch(self, batch: AttachBatch, at_us: int) -> Decisions:
        with self._decide_lock:
            return self._decide_batch(batch)

    def _decide_batch(self, batch: AttachBatch) -> Decisions:
        count = len(batch)
        keys = imei_keys(batch.imeis)
        result = Decisions.empty(count)
        now = time.monotonic()
        pairs = list(zip(keys.tolist(), batch.imsis.tolist(), strict=True))
        misses: list[int] = []
        for index, pair in enumerate(pairs):
            cached = self._cache.get(pair)
            if cached is not None and cached.expires > now:
                self._fill(result, index, cached, Source.CACHE)
            else:
                misses.append(index)
        self.stats.cache_hits += count - len(misses)
        degraded = False
        for start in range(0, len(misses), MAX_BATCH):
            chunk = misses[start : start + MAX_BATCH]
            if not degraded:
                try:
                    self._ask(batch, chunk, pairs, result)
                    continue
                except LinkDown:
                    degraded = True
            self._fail_over(chunk, pairs, result)
        self.stats.count(result, degraded)
        return result

    def _ask(
        self,
        batch: AttachBatch,
        rows: list[int],
        pairs: list[tuple[int, int]],
        result: Decisions,
    ) -> None:
        requests = []
        for index in rows:
            msisdn = int(batch.msisdns[index])
            requests.append(
                check_pb.CheckEquipmentRequest(
                    imei=batch.imeis[index].decode("ascii", "replace"),
                    imsi=imsi_text(int(batch.imsis[index])),
                    msisdn=str(msisdn) if msisdn else "",
                )
            )
        answers = self.link.check_batch(requests)
        self.stats.ceir_calls += 1
        expires = time.monotonic() + self.cache_ttl
        for index, request, answer in zip(rows, requests, answers, strict=True):
            outcome = outcome_of(int(answer.status), tuple(int(r) for r in answer.reasons))
            block = answer.block_date.seconds if answer.HasField("block_date") else 0
            entry = _Cached(int(outcome), block, answer.sequence, expires)
            self._remember(pairs[index], entry)
            self._fill(result, index, entry, Source.CEIR)
            self.last_sequence = max(self.last_sequence, answer.sequence)
            pair = pairs[index]
            if outcome in PENDING_OUTCOMES and pair not in self._notified and request.msisdn:
                self._notified.add(pair)
                self._send_sms(Sms(request.msisdn, request.imsi, pair[0], block, time.time()))

    def _fail_over(self, rows: list[int], pairs: list[tuple[int, int]], result: Decisions) -> None:
        for index in rows:
            cached = self._cache.get(pairs[index])
            if self.failover == Failover.LAST_KNOWN and cached is not None:
                self._fill(result, index, cached, Source.LAST_KNOWN)
                continue
            allow = self.failover == Failover.FAIL_OPEN
            result.outcome[index] = Outcome.FORCED_ALLOW if allow else Outcome.FORCED_DENY
            result.source[index] = Source.FORCED
            result.sequence[index] = self.last_sequence

    def _remember(self, pair: tuple[int, int], entry: _Cached) -> None:
        cache = self._cache
        cache[pair] = entry
        cache.move_to_end(pair)
        while len(cache) > self.cache_size:
            cache.popitem(last=False)

    @staticmethod
    def _fill(result: Decisions, index: int, entry: _Cached, source: Source) -> None:
        result.outcome[index] = entry.outcome
        result.block_date[index] = entry.block_date
        result.sequence[index] = entry.sequence
        result.source[index] = source


Node = SyncNode | AuthorizeNode
