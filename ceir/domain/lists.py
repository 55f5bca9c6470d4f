"""The four lists in memory, kept current by applying change-feed entries,
and the decision rules of the brief evaluated against them.

The server answers every check from a ``ListState``: a check must not cost a
database round trip. The database stays the source of truth; the state is
rebuilt from it at start-up and follows its change feed.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ceir.compact import BackgroundMerger, KeyTable

from .clones import DEFAULT_MAX_IMEIS, CloneTracker
from .columns import MALFORMED, imei_keys
from .identifiers import INDONESIA_MCC, imei_key
from .model import (
    BlacklistCause,
    Change,
    ChangeKind,
    Decision,
    EquipmentStatus,
    Phase,
    Policy,
    Reason,
)

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
Bools = npt.NDArray[np.bool_]
NO_DATE = -1  # in the int64 date columns: "no expiry" / "no block date"
MICROS = 1_000_000
_NO_EXPIRY = 0  # whitelist code: no expiry
_EXACT = 0xFFFF_FFFF  # whitelist code: the value is in the exact side table
MERGE_MIN = 65_536  # overlay entries before a merge, at least
PAIR_BYTES = 400  # about what a notification or exception pair costs in dicts
# One merging thread for every ListState of the process.
_MERGER = BackgroundMerger("list-merge")

# A phone has a SIM or two, so a real IMEI has a pair or two; beyond this many
# the IMEI is a cloned or made-up one, and further pairs would only grow what
# every later check of it, its record and the operators' SMS queues carry.
# A check past the bound is answered as before and records nothing.
MAX_NOTIFICATIONS_PER_IMEI = 16

_MALFORMED = (Reason.MALFORMED_IMEI,)
_ROAMER = (Reason.INBOUND_ROAMER,)
_EXCEPTION = (Reason.EXCEPTION_PAIR,)
_STOLEN = (Reason.STOLEN,)
_REGISTERED = (Reason.REGISTERED,)
_CLONE = (Reason.REGISTERED, Reason.DUPLICATE_SUSPECTED)


@dataclass(frozen=True)
class NewNotification:
    """A check found an unregistered device to notify: the register must
    record the triplet (and so start or keep the IMEI's block clock)."""

    imei_key: int
    imsi: str
    msisdn: str
    block_date_us: int


@dataclass(frozen=True)
class GraceExpired:
    """A check found an unregistered device past its block date: the register
    must move the IMEI to the blacklist."""

    imei_key: int
    block_date_us: int


Effect = NewNotification | GraceExpired


@dataclass(frozen=True)
class ListColumns:
    """Every list at one sequence, as columns (snapshots, start-up, loading).

    Whitelist and blacklist columns are sorted by key, keys unique; dates
    are Unix microseconds with ``NO_DATE`` for "none"."""

    sequence: int
    policy: Policy
    whitelist_keys: U64
    whitelist_valid_until_us: I64  # NO_DATE: no expiry
    blacklist_keys: U64
    blacklist_causes: U8  # BlacklistCause values
    blacklist_block_date_us: I64  # NO_DATE: none
    notifications: list[tuple[int, str, str, int, bytes]]  # key, IMSI, MSISDN, block date, salt
    exceptions: list[tuple[int, str, bytes]]  # key, IMSI, salt

    @property
    def total_entries(self) -> int:
        return (
            len(self.whitelist_keys)
            + len(self.blacklist_keys)
            + len(self.notifications)
            + len(self.exceptions)
        )


class ListState:
    """Whitelist, blacklist, notification and exception lists at one sequence.

    ``apply`` must be given every change in sequence order; the caller
    serialises calls to it. ``decide`` may run concurrently with other
    ``decide`` calls and with ``apply``, without a lock.

    Whitelist and blacklist are ``ceir.compact`` key tables: sorted arrays
    (12 bytes a whitelisted IMEI: the key and a uint32 valid-until in whole
    seconds) plus an overlay of recent changes that a background thread
    merges into new arrays once it grows past ``merge_threshold``. A
    valid-until that is not a whole second in the uint32 range is kept
    exactly in a small side table (``_EXACT`` in the main column).
    """

    def __init__(
        self,
        policy: Policy | None = None,
        sequence: int = 0,
        clone_capacity: int = DEFAULT_MAX_IMEIS,
    ) -> None:
        self.sequence = sequence
        self.policy = policy or Policy()
        self._whitelist = KeyTable(np.uint32)  # key -> valid-until code (_until_code)
        self._whitelist_exact = KeyTable(np.int64)  # key -> valid_until_us, for _EXACT codes
        self._blacklist = KeyTable(np.int64)  # key -> cause and block date (_pack_blocked)
        self.exceptions: set[tuple[int, str]] = set()
        # key -> how many exception pairs it has: lets a batch look for
        # exceptions with one table lookup (change with _except/_unexcept).
        self._excepted_keys = KeyTable(np.uint32)
        # Change through add_notification and remove_notification only: they
        # keep _earliest, which spares a check a scan of the IMEI's pairs.
        self.notified: dict[int, dict[str, int]] = {}  # key -> {imsi: block_date_us}
        self.msisdns: dict[tuple[int, str], str] = {}  # notified pair -> MSISDN, when known
        # The salt of each notified or excepted pair's commitment (leaf
        # version 2; pairs written before it have none). An exception and a
        # notification of one pair are different rows with their own salts.
        self.notification_salts: dict[tuple[int, str], bytes] = {}
        self.exception_salts: dict[tuple[int, str], bytes] = {}
        # key -> (earliest block date of its pairs, how many pairs have it)
        self._earliest: dict[int, tuple[int, int]] = {}
        # Fed by checks, not by the change feed.
        self.clones = CloneTracker(clone_capacity)
        # Held by apply and by a merge's freeze and install (never by checks).
        self._tables_lock = threading.Lock()
        self._merge_pending = False
        self.merge_threshold: int | None = None  # None: _merge_threshold()
        self.merges = 0

    # --- whole lists ------------------------------------------------------------------

    @classmethod
    def from_columns(cls, columns: ListColumns) -> ListState:
        """A state holding exactly these lists."""
        state = cls(columns.policy, columns.sequence)
        keys = np.asarray(columns.whitelist_keys, dtype=np.uint64)
        codes, exact = _until_codes(np.asarray(columns.whitelist_valid_until_us, np.int64))
        state._whitelist.load(keys, codes)
        state._whitelist_exact.load(
            keys[exact], np.asarray(columns.whitelist_valid_until_us, np.int64)[exact]
        )
        state._blacklist.load(
            np.asarray(columns.blacklist_keys, dtype=np.uint64),
            _pack_blocked_columns(
                np.asarray(columns.blacklist_causes, np.int64),
                np.asarray(columns.blacklist_block_date_us, np.int64),
            ),
        )
        for key, imsi, msisdn, block_date_us, salt in columns.notifications:
            state.add_notification(key, imsi, msisdn, block_date_us, salt)
        state.exceptions.update((key, imsi) for key, imsi, _ in columns.exceptions)
        per_key = Counter(key for key, _ in state.exceptions)
        state._excepted_keys.load(
            np.fromiter(per_key.keys(), dtype=np.uint64, count=len(per_key)),
            np.fromiter(per_key.values(), dtype=np.uint32, count=len(per_key)),
        )
        for key, imsi, salt in columns.exceptions:
            if salt:
                state.exception_salts[(key, imsi)] = salt
        return state

    def columns(self) -> ListColumns:
        """The lists as columns at ``sequence`` (the caller holds the lock
        that serialises ``apply``, so they are of one sequence)."""
        with self._tables_lock:  # and no merge installs meanwhile
            white = self._whitelist.snapshot()
            exact = self._whitelist_exact.snapshot()
            black = self._blacklist.snapshot()
        valid_until = _until_values(white.values, white.keys, exact.keys, exact.values)
        causes, block_dates = _unpack_blocked_columns(black.values)
        return ListColumns(
            sequence=self.sequence,
            policy=self.policy,
            whitelist_keys=white.keys,
            whitelist_valid_until_us=valid_until,
            blacklist_keys=black.keys,
            blacklist_causes=causes,
            blacklist_block_date_us=block_dates,
            notifications=[
                (
                    key,
                    imsi,
                    self.msisdns.get((key, imsi), ""),
                    block,
                    self.notification_salts.get((key, imsi), b""),
                )
                for key, pairs in self.notified.items()
                for imsi, block in pairs.items()
            ],
            exceptions=[
                (key, imsi, self.exception_salts.get((key, imsi), b""))
                for key, imsi in self.exceptions
            ],
        )

    # --- reading one IMEI (no lock) -------------------------------------------------------

    def is_whitelisted(self, key: int) -> bool:
        return self._whitelist.get(key) is not None

    def valid_until_of(self, key: int) -> int | None:
        """The IMEI's valid-until in microseconds; None: no expiry (or not
        whitelisted: ask ``is_whitelisted`` first)."""
        code = self._whitelist.get(key)
        return None if code is None else self._until(key, code)

    def whitelisted(self, keys: U64) -> Bools:
        """Which of these keys are on the whitelist (expired or not)."""
        return self._whitelist.lookup(np.asarray(keys, dtype=np.uint64))[0]

    def blacklist_entry_of(self, key: int) -> tuple[BlacklistCause, int | None] | None:
        """The IMEI's blacklist cause and block date, or None."""
        packed = self._blacklist.get(key)
        return None if packed is None else _unpack_blocked(packed)

    def _until(self, key: int, code: int) -> int | None:
        if code == _NO_EXPIRY:
            return None
        if code == _EXACT:
            exact = self._whitelist_exact.get(key)
            assert exact is not None  # put before the code
            return exact
        return code * MICROS

    # --- following the change feed -------------------------------------------------

    def apply(self, change: Change) -> None:
        """Apply the next change. Raises ValueError on a gap or a replay."""
        if change.sequence != self.sequence + 1:
            raise ValueError(f"change {change.sequence} does not follow sequence {self.sequence}")
        kind = change.kind
        key = change.imei_key
        if kind is ChangeKind.POLICY_CHANGED:
            assert change.policy is not None
            self.policy = change.policy
        elif kind is ChangeKind.CUSTODY_CHANGED:
            pass  # a step of the custody ceremony: no list changes
        elif key is None:
            raise ValueError(f"change {change.sequence} ({kind.name}) has no IMEI key")
        elif kind is ChangeKind.WHITELIST_ADDED:
            self._whitelist_add(key, change.valid_until_us)
        elif kind is ChangeKind.WHITELIST_REMOVED:
            with self._tables_lock:
                self._whitelist.delete(key)  # its exact value, if any, stays: see _whitelist_add
            self._maybe_merge()
        elif kind is ChangeKind.BLACKLIST_BLOCKED:
            assert change.blacklist_cause is not None
            packed = _pack_blocked(change.blacklist_cause, change.block_date_us)
            with self._tables_lock:
                self._blacklist.put(key, packed)
            self._maybe_merge()
        elif kind is ChangeKind.BLACKLIST_UNBLOCKED:
            with self._tables_lock:
                self._blacklist.delete(key)
            self._maybe_merge()
        elif kind is ChangeKind.NOTIFICATION_NEW:
            assert change.block_date_us is not None
            self.add_notification(
                key, change.imsi, change.msisdn, change.block_date_us, change.subscriber_salt
            )
        elif kind in (ChangeKind.NOTIFICATION_RESOLVED, ChangeKind.NOTIFICATION_BLACKLISTED):
            self.remove_notification(key, change.imsi)
        elif kind is ChangeKind.EXCEPTION_ADDED:
            self._except(key, change.imsi)
            if change.subscriber_salt:
                self.exception_salts[(key, change.imsi)] = change.subscriber_salt
        elif kind is ChangeKind.EXCEPTION_REMOVED:
            self._unexcept(key, change.imsi)
            self.exception_salts.pop((key, change.imsi), None)
        self.sequence = change.sequence

    def _whitelist_add(self, key: int, valid_until_us: int | None) -> None:
        code = _until_code(valid_until_us)
        with self._tables_lock:
            # The exact value before the code that names it, and never taken
            # away while the state lives: a check that read an older _EXACT
            # code still finds a value. A stale one is never read again and
            # goes at the next load; there are few (registrations are whole
            # seconds).
            if code == _EXACT:
                assert valid_until_us is not None
                self._whitelist_exact.put(key, valid_until_us)
            self._whitelist.put(key, code)
        self._maybe_merge()

    def _except(self, key: int, imsi: str) -> None:
        if (key, imsi) in self.exceptions:
            return
        with self._tables_lock:
            self._excepted_keys.put(key, (self._excepted_keys.get(key) or 0) + 1)
        self.exceptions.add((key, imsi))
        self._maybe_merge()

    def _unexcept(self, key: int, imsi: str) -> None:
        if (key, imsi) not in self.exceptions:
            return
        self.exceptions.discard((key, imsi))
        with self._tables_lock:
            left = (self._excepted_keys.get(key) or 1) - 1
            if left:
                self._excepted_keys.put(key, left)
            else:
                self._excepted_keys.delete(key)
        self._maybe_merge()

    # --- merging the tables' overlays ----------------------------------------------------

    def _lists(self) -> tuple[KeyTable, ...]:
        return (self._whitelist_exact, self._whitelist, self._blacklist)

    def _tables(self) -> tuple[KeyTable, ...]:
        return (*self._lists(), self._excepted_keys)

    def _merge_threshold(self) -> int:
        if self.merge_threshold is not None:
            return self.merge_threshold
        # Rebuilding the arrays copies them whole: merge less often as they
        # grow (the overlay then costs at most about half a byte an entry).
        return max(MERGE_MIN, self._whitelist.base_size // 256)

    def _maybe_merge(self) -> None:
        if self._merge_pending:
            return
        if sum(table.overlay_size for table in self._tables()) > self._merge_threshold():
            self._merge_pending = True
            _MERGER.submit(self.merge)

    def merge(self) -> None:
        """Merge every table's overlay into new arrays. The arrays are built
        without the lock: ``apply`` and ``decide`` go on meanwhile. The exact
        side table first, so that a whitelist code never names a value its
        reader cannot find."""
        try:
            for table in self._tables():
                with self._tables_lock:
                    if not table.freeze():
                        continue
                    generation = table.generation
                merged = table.build_merged()
                index = table.build_index(merged)
                with self._tables_lock:
                    table.install(merged, generation, index)
            self.merges += 1
        finally:
            self._merge_pending = False

    def add_notification(
        self, key: int, imsi: str, msisdn: str, block_date_us: int, salt: bytes = b""
    ) -> None:
        """Put a pair on the notification list (or give it a new block date)."""
        if imsi in self.notified.get(key, ()):
            self.remove_notification(key, imsi)
        # The block date before the pair: a check deciding meanwhile (checks
        # take no lock) sees the IMEI's block date, at worst without the pair.
        earliest = self._earliest.get(key)
        if earliest is None or block_date_us < earliest[0]:
            self._earliest[key] = (block_date_us, 1)
        elif block_date_us == earliest[0]:
            self._earliest[key] = (block_date_us, earliest[1] + 1)
        if msisdn:
            self.msisdns[(key, imsi)] = msisdn
        if salt:
            self.notification_salts[(key, imsi)] = salt
        self.notified.setdefault(key, {})[imsi] = block_date_us

    def remove_notification(self, key: int, imsi: str) -> None:
        """Take a pair off the notification list, if it is on it."""
        self.msisdns.pop((key, imsi), None)
        self.notification_salts.pop((key, imsi), None)
        pairs = self.notified.get(key)
        if pairs is None or imsi not in pairs:
            return
        block_date_us = pairs.pop(imsi)
        if not pairs:
            del self.notified[key]
            del self._earliest[key]
            return
        date, count = self._earliest[key]
        if block_date_us != date:
            return
        if count > 1:
            self._earliest[key] = (date, count - 1)
        else:
            # The register gives every pair of an IMEI the same block date,
            # so this scan is for lists written otherwise; it stays rare.
            date = min(pairs.values())
            self._earliest[key] = (date, sum(1 for d in pairs.values() if d == date))

    # --- deciding ------------------------------------------------------------------

    def block_date_of(self, key: int) -> int | None:
        """The IMEI's block date: the earliest of its notifications'."""
        earliest = self._earliest.get(key)
        return None if earliest is None else earliest[0]

    def notifications_of(self, key: int) -> int:
        """How many pairs of the IMEI are on the notification list."""
        pairs = self.notified.get(key)
        return 0 if pairs is None else len(pairs)

    def decide(
        self, imei: str, imsi: str, msisdn: str, now_us: int
    ) -> tuple[Decision, Effect | None]:
        """The brief's rules, first match wins. IMSI and MSISDN are already
        validated (possibly empty); a malformed IMEI is an answer, not an error."""
        sequence = self.sequence
        key = imei_key(imei)
        if key is None:
            return Decision(EquipmentStatus.BLACKLISTED, _MALFORMED, None, sequence), None
        if imsi and not imsi.startswith(INDONESIA_MCC):  # an inbound roamer
            return Decision(EquipmentStatus.WHITELISTED, _ROAMER, key, sequence), None
        if imsi and (key, imsi) in self.exceptions:
            return Decision(EquipmentStatus.WHITELISTED, _EXCEPTION, key, sequence), None
        packed = self._blacklist.get(key)
        code = self._whitelist.get(key)
        registered = code is not None
        if packed is not None:
            return _blocked_decision(packed, registered, key, sequence), None
        if code is not None:
            valid_until = self._until(key, code)
            if valid_until is None or now_us < valid_until:
                if imsi and self._looks_cloned(key, imsi, now_us):
                    return Decision(EquipmentStatus.GREYLISTED, _CLONE, key, sequence), None
                return Decision(EquipmentStatus.WHITELISTED, _REGISTERED, key, sequence), None
        return self._decide_unregistered(key, imsi, msisdn, now_us, registered, sequence)

    def decide_many(
        self, imeis: Sequence[str], imsis: Sequence[str], msisdns: Sequence[str], now_us: int
    ) -> tuple[list[Decision], list[tuple[int, Effect]]]:
        """``decide`` of each check in order, for a batch: the same decisions,
        the effects as (index, effect) in index order, and the same clone
        tracker afterwards. The rules run over columns (IMEI parsing and
        Luhn, one lookup per table, so a batch reads each list once even
        while ``apply`` runs); an unregistered device goes through the rules
        of ``decide`` (notifications are few and kept in dicts)."""
        sequence = self.sequence
        count = len(imeis)
        if not count:
            return [], []
        parsed = imei_keys(imeis)
        keys = parsed.astype(np.uint64)  # a malformed IMEI's -1 is on no list
        rest = parsed != MALFORMED
        has_imsi = np.fromiter(map(bool, imsis), dtype=np.bool_, count=count)
        roaming = rest & has_imsi & (np.array(imsis, dtype="<U3") != INDONESIA_MCC)
        rest &= ~roaming
        excepted = self._excepted(keys, imsis, rest & has_imsi)
        rest &= ~excepted
        blocked, packed = self._blacklist.lookup(keys)
        registered, codes = self._whitelist.lookup(keys)
        blocked &= rest
        rest &= ~blocked
        current = registered & rest
        current &= (codes == _NO_EXPIRY) | (now_us < codes.astype(np.int64) * MICROS)
        key_list: list[int] = parsed.tolist()
        for index in np.flatnonzero(current & (codes == _EXACT)).tolist():
            until = self._until(key_list[index], _EXACT)
            current[index] = until is None or now_us < until
        rest &= ~current

        decisions = [Decision(EquipmentStatus.BLACKLISTED, _MALFORMED, None, sequence)] * count
        for reasons, chosen in (
            (_ROAMER, roaming),
            (_EXCEPTION, excepted),
            (_REGISTERED, current),  # a suspected clone among them: below
        ):
            indices: list[int] = np.flatnonzero(chosen).tolist()
            made = _whitelisted(reasons, [key_list[index] for index in indices], sequence)
            for index, decision in zip(indices, made, strict=True):
                decisions[index] = decision
        for index in np.flatnonzero(blocked).tolist():
            decisions[index] = _blocked_decision(
                int(packed[index]), bool(registered[index]), key_list[index], sequence
            )
        watched: list[int] = np.flatnonzero(current & has_imsi).tolist()
        if watched:
            policy = self.policy
            suspected = self.clones.observe_many(
                [key_list[index] for index in watched],
                [imsis[index] for index in watched],
                now_us,
                policy.clone_threshold,
                policy.clone_window_seconds,
            )
            for index, clone in zip(watched, suspected, strict=True):
                if clone:
                    key = key_list[index]
                    decisions[index] = Decision(EquipmentStatus.GREYLISTED, _CLONE, key, sequence)
        effects: list[tuple[int, Effect]] = []
        for index in np.flatnonzero(rest).tolist():
            decision, effect = self._decide_unregistered(
                key_list[index],
                imsis[index],
                msisdns[index],
                now_us,
                bool(registered[index]),
                sequence,
            )
            decisions[index] = decision
            if effect is not None:
                effects.append((index, effect))
        return decisions, effects

    def _excepted(self, keys: U64, imsis: Sequence[str], asked: Bools) -> Bools:
        """Which of the asked checks are of an exception pair."""
        excepted = np.zeros(keys.shape[0], dtype=np.bool_)
        if not len(self._excepted_keys) or not asked.any():
            return excepted
        candidates = asked & self._excepted_keys.lookup(keys)[0]
        pairs = self.exceptions
        for index in np.flatnonzero(candidates).tolist():
            excepted[index] = (int(keys[index]), imsis[index]) in pairs
        return excepted

    def _decide_unregistered(
        self,
        key: int,
        imsi: str,
        msisdn: str,
        now_us: int,
        expired_registration: bool,
        sequence: int,
    ) -> tuple[Decision, Effect | None]:
        first = Reason.REGISTRATION_EXPIRED if expired_registration else Reason.NOT_REGISTERED
        policy = self.policy
        if policy.phase is Phase.ENFORCE:
            reasons = (first, Reason.ENFORCEMENT_PHASE)
            return Decision(EquipmentStatus.BLACKLISTED, reasons, key, sequence), None
        block_date = self.block_date_of(key)
        if block_date is not None and block_date <= now_us:
            reasons = (first, Reason.NOTIFICATION_EXPIRED)
            decision = Decision(EquipmentStatus.BLACKLISTED, reasons, key, sequence, block_date)
            return decision, GraceExpired(key, block_date)
        effect: Effect | None = None
        if block_date is None:
            block_date = grace_end_us(now_us, policy)
            effect = NewNotification(key, imsi, msisdn, block_date)
        else:
            # get: a writer may have just taken the IMEI's last pair off.
            pairs = self.notified.get(key, {})
            if imsi not in pairs and len(pairs) < MAX_NOTIFICATIONS_PER_IMEI:
                effect = NewNotification(key, imsi, msisdn, block_date)
        reasons = (first, Reason.NOTIFICATION_PENDING)
        return Decision(EquipmentStatus.GREYLISTED, reasons, key, sequence, block_date), effect

    def _looks_cloned(self, key: int, imsi: str, now_us: int) -> bool:
        """Record the sighting; True if the IMEI is on too many IMSIs at once."""
        policy = self.policy
        return self.clones.observe(
            key, imsi, now_us, policy.clone_threshold, policy.clone_window_seconds
        )

    # --- sizes, for metrics ----------------------------------------------------------

    def whitelist_size(self) -> int:
        """IMEIs on the whitelist (``sizes`` also counts the notified pairs)."""
        return len(self._whitelist)

    def sizes(self) -> dict[str, int]:
        return {
            "whitelist": len(self._whitelist),
            "blacklist": len(self._blacklist),
            "notification": sum(len(p) for p in self.notified.values()),
            "exception": len(self.exceptions),
        }

    def nbytes(self) -> int:
        """Bytes held by the lists: the tables' arrays and overlays, and an
        estimate for the notification and exception pairs (Python objects,
        few by design). The clone tracker is apart (``clones.nbytes``)."""
        tables = sum(table.nbytes() for table in self._lists())
        pairs = sum(len(p) for p in self.notified.values()) + len(self.exceptions)
        return tables + PAIR_BYTES * pairs


def _whitelisted(reasons: tuple[Reason, ...], keys: list[int], sequence: int) -> list[Decision]:
    """``Decision(WHITELISTED, reasons, key, sequence)`` for each key, equal
    to the constructor's: made without the frozen dataclass's ``__init__``
    (five ``object.__setattr__`` calls), which was a third of a batch's
    decide time."""
    new = object.__new__
    made: list[Decision] = []
    for key in keys:
        decision = new(Decision)
        decision.__dict__.update(
            status=EquipmentStatus.WHITELISTED,
            reasons=reasons,
            imei_key=key,
            sequence=sequence,
            block_date_us=None,
        )
        made.append(decision)
    return made


def _blocked_decision(packed: int, registered: bool, key: int, sequence: int) -> Decision:
    """The decision for a blacklisted IMEI (``packed``: its blacklist value)."""
    cause, block_date = _unpack_blocked(packed)
    if cause is BlacklistCause.STOLEN:
        return Decision(EquipmentStatus.BLACKLISTED, _STOLEN, key, sequence)
    first = Reason.REGISTRATION_EXPIRED if registered else Reason.NOT_REGISTERED
    reasons = (first, Reason.NOTIFICATION_EXPIRED)
    return Decision(EquipmentStatus.BLACKLISTED, reasons, key, sequence, block_date)


def _until_code(valid_until_us: int | None) -> int:
    """The whitelist column's code for a valid-until (see ``ListState``)."""
    if valid_until_us is None:
        return _NO_EXPIRY
    seconds, rest = divmod(valid_until_us, MICROS)
    return seconds if rest == 0 and _NO_EXPIRY < seconds < _EXACT else _EXACT


def _until_codes(valid_until_us: I64) -> tuple[npt.NDArray[np.uint32], Bools]:
    """``_until_code`` of a column, and where the value must be kept exactly."""
    none = valid_until_us == NO_DATE
    seconds, rest = np.divmod(valid_until_us, MICROS)
    whole = (rest == 0) & (seconds > _NO_EXPIRY) & (seconds < _EXACT) & ~none
    codes = np.where(none, _NO_EXPIRY, np.where(whole, seconds, _EXACT)).astype(np.uint32)
    return codes, ~none & ~whole


def _until_values(codes: npt.NDArray[np.uint32], keys: U64, exact_keys: U64, exact: I64) -> I64:
    """The valid-until column (microseconds, NO_DATE) of a whitelist's codes."""
    values = codes.astype(np.int64) * MICROS
    values[codes == _NO_EXPIRY] = NO_DATE
    inexact = codes == _EXACT
    if inexact.any():
        values[inexact] = exact[np.searchsorted(exact_keys, keys[inexact])]
    return values


# The blacklist column: block date << 8 | 0x80 if there is one | cause.
_HAS_DATE = 0x80
_CAUSE = 0x7F
_DATE_LIMIT = 1 << 55  # microseconds either side of 1970: over a thousand years


def _pack_blocked(cause: BlacklistCause, block_date_us: int | None) -> int:
    if block_date_us is None:
        return int(cause)
    if not -_DATE_LIMIT <= block_date_us < _DATE_LIMIT:
        raise ValueError(f"block date {block_date_us} out of range")
    return block_date_us << 8 | _HAS_DATE | int(cause)


def _unpack_blocked(packed: int) -> tuple[BlacklistCause, int | None]:
    return BlacklistCause(packed & _CAUSE), packed >> 8 if packed & _HAS_DATE else None


def _pack_blocked_columns(causes: I64, block_dates_us: I64) -> I64:
    dated = block_dates_us != NO_DATE
    if bool(np.any(dated & ((block_dates_us < -_DATE_LIMIT) | (block_dates_us >= _DATE_LIMIT)))):
        raise ValueError("a block date is out of range")
    with_date = (block_dates_us << 8) | _HAS_DATE | causes
    return np.where(dated, with_date, causes).astype(np.int64)


def _unpack_blocked_columns(packed: I64) -> tuple[U8, I64]:
    causes = (packed & _CAUSE).astype(np.uint8)
    dates = np.where((packed & _HAS_DATE) != 0, packed >> 8, NO_DATE).astype(np.int64)
    return causes, dates


def grace_end_us(now_us: int, policy: Policy) -> int:
    """The block date of a device first seen now, in Unix microseconds (as
    the register stores it), rounded to whole seconds so that every replica
    computes the same instant (``operators_sim.rules.grace_end_s``)."""
    return (now_us // 1_000_000 + policy.grace_days * 86_400) * 1_000_000
