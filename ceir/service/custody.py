"""The custody ceremony in the register server: its state, its storage, the write gate.

``CustodyKeeper`` runs the state machine of docs/custody.md over a
``Register``; the steps live in ``custody_outgoing`` (propose, sign,
readiness, freeze, cosign, abort: the outgoing register) and
``custody_incoming`` (transfer, activate: the incoming one; retire: the
outgoing once the incoming took over); ``custody_view`` reports it::

    OPERATING -> ANNOUNCED -> READY -> FROZEN ......................-> RETIRED
                                          STANDBY -> TRANSFERRED -> ACTIVE
    ABORTED from ANNOUNCED, READY or FROZEN (an abort note, or the expiry)

Every transition that changes what the log means (ANNOUNCED, READY,
FROZEN, ABORTED, ACTIVE) is a leaf appended through ``Register.execute``
(``RecordCustodyStep``), in the same transaction as the ceremony's row: the
FROZEN leaf is leaf N and the final checkpoint at N is signed in that
transaction, so nothing can come between them. The other steps (signatures
merged, readiness, cosignatures, TRANSFERRED, RETIRED) write only the
ceremony's tables, serialised with every write (``Register.transaction``).
Each step re-reads the row inside its transaction and refuses if another
process moved it meanwhile (CONCURRENT_STEP).

The write gate (``Register.write_gate``) reads the row inside each write's
transaction, after a stored answer was replayed: FROZEN refuses writes,
and nothing is appended so no checkpoint beyond N is ever signed. Checks
are still answered (``CheckService`` answers without recording their
effects while writes are refused).

The announced policy's expiry aborts the ceremony (leaf ``ABORTED k+1``
with no reference: no document): checked on every custody call and by a
timer (``catch_up``), which also ask the custodian again to retire when
this is an incoming register whose first checkpoint has its witness quorum
but whose writes still wait for that retirement (the handover's commit
point, ``custody_incoming.confirm_retirement``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy.orm import Session

from ceir.audit.errors import MalformedNote
from ceir.custody import CustodyPolicy, CustodyRefusal, MalformedPolicy, split_note
from ceir.domain.commands import Command, RecordCustodyStep
from ceir.domain.custody import ABORTABLE, Ceremony, CustodyState, PendingKind, RetireAnswer
from ceir.domain.errors import FailedPrecondition
from ceir.domain.model import Caller, OrgKind
from ceir.storage import custody_repository as custody_repo
from ceir.storage.projection import REGISTER_ACTOR

from .custody_documents import document_text, sha256_hex
from .custody_rules import writes_refused
from .merkle_log import CheckpointSigner
from .register import Committed, Register

__all__ = ["CustodyConfigError", "CustodyKeeper", "Loaded", "RemoteFetch", "RemoteRetire"]

log = logging.getLogger("ceir.custody")
MICROS = 1_000_000
# The register's own steps (an abort by expiry) are recorded under its name.
REGISTER_CALLER = Caller(REGISTER_ACTOR, OrgKind.KOMINFO)
# The incoming register reads the outgoing's ceremony with this (the API layer builds it).
RemoteFetch = Callable[[float], Any]
# ... and asks it to retire with this: (handover, first checkpoint, proof, timeout).
RemoteRetire = Callable[[str, str, Sequence[bytes], float], RetireAnswer]
# How long a custody call or the timer waits for the custodian's answer to Retire.
CATCH_UP_RETIRE_SECONDS = 2.0


class CustodyConfigError(ValueError):
    """The server's custody settings do not fit its database or its key (refuses to start)."""


@dataclass(frozen=True)
class Loaded:
    """The ceremony's row and the policy chain, read in one transaction."""

    ceremony: Ceremony
    notes: tuple[str, ...]
    chain: tuple[CustodyPolicy, ...]

    @property
    def current(self) -> CustodyPolicy:
        """The policy in force here (version k)."""
        return self.chain[self.ceremony.version]

    @property
    def following(self) -> CustodyPolicy | None:
        """The announced policy (version k + 1), once announced."""
        version = self.ceremony.version + 1
        return self.chain[version] if len(self.chain) > version else None


def parse_policy_note(note: str, version: int | None = None) -> CustodyPolicy:
    """The policy of a signed note (or of a bare text); raises ``CustodyRefusal``."""
    try:
        text = split_note(note)[0] if "\n\n" in note else note
    except MalformedNote as error:
        raise MalformedPolicy(f"not a signed note: {error}", version) from None
    return CustodyPolicy.parse(text, version)


class CustodyKeeper:
    """The custody ceremony of one register (see the module docstring)."""

    def __init__(
        self,
        register: Register,
        *,
        standby: Any = None,
        outgoing: RemoteFetch | None = None,
        retire_outgoing: RemoteRetire | None = None,
        outgoing_complaints: Callable[[float], Any] | None = None,
        standby_endpoint: str = "",
        withheld_signer: CheckpointSigner | None = None,
    ) -> None:
        """``standby`` (``ceir.service.standby.Standby``) follows the custodian's
        feed when this is the incoming register; ``outgoing(timeout)`` reads
        the custodian's ceremony (a ``RemoteCustody``) over its channel,
        ``retire_outgoing`` asks it to retire over the same channel, and
        ``outgoing_complaints(timeout)`` reads its complaints desk
        (``ceir.service.complaint_carry``) at transfer.
        ``withheld_signer``: the incoming register's own log key, kept from
        its register (which must sign nothing of the custodian's log) until
        the activation."""
        self.register = register
        self.clock = register.clock
        self.standby = standby
        self.outgoing = outgoing
        self.retire_outgoing = retire_outgoing
        self.outgoing_complaints = outgoing_complaints
        self.standby_endpoint = standby_endpoint
        self.withheld_signer = withheld_signer
        self.opened_state: CustodyState | None = None
        self.lock = threading.RLock()  # one step at a time in this process
        self._parsed: dict[str, CustodyPolicy] = {}
        self._timer: threading.Thread | None = None

    # --- start-up ---------------------------------------------------------------------------

    def open(self, policy_zero: str) -> Ceremony:
        """Store policy 0 on the first start, or check it is the stored one; install the gate.

        The first start decides the role: a register whose signing key is
        policy 0's log key is its custodian (OPERATING); one given a standby
        follows the custodian (STANDBY). Raises ``CustodyConfigError``.
        """
        try:
            zero = parse_policy_note(policy_zero, 0)
        except CustodyRefusal as error:
            raise CustodyConfigError(f"--custody-policy: {error}") from None
        if zero.version != 0:
            raise CustodyConfigError(f"--custody-policy holds version {zero.version}, not 0")
        if zero.origin != self.register.log.origin:
            raise CustodyConfigError(
                f"policy 0 is for log {zero.origin!r}; this register's origin is "
                f"{self.register.log.origin!r} (--log-origin)"
            )
        key = self._own_key()
        with self.register.transaction() as session:
            ceremony = custody_repo.load_ceremony(session)
            if ceremony is None:
                ceremony = self._first_start(session, zero, policy_zero, key)
            else:
                self._check_restart(session, ceremony, zero, key)
        self.register.write_gate = self.gate
        self.opened_state = ceremony.state
        if ceremony.state not in (CustodyState.STANDBY, CustodyState.TRANSFERRED):
            self.take_signer()  # custodian now (or retired): the key is the register's
        log.info(
            "custody",
            extra={"state": ceremony.state.name, "policy_version": ceremony.version},
        )
        return ceremony

    def own_signer(self) -> CheckpointSigner | None:
        """This register's log key, whether its register holds it yet or not."""
        return self.register.log.signer or self.withheld_signer

    def take_signer(self) -> None:
        """Give the register its withheld log key: it signs its log from now on."""
        if self.register.log.signer is None and self.withheld_signer is not None:
            self.register.log.signer = self.withheld_signer

    def follows_custodian(self) -> bool:
        """Whether this register still copies the custodian's log (STANDBY, TRANSFERRED)."""
        return self.opened_state in (CustodyState.STANDBY, CustodyState.TRANSFERRED)

    def _own_key(self) -> str:
        signer = self.own_signer()
        if signer is None:
            raise CustodyConfigError("a register under a custody policy needs --signing-key")
        return signer.signer.verifier.vkey

    def _first_start(self, session: Session, zero: CustodyPolicy, note: str, key: str) -> Ceremony:
        now_us = self.clock.now_us()
        if key == zero.log_key.vkey:
            state = CustodyState.OPERATING
        elif self.standby is not None:
            state = CustodyState.STANDBY
        else:
            raise CustodyConfigError(
                f"the signing key is not policy 0's log key ({zero.log_key.label}): "
                "start the custodian with its key, or an incoming register with --standby-of"
            )
        custody_repo.add_policy(session, 0, note, sha256_hex(zero.text()), now_us)
        ceremony = Ceremony(state, 0, updated_at_us=now_us)
        custody_repo.save_ceremony(session, ceremony)
        return ceremony

    def _check_restart(
        self, session: Session, ceremony: Ceremony, zero: CustodyPolicy, key: str
    ) -> None:
        loaded = self._loaded(session, ceremony)
        if loaded.chain[0] != zero:
            raise CustodyConfigError(
                "--custody-policy is not the policy 0 this register stored at its first start"
            )
        signs = ceremony.state not in (
            CustodyState.STANDBY,
            CustodyState.TRANSFERRED,
            CustodyState.RETIRED,
        )
        if signs and key != loaded.current.log_key.vkey:
            raise CustodyConfigError(
                f"the signing key is not the log key of policy {loaded.current.version} "
                f"({loaded.current.log_key.label}), which this register is custodian under"
            )

    def start_timer(self, interval: float = 5.0) -> None:
        """``catch_up`` every ``interval`` seconds until the register closes."""
        if self._timer is None:
            self._timer = threading.Thread(
                target=self._tick, args=(interval,), name="ceir-custody", daemon=True
            )
            self._timer.start()

    def join_timer(self, timeout: float = 10.0) -> None:
        """Wait for the expiry timer to end (after the register closed), so
        that no connection is held when the database is disposed."""
        if self._timer is not None:
            self._timer.join(timeout)

    def _tick(self, interval: float) -> None:
        while not self.register.wait_closed(interval):
            try:
                self.catch_up()
            except Exception:  # the database may be restarting; try again next tick
                log.exception("checking the custody policy's expiry failed")

    # --- reading ----------------------------------------------------------------------------

    def load(self) -> Loaded:
        with self.register.db.read() as connection:
            ceremony = custody_repo.load_ceremony(connection)
            if ceremony is None:
                raise FailedPrecondition(
                    "this register has no custody policy (ceir serve --custody-policy FILE)",
                    reason="CUSTODY_NOT_CONFIGURED",
                )
            return self._loaded(connection, ceremony)

    def _loaded(self, connection: Any, ceremony: Ceremony) -> Loaded:
        notes = tuple(custody_repo.policy_notes(connection))
        return Loaded(ceremony, notes, tuple(self.parse(note) for note in notes))

    def parse(self, note: str) -> CustodyPolicy:
        policy = self._parsed.get(note)
        if policy is None:
            policy = self._parsed.setdefault(note, parse_policy_note(note))
        return policy

    def pending_policy(self, loaded: Loaded) -> CustodyPolicy | None:
        if loaded.ceremony.pending_kind is not PendingKind.POLICY:
            return None
        return self.parse(document_text(loaded.ceremony.pending_document)[0])

    def readiness(self, policy: CustodyPolicy) -> tuple[list[str], list[str]]:
        """The operators that reported readiness for ``policy`` and those awaited."""
        with self.register.db.read() as connection:
            return self._readiness(connection, policy)

    @staticmethod
    def _readiness(connection: Any, policy: CustodyPolicy) -> tuple[list[str], list[str]]:
        digest = sha256_hex(policy.text())
        reported = custody_repo.readiness(connection, policy.version)
        ready = sorted(org for org, sha in reported.items() if sha == digest)
        waiting = [org for org in custody_repo.operator_names(connection) if org not in ready]
        return ready, waiting

    # --- the write gate ---------------------------------------------------------------------

    def gate(self, session: Session, command: Command[Any]) -> None:
        """``Register.write_gate``: refuse writes unless this register takes them now."""
        if isinstance(command, RecordCustodyStep):
            return  # the ceremony's own leaves; each step checks its state
        ceremony = custody_repo.load_ceremony(session)
        if ceremony is None or (ceremony.state in (CustodyState.OPERATING, CustodyState.ABORTED)):
            return
        loaded = self._loaded(session, ceremony)
        refusal = writes_refused(ceremony, loaded.current, loaded.following, self.standby_endpoint)
        if refusal is not None:
            raise refusal

    # --- committing steps -------------------------------------------------------------------

    def commit_step(
        self,
        caller: Caller,
        loaded: Loaded,
        step: CustodyState,
        version: int,
        reference: str,
        after: Callable[[Session, str], Ceremony],
    ) -> int:
        """Append the step's leaf and write the ceremony ``after(session, checkpoint)``
        returns, in one transaction; the leaf's sequence."""

        def within(session: Session, note: str) -> None:
            self._check_unchanged(session, loaded)
            custody_repo.save_ceremony(session, after(session, note))

        done = self.register.execute(
            caller, RecordCustodyStep(step.name, version, reference), within=within
        )
        assert isinstance(done, Committed)  # no request id: nothing to replay
        log.info("custody step", extra={"step": step.name, "policy_version": version})
        return done.value

    def save(
        self, loaded: Loaded, ceremony: Ceremony, more: Callable[[Session], None] | None = None
    ) -> None:
        """Write the ceremony's row (and ``more``) without a leaf."""
        with self.register.transaction() as session:
            self._check_unchanged(session, loaded)
            if more is not None:
                more(session)
            custody_repo.save_ceremony(session, replace(ceremony, updated_at_us=self.now_us()))

    @staticmethod
    def _check_unchanged(session: Session, loaded: Loaded) -> None:
        if custody_repo.load_ceremony(session) != loaded.ceremony:
            raise FailedPrecondition(
                "another server sharing the database moved the ceremony meanwhile; try again",
                reason="CONCURRENT_STEP",
            )

    def now_us(self) -> int:
        return self.clock.now_us()

    # --- expiry, and the custodian's retirement ------------------------------------------------

    def catch_up(self) -> None:
        """What every custody call and the timer do first: abort an expired ceremony;
        on an incoming register waiting for the custodian's retirement, ask again."""
        self.expire()
        if self.retire_outgoing is not None:
            # custody_incoming builds on this module: imported when first needed.
            from .custody_incoming import confirm_retirement

            confirm_retirement(self, CATCH_UP_RETIRE_SECONDS)

    def expire(self) -> None:
        """Abort the ceremony if the announced policy has expired (a leaf); drop an
        expired proposal that was never announced (no leaf)."""
        with self.lock:
            loaded = self.load()
            ceremony, following = loaded.ceremony, loaded.following
            now_s = self.now_us() // MICROS
            if ceremony.state in ABORTABLE and following is not None:
                if following.expired(now_s):
                    self.commit_step(
                        REGISTER_CALLER,
                        loaded,
                        CustodyState.ABORTED,
                        following.version,
                        "",  # no document: the policy's own expiry
                        lambda session, _note: self.aborted(
                            session, loaded, "", f"policy {following.version} expired"
                        ),
                    )
                return
            pending = self.pending_policy(loaded)
            if pending is not None and pending.expired(now_s):
                self.save(
                    loaded,
                    replace(
                        ceremony,
                        pending_kind=PendingKind.NONE,
                        pending_document="",
                        detail=f"the proposed policy {pending.version} expired unannounced",
                    ),
                )

    def aborted(self, session: Session, loaded: Loaded, note: str, detail: str) -> Ceremony:
        """The ceremony after an abort (inside the abort's transaction): the announced
        policy and its readiness are forgotten, the register takes writes again."""
        version = loaded.ceremony.version
        custody_repo.drop_policies_after(session, version)
        custody_repo.clear_readiness(session, version + 1)
        return Ceremony(
            CustodyState.ABORTED,
            version,
            abort_note=note,
            detail=detail,
            updated_at_us=self.now_us(),
        )
