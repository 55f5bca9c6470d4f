"""A node following the register's custody: readiness, the freeze, split views, the switch.

The node's ``LogVerifier`` asks this ``CustodyFollower`` (its guard) which
key may sign which checkpoint (``CustodyTrust.open``: key epochs), and
tells it about every change it released. The custody leaves (change kind
CUSTODY_CHANGED, reason ``"<STATE> <version>"``) drive it:

- ``ANNOUNCED k+1``: fetch GetCustody, check that the published policy is
  the one the leaf's reference names (SHA-256 of its note or text), walk to
  it from policy k (``POLICY_REFUSED`` if it does not walk: no readiness,
  never trusted), then ReportReadiness(k+1, SHA-256 of its text);
- ``FROZEN k+1`` (leaf N): record N, the root and the checkpoint at N; from
  then on a checkpoint of the old key larger than N is a **split view**
  (``SPLIT_VIEW``: refused, evidence written, the node keeps deciding from
  its verified lists) unless the next leaf is a verified ``ABORTED k+1``
  (the abort note from GetCustody, ``verify_abort``, or the policy expired);
- once frozen (or told REGISTER_MOVED), a watcher thread asks the register
  where the custodian is now (RETIRED and its endpoint), and the new
  register itself, and moves the node to it only once ``verify_switch``
  passes; the trust state is saved before the node's link changes.

Everything the node trusts is saved atomically in its state directory
(``custody.json``) and reloaded at start, so a crash mid-switch neither
loses the handover nor repeats half of it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ceir.audit.checkpoint import Checkpoint, open_checkpoint
from ceir.audit.errors import AuditError
from ceir.audit.merkle import short, verify_consistency
from ceir.custody import CustodyPolicy, CustodyRefusal, verify_abort
from ceir.v1 import custody_pb2 as custody_pb
from ceir.v1 import types_pb2 as pb

from .custody_evidence import write_handover, write_split_view
from .custody_state import CustodyTrust, Final, Opened, note_text, sha256_hex
from .custody_switch import (
    HANDOVER_INVALID,
    POLICY_REFUSED,
    Switch,
    SwitchRefused,
    verify_switch,
)
from .transport import CeirLink, LinkDown, LinkError, SwitchableLink
from .verification import LINK_FAILED, SPLIT_VIEW, Refused, Trust

log = logging.getLogger("operators_sim.custody")

STATE_FILE = "custody.json"
SAVE_INTERVAL = 1.0  # seconds between saves of the last verified checkpoint alone
Alert = Callable[[str, str], None]
Connect = Callable[[str], CeirLink]


@dataclass(frozen=True)
class CustodyLeaf:
    """A custody leaf as the feed carries it."""

    sequence: int
    state: str
    version: int
    reference: str

    @classmethod
    def of(cls, change: pb.ListChange) -> CustodyLeaf | None:
        """The leaf's step, or None for another kind (or a reason that is not ``STATE k``)."""
        if change.kind != pb.CHANGE_KIND_CUSTODY_CHANGED:
            return None
        words = change.reason.split(" ")
        if len(words) != 2 or not words[1].isdigit():
            return None
        return cls(change.sequence, words[0], int(words[1]), change.reference)


def change_name(leaf: CustodyLeaf) -> str:
    return f"{leaf.state} {leaf.version}"


def _named(reference: str, note: str) -> bool:
    """``reference`` is the SHA-256 of ``note``'s text (or of the whole note)."""
    return reference in (sha256_hex(note_text(note)), sha256_hex(note))


@dataclass
class CustodyStats:
    readiness_reported: list[int] = field(default_factory=list)
    policies_refused: list[int] = field(default_factory=list)
    handovers: int = 0
    split_views: list[str] = field(default_factory=list)
    evidence: list[str] = field(default_factory=list)  # directories written
    alerts: dict[str, int] = field(default_factory=dict)  # by reason (split views: above)

    def as_dict(self) -> dict[str, object]:
        return {
            "readiness_reported": list(self.readiness_reported),
            "policies_refused": list(self.policies_refused),
            "handovers": self.handovers,
            "split_views": len(self.split_views),
            "alerts": dict(sorted(self.alerts.items())),
            "evidence": list(self.evidence),
        }


@dataclass(frozen=True)
class CustodySetup:
    """A node's custody options: its policy 0 (the signed note's text), how to
    reach another register as its operator, where it keeps its state and
    evidence, and the address to dial for a policy's endpoint."""

    policy_0: str
    connect: Connect
    state_dir: Path | None = None
    endpoints: Mapping[str, str] = field(default_factory=dict)
    poll_interval: float = 1.0

    def follower(self, link: CeirLink, name: str, *, polling: bool = False) -> CustodyFollower:
        """The node's follower over ``link`` (or over the register its saved state
        moved it to); its ``link`` is the one the node must use from now on."""
        trust = load_trust(self.policy_0, self.state_dir)
        target = ""
        if len(trust.policies) > 1:  # a handover happened before this start: go where it went
            target = self.endpoints.get(trust.endpoint, trust.endpoint)
            link.close()
            link = self.connect(target)
        return CustodyFollower(
            trust,
            SwitchableLink(link, target),
            self.connect,
            state_dir=self.state_dir,
            endpoints=self.endpoints,
            name=name,
            poll_interval=self.poll_interval,
            polling=polling,
        )


def load_trust(policy_0: str, state_dir: Path | None) -> CustodyTrust:
    """The node's trust: saved in ``state_dir``, or a fresh start from policy 0."""
    if state_dir is None:
        return CustodyTrust.start(policy_0)
    return CustodyTrust.load(state_dir / STATE_FILE, policy_0)


class CustodyFollower:
    """The node's custody guard (for its ``LogVerifier``) and its watcher thread."""

    def __init__(
        self,
        trust: CustodyTrust,
        link: SwitchableLink,
        connect: Connect,
        *,
        state_dir: Path | None = None,
        endpoints: Mapping[str, str] | None = None,
        name: str = "node",
        poll_interval: float = 1.0,
        polling: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``connect(target)``: a link to another register, as this operator
        (its credentials); ``endpoints``: a policy's endpoint -> the address
        to dial (the simulation's registers listen on local ports).
        ``polling``: a node without a feed (authorize mode) learns of the
        ceremony from GetCustody every ``poll_interval`` instead of from leaves."""
        self.trust = trust
        self.link = link
        self.connect = connect
        self.state_dir = state_dir
        # Read at each switch, not copied: a drill may add an address once it listens.
        self.endpoints: Mapping[str, str] = endpoints if endpoints is not None else {}
        self.name = name
        self.poll_interval = poll_interval
        self.polling = polling
        self.clock = clock
        self.stats = CustodyStats()
        self.alert: Alert = lambda reason, message: None
        self.restart: Callable[[], None] = lambda: None
        self.retrusted: Callable[[Trust], None] = lambda trust: None
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._announced: CustodyLeaf | None = None  # waiting for its walk and readiness
        self._moved_to = ""  # an endpoint a REGISTER_MOVED named
        self._alerted: set[str] = set()
        self._saved_at = 0.0

    def verifier_trust(self, replay_log: bool = False) -> Trust:
        """The verifier's keys: every epoch's (the guard decides which signs what)."""
        keys = tuple(p.log_key for p in self.trust.policies)
        return Trust(keys, self.trust.origin, replay_log)

    # --- the guard ------------------------------------------------------------------------

    def open(self, note: str, staged: Sequence[pb.ListChange]) -> Checkpoint:
        with self._lock:
            opened = self.trust.open(note)
            checkpoint = opened.checkpoint
            final = opened.final.size if opened.final is not None else None
            current = opened.version == self.trust.version
            if final is None and current:
                frozen = [
                    leaf.sequence
                    for leaf in map(CustodyLeaf.of, staged)
                    if leaf is not None
                    and leaf.state == "FROZEN"
                    and leaf.version == self.trust.version + 1
                ]
                final = frozen[0] if frozen else None
            if final is not None and checkpoint.size > final:
                reopened = current and self._abort_verified(staged, final)
                if not reopened:
                    raise self._split_view(opened, note, final)
            if opened.anchor is not None:
                self._check_anchor(opened, note)
            return checkpoint

    def accepted(self, note: str, checkpoint: Checkpoint, changes: Sequence[pb.ListChange]) -> None:
        with self._lock:
            trust = self.trust
            changed = False
            for leaf in map(CustodyLeaf.of, changes):
                if leaf is None:
                    continue
                log.info("%s: custody %s at %d", self.name, change_name(leaf), leaf.sequence)
                if leaf.state == "ANNOUNCED" and leaf.version == trust.version + 1:
                    self._announced = leaf
                    self._wake.set()
                elif leaf.state == "FROZEN" and leaf.version == trust.version + 1:
                    if checkpoint.size == leaf.sequence:
                        trust.freeze(Final(leaf.sequence, checkpoint.root_hash, note))
                        changed = True
                        self._wake.set()
                elif leaf.state == "ABORTED" and leaf.version == trust.version + 1:
                    trust.reopen()  # after a freeze, ``open`` verified the abort
                    self._announced = None
                    changed = True
                elif (
                    leaf.state == "ACTIVE"
                    and leaf.version == trust.version
                    and trust.handovers
                    and not _named(leaf.reference, trust.handovers[-1])
                ):
                    self._alert_once(
                        HANDOVER_INVALID,
                        f"leaf {leaf.sequence} (ACTIVE {leaf.version}) names another "
                        "handover note than the one the node verified",
                    )
            trust.checkpoint = note
            now = time.monotonic()
            if changed or now - self._saved_at >= SAVE_INTERVAL:
                self._save()

    def moved(self, endpoint: str) -> None:
        """The register answered REGISTER_MOVED (naming the custodian's endpoint)."""
        self._moved_to = endpoint or self._moved_to or "?"
        self._wake.set()

    # --- the watcher ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-custody", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.step()
            except Exception:  # the watcher must outlive any one bad answer
                log.exception("%s: custody step failed", self.name)
            self._wake.wait(self.poll_interval)
            self._wake.clear()

    def step(self) -> bool:
        """One round: readiness if a policy was announced, the switch if due. True: switched."""
        with self._lock:
            here = self._custody_here() if self.polling else None
            if here is not None:
                self._poll_announced(here)
            if self._announced is not None:
                self._walk_announced(self._announced)
            if self.trust.frozen is not None or self._moved_to or here is not None:
                return self._try_switch()
            return False

    def _custody_here(self) -> custody_pb.Custody | None:
        try:
            return self.link.get_custody()
        except LinkError:
            return None

    def _poll_announced(self, here: custody_pb.Custody) -> None:
        """No feed: an announced policy seen in GetCustody stands for its leaf."""
        version = self.trust.version + 1
        waiting = (
            custody_pb.CUSTODY_STATE_ANNOUNCED,
            custody_pb.CUSTODY_STATE_READY,
            custody_pb.CUSTODY_STATE_FROZEN,
        )
        stats = self.stats
        done = version in stats.readiness_reported or version in stats.policies_refused
        published = here.policy_version == version and len(here.policies) > version
        if here.state not in waiting or not published or done or self.trust.announced:
            return
        if self._announced is None:
            reference = sha256_hex(here.policies[version])
            self._announced = CustodyLeaf(0, "ANNOUNCED", version, reference)

    # --- readiness ----------------------------------------------------------------------

    def _walk_announced(self, leaf: CustodyLeaf) -> None:
        try:
            custody = self.link.get_custody()
        except LinkError as error:
            log.info("%s: GetCustody failed (%s); will ask again", self.name, error)
            return
        if len(custody.policies) <= leaf.version:
            return  # not published yet: ask again
        signed = custody.policies[leaf.version]
        if not _named(leaf.reference, signed):
            self._refuse_policy(leaf.version, "the published policy is not the one the leaf names")
            return
        try:
            policy = self.trust.announce(signed, int(self.clock()))
        except CustodyRefusal as error:
            self._refuse_policy(leaf.version, f"{error.reason}: {error}")
            return
        self._save()
        try:
            self.link.report_readiness(policy.version, sha256_hex(policy.text()))
        except LinkDown:
            return  # keep ``_announced``: report on the next round
        except LinkError as error:  # refused (not an operator, another state): nothing to redo
            log.warning("%s: ReportReadiness(%d) refused: %s", self.name, policy.version, error)
        else:
            self.stats.readiness_reported.append(policy.version)
        self._announced = None

    def _refuse_policy(self, version: int, message: str) -> None:
        self._announced = None
        self.stats.policies_refused.append(version)
        self._alert_once(POLICY_REFUSED, f"policy {version}: {message}")

    # --- the switch -----------------------------------------------------------------------

    def _try_switch(self) -> bool:
        candidates = [self._moved_to] if self._moved_to not in ("", "?") else []
        try:
            here = self.link.get_custody()
        except LinkError:
            here = None
        if (
            here is not None
            and here.endpoint
            and here.state
            in (
                custody_pb.CUSTODY_STATE_RETIRED,
                custody_pb.CUSTODY_STATE_ACTIVE,
            )
        ):
            candidates.append(here.endpoint)
        announced = self.trust.announced_policy()
        if announced is not None:
            candidates.append(announced.endpoint)
        for endpoint in dict.fromkeys(candidates):
            if endpoint != self.trust.endpoint and self._switch_to(endpoint, here):
                return True
        return False

    def _switch_to(self, endpoint: str, here: custody_pb.Custody | None) -> bool:
        target = self.endpoints.get(endpoint, endpoint)
        try:
            candidate = self.connect(target)
        except Exception as error:  # a malformed endpoint: nothing to dial
            log.warning("%s: cannot reach %s (%s): %s", self.name, endpoint, target, error)
            return False
        try:
            custody = candidate.get_custody()
            switch = verify_switch(self.trust, custody, candidate, int(self.clock()), here)
        except SwitchRefused as error:
            candidate.close()
            self._alert_once(error.reason, f"{endpoint}: {error}")
            return False
        except LinkError as error:
            candidate.close()
            log.info("%s: %s not reachable for the switch yet: %s", self.name, endpoint, error)
            return False
        if switch is None:
            candidate.close()
            return False
        before = self.trust.notes[-1]
        self.trust.hand_over(switch.policy_note, switch.final, switch.handover, endpoint)
        self._save()  # trusted from here on, whatever happens next
        self._moved_to = ""
        self.stats.handovers += 1
        self._write_handover(before, switch.policy_note, switch)
        self.link.switch(candidate, target)
        self.retrusted(self.verifier_trust())
        log.warning(
            "%s: custody moved to %s (%s), policy %d, from size %d",
            self.name,
            switch.policy.custodian,
            endpoint,
            switch.policy.version,
            switch.final.size,
        )
        self.restart()
        return True

    def _write_handover(self, before: str, after: str, switch: Switch) -> None:
        if self.state_dir is None:
            return
        directory = self.state_dir / "evidence" / f"handover-{switch.policy.version}"
        try:
            write_handover(
                directory,
                policy_before=before,
                policy_after=after,
                final_checkpoint=switch.final_cosigned,
                first_checkpoint=switch.first_checkpoint,
                final_size=switch.final.size,
                first_size=switch.first.size,
                consistency_proof=switch.proof_to_first,
                handover=switch.handover,
            )
        except OSError as error:
            log.error("%s: cannot write the handover evidence: %s", self.name, error)
            return
        self.stats.evidence.append(str(directory))

    # --- aborts and split views ---------------------------------------------------------

    def _abort_verified(self, staged: Sequence[pb.ListChange], final: int) -> bool:
        """The change after the final one is ``ABORTED k+1``, and the abort verifies."""
        following = [c for c in staged if c.sequence == final + 1]
        leaf = CustodyLeaf.of(following[0]) if following else None
        if leaf is None or leaf.state != "ABORTED" or leaf.version != self.trust.version + 1:
            return False
        try:
            custody = self.link.get_custody()
        except LinkError as error:
            raise Refused(LINK_FAILED, f"cannot fetch the abort note: {error}") from error
        proposed = self.trust.announced_policy()
        if proposed is None and len(custody.policies) > leaf.version:
            proposed = CustodyPolicy.parse(note_text(custody.policies[leaf.version]))
        if proposed is None:
            return False  # nothing to bind the abort to
        if leaf.reference == "expired":
            return proposed.expired(int(self.clock()))
        if not custody.abort_note or not _named(leaf.reference, custody.abort_note):
            return False
        try:
            verify_abort(custody.abort_note, self.trust.current, proposed)
        except CustodyRefusal as error:
            log.warning("%s: the abort note does not verify: %s", self.name, error)
            return False
        return True

    def _check_anchor(self, opened: Opened, note: str) -> None:
        """A later key's checkpoint inside an earlier epoch agrees with that epoch's end."""
        anchor, checkpoint = opened.anchor, opened.checkpoint
        assert anchor is not None
        if checkpoint.size == anchor.size:
            if checkpoint.root_hash == anchor.root:
                return
            problem = "another root at the final size"
        else:
            try:
                proof = self.link.consistency_proof(checkpoint.size, anchor.size)
            except LinkError as error:
                raise Refused(LINK_FAILED, f"no proof to the final size: {error}") from error
            try:
                verify_consistency(
                    checkpoint.size, anchor.size, proof, checkpoint.root_hash, anchor.root
                )
                return
            except AuditError as error:
                problem = str(error)
        raise self._split_view(opened, note, anchor.size, anchor, problem)

    def _split_view(
        self,
        opened: Opened,
        note: str,
        final_size: int,
        anchor: Final | None = None,
        problem: str = "",
    ) -> Refused:
        checkpoint = opened.checkpoint
        key = sha256_hex(note_text(note))
        message = (
            f"policy {opened.version}'s key signed size {checkpoint.size} "
            f"(root {short(checkpoint.root_hash)}), past its final size {final_size}"
            if anchor is None
            else f"policy {opened.version}'s key signed size {checkpoint.size}, "
            f"inconsistent with the final checkpoint at {final_size}: {problem}"
        )
        if key in self._alerted:
            return Refused(SPLIT_VIEW, message, counted=False)
        self._alerted.add(key)
        self.stats.split_views.append(f"{self.name}: {message}")
        self._write_split_view(opened, note, final_size, anchor, message)
        log.error("%s: ALERT %s: %s", self.name, SPLIT_VIEW, message)
        return Refused(SPLIT_VIEW, message)

    def _write_split_view(
        self, opened: Opened, note: str, final_size: int, anchor: Final | None, message: str
    ) -> None:
        if self.state_dir is None:
            return
        final = anchor or opened.final or self.trust.frozen
        final_note = final.checkpoint if final is not None else self.trust.checkpoint
        checkpoint = opened.checkpoint
        older = None
        if final_note:
            keys = [p.log_key for p in self.trust.policies]
            try:
                older = open_checkpoint(final_note, keys, self.trust.origin)
            except AuditError:
                older = None
        proof: list[bytes] | None = None
        failure = ""
        if older is None:
            failure = "the node holds no checkpoint of the final size to prove against"
        else:
            low, high = sorted((older, checkpoint), key=lambda c: c.size)
            try:
                proof = list(self.link.consistency_proof(low.size, high.size))
                verify_consistency(low.size, high.size, proof, low.root_hash, high.root_hash)
            except (LinkError, AuditError) as error:
                failure = f"consistency proof from {low.size} to {high.size}: {error}"
        directory = (
            self.state_dir / "evidence" / f"split-view-{checkpoint.size}-"
            f"{checkpoint.root_hash.hex()[:16]}"
        )
        try:
            write_split_view(
                directory,
                policies=self.trust.notes,
                final_checkpoint=final_note,
                conflicting_checkpoint=note,
                final_size=older.size if older is not None else final_size,
                conflicting_size=checkpoint.size,
                proof=proof,
                failure=failure,
                description=f"{self.name}: {SPLIT_VIEW}: {message}",
            )
        except OSError as error:
            log.error("%s: cannot write the split view evidence: %s", self.name, error)
            return
        self.stats.evidence.append(str(directory))

    # --- alerts and the state file ------------------------------------------------------

    def _alert_once(self, reason: str, message: str) -> None:
        key = f"{reason} {message}"
        if key in self._alerted:
            return
        self._alerted.add(key)
        log.error("%s: ALERT %s: %s", self.name, reason, message)
        self.stats.alerts[reason] = self.stats.alerts.get(reason, 0) + 1
        self.alert(reason, message)

    def _save(self) -> None:
        self._saved_at = time.monotonic()
        if self.state_dir is not None:
            self.trust.save(self.state_dir / STATE_FILE)
