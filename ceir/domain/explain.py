"""The decision rules explained: ``explain`` walks the rules of
``ListState.decide`` in the same order and says what each one found.

It is the desk's answer to "why does my phone have no signal?". It decides
what ``decide`` would decide now and changes nothing: no notification is
recorded and no clone sighting (``CloneTracker.would_suspect``). A property
test (tests/test_diagnosis.py) holds its verdict equal to ``decide``'s for
random lists; a change to the rules in one place and not the other fails it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .identifiers import INDONESIA_MCC, describe_malformed_imei, imei_key
from .lists import ListState, grace_end_us
from .model import BlacklistCause, Decision, EquipmentStatus, Phase, Reason

__all__ = ["RULES", "Explanation", "Outcome", "RuleStep", "explain"]

# The rules of the brief, in the order ``decide`` applies them.
RULES = (
    "malformed_imei",
    "inbound_roamer",
    "exception_pair",
    "blacklist",
    "whitelist",
    "unregistered",
)


class Outcome(enum.IntEnum):
    """Values equal ``ceir.v1.RuleOutcome``."""

    PASSED = 1  # the rule's condition did not hold: on to the next
    DECIDED = 2
    NOT_REACHED = 3


@dataclass(frozen=True)
class RuleStep:
    number: int
    rule: str
    outcome: Outcome
    detail: str


@dataclass(frozen=True)
class Explanation:
    """The decision and every rule with its outcome, in order."""

    decision: Decision
    steps: tuple[RuleStep, ...]


def explain(state: ListState, imei: str, imsi: str, msisdn: str, now_us: int) -> Explanation:
    """What ``state.decide(imei, imsi, msisdn, now_us)`` decides, and why.
    IMSI and MSISDN are validated already (possibly empty)."""
    walk = _Walk()
    sequence = state.sequence
    key = imei_key(imei)
    if key is None:
        walk.decided(describe_malformed_imei(imei) if imei else "no IMEI given")
        return walk.done(
            Decision(EquipmentStatus.BLACKLISTED, (Reason.MALFORMED_IMEI,), None, sequence)
        )
    walk.passed(f"a well-formed IMEI, key {key:014d}")
    if imsi and not imsi.startswith(INDONESIA_MCC):
        walk.decided(f"IMSI {imsi} has MCC {imsi[:3]}, not {INDONESIA_MCC}: an inbound roamer")
        return walk.done(
            Decision(EquipmentStatus.WHITELISTED, (Reason.INBOUND_ROAMER,), key, sequence)
        )
    walk.passed("no IMSI given" if not imsi else f"IMSI {imsi} is an Indonesian subscriber")
    if imsi and (key, imsi) in state.exceptions:
        walk.decided(f"IMEI {key:014d} is paired with IMSI {imsi} (exception list)")
        return walk.done(
            Decision(EquipmentStatus.WHITELISTED, (Reason.EXCEPTION_PAIR,), key, sequence)
        )
    walk.passed("no IMSI to look up" if not imsi else "this IMEI and IMSI are not paired")
    blocked = state.blacklist_entry_of(key)
    registered = state.is_whitelisted(key)
    if blocked is not None:
        cause, block_date = blocked
        if cause is BlacklistCause.STOLEN:
            walk.decided("on the blacklist: reported stolen")
            return walk.done(Decision(EquipmentStatus.BLACKLISTED, (Reason.STOLEN,), key, sequence))
        first = Reason.REGISTRATION_EXPIRED if registered else Reason.NOT_REGISTERED
        walk.decided("on the blacklist: its notification's grace period ran out")
        reasons = (first, Reason.NOTIFICATION_EXPIRED)
        return walk.done(Decision(EquipmentStatus.BLACKLISTED, reasons, key, sequence, block_date))
    walk.passed("not on the blacklist")
    if registered:
        valid_until = state.valid_until_of(key)
        if valid_until is None or now_us < valid_until:
            policy = state.policy
            if imsi and state.clones.would_suspect(
                key, imsi, now_us, policy.clone_threshold, policy.clone_window_seconds
            ):
                walk.decided(
                    f"registered, but seen with more than {policy.clone_threshold} IMSIs within "
                    f"{policy.clone_window_seconds} s: a suspected clone"
                )
                reasons = (Reason.REGISTERED, Reason.DUPLICATE_SUSPECTED)
                return walk.done(Decision(EquipmentStatus.GREYLISTED, reasons, key, sequence))
            walk.decided("on the whitelist" + ("" if valid_until is None else ", not expired"))
            return walk.done(
                Decision(EquipmentStatus.WHITELISTED, (Reason.REGISTERED,), key, sequence)
            )
        walk.passed("on the whitelist, but its registration has expired")
    else:
        walk.passed("not on the whitelist")
    return walk.done(_unregistered(walk, state, key, registered, now_us))


def _unregistered(
    walk: _Walk, state: ListState, key: int, registered: bool, now_us: int
) -> Decision:
    """Rule 6, as ``ListState._decide_unregistered`` decides it."""
    sequence = state.sequence
    first = Reason.REGISTRATION_EXPIRED if registered else Reason.NOT_REGISTERED
    policy = state.policy
    if policy.phase is Phase.ENFORCE:
        walk.decided("unregistered, and the register is in the enforcement phase")
        return Decision(
            EquipmentStatus.BLACKLISTED, (first, Reason.ENFORCEMENT_PHASE), key, sequence
        )
    block_date = state.block_date_of(key)
    if block_date is not None and block_date <= now_us:
        walk.decided("unregistered, and its notification's block date has passed")
        reasons = (first, Reason.NOTIFICATION_EXPIRED)
        return Decision(EquipmentStatus.BLACKLISTED, reasons, key, sequence, block_date)
    if block_date is None:
        block_date = grace_end_us(now_us, policy)
        walk.decided(
            f"unregistered, notification phase: a first check would start a {policy.grace_days}"
            "-day grace period"
        )
    else:
        walk.decided("unregistered, notification phase: within its grace period")
    reasons = (first, Reason.NOTIFICATION_PENDING)
    return Decision(EquipmentStatus.GREYLISTED, reasons, key, sequence, block_date)


class _Walk:
    """The steps so far; the rules not reached are added by ``done``."""

    def __init__(self) -> None:
        self.steps: list[RuleStep] = []

    def _add(self, outcome: Outcome, detail: str) -> None:
        number = len(self.steps) + 1
        self.steps.append(RuleStep(number, RULES[number - 1], outcome, detail))

    def passed(self, detail: str) -> None:
        self._add(Outcome.PASSED, detail)

    def decided(self, detail: str) -> None:
        self._add(Outcome.DECIDED, detail)

    def done(self, decision: Decision) -> Explanation:
        while len(self.steps) < len(RULES):
            self._add(Outcome.NOT_REACHED, "")
        return Explanation(decision, tuple(self.steps))
