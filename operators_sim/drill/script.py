"""What the drill's people do, scenario by scenario, and the outcome it came to.

The clean ceremony, in order:

1. Telkomsel proposes policy 1 (Kemenperin custodian, its log key and endpoint);
2. two Telkomsel officers, two Kemenperin officers and Kominfo sign it, each
   from their organisation's connection: the register records ANNOUNCED;
3. every operator's node walks the chain to policy 1 and reports readiness:
   READY;
4. Telkomsel freezes its register once the notice period is over: FROZEN at
   size N, the final checkpoint signed by the old key;
5. the witness cosigns the final checkpoint; the officers of both sides and
   Kominfo sign the handover note;
6. Kemenperin's register confirms it holds the log to N with the same root
   (TRANSFERRED), is activated with the handover note (ACTIVE, its first
   checkpoint at N + 1 signed by the new key); once the witness has cosigned
   that checkpoint it has Telkomsel's register retire (the handover note, the
   first checkpoint and the consistency proof from N: the commit point) and
   takes writes once that answered RETIRED;
7. Telkomsel's register is read-only: writes sent there get REGISTER_MOVED
   with Kemenperin's endpoint. Telkomsel calls Retire too (done already: it
   answers RETIRED again).

Each scenario departs from this where its fault is staged (``run`` below).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ceir.audit.checkpoint import Checkpoint, sign_checkpoint
from ceir.audit.merkle import verify_consistency
from ceir.audit.note import sign_note
from ceir.custody import AbortNote, CustodyPolicy, sign_abort
from ceir.v1 import custody_pb2 as custody_pb
from ceir.v1 import list_sync_pb2 as sync_pb
from ceir.v1 import types_pb2 as pb

from .ceremony import Ceremony, CeremonyRefused, Side, note_text
from .cluster import Cluster
from .feed import read_log, tree_root
from .keys import INCOMING, OUTGOING, THRESHOLD, DrillKeys, policy
from .scenarios import Scenario
from .timeline import Timeline

log = logging.getLogger("operators_sim.drill")

S = custody_pb.CustodyState
WAIT = 60.0  # seconds any one step may take before the drill gives up on it
TRANSFER_TIMEOUT = 60.0
CORRUPT_TRANSFER_TIMEOUT = 5.0  # the standby stopped at the altered change: no point waiting


class DrillFailed(Exception):
    """The drill could not run its scenario (a server that never answered...)."""


@dataclass
class Outcome:
    """How the ceremony ended, and what the verdict and the evidence need of it."""

    outcome: str
    frozen: bool = False
    final_size: int = 0
    final_checkpoint: str = ""  # with the witness's cosignature
    first_checkpoint: str = ""  # with the witness's cosignature
    handover: str = ""
    proof: list[bytes] = field(default_factory=list)
    policy_0: str = ""
    policy_1: str = ""
    roots_equal: bool | None = None


@dataclass
class Hooks:
    """What the drill's runner does for the script: nodes cut off and back."""

    cut_node: Callable[[str], None] = lambda _name: None
    restore_node: Callable[[str], None] = lambda _name: None
    refuse_policy: Callable[[str], dict[str, str]] = lambda _note: {}


class Script:
    """Runs one scenario's ceremony."""

    def __init__(
        self,
        scenario: Scenario,
        cluster: Cluster,
        ceremony: Ceremony,
        keys: DrillKeys,
        timeline: Timeline,
        policy_0: str,
        notice: float,
        hooks: Hooks,
        *,
        offline_node: str = "tri",
        witness_outage: float = 8.0,
        crash_outage: float = 2.0,
    ) -> None:
        self.scenario = scenario
        self.cluster = cluster
        self.ceremony = ceremony
        self.keys = keys
        self.timeline = timeline
        self.policy_0 = policy_0
        self.notice = notice
        self.hooks = hooks
        self.offline_node = offline_node
        self.witness_outage = witness_outage
        self.crash_outage = crash_outage
        self._threads: list[threading.Thread] = []

    @property
    def name(self) -> str:
        return self.scenario.name

    def policy_1(self) -> CustodyPolicy:
        """Policy 1, proposed now: Kemenperin, its key and endpoint; the
        scenario's expiry (short where the ceremony must run out of time)."""
        expires = int(time.time() + self.scenario.expiry)
        return policy(self.keys, 1, INCOMING, self.cluster.endpoint(INCOMING), expires)

    # -- the whole run -----------------------------------------------------------------

    def run(self) -> Outcome:
        result = Outcome("aborted", policy_0=self.policy_0)
        try:
            self._run(result)
        finally:
            for thread in self._threads:
                thread.join()
        return result

    def _run(self, result: Outcome) -> None:
        ceremony, keys, out = self.ceremony, self.keys, self.ceremony.outgoing
        proposed = self.policy_1()
        ceremony.propose(proposed, self.notice)
        if self.name == "wrong-signer":
            result.outcome = self._wrong_signer()
            return
        if self.name == "old-keys-only":
            result.outcome = self._old_keys_only(proposed)
            return
        outgoing_signers = 1 if self.name == "officer-missing" else THRESHOLD
        ceremony.sign(out, OUTGOING, keys.signers(OUTGOING, outgoing_signers), "policy 1")
        ceremony.sign(out, INCOMING, keys.signers(INCOMING, THRESHOLD), "policy 1")
        ceremony.sign(out, "kominfo", (keys.witness,), "policy 1")
        if self.name == "officer-missing":
            self.timeline.mark("waiting", "one Telkomsel officer is missing")
            result.outcome = self._until_expired(proposed.expires)
            return
        announced = self._wait(out, (S.CUSTODY_STATE_ANNOUNCED, S.CUSTODY_STATE_READY))
        self.timeline.mark("ANNOUNCED", "policy 1 published")
        result.policy_1 = announced.policies[1] if len(announced.policies) > 1 else ""
        if self.name == "not-ready":
            waiting = self._settled_waiting()
            self.timeline.mark("waiting", f"for {waiting}")
            self._try_freeze()  # not READY: the register must refuse
            result.outcome = self._until_expired(proposed.expires)
            return
        ready = ceremony.wait_state(out, (S.CUSTODY_STATE_READY,), WAIT)
        if ready is None:
            raise DrillFailed(f"never READY: {out.state().detail}")
        self.timeline.mark("READY", "every operator holds policy 1")
        if self.name == "operator-offline":
            self.hooks.cut_node(self.offline_node)
            self.timeline.mark("node cut off", self.offline_node)
        ceremony.freeze(WAIT)
        result.frozen = True
        result.final_size = ceremony.final_size
        if self.name == "witness-down":
            self.cluster.servers["witness"].stop()
            self.timeline.mark("witness stopped")
            self._later(self.witness_outage, self._witness_back)
        if self.name == "split-view":
            self._forge_split_view(ceremony.final_size, ceremony.final_checkpoint)
        result.final_checkpoint = self._cosign_final()
        self._sign_handover()
        if self.name == "transfer-corrupt":
            result.outcome = self._corrupt_transfer(result, proposed)
            return
        self._transfer()
        result.roots_equal = True  # the incoming register checked it; verified again below
        handover = out.state().handover
        ceremony.activate(handover)
        result.handover = handover = ceremony.handover
        first = ceremony.first_checkpoint
        size = Checkpoint.parse(note_text(first)).size
        proof = ceremony.consistency(ceremony.incoming, result.final_size, size)
        result.proof = proof
        result.first_checkpoint = self._cosign(
            ceremony.incoming, first, result.final_size, proof, [result.policy_1], "first"
        )
        result.roots_equal = _consistent(result.final_checkpoint, result.first_checkpoint, proof)
        ceremony.retire(handover, result.first_checkpoint, proof)
        if self.name == "operator-offline":
            self._later(2.0, lambda: self._restore(self.offline_node))
        result.outcome = "handed_over"

    # -- waiting -------------------------------------------------------------------------

    def _wait(self, side: Side, states: tuple[int, ...]) -> custody_pb.Custody:
        custody = self.ceremony.wait_state(side, states, WAIT)
        if custody is None:
            state = self.ceremony.outgoing.state()
            raise DrillFailed(f"the register stayed {state.state_name}: {state.detail}")
        return custody

    def _until_expired(self, expires: int) -> str:
        """Wait for the register to drop policy 1 at its expiry: an announced
        one is aborted (ABORTED, a leaf), a proposal never announced is dropped
        (OPERATING again, nothing pending, no leaf)."""
        out = self.ceremony.outgoing
        deadline = time.monotonic() + max(expires - time.time(), 0) + WAIT
        while time.monotonic() < deadline:
            custody = out.state()
            if custody.state == S.CUSTODY_STATE_ABORTED:
                self.timeline.mark("ABORTED", custody.detail or "policy 1 expired")
                return "aborted"
            dropped = custody.state == S.CUSTODY_STATE_OPERATING and not custody.pending_kind
            if dropped and time.time() >= expires:
                self.timeline.mark("dropped", custody.detail or "policy 1 expired unannounced")
                return "aborted"
            time.sleep(0.2)
        raise DrillFailed(f"policy 1 expired but the register is {out.state().state_name}")

    def _settled_waiting(self) -> str:
        """The operators still awaited once the others have reported (or after WAIT)."""
        out = self.ceremony.outgoing
        deadline = time.monotonic() + WAIT
        while True:
            custody = out.state()
            waiting = list(custody.waiting_operators)
            if len(waiting) <= 1 or time.monotonic() >= deadline:
                return ", ".join(waiting) or "nobody"
            time.sleep(0.2)

    def _later(self, delay: float, action: Callable[[], None]) -> None:
        def run() -> None:
            time.sleep(delay)
            action()

        thread = threading.Thread(target=run, name="drill-later", daemon=True)
        self._threads.append(thread)
        thread.start()

    # -- refusals ------------------------------------------------------------------------

    def _wrong_signer(self) -> str:
        """An outsider signs as a Telkomsel officer; then one officer signs twice."""
        ceremony, keys, out = self.ceremony, self.keys, self.ceremony.outgoing
        refused = []
        text = ceremony.pending(out)
        try:
            ceremony.submit(out, OUTGOING, sign_note(text, [keys.outsider]), "by an outsider")
        except CeremonyRefused as error:
            refused.append(error.refusal.reason)
        ayu = keys.signers(OUTGOING, 1)[0]
        twice = sign_note(text, [ayu]) + sign_note(text, [ayu]).split("\n\n", 1)[1]
        try:
            ceremony.submit(out, OUTGOING, twice, "twice by one officer")
        except CeremonyRefused as error:
            refused.append(error.refusal.reason)
        ceremony.sign(out, INCOMING, keys.signers(INCOMING, THRESHOLD), "policy 1")
        ceremony.sign(out, "kominfo", (keys.witness,), "policy 1")
        custody = out.state()
        if custody.state in (S.CUSTODY_STATE_ANNOUNCED, S.CUSTODY_STATE_READY):
            raise DrillFailed("the register announced policy 1 with a wrong signer's approval")
        self.timeline.mark("not announced", custody.detail or ", ".join(refused))
        self._try_freeze()
        return "refused"

    def _old_keys_only(self, proposed: CustodyPolicy) -> str:
        """Policy 1 signed by the outgoing side alone."""
        ceremony, keys, out = self.ceremony, self.keys, self.ceremony.outgoing
        ceremony.sign(out, OUTGOING, keys.signers(OUTGOING, 3), "policy 1")
        ceremony.sign(out, "kominfo", (keys.witness,), "policy 1")
        custody = out.state()
        if custody.state in (S.CUSTODY_STATE_ANNOUNCED, S.CUSTODY_STATE_READY):
            raise DrillFailed("the register announced policy 1 signed by the old side alone")
        self.timeline.mark("not announced", custody.detail or "THRESHOLD_NOT_MET")
        signed = sign_note(proposed.text(), (*keys.signers(OUTGOING, 3), keys.witness))
        refusals = self.hooks.refuse_policy(signed)
        for node, reason in sorted(refusals.items()):
            if reason == "ACCEPTED":
                raise DrillFailed(f"{node}'s node walked to policy 1 signed by the old side alone")
            self.timeline.mark("node refused", f"{node}: {reason}")
        self._try_freeze()
        return "refused"

    def _try_freeze(self) -> None:
        """The outgoing side tries to freeze anyway: the register must refuse."""
        try:
            self.ceremony.freeze(1.0)
        except CeremonyRefused:
            return
        raise DrillFailed("the register froze with no announced policy")

    # -- the witness ---------------------------------------------------------------------

    def _witness_back(self) -> None:
        self.cluster.restart("witness")
        self.timeline.mark("witness back")

    def _cosign(
        self,
        side: Side,
        checkpoint: str,
        old_size: int,
        proof: list[bytes],
        policies: list[str],
        what: str,
    ) -> str:
        """Cosign with the witness, waiting for it while it is down."""
        deadline = time.monotonic() + WAIT + self.witness_outage
        while True:
            try:
                return self.ceremony.cosign(
                    side,
                    checkpoint,
                    old_size,
                    proof,
                    [p for p in policies if p],
                    what,
                )
            except CeremonyRefused as error:
                if not error.refusal.down or time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)

    def _cosign_final(self) -> str:
        ceremony = self.ceremony
        return self._cosign(ceremony.outgoing, ceremony.final_checkpoint, 0, [], [], "final")

    def _sign_handover(self) -> None:
        ceremony, keys, out = self.ceremony, self.keys, self.ceremony.outgoing
        ceremony.sign(out, OUTGOING, keys.signers(OUTGOING, THRESHOLD), "handover")
        ceremony.sign(out, INCOMING, keys.signers(INCOMING, THRESHOLD), "handover")
        ceremony.sign(out, "kominfo", (keys.witness,), "handover")

    # -- the transfer --------------------------------------------------------------------

    def _transfer(self) -> None:
        """Transfer; in ``incoming-crash`` the incoming register is killed first,
        as it pulls the last changes, and started again while the drill retries."""
        if self.name == "incoming-crash":
            self.cluster.servers[INCOMING].kill()
            self.timeline.mark("incoming killed", "SIGKILL while it pulls the final changes")
            self._later(self.crash_outage, self._restart_incoming)
        deadline = time.monotonic() + TRANSFER_TIMEOUT + self.crash_outage
        while True:
            try:
                self.ceremony.transfer(TRANSFER_TIMEOUT)
                break
            except CeremonyRefused as error:
                if error.refusal.reason == "WRONG_STATE":
                    state = self.ceremony.incoming.state()
                    if state.state == S.CUSTODY_STATE_TRANSFERRED:
                        break
                if not error.refusal.down or time.monotonic() >= deadline:
                    raise
                time.sleep(0.3)
        for thread in self._threads:
            thread.join()
        if self.name == "incoming-crash":
            state = self.ceremony.incoming.state()
            if state.state != S.CUSTODY_STATE_TRANSFERRED:
                self.ceremony.transfer(TRANSFER_TIMEOUT)

    def _restart_incoming(self) -> None:
        self.cluster.restart(INCOMING)
        self.timeline.mark("incoming restarted", "on its database; the standby resumes")

    def _corrupt_transfer(self, result: Outcome, proposed: CustodyPolicy) -> str:
        """The altered change makes the roots differ: the transfer is refused
        (``ROOTS_DIFFER``; or ``TRANSFER_INCOMPLETE`` when the standby refused
        the altered message as it came, its root not the checkpoint's), then
        the officers abort."""
        try:
            self.ceremony.transfer(CORRUPT_TRANSFER_TIMEOUT)
        except CeremonyRefused as error:
            if error.refusal.reason not in ("ROOTS_DIFFER", "TRANSFER_INCOMPLETE"):
                raise
            result.roots_equal = False
        else:
            result.roots_equal = True
            raise DrillFailed("the incoming register accepted an altered change")
        note = sign_abort(AbortNote.of(proposed), self.keys.signers(OUTGOING, THRESHOLD))
        self.ceremony.abort(note)
        return "aborted"

    # -- the split view ------------------------------------------------------------------

    def _forge_split_view(self, final_size: int, final_checkpoint: str) -> None:
        """The old key signs a checkpoint one change past N; every node is fed it."""
        proxy = self.cluster.proxies["nodes"]
        changes = read_log(self.cluster.channel(OUTGOING, "kominfo"))[:final_size]
        frontier, root = tree_root(changes, final_size)
        stated = Checkpoint.parse(note_text(final_checkpoint))
        if root != stated.root_hash:
            raise DrillFailed("the drill's tree at N differs from the final checkpoint")
        template = next(c for c in reversed(changes) if c.kind == pb.CHANGE_KIND_WHITELIST_ADDED)
        forged = pb.ListChange()
        forged.CopyFrom(template)
        forged.sequence = final_size + 1
        key = f"{int(template.imei_key) + 1:014d}"
        forged.imei_key = key
        del forged.device_imei_keys[:]
        forged.device_imei_keys.append(key)
        forged.commit_time.GetCurrentTime()
        from ..leaf import leaf_hash

        frontier.append(leaf_hash(forged))
        checkpoint = Checkpoint(
            stated.origin, final_size + 1, frontier.root(), time.time_ns() // 1000
        )
        signed = sign_checkpoint(checkpoint, [self.keys.log[OUTGOING]])
        proxy.inject(
            sync_pb.WatchChangesResponse(
                changes=[forged], head_sequence=final_size + 1, checkpoint=signed
            ),
            after=final_size,
        )
        self.timeline.mark("split view", f"old key signed size {final_size + 1:,}")

    def _restore(self, name: str) -> None:
        self.hooks.restore_node(name)
        self.timeline.mark("node back", name)


def _consistent(final: str, first: str, proof: list[bytes]) -> bool:
    """The drill's own check: the first checkpoint extends the final one."""
    old = Checkpoint.parse(note_text(final))
    new = Checkpoint.parse(note_text(first))
    try:
        verify_consistency(old.size, new.size, proof, old.root_hash, new.root_hash)
    except Exception:  # any failure of the proof is a difference
        return False
    return True
