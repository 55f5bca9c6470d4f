"""The register's decision rules, evaluated against a replica, a batch at a time.

The order and the reasons are the register's (see the brief, "Decision for a
check"); first matching rule wins:

1. malformed IMEI -> BLACKLISTED [MALFORMED_IMEI]
2. IMSI of an inbound roamer -> WHITELISTED [INBOUND_ROAMER]
3. (IMEI, IMSI) on the exception list -> WHITELISTED [EXCEPTION_PAIR]
4. on the blacklist: stolen -> BLACKLISTED [STOLEN]; grace expired ->
   BLACKLISTED [NOT_REGISTERED or REGISTRATION_EXPIRED, NOTIFICATION_EXPIRED]
5. registered and not expired -> WHITELISTED [REGISTERED], or GREYLISTED
   [REGISTERED, DUPLICATE_SUSPECTED] for a suspected clone
6. otherwise: enforce phase -> BLACKLISTED [first, ENFORCEMENT_PHASE]; notify
   phase -> BLACKLISTED [first, NOTIFICATION_EXPIRED] once the IMEI's block
   date (its earliest notification's) has passed, else GREYLISTED [first,
   NOTIFICATION_PENDING] with the block date.

Where the register would also *write* (a new notification, a block for an
expired grace period), ``decide`` returns the rows in ``Effects``: a node in
synchronize mode reports those sightings to the register, which records them
and publishes them in the feed. The register records a notification only
for the reporting operator's own subscribers and at most
``MAX_NOTIFICATIONS_PER_IMEI`` pairs per IMEI; the answer is the same either
way (docs/integration-teams.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ceir.v1 import types_pb2 as pb

from .clones import CloneTracker
from .codec import MALFORMED, NO_IMSI, roamer_mask
from .decision import Decisions, Outcome, Source
from .replica import GRACE_EXPIRED, STOLEN, Policy, Replica

U64 = npt.NDArray[np.uint64]
Indices = npt.NDArray[np.intp]
MICROS = 1_000_000
# The register's bound on the notified pairs of one IMEI (past it, a check
# is answered as before and records nothing).
MAX_NOTIFICATIONS_PER_IMEI = 16


@dataclass
class Effects:
    """Rows of a batch whose check the register would record."""

    new_notification: Indices
    grace_expired: Indices


def grace_end_s(now_us: int, policy: Policy) -> int:
    """The block date of a device first seen now, in Unix seconds (as the
    replica packs it): the register's ``grace_end_us`` divided by 10**6."""
    return now_us // MICROS + policy.grace_days * 86_400


def decide(
    replica: Replica,
    clones: CloneTracker,
    keys: U64,
    imsis: U64,
    now_us: int,
) -> tuple[Decisions, Effects]:
    """Decide a batch against the replica at its current sequence (hold
    ``replica.lock`` so that the batch sees one sequence)."""
    count = keys.shape[0]
    result = Decisions.empty(count)
    result.sequence[:] = replica.sequence
    result.source[:] = Source.REPLICA
    outcome = result.outcome
    block = result.block_date
    policy = replica.policy
    no_effect = np.empty(0, dtype=np.intp)
    if count == 0:
        return result, Effects(no_effect, no_effect)

    malformed = keys == MALFORMED
    outcome[malformed] = Outcome.MALFORMED
    has_imsi = imsis != NO_IMSI
    roaming = roamer_mask(imsis) & ~malformed
    outcome[roaming] = Outcome.ROAMER
    rest = ~malformed & ~roaming

    candidates = np.flatnonzero(rest & has_imsi & replica.exceptions.key_candidates(keys))
    for index in candidates.tolist():
        if replica.exceptions.get(int(keys[index]), int(imsis[index])) is not None:
            outcome[index] = Outcome.EXCEPTION
            rest[index] = False

    registered, valid_until = replica.whitelist.lookup(keys)
    blocked, packed = replica.blacklist.lookup(keys)
    blocked &= rest
    cause = packed & 3
    stolen = blocked & (cause == STOLEN)
    outcome[stolen] = Outcome.STOLEN
    expired_block = blocked & (cause == GRACE_EXPIRED)
    outcome[expired_block & ~registered] = Outcome.NOT_REGISTERED_GRACE_EXPIRED
    outcome[expired_block & registered] = Outcome.REGISTRATION_EXPIRED_GRACE_EXPIRED
    block[expired_block] = packed[expired_block] >> 2
    rest &= ~blocked

    until_us = valid_until.astype(np.int64) * MICROS
    valid = registered & ((valid_until == 0) | (now_us < until_us))
    ok = rest & valid
    outcome[ok] = Outcome.REGISTERED
    watched = np.flatnonzero(ok & has_imsi)
    if watched.size:
        cloned = clones.observe(
            keys[watched],
            imsis[watched],
            now_us,
            policy.clone_threshold,
            policy.clone_window_seconds,
        )
        outcome[watched[cloned]] = Outcome.CLONE_SUSPECTED
    rest &= ~ok

    expired_registration = rest & registered
    if policy.phase == pb.PHASE_ENFORCE:
        outcome[rest & ~registered] = Outcome.NOT_REGISTERED_ENFORCED
        outcome[expired_registration] = Outcome.REGISTRATION_EXPIRED_ENFORCED
        return result, Effects(no_effect, no_effect)

    outcome[rest & ~registered] = Outcome.NOT_REGISTERED_PENDING
    outcome[expired_registration] = Outcome.REGISTRATION_EXPIRED_PENDING
    block[rest] = grace_end_s(now_us, policy)
    notified = rest & replica.notifications.key_candidates(keys)
    new_notification = rest & ~notified  # first sighting of the IMEI
    grace_expired: list[int] = []
    for index in np.flatnonzero(notified).tolist():
        pairs = replica.notifications.entries(int(keys[index]))
        if not pairs:  # a candidate whose pairs were all resolved
            new_notification[index] = True
            continue
        first_block = min(pairs.values())
        block[index] = first_block
        if first_block * MICROS <= now_us:
            outcome[index] = (
                Outcome.REGISTRATION_EXPIRED_GRACE_EXPIRED
                if registered[index]
                else Outcome.NOT_REGISTERED_GRACE_EXPIRED
            )
            grace_expired.append(index)
        elif int(imsis[index]) not in pairs and len(pairs) < MAX_NOTIFICATIONS_PER_IMEI:
            new_notification[index] = True
    return result, Effects(np.flatnonzero(new_notification), np.array(grace_expired, dtype=np.intp))
