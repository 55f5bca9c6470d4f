"""The custody ceremony driven by a hypothesis state machine over two real registers.

Each example starts two real servers in-process on real sockets, each on its
own SQLite file: the outgoing register (Telkomsel, custodian under policy 0,
the old log key) and the incoming one (Kemenperin's new key, ``standby_of``
the outgoing: a real ``Standby`` pulls the log over the public feed, so the
transfer goes through ``Register.replicate``). Every step goes through the
public gRPC ``CustodyService``, ``RegistryService``, ``EquipmentCheckService``
and ``TransparencyService``. Both share one ``ManualClock``; the expiry timer
is slowed right down so that expiries happen where the custody calls (and
GetCustody, read after every step) check them, not in the background.

Hypothesis picks the steps: propose policy 1 (valid, short-lived, or
already expired), signatures by any subset of officers, witnesses,
strangers and repeats, readiness by any organisation, freeze, cosign the
final checkpoint, transfer, activate with a handover note signed by any
subset, cosign the first checkpoint, retire, abort notes with any subset of
officers, time passing (past the notice, past the expiry), a crash and
restart of either register on its database file, writes and checks on each.

Each step states what it expects from what the registers showed before it
and what the test has submitted (``Expect``); after every step the
invariants hold:

- **writers**: a register takes writes when it is OPERATING, ANNOUNCED,
  READY or ABORTED (the outgoing) or ACTIVE with a witness quorum on its
  first checkpoint once the outgoing is RETIRED (the incoming: it asks the
  outgoing to retire itself, the handover's commit point). At most one
  register takes writes; exactly one unless one is mid-handover (the
  outgoing FROZEN, or the incoming ACTIVE and not yet writable: then none may).
- **approvals**: the outgoing is never past OPERATING without the test having
  submitted both officer thresholds and the witness for the policy text; the
  incoming is never ACTIVE unless the test submitted (to the outgoing's
  handover note or with Activate) both officer thresholds and the witness
  quorum, and its handover note verifies.
- **logs**: each register's checkpoint only grows, each verifies under the
  right log key, and every checkpoint seen is consistent with the latest
  (RFC 6962 proofs from ``ceir.audit``); the incoming's log is a prefix of
  the outgoing's up to N (and beyond N, where it copies an aborted one).
- **abort**: the outgoing's list tables are the same after an abort; its
  log grows by the custody leaf only, and writes resume.
- **checks**: every check gets a status from each register that is up.

An abort note or policy 1's expiry on the outgoing register after the
incoming one went ACTIVE used to leave both taking writes (bug 3); the
retirement as commit point makes that impossible, and this machine checks it.
Runs: 30 examples of at most 15 steps, ~1 min 45 s on two cores;
CEIR_CEREMONY_EXAMPLES raises the count to hunt longer.
"""

from __future__ import annotations

import gc
import hashlib
import itertools
import os
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.duration_pb2 import Duration
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)

from ceir.api.server import RunningServer, ServerConfig, create_server
from ceir.audit import Checkpoint, generate_signing_key, open_checkpoint
from ceir.audit.merkle import verify_consistency
from ceir.audit.note import Signer, sign_note
from ceir.custody import (
    AbortNote,
    Cosigner,
    CustodyPolicy,
    cosign,
    policy_sha256,
    split_note,
    verify_cosignatures,
    verify_handover,
)
from ceir.service.clock import ManualClock
from ceir.service.orgs import add_organisation
from ceir.storage.database import Database
from ceir.v1 import custody_pb2 as pb
from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import transparency_pb2, types_pb2

from ..helpers import ORGS, TELKOMSEL_IMSI, Client, imei
from .ceremony import ORIGIN, YEAR, Keys, error_info

OPERATORS = ("indosat", "telkomsel", "xl")
NOTICE_S = 60
DAY = 86_400
LIST_TABLES = ("whitelist", "devices", "blacklist", "notifications", "exceptions")
# The outgoing takes writes in these states; the incoming only ACTIVE with its quorum,
# once the outgoing retired.
OUTGOING_WRITES = {"OPERATING", "ANNOUNCED", "READY", "ABORTED"}
ABORTABLE = {"ANNOUNCED", "READY", "FROZEN"}

# Who signs: the six officers, the witness's note key, and two strangers.
SIGNERS = (
    "telkomsel/0",
    "telkomsel/1",
    "telkomsel/2",
    "kemenperin/0",
    "kemenperin/1",
    "kemenperin/2",
    "witness",
    "stranger",
    "stranger-as-officer",
)
OUTGOING_QUORUM = frozenset({"telkomsel/0", "telkomsel/2"})
APPROVALS = frozenset({"telkomsel/0", "telkomsel/1", "kemenperin/1", "kemenperin/2", "witness"})
any_signers = st.lists(st.sampled_from(SIGNERS), max_size=6).map(set)
# Any subset, or one that carries the approvals (random subsets rarely do).
signer_sets = st.one_of(any_signers.filter(bool), st.just(set(APPROVALS)))
abort_signers = st.one_of(any_signers, st.just(set(OUTGOING_QUORUM)))


@dataclass
class Side:
    """One register: its database file, its server, its clients."""

    url: str
    tokens: dict[str, str]
    running: RunningServer | None = None
    channel: grpc.Channel | None = None
    clients: dict[str, Client] = field(default_factory=dict)
    port: int = 0
    # (size, root) of every checkpoint seen, and the last size.
    seen: dict[int, bytes] = field(default_factory=dict)
    size: int = 0

    def client(self, org: str) -> Client:
        return self.clients[org]

    def custody(self) -> pb.Custody:
        client = self.client("kominfo")
        return client.call(client.custody.GetCustody, pb.GetCustodyRequest()).custody

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None
        if self.running is not None:
            self.running.stop(grace=0)
            self.running = None
        gc.collect()


def _new_database(url: str) -> dict[str, str]:
    db = Database(url)
    db.migrate()
    try:
        return {
            name: add_organisation(db, name, kind, codes) for name, (kind, codes) in ORGS.items()
        }
    finally:
        db.dispose()


def _lists(url: str) -> str:
    """A digest of the register's list tables (what checks are answered from)."""
    digest = hashlib.sha256()
    connection = sqlite3.connect(f"file:{url.removeprefix('sqlite:///')}?mode=ro", uri=True)
    try:
        for table in LIST_TABLES:
            for row in connection.execute(f"SELECT * FROM {table} ORDER BY 1, 2"):
                digest.update(repr(row).encode())
    finally:
        connection.close()
    return digest.hexdigest()


class CeremonyMachine(RuleBasedStateMachine):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="ceir-ceremony-"))
        self.clock = ManualClock()
        self.keys = Keys.make()
        self.v0 = self.keys.policy(0, self._now_s() + 20 * YEAR)
        self.strangers = {
            "stranger": Signer("officer.elsewhere/zed", generate_signing_key()),
            # A key under an officer's name: not the key the policies list.
            "stranger-as-officer": Signer("officer.telkomsel/ayu", generate_signing_key()),
        }
        self.stranger_cosigner = Cosigner("witness.kominfo", generate_signing_key())
        self.old_file, self.new_file, self.zero_file = self.keys.write_files(self.tmp, self.v0)
        self.out = Side(f"sqlite:///{self.tmp / 'outgoing.db'}", {})
        self.inc = Side(f"sqlite:///{self.tmp / 'incoming.db'}", {})
        self.serials = itertools.count(1)
        # Every signer the test submitted over a text (to any register, in any note).
        self.submitted: dict[str, set[str]] = {}
        # The lines merged into the outgoing's pending document (exactly).
        self.pending_signers: set[str] = set()
        self.proposed: CustodyPolicy | None = None  # the policy 1 text the outgoing works on
        self.ready: set[str] = set()
        self.taken: dict[str, set[str]] = {"out": set(), "inc": set()}  # IMEIs each wrote

    # --- the registers -----------------------------------------------------------------------

    def _start_outgoing(self) -> None:
        running = create_server(
            ServerConfig(
                db=self.out.url,
                address=f"127.0.0.1:{self.out.port}",  # the standby's channel reconnects
                clock=self.clock,
                access_log=False,
                follow_interval=0.2,
                insecure=True,
                signing_key=self.old_file,
                custody_policy=self.zero_file,
                custody_expiry_interval=3600,
            )
        )
        self._connect(self.out, running)

    def _start_incoming(self) -> None:
        running = create_server(
            ServerConfig(
                db=self.inc.url,
                address="127.0.0.1:0",
                clock=self.clock,
                access_log=False,
                follow_interval=0.2,
                insecure=True,
                signing_key=self.new_file,
                custody_policy=self.zero_file,
                custody_expiry_interval=3600,
                standby_of=f"127.0.0.1:{self.out.port}",
                standby_token=self.out.tokens["kemenperin"],
                trusted_log_keys=(self.keys.old.verifier,),
            )
        )
        self._connect(self.inc, running)

    @staticmethod
    def _connect(side: Side, running: RunningServer) -> None:
        side.running, side.port = running, running.port
        # A channel of its own subchannels: a shared one may still be backing off
        # from the server that was on this port before the restart.
        options = [("grpc.use_local_subchannel_pool", 1)]
        side.channel = grpc.insecure_channel(f"127.0.0.1:{running.port}", options=options)
        side.clients = {org: Client(side.channel, token) for org, token in side.tokens.items()}

    @initialize(head_start=st.integers(0, 10))
    def start(self, head_start: int) -> None:
        """Both registers, and the ceremony done right for ``head_start`` steps (so that
        the random steps begin anywhere from OPERATING to RETIRED), invariants checked."""
        self.out.tokens = _new_database(self.out.url)
        self.inc.tokens = _new_database(self.inc.url)
        self._start_outgoing()
        self._start_incoming()
        for _ in range(head_start):
            self._advance()
            self.logs_grow_and_stay_consistent()
            self.nothing_acts_without_its_approvals()
            self.one_register_takes_writes()

    def teardown(self) -> None:
        self.inc.close()
        self.out.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- what the test knows -----------------------------------------------------------------

    def _signer(self, name: str) -> Signer:
        if name == "witness":
            return self.keys.kominfo
        if name in self.strangers:
            return self.strangers[name]
        org, index = name.split("/")
        officers = self.keys.telkomsel if org == "telkomsel" else self.keys.kemenperin
        return officers[int(index)]

    def _lines(self, text: str, names: set[str]) -> str:
        """Signature lines over ``text`` by ``names`` (each once), as a note carries them."""
        return sign_note(text, [self._signer(n) for n in sorted(names)])[len(text) + 1 :]

    def _submit(self, text: str, names: set[str]) -> None:
        self.submitted.setdefault(text, set()).update(n for n in names if n not in self.strangers)

    @staticmethod
    def _approves(names: set[str]) -> bool:
        """Both officer thresholds (two of three each) and the witness."""
        telkomsel = sum(1 for n in names if n.startswith("telkomsel/"))
        kemenperin = sum(1 for n in names if n.startswith("kemenperin/"))
        return telkomsel >= 2 and kemenperin >= 2 and "witness" in names

    def _now_s(self) -> int:
        return self.clock.now_us() // 1_000_000

    def _policy_one(self) -> CustodyPolicy:
        """The policy 1 the outgoing announced (its custody shows it)."""
        return CustodyPolicy.parse(split_note(self.out.custody().policies[1])[0])

    def _writable(self, side: Side, custody: pb.Custody) -> bool:
        """Whether ``side`` takes writes now, from what GetCustody shows."""
        if side is self.out:
            return custody.state_name in OUTGOING_WRITES
        if not self._quorum(custody):
            return False
        # The outgoing's retirement is the commit point (the incoming asks for it itself).
        return self.out.custody().state_name == "RETIRED"

    def _quorum(self, custody: pb.Custody) -> bool:
        """Whether the incoming is ACTIVE with the witness quorum on its first checkpoint."""
        if custody.state_name != "ACTIVE" or not custody.first_checkpoint:
            return False
        return len(verify_cosignatures(custody.first_checkpoint, [self._cosigner_key()])) >= 1

    def _cosigner_key(self) -> Any:
        return self.keys.kominfo_cosigner.verifier

    def _up(self) -> bool:
        return self.out.running is not None and self.inc.running is not None

    # --- the outgoing register's steps -------------------------------------------------------

    @rule(
        expiry=st.sampled_from(["valid", "short-lived", "expired"]),
        caller=st.sampled_from(["telkomsel", "kominfo", "kemenperin", "xl"]),
    )
    def propose(self, expiry: str, caller: str) -> None:
        before = self.out.custody()
        now = self._now_s()
        expires = {"valid": now + 30 * DAY, "short-lived": now + 2 * 3600, "expired": now - 1}
        policy = self.keys.policy(1, expires[expiry])
        client = self.out.client(caller)
        request = pb.ProposePolicyRequest(policy=policy.text(), notice=Duration(seconds=NOTICE_S))
        outcome = _outcome(client.call, client.custody.ProposePolicy, request)
        if caller == "xl":
            assert outcome == (PERMISSION_DENIED, "CUSTODY_STEP_NOT_ALLOWED")
        elif before.state_name not in ("OPERATING", "ABORTED"):
            assert outcome == (FAILED_PRECONDITION, "WRONG_STATE"), outcome
        elif expiry == "expired":
            assert outcome == (INVALID_ARGUMENT, "POLICY_EXPIRED"), outcome
        else:
            assert outcome is None, outcome
            self.proposed, self.pending_signers = policy, set()
            after = self.out.custody()
            assert (after.state_name, after.pending_document) == ("OPERATING", policy.text())

    @rule(names=signer_sets)
    def sign(self, names: set[str]) -> None:
        """Signatures on whatever the outgoing collects them for (policy or handover note)."""
        before = self.out.custody()
        client = self.out.client("kominfo")
        text = (
            split_note(before.pending_document)[0]
            if "\n\n" in before.pending_document
            else (before.pending_document)
        )
        if not text:
            text = self.keys.policy(1, self._now_s() + DAY).text()  # nothing is pending
        note = text + "\n" + self._lines(text, names)
        request = pb.SubmitSignatureRequest(signed_note=note)
        outcome = _outcome(client.call, client.custody.SubmitSignature, request)
        if before.pending_kind not in ("policy", "handover"):
            assert outcome == (FAILED_PRECONDITION, "WRONG_STATE"), outcome
            return
        if names & set(self.strangers):
            assert outcome == (INVALID_ARGUMENT, "UNKNOWN_SIGNER"), outcome
            return
        assert outcome is None, outcome
        self._submit(text, names)
        after = self.out.custody()
        if before.pending_kind == "handover":
            assert after.state_name == "FROZEN"
            signers = {line.name for line in split_note(after.pending_document)[1]}
            assert len(signers) == 1 + len(names | self.pending_signers)
            self.pending_signers |= names
            return
        self.pending_signers |= names
        if self._approves(self.pending_signers):
            assert after.state_name == "ANNOUNCED", after.detail
            assert split_note(after.policies[1])[0] == text
            self.ready = set()
        else:
            assert (after.state_name, after.pending_document.split("\n\n")[0] + "\n") == (
                "OPERATING",
                text,
            ), after.detail

    @rule(org=st.sampled_from([*OPERATORS, "kominfo"]), honest=st.booleans())
    def report_readiness(self, org: str, honest: bool) -> None:
        before = self.out.custody()
        policy = self.proposed or self.keys.policy(1, self._now_s() + DAY)
        digest = policy_sha256(policy) if honest else "0" * 64
        client = self.out.client(org)
        request = pb.ReportReadinessRequest(policy_version=1, policy_sha256=digest)
        outcome = _outcome(client.call, client.custody.ReportReadiness, request)
        if org == "kominfo":
            assert outcome == (PERMISSION_DENIED, "CUSTODY_STEP_NOT_ALLOWED"), outcome
        elif before.state_name not in ("ANNOUNCED", "READY"):
            assert outcome == (FAILED_PRECONDITION, "WRONG_STATE"), outcome
        elif not honest:
            assert outcome == (INVALID_ARGUMENT, "POLICY_MISMATCH"), outcome
        else:
            assert outcome is None, outcome
            self.ready.add(org)
            expected = "READY" if self.ready >= set(OPERATORS) else "ANNOUNCED"
            assert self.out.custody().state_name == expected

    @rule(org=st.sampled_from(["telkomsel", "telkomsel", "kemenperin"]))
    def freeze(self, org: str) -> None:
        before = self.out.custody()
        client = self.out.client(org)
        outcome = _outcome(client.call, client.custody.Freeze, pb.FreezeRequest())
        if org != "telkomsel":
            assert outcome == (PERMISSION_DENIED, "CUSTODY_STEP_NOT_ALLOWED"), outcome
        elif before.state_name != "READY":
            assert outcome == (FAILED_PRECONDITION, "WRONG_STATE"), outcome
        elif self.clock.now_us() < before.notice_ends_at.ToMicroseconds():
            assert outcome == (FAILED_PRECONDITION, "NOTICE_PERIOD"), outcome
        else:
            assert outcome is None, outcome
            after = self.out.custody()
            final = open_checkpoint(after.final_checkpoint, [self.keys.old.verifier], ORIGIN)
            assert after.state_name == "FROZEN" and final.size == after.final_size
            assert final.size == self.out.size + 1  # leaf N is the FROZEN leaf
            self.pending_signers = set()  # the handover note: the old log key's line only

    @rule(real=st.booleans())
    def cosign_final(self, real: bool) -> None:
        self._cosign(self.out, real, "final_checkpoint", ("FROZEN", "RETIRED"))

    def _cosign(self, side: Side, real: bool, what: str, states: tuple[str, ...]) -> None:
        before = side.custody()
        checkpoint = getattr(before, what)
        cosigner = self.keys.kominfo_cosigner if real else self.stranger_cosigner
        if not checkpoint:
            checkpoint = self.out.custody().final_checkpoint or self._latest(self.out)[0]
        note = cosign(checkpoint, cosigner, self._now_s()) if checkpoint else ""
        client = side.client("kominfo")
        request = pb.SubmitCosignatureRequest(checkpoint=note)
        outcome = _outcome(client.call, client.custody.SubmitCosignature, request)
        if before.state_name not in states or not getattr(before, what):
            assert outcome is not None and outcome[0] in (FAILED_PRECONDITION, INVALID_ARGUMENT)
            return
        assert outcome is None, outcome
        cosigned = verify_cosignatures(getattr(side.custody(), what), [self._cosigner_key()])
        was = verify_cosignatures(checkpoint, [self._cosigner_key()])
        assert len(cosigned) == (1 if real or was else 0)

    @rule(
        names=abort_signers,
        org=st.sampled_from(["kominfo", "xl"]),
    )
    def abort(self, names: set[str], org: str) -> None:
        before = self.out.custody()
        policy = self.proposed or self.keys.policy(1, self._now_s() + DAY)
        note = AbortNote.of(policy).text()
        signed = note + "\n" + self._lines(note, names) if names else note
        lists, size = _lists(self.out.url), self.out.size
        client = self.out.client(org)
        outcome = _outcome(client.call, client.custody.Abort, pb.AbortRequest(abort_note=signed))
        announced = before.state_name in ABORTABLE
        if not announced and before.pending_kind != "policy":
            assert outcome == (FAILED_PRECONDITION, "WRONG_STATE"), outcome
            return
        officers = {n for n in names if n.startswith("telkomsel/")}
        if len(officers) < 2:
            assert outcome is not None and outcome[0] is INVALID_ARGUMENT, outcome
            return
        assert outcome is None, outcome
        self._aborted(lists, size, announced)

    def _aborted(self, lists: str, size: int, announced: bool) -> None:
        """After an abort: ABORTED, the same lists, one leaf more if announced, writes resume."""
        after = self.out.custody()
        assert after.state_name == "ABORTED" and len(after.policies) == 1
        assert _lists(self.out.url) == lists, "an abort changed the lists"
        self._check_log(self.out)
        assert self.out.size == size + (1 if announced else 0)
        self.proposed, self.pending_signers, self.ready = None, set(), set()
        self._write(self.out, expect=True)

    @rule(seconds=st.sampled_from([NOTICE_S + 1, DAY, 31 * DAY]))
    def time_passes(self, seconds: int) -> None:
        before = self.out.custody()
        lists, size = _lists(self.out.url), self.out.size
        following = self._policy_one() if len(before.policies) > 1 else None
        self.clock.advance(seconds)
        expired = following is not None and following.expires <= self._now_s()
        if before.state_name in ABORTABLE and expired:
            self._aborted(lists, size, announced=True)
        elif (
            before.pending_kind == "policy"
            and self.proposed is not None
            and self.proposed.expires <= self._now_s()
        ):
            assert self.out.custody().pending_kind == ""
            self.proposed = None

    # --- the incoming register's steps -------------------------------------------------------

    @rule(org=st.sampled_from(["kemenperin", "kemenperin", "telkomsel"]))
    def transfer(self, org: str) -> None:
        before, out = self.inc.custody(), self.out.custody()
        client = self.inc.client(org)
        outcome = _outcome(client.call, client.custody.Transfer, pb.TransferRequest())
        if before.state_name == "TRANSFERRED" or (
            before.state_name == "STANDBY" and out.state_name == "FROZEN"
        ):
            if org != "kemenperin":
                assert outcome == (PERMISSION_DENIED, "CUSTODY_STEP_NOT_ALLOWED"), outcome
                return
            assert outcome is None, outcome
            after = self.inc.custody()
            assert after.state_name == "TRANSFERRED"
            if before.state_name == "STANDBY":
                assert after.transferred_size == out.final_size
        else:
            assert outcome == (FAILED_PRECONDITION, "WRONG_STATE"), outcome

    @rule(
        names=st.one_of(any_signers, st.just(set(APPROVALS))),
        org=st.sampled_from(["kemenperin", "kemenperin", "telkomsel"]),
    )
    def activate(self, names: set[str], org: str) -> None:
        before, out = self.inc.custody(), self.out.custody()
        base = out.handover or before.handover
        if not base:
            base = sign_note("ceir/handover/v1\n", [self.keys.old])
        text, _lines = split_note(base)
        on_note = self.pending_signers if out.handover == base else set()
        added = names - on_note  # a key signs once: a repeated line refuses the note
        note = base + self._lines(text, added) if added else base
        client = self.inc.client(org)
        outcome = _outcome(client.call, client.custody.Activate, pb.ActivateRequest(handover=note))
        self._submit(text, added)
        if before.state_name != "TRANSFERRED":
            assert outcome == (FAILED_PRECONDITION, "WRONG_STATE"), outcome
            return
        if org != "kemenperin":
            assert outcome == (PERMISSION_DENIED, "CUSTODY_STEP_NOT_ALLOWED"), outcome
            return
        if not self._approves(on_note | added):
            assert outcome is not None and outcome[0] is INVALID_ARGUMENT, outcome
        elif out.state_name != "FROZEN":  # the custodian called it off meanwhile
            assert outcome == (FAILED_PRECONDITION, "WRONG_STATE"), outcome
        else:
            assert outcome is None, outcome
            after = self.inc.custody()
            first = open_checkpoint(after.first_checkpoint, [self.keys.new.verifier], ORIGIN)
            assert after.state_name == "ACTIVE" and first.size == after.final_size + 1

    @rule(real=st.booleans())
    def cosign_first(self, real: bool) -> None:
        self._cosign(self.inc, real, "first_checkpoint", ("ACTIVE",))

    @rule(org=st.sampled_from(["telkomsel", "kemenperin", "xl"]))
    def retire(self, org: str) -> None:
        before, inc = self.out.custody(), self.inc.custody()
        if inc.state_name != "ACTIVE":
            return
        first = Checkpoint.parse(split_note(inc.first_checkpoint)[0])
        proof = self._proof(self.inc, inc.final_size, first.size)
        request = pb.RetireRequest(
            handover=inc.handover, first_checkpoint=inc.first_checkpoint, consistency_proof=proof
        )
        client = self.out.client(org)
        outcome = _outcome(client.call, client.custody.Retire, request)
        done = before.state_name == "RETIRED"
        if done and split_note(before.handover)[0] == split_note(inc.handover)[0]:
            # Retired already (the incoming asked for it): answered again, idempotent.
            if org == "xl":
                assert outcome == (PERMISSION_DENIED, "CUSTODY_STEP_NOT_ALLOWED"), outcome
            else:
                assert outcome is None, outcome
        elif before.state_name != "FROZEN":
            assert outcome == (FAILED_PRECONDITION, "WRONG_STATE"), outcome
        elif org == "xl":
            assert outcome == (PERMISSION_DENIED, "CUSTODY_STEP_NOT_ALLOWED"), outcome
        elif not self._quorum(inc):
            assert outcome == (INVALID_ARGUMENT, "WITNESS_QUORUM_NOT_MET"), outcome
        else:
            assert outcome is None, outcome
            after = self.out.custody()
            assert (after.state_name, after.custodian) == ("RETIRED", "kemenperin")

    # --- progress ----------------------------------------------------------------------------

    def _advance(self) -> None:
        """The ceremony's next step, done right (the other rules do it any way at all)."""
        out, inc = self.out.custody(), self.inc.custody()
        approvals = {"telkomsel/1", "telkomsel/2", "kemenperin/0", "kemenperin/1", "witness"}
        if out.pending_kind == "policy":
            self.sign(approvals - self.pending_signers or {"witness"})
        elif out.state_name in ("OPERATING", "ABORTED"):
            self.propose("valid", "telkomsel")
        elif out.state_name == "ANNOUNCED":
            self.report_readiness(sorted(set(OPERATORS) - self.ready)[0], honest=True)
        elif out.state_name == "READY":
            if self.clock.now_us() < out.notice_ends_at.ToMicroseconds():
                self.time_passes(NOTICE_S + 1)
            else:
                self.freeze("telkomsel")
        elif out.state_name == "FROZEN" and inc.state_name == "STANDBY":
            self.transfer("kemenperin")
        elif out.state_name == "FROZEN" and inc.state_name == "TRANSFERRED":
            self.activate(approvals, "kemenperin")
        elif inc.state_name == "ACTIVE" and not self._quorum(inc):
            self.cosign_first(real=True)
        elif out.state_name == "FROZEN" and inc.state_name == "ACTIVE":
            self.retire("kemenperin")
        else:
            self.write(incoming=inc.state_name == "ACTIVE")

    # Two rules, one step: hypothesis picks among rules evenly; the ceremony needs
    # about ten steps in order to get far (``start`` gives it a head start too).
    @rule()
    def advance(self) -> None:
        self._advance()

    @rule()
    def advance_too(self) -> None:
        self._advance()

    # --- either register ---------------------------------------------------------------------

    @rule(incoming=st.booleans())
    def crash_and_restart(self, incoming: bool) -> None:
        side = self.inc if incoming else self.out
        before = side.custody()
        side.close()
        if incoming:
            self._start_incoming()
        else:
            self._start_outgoing()
        after = side.custody()
        for name in ("state_name", "policies", "final_size", "handover", "first_checkpoint"):
            assert getattr(after, name) == getattr(before, name), name

    @rule(incoming=st.booleans())
    def write(self, incoming: bool) -> None:
        side = self.inc if incoming else self.out
        self._write(side, expect=self._writable(side, side.custody()))

    def _write(self, side: Side, expect: bool) -> None:
        state = side.custody().state_name
        value = imei(next(self.serials))
        client = side.client("kemenperin")
        outcome = _outcome(client.register, value)
        if expect:
            assert outcome is None, (state, outcome)
            self.taken["inc" if side is self.inc else "out"].add(value)
            return
        reason = {
            "FROZEN": "REGISTER_FROZEN",
            "ACTIVE": "REGISTER_FROZEN",
            "RETIRED": "REGISTER_MOVED",
            "STANDBY": "NOT_CUSTODIAN",
            "TRANSFERRED": "NOT_CUSTODIAN",
        }[state]
        assert outcome == (FAILED_PRECONDITION, reason), (state, outcome)

    @rule(incoming=st.booleans(), known=st.booleans())
    def check(self, incoming: bool, known: bool) -> None:
        side = self.inc if incoming else self.out
        mine = sorted(self.taken["inc" if incoming else "out"])
        value = mine[-1] if known and mine else imei(900_000 + next(self.serials))
        client = side.client("telkomsel")
        answer = client.call(
            client.check.CheckEquipment,
            check_pb.CheckEquipmentRequest(imei=value, imsi=TELKOMSEL_IMSI),
        )
        assert answer.status != types_pb2.EQUIPMENT_STATUS_UNSPECIFIED
        if value in mine:
            assert answer.status == types_pb2.EQUIPMENT_STATUS_WHITELISTED

    # --- invariants --------------------------------------------------------------------------

    @invariant()
    def one_register_takes_writes(self) -> None:
        if not self._up():
            return
        out, inc = self.out.custody(), self.inc.custody()
        event(f"outgoing {out.state_name}, incoming {inc.state_name}")
        writers = self._writable(self.out, out) + self._writable(self.inc, inc)
        mid = out.state_name == "FROZEN" or (
            inc.state_name == "ACTIVE" and not self._writable(self.inc, inc)
        )
        assert writers <= 1, (out.state_name, inc.state_name, "both take writes")
        if not mid:
            assert writers == 1, (out.state_name, inc.state_name, "nobody takes writes")

    @invariant()
    def nothing_acts_without_its_approvals(self) -> None:
        if not self._up():
            return
        out, inc = self.out.custody(), self.inc.custody()
        if out.state_name in ("ANNOUNCED", "READY", "FROZEN", "RETIRED"):
            text = split_note(out.policies[1])[0]
            assert self._approves(self.submitted.get(text, set())), out.state_name
        if inc.state_name == "ACTIVE":
            text = split_note(inc.handover)[0]
            assert self._approves(self.submitted.get(text, set())), "ACTIVE unapproved"
            v0, v1 = (CustodyPolicy.parse(split_note(n)[0]) for n in inc.policies[:2])
            # Valid when it was activated (the expiry may have passed since).
            verify_handover(inc.handover, v0, v1, v1.expires - 1)

    @invariant()
    def logs_grow_and_stay_consistent(self) -> None:
        for side in (self.out, self.inc):
            if side.running is not None:
                self._check_log(side)
        if not self._up():
            return
        inc, m = self.inc.custody(), self.inc.size
        if inc.state_name in ("ACTIVE", "RETIRED"):
            # The incoming continues the outgoing's log from N.
            n = inc.final_size
            proof = self._proof(self.inc, n, m)
            verify_consistency(n, m, proof, self.out.seen[n], self.inc.seen[m])
        elif 0 < m <= self.out.size:
            # The standby's copy is a prefix of the outgoing's log.
            proof = self._proof(self.out, m, self.out.size)
            verify_consistency(
                m, self.out.size, proof, self.inc.seen[m], self.out.seen[self.out.size]
            )

    def _check_log(self, side: Side) -> None:
        """The side's latest checkpoint: signed, no smaller, consistent with all seen."""
        note, size = self._latest(side)
        if not note:
            assert side.size == 0, "the checkpoint went away"
            return
        keys = [self.keys.old.verifier, self.keys.new.verifier]
        checkpoint = open_checkpoint(note, keys, ORIGIN)
        assert checkpoint.size == size >= side.size, "the log shrank"
        # A standby serves no proofs: its copy is proved a prefix of the outgoing's instead.
        prover = side if side is self.out or self._serves_log(side) else None
        if prover is not None:
            for seen, root in side.seen.items():
                proof = self._proof(prover, seen, checkpoint.size)
                verify_consistency(seen, checkpoint.size, proof, root, checkpoint.root_hash)
        side.seen[checkpoint.size] = checkpoint.root_hash
        side.size = checkpoint.size

    def _serves_log(self, side: Side) -> bool:
        return side.running is not None and side.running.register.log.signer is not None

    def _latest(self, side: Side) -> tuple[str, int]:
        """The latest checkpoint: GetCheckpoint, or what a standby verified (it signs
        nothing, so it publishes nothing: ``Standby.latest_checkpoint``)."""
        if not self._serves_log(side):
            assert side.running is not None and side.running.standby is not None
            note = side.running.standby.latest_checkpoint
            return note, int(side.running.standby.size)
        client = side.client("kominfo")
        answer = client.call(client.log.GetCheckpoint, transparency_pb2.GetCheckpointRequest())
        return answer.checkpoint, answer.tree_size

    @staticmethod
    def _proof(side: Side, first: int, second: int) -> list[bytes]:
        if first in (0, second):
            return []
        client = side.client("kominfo")
        request = transparency_pb2.GetConsistencyProofRequest(first_size=first, second_size=second)
        return list(client.call(client.log.GetConsistencyProof, request).hashes)


PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED
FAILED_PRECONDITION = grpc.StatusCode.FAILED_PRECONDITION
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT


def _outcome(call: Any, *args: Any) -> tuple[grpc.StatusCode, str] | None:
    """None when the call succeeds, else (code, ErrorInfo reason)."""
    try:
        call(*args)
    except grpc.RpcError as error:
        return error.code(), error_info(error)[0]
    return None


CeremonyMachine.TestCase.settings = settings(
    # CEIR_CEREMONY_EXAMPLES=200 to hunt longer than CI does.
    max_examples=int(os.environ.get("CEIR_CEREMONY_EXAMPLES", "30")),
    stateful_step_count=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_ceremony = CeremonyMachine.TestCase
