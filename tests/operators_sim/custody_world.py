"""A scripted custody handover for node tests: real keys, real signed notes, fake links.

Telkomsel's register (policy 0, the old log key) publishes a log of list
changes and custody leaves; Kemenperin's (policy 1, the new key) continues
the same log from the final size. Both are ``FakeLink``s whose GetCustody
answers the test scripts step by step, as the registers' would.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ceir.audit.note import Signer, sign_note
from ceir.custody import (
    CustodyPolicy,
    Handover,
    cosign,
    sign_handover,
    sign_policy,
)
from ceir.v1 import custody_pb2 as custody_pb
from ceir.v1 import types_pb2 as pb
from operators_sim.custody_follower import CustodyFollower, CustodySetup
from operators_sim.custody_state import note_text, sha256_hex
from operators_sim.fake import FakeLink, SignedLog, change
from operators_sim.verification import DEFAULT_ORIGIN, LogVerifier

from ..custody.ceremony import YEAR, Keys, now_s

ORIGIN = DEFAULT_ORIGIN
OLD, NEW = "old.test:1", "new.test:2"  # where the two registers "listen"


def custody_leaf(
    sequence: int, step: str, reference: str = "", actor: str = "telkomsel"
) -> pb.ListChange:
    return change(
        sequence,
        pb.CHANGE_KIND_CUSTODY_CHANGED,
        "00000000000000",
        reason=step,
        reference=reference,
        actor=actor,
        leaf_version=2,
    )


@dataclass
class World:
    """The two registers, the keys and the documents of one handover."""

    keys: Keys = field(default_factory=Keys.make)

    def __post_init__(self) -> None:
        keys = self.keys
        self.v0 = keys.policy(0, now_s() + YEAR)
        self.v1 = keys.policy(1, now_s() + 30 * 86_400)
        self.zero = sign_policy(self.v0, keys.telkomsel[:2])
        self.one = sign_policy(self.v1, keys.approvals())
        self.log = SignedLog(keys.old, ORIGIN)
        self.old = FakeLink(signed=self.log)
        self.old.custody = custody_pb.Custody(
            state=custody_pb.CUSTODY_STATE_OPERATING,
            state_name="OPERATING",
            policies=[self.zero],
            custodian="telkomsel",
            endpoint=self.v0.endpoint,
        )
        self.new_log: SignedLog | None = None
        self.new: FakeLink | None = None
        self.final_size = 0
        self.handover = ""
        self.links = {OLD: self.old}

    # --- the outgoing register's log ----------------------------------------------------

    def lists(self, count: int) -> None:
        """``count`` list changes (whitelist additions) on the custodian's log."""
        log = self.new_log or self.log
        for _ in range(count):
            sequence = log.size + 1
            log.append(
                change(sequence, pb.CHANGE_KIND_WHITELIST_ADDED, 35_000_000_000_000 + sequence)
            )

    def step(self, step: str, reference: str = "", actor: str = "telkomsel") -> pb.ListChange:
        log = self.new_log or self.log
        leaf = custody_leaf(log.size + 1, step, reference, actor)
        log.append(leaf)
        return leaf

    def announce(self, note: str | None = None) -> None:
        note = self.one if note is None else note
        self.step("ANNOUNCED 1", sha256_hex(note))
        custody = self.old.custody
        assert custody is not None
        custody.state, custody.state_name = custody_pb.CUSTODY_STATE_ANNOUNCED, "ANNOUNCED"
        custody.policy_version = 1
        del custody.policies[:]
        custody.policies.extend([self.zero, note])

    def freeze(self) -> None:
        self.step("READY 1")
        leaf = self.step("FROZEN 1", sha256_hex(self.v1.text()))
        self.final_size = leaf.sequence
        custody = self.old.custody
        assert custody is not None
        custody.state, custody.state_name = custody_pb.CUSTODY_STATE_FROZEN, "FROZEN"
        custody.final_size = self.final_size
        custody.final_checkpoint = self.log.checkpoint(self.final_size)

    def abort(self, note: str) -> pb.ListChange:
        """The officers' abort: leaf N + 1 under the old key, GetCustody ABORTED."""
        leaf = self.step("ABORTED 1", sha256_hex(note_text(note)))
        custody = self.old.custody
        assert custody is not None
        custody.state, custody.state_name = custody_pb.CUSTODY_STATE_ABORTED, "ABORTED"
        custody.policy_version = 0
        custody.abort_note = note
        del custody.policies[1:]
        return leaf

    # --- the incoming register ------------------------------------------------------------

    def handover_note(self, signers: list[Signer] | None = None) -> str:
        keys = self.keys
        state = Handover.between(
            self.v0, self.v1, self.final_size, self.log.prover.root(self.final_size)
        )
        every = [keys.old, keys.new, *keys.telkomsel[:2], *keys.kemenperin[:2], keys.kominfo]
        return sign_handover(state, every if signers is None else signers)

    def activate(
        self, *, handover: str | None = None, cosigned: bool = True, retired: bool = True
    ) -> FakeLink:
        """The new register: the same log to N, then leaf N + 1 (ACTIVE) under the new key."""
        keys = self.keys
        self.handover = self.handover_note() if handover is None else handover
        new_log = SignedLog(keys.new, ORIGIN)
        for existing in self.log.changes[: self.final_size]:
            new_log.append(existing)
        self.new_log = new_log
        self.step("ACTIVE 1", sha256_hex(note_text(self.handover)), actor="kemenperin")
        first = new_log.checkpoint()
        if cosigned:
            first = cosign(first, keys.kominfo_cosigner, now_s() - 1)
        self.new = FakeLink(signed=new_log)
        self.new.custody = custody_pb.Custody(
            state=custody_pb.CUSTODY_STATE_ACTIVE,
            state_name="ACTIVE",
            policy_version=1,
            policies=[self.zero, self.one],
            final_size=self.final_size,
            # The witnesses cosigned the final checkpoint during the ceremony.
            final_checkpoint=cosign(
                self.log.checkpoint(self.final_size), keys.kominfo_cosigner, now_s() - 1
            ),
            handover=self.handover,
            first_checkpoint=first,
            custodian="kemenperin",
            endpoint=self.v1.endpoint,
        )
        self.links[NEW] = self.new
        if retired:
            custody = self.old.custody
            assert custody is not None
            custody.state, custody.state_name = custody_pb.CUSTODY_STATE_RETIRED, "RETIRED"
            custody.endpoint, custody.custodian = self.v1.endpoint, "kemenperin"
        return self.new

    # --- a node ---------------------------------------------------------------------------

    def setup(self, state_dir: Path | None) -> CustodySetup:
        return CustodySetup(
            policy_0=self.zero,
            connect=lambda target: self.links[target],
            state_dir=state_dir,
            endpoints={self.v0.endpoint: OLD, self.v1.endpoint: NEW},
        )

    def node(self, state_dir: Path | None) -> tuple[CustodyFollower, LogVerifier]:
        """A verifier guarded by a custody follower, driven by hand (no threads)."""
        follower = self.setup(state_dir).follower(self.old, "xl")
        verifier = LogVerifier(
            follower.verifier_trust(), follower.link.consistency_proof, name="xl", guard=follower
        )
        follower.alert = verifier.stats.alert
        follower.retrusted = lambda trust: setattr(verifier, "trust", trust)
        return follower, verifier

    def feed(self, verifier: LogVerifier, link: FakeLink | None = None) -> list[pb.ListChange]:
        """Everything after the verifier's size, as one message with the latest checkpoint."""
        log = self.new_log if link is not None and link is self.new else self.log
        assert log is not None
        first = verifier.verified_sequence + 1
        message = log.message(first, log.size)
        return verifier.receive(message.changes, message.checkpoint)


def officers_only(world: World) -> str:
    """Policy 1 signed by the outgoing officers and the witness: no incoming officers."""
    keys = world.keys
    return sign_note(world.v1.text(), [*keys.telkomsel[:2], keys.kominfo])


def policy_of(note: str) -> CustodyPolicy:
    return CustodyPolicy.parse(note_text(note))
