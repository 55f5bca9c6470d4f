"""The four lists in memory, kept current by applying change-feed entries,
and the decision rules of the brief evaluated against them.

The server answers every check from a ``ListState``: a check must not cost a
database round trip. The database stays the source of truth; the state is
rebuilt from it at start-up and follows its change feed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

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
class ListsCopy:
    """Every list at one sequence, copied out of a ``ListState``."""

    sequence: int
    policy: Policy
    whitelist_keys: npt.NDArray[np.uint64]  # unsorted; parallel to the next column
    whitelist_valid_until_us: list[int | None]
    blacklist: list[tuple[int, BlacklistCause, int | None]]  # key, cause, block date
    notifications: list[tuple[int, str, str, int, bytes]]  # key, IMSI, MSISDN, block date, salt
    exceptions: list[tuple[int, str, bytes]]  # key, IMSI, salt

    @property
    def total_entries(self) -> int:
        return (
            len(self.whitelist_keys)
            + len(self.blacklist)
            + len(self.notifications)
            + len(self.exceptions)
        )


class ListState:
    """Whitelist, blacklist, notification and exception lists at one sequence.

    ``apply`` must be given every change in sequence order; the caller
    serialises calls to it. ``decide`` may run concurrently with other
    ``decide`` calls.
    """

    def __init__(self, policy: Policy | None = None, sequence: int = 0) -> None:
        self.sequence = sequence
        self.policy = policy or Policy()
        self.whitelist: dict[int, int | None] = {}  # key -> valid_until_us (None: no expiry)
        self.blacklist: dict[int, tuple[BlacklistCause, int | None]] = {}  # key -> (cause, block)
        self.exceptions: set[tuple[int, str]] = set()
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
        # key -> {imsi: last seen}; fed by checks, not by the change feed.
        self._seen: dict[int, dict[str, int]] = {}

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
            self.whitelist[key] = change.valid_until_us
        elif kind is ChangeKind.WHITELIST_REMOVED:
            self.whitelist.pop(key, None)
        elif kind is ChangeKind.BLACKLIST_BLOCKED:
            assert change.blacklist_cause is not None
            self.blacklist[key] = (change.blacklist_cause, change.block_date_us)
        elif kind is ChangeKind.BLACKLIST_UNBLOCKED:
            self.blacklist.pop(key, None)
        elif kind is ChangeKind.NOTIFICATION_NEW:
            assert change.block_date_us is not None
            self.add_notification(
                key, change.imsi, change.msisdn, change.block_date_us, change.subscriber_salt
            )
        elif kind in (ChangeKind.NOTIFICATION_RESOLVED, ChangeKind.NOTIFICATION_BLACKLISTED):
            self.remove_notification(key, change.imsi)
        elif kind is ChangeKind.EXCEPTION_ADDED:
            self.exceptions.add((key, change.imsi))
            if change.subscriber_salt:
                self.exception_salts[(key, change.imsi)] = change.subscriber_salt
        elif kind is ChangeKind.EXCEPTION_REMOVED:
            self.exceptions.discard((key, change.imsi))
            self.exception_salts.pop((key, change.imsi), None)
        self.sequence = change.sequence

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

    # --- accessors (the contract of the compact lists; stand-in over the dicts) --------

    def is_whitelisted(self, key: int) -> bool:
        """Whether the key is on the whitelist (expired or not)."""
        return key in self.whitelist

    def valid_until_of(self, key: int) -> int | None:
        """The key's expiry; None: no expiry (or not whitelisted)."""
        return self.whitelist.get(key)

    def whitelisted(self, keys: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        """Membership of each key in the whitelist (vectorised form)."""
        listed = self.whitelist
        return np.fromiter((int(k) in listed for k in keys), dtype=np.bool_, count=len(keys))

    def blacklist_entry_of(self, key: int) -> tuple[BlacklistCause, int | None] | None:
        """The key's (cause, block date) on the blacklist, if it is on it."""
        return self.blacklist.get(key)

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
        blocked = self.blacklist.get(key)
        registered = key in self.whitelist
        if blocked is not None:
            cause, block_date = blocked
            if cause is BlacklistCause.STOLEN:
                return Decision(EquipmentStatus.BLACKLISTED, _STOLEN, key, sequence), None
            first = Reason.REGISTRATION_EXPIRED if registered else Reason.NOT_REGISTERED
            reasons = (first, Reason.NOTIFICATION_EXPIRED)
            return Decision(EquipmentStatus.BLACKLISTED, reasons, key, sequence, block_date), None
        if registered:
            valid_until = self.whitelist[key]
            if valid_until is None or now_us < valid_until:
                if imsi and self._looks_cloned(key, imsi, now_us):
                    return Decision(EquipmentStatus.GREYLISTED, _CLONE, key, sequence), None
                return Decision(EquipmentStatus.WHITELISTED, _REGISTERED, key, sequence), None
        return self._decide_unregistered(key, imsi, msisdn, now_us, registered)

    def _decide_unregistered(
        self, key: int, imsi: str, msisdn: str, now_us: int, expired_registration: bool
    ) -> tuple[Decision, Effect | None]:
        sequence = self.sequence
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
        seen = self._seen.get(key)
        if seen is None:
            self._seen[key] = {imsi: now_us}
            return False
        seen[imsi] = now_us
        if len(seen) <= self.policy.clone_threshold:
            return False
        horizon = now_us - self.policy.clone_window_seconds * 1_000_000
        for other, last in list(seen.items()):
            if last < horizon:
                seen.pop(other, None)
        return len(seen) > self.policy.clone_threshold

    # --- copies, for snapshots -------------------------------------------------------

    def copy(self) -> ListsCopy:
        """The lists as plain columns (the caller holds the lock that
        serialises ``apply``, so the copy is of one sequence)."""
        whitelist_keys = np.fromiter(
            self.whitelist.keys(), dtype=np.uint64, count=len(self.whitelist)
        )
        return ListsCopy(
            sequence=self.sequence,
            policy=self.policy,
            whitelist_keys=whitelist_keys,
            whitelist_valid_until_us=list(self.whitelist.values()),
            blacklist=[(key, cause, date) for key, (cause, date) in self.blacklist.items()],
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

    # --- sizes, for metrics ----------------------------------------------------------

    def sizes(self) -> dict[str, int]:
        return {
            "whitelist": len(self.whitelist),
            "blacklist": len(self.blacklist),
            "notification": sum(len(p) for p in self.notified.values()),
            "exception": len(self.exceptions),
        }


def grace_end_us(now_us: int, policy: Policy) -> int:
    """The block date of a device first seen now, in Unix microseconds (as
    the register stores it), rounded to whole seconds so that every replica
    computes the same instant (``operators_sim.rules.grace_end_s``)."""
    return (now_us // 1_000_000 + policy.grace_days * 86_400) * 1_000_000
