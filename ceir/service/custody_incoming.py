"""The handover itself: the incoming register's transfer and activation, the outgoing's retirement.

The incoming register (STANDBY) follows the custodian's feed with a
``Standby`` (``ceir.service.standby``), recomputing every leaf. ``transfer``
reads the custodian's ceremony over the same channel, walks the policy
chain from what it trusts to the announced policy, and waits until it holds
the final size N with the final checkpoint's root (TRANSFERRED; another
root is ROOTS_DIFFER, and no activation is possible). ``activate`` adds its
own log key's signature to the handover note, verifies it against the
chain, and appends leaf N + 1 (ACTIVE), whose checkpoint is the first
under the new key. ``retire`` makes the outgoing register read-only for
good once it is shown the handover note, that first checkpoint with the
witness quorum and the consistency proof from N; its RETIRED is the
handover's commit point: once the witnesses cosigned the first checkpoint,
the incoming register asks the outgoing to retire (``confirm_retirement``)
and takes writes only once it answers RETIRED. An abort or the expiry on
the outgoing before that leaves the incoming unwritable; after it, neither
can happen (they act on ANNOUNCED, READY and FROZEN only).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from sqlalchemy.orm import Session

from ceir.audit import Checkpoint, open_checkpoint
from ceir.audit.errors import MalformedNote, VerificationError
from ceir.audit.merkle import verify_consistency
from ceir.audit.note import sign_note
from ceir.custody import CustodyRefusal, Handover, verify_cosignatures, verify_handover, walk_chain
from ceir.domain.custody import Ceremony, CustodyState, PendingKind, RemoteCustody
from ceir.domain.errors import FailedPrecondition, InvalidArgument
from ceir.domain.model import Caller
from ceir.domain.permissions import Action, require
from ceir.storage import custody_repository as custody_repo

from . import complaint_carry
from .custody import MICROS, CustodyKeeper, Loaded, RemoteRetire
from .custody_documents import document_text, merge_signatures, refused, sha256_hex
from .custody_rules import RETRY_SECONDS, require_custodian, wrong_state

__all__ = ["activate", "confirm_retirement", "retire", "transfer"]


def _begin(keeper: CustodyKeeper, caller: Caller) -> Loaded:
    require(caller, Action.CUSTODY)
    return keeper.load()


def _final(ceremony: Ceremony) -> Checkpoint:
    return Checkpoint.parse(document_text(ceremony.final_checkpoint)[0])


# --- the incoming register ---------------------------------------------------------------


def transfer(keeper: CustodyKeeper, caller: Caller, timeout: float) -> None:
    """STANDBY -> TRANSFERRED once this register holds the custodian's final size and root."""
    with keeper.lock:
        loaded = _begin(keeper, caller)
        ceremony = loaded.ceremony
        if ceremony.state is CustodyState.TRANSFERRED and loaded.following is not None:
            require_custodian(caller, "take the register over", loaded.following)
            return
        if ceremony.state is not CustodyState.STANDBY:
            raise wrong_state(ceremony.state, "transfer")
        if keeper.outgoing is None or keeper.standby is None:
            raise wrong_state(ceremony.state, "transfer", "it follows no custodian (--standby-of)")
        remote: RemoteCustody = keeper.outgoing(timeout)
        if remote.state is not CustodyState.FROZEN:
            raise wrong_state(
                ceremony.state, "transfer", f"the custodian is {remote.state.name}, not FROZEN"
            )
        walked = _walk(keeper, loaded, remote)
        chain = (*loaded.chain, *(keeper.parse(note) for note in walked))
        incoming, outgoing = chain[-1], chain[-2]
        require_custodian(caller, "take the register over", incoming)
        own = keeper.own_signer()
        if own is None or own.signer.verifier != incoming.log_key:
            raise FailedPrecondition(
                f"this register's signing key is not policy {incoming.version}'s log key "
                f"({incoming.log_key.label})",
                reason="WRONG_KEY",
            )
        try:
            final = open_checkpoint(remote.final_checkpoint, [outgoing.log_key], outgoing.origin)
        except VerificationError as error:
            raise FailedPrecondition(
                f"the custodian's final checkpoint does not verify under "
                f"{outgoing.log_key.label}: {error}",
                reason="BAD_FINAL_CHECKPOINT",
            ) from None
        held = _wait_for(keeper, final.size, timeout)
        if held < final.size:
            trouble = getattr(keeper.standby, "error", None)
            raise FailedPrecondition(
                f"this register holds {held} of the {final.size} leaves so far"
                + (f" (the standby reports: {trouble})" if trouble else ""),
                reason="TRANSFER_INCOMPLETE",
                metadata={"held": str(held), "final_size": str(final.size)},
                retry_after=RETRY_SECONDS,
            )
        root = keeper.register.log.root(final.size)
        if held > final.size or root != final.root_hash:
            raise FailedPrecondition(
                f"this register's log at size {final.size} has another root than the "
                f"custodian's final checkpoint (or it holds {held} leaves): no activation",
                reason="ROOTS_DIFFER",
            )
        complaints = _complaints(keeper, ceremony, remote, timeout)
        now_us = keeper.now_us()

        def more(session: Session) -> None:
            for offset, note in enumerate(walked):
                version = len(loaded.chain) + offset
                digest = sha256_hex(keeper.parse(note).text())
                custody_repo.add_policy(session, version, note, digest, now_us)
            if complaints is not None:
                complaint_carry.store(session, complaints)

        keeper.save(
            loaded,
            replace(
                ceremony,
                state=CustodyState.TRANSFERRED,
                version=outgoing.version,
                final_size=final.size,
                final_checkpoint=remote.final_checkpoint,
                handover=remote.handover,
                transferred_size=final.size,
                detail=f"holds the log to size {final.size} with the custodian's root",
            ),
            more,
        )


def _complaints(
    keeper: CustodyKeeper, ceremony: Ceremony, remote: RemoteCustody, timeout: float
) -> complaint_carry.OutgoingComplaints | None:
    """Every complaint of the custodian, checked against its own count and digest,
    read while it is frozen at the final checkpoint (None: this register is not
    told how to read them)."""
    if keeper.outgoing_complaints is None or keeper.outgoing is None:
        return None
    fetched: complaint_carry.OutgoingComplaints = keeper.outgoing_complaints(timeout)
    complaint_carry.check(fetched)
    # Frozen before and after the read, at the same final checkpoint: no complaint
    # write can have happened in between (the freeze's write gate refuses them).
    after = keeper.outgoing(timeout)
    same = document_text(after.final_checkpoint)[0] == document_text(remote.final_checkpoint)[0]
    if after.state is not CustodyState.FROZEN or not same:
        raise wrong_state(
            ceremony.state,
            "transfer",
            f"the custodian is {after.state.name} after its complaints were read, "
            "no longer frozen at the same final checkpoint",
        )
    return fetched


def _walk(keeper: CustodyKeeper, loaded: Loaded, remote: RemoteCustody) -> tuple[str, ...]:
    """The custodian's policies after those held here, walked from the last held."""
    theirs = remote.policies
    if len(theirs) <= len(loaded.chain) or any(
        keeper.parse(note) != policy for note, policy in zip(theirs, loaded.chain, strict=False)
    ):
        raise FailedPrecondition(
            "the custodian's policy chain does not extend this register's",
            reason="CHAIN_MISMATCH",
        )
    walked = theirs[len(loaded.chain) :]
    try:
        walk_chain(loaded.chain[-1], walked, keeper.now_us() // MICROS)
    except CustodyRefusal as error:
        raise FailedPrecondition(
            f"the custodian's policies do not verify: {error}", reason=error.reason
        ) from None
    return walked


def _wait_for(keeper: CustodyKeeper, size: int, timeout: float) -> int:
    standby = keeper.standby
    standby.wait_for(size, timeout)
    return int(standby.size)


def activate(keeper: CustodyKeeper, caller: Caller, handover: str) -> None:
    """TRANSFERRED -> ACTIVE: sign the handover note, append leaf N + 1, sign the first
    checkpoint with the new key; writes wait for its witness quorum."""
    with keeper.lock:
        loaded = _begin(keeper, caller)
        ceremony, outgoing, incoming = loaded.ceremony, loaded.current, loaded.following
        if ceremony.state is not CustodyState.TRANSFERRED or incoming is None:
            raise wrong_state(ceremony.state, "activate")
        require_custodian(caller, "activate the register", incoming)
        final = _final(ceremony)
        text = Handover.between(outgoing, incoming, final.size, final.root_hash).text()
        own = keeper.own_signer()
        assert own is not None  # checked at transfer
        if document_text(handover)[0] != text:
            raise InvalidArgument.field(
                "handover", "not the handover note of this transfer", reason="DOCUMENT_MISMATCH"
            )
        merged = merge_signatures(
            handover, sign_note(text, [own.signer]), [own.signer.verifier], "handover"
        )
        try:
            verify_handover(merged, outgoing, incoming, keeper.now_us() // MICROS)
        except CustodyRefusal as error:
            raise refused(error, "handover") from None
        _still_frozen(keeper, ceremony)
        stop = getattr(keeper.standby, "stop", None) or getattr(keeper.standby, "close", None)
        if stop is not None:
            stop()  # the log is this register's to extend from now on

        def active(_session: Session, note: str) -> Ceremony:
            first = Checkpoint.parse(document_text(note)[0])
            if first.size != final.size + 1:
                raise FailedPrecondition(
                    f"the log holds {first.size - 1} leaves, not the final size {final.size}",
                    reason="ROOTS_DIFFER",
                )
            return replace(
                ceremony,
                state=CustodyState.ACTIVE,
                version=incoming.version,
                pending_kind=PendingKind.NONE,
                pending_document="",
                handover=merged,
                first_checkpoint=note,
                writable=False,
                detail="active; writes start once the witnesses cosign the first checkpoint",
                updated_at_us=keeper.now_us(),
            )

        withheld = keeper.register.log.signer is None
        keeper.take_signer()  # leaf N + 1 and the first checkpoint are the new key's
        try:
            keeper.commit_step(
                caller, loaded, CustodyState.ACTIVE, incoming.version, sha256_hex(text), active
            )
        except BaseException:
            if withheld:
                keeper.register.log.signer = None
            raise


def _still_frozen(keeper: CustodyKeeper, ceremony: Ceremony, timeout: float = 10.0) -> None:
    """Refuse to activate unless the custodian is still frozen at the transferred
    checkpoint: after an abort (or its policy's expiry) it takes writes again, and
    a second register taking them would split the log."""
    if keeper.outgoing is None:
        return
    remote: RemoteCustody = keeper.outgoing(timeout)
    same = document_text(remote.final_checkpoint)[0] == document_text(ceremony.final_checkpoint)[0]
    if remote.state is not CustodyState.FROZEN or not same:
        raise wrong_state(
            ceremony.state,
            "activate",
            f"the custodian is {remote.state.name}, no longer frozen at the transferred size",
        )


def confirm_retirement(keeper: CustodyKeeper, timeout: float) -> None:
    """ACTIVE with the first checkpoint's witness quorum: ask the custodian to retire
    (over the standby's channel) and take writes once it answers RETIRED. Any other
    answer leaves writes refused; the next custody call or timer tick asks again."""
    remote: RemoteRetire | None = keeper.retire_outgoing
    if remote is None:
        return
    with keeper.lock:
        loaded = keeper.load()
        if not _awaits_retirement(loaded):
            return
        ceremony, outgoing = loaded.ceremony, loaded.chain[loaded.ceremony.version - 1]
        first = Checkpoint.parse(document_text(ceremony.first_checkpoint)[0])
        proof = keeper.register.log.consistency_proof(ceremony.final_size, first.size)
        answer = remote(ceremony.handover, ceremony.first_checkpoint, proof, timeout)
        if answer.retired:
            writable, detail = True, f"{outgoing.custodian} retired: writes are taken"
        elif answer.state is None and answer.reason in ("UNAVAILABLE", "DEADLINE_EXCEEDED"):
            writable, detail = False, f"waiting for {outgoing.custodian} to retire: unreachable"
        else:
            writable, detail = False, f"the custodian did not retire: {answer.message}"
        if (writable, detail) != (ceremony.writable, ceremony.detail):
            keeper.save(loaded, replace(ceremony, writable=writable, detail=detail))


def _awaits_retirement(loaded: Loaded) -> bool:
    """Whether this is an incoming register, ACTIVE and not yet writable, whose first
    checkpoint carries its policy's witness quorum."""
    ceremony, current = loaded.ceremony, loaded.current
    if ceremony.state is not CustodyState.ACTIVE or ceremony.writable or ceremony.version < 1:
        return False
    if not ceremony.first_checkpoint:
        return False
    witnesses = [w.cosigner for w in current.witnesses]
    try:
        count = len(verify_cosignatures(ceremony.first_checkpoint, witnesses))
    except CustodyRefusal:
        return False
    return count >= current.witness_quorum


# --- the outgoing register, once the incoming took over ------------------------------------


def retire(
    keeper: CustodyKeeper,
    caller: Caller,
    handover: str,
    first_checkpoint: str,
    proof: Sequence[bytes],
) -> None:
    """FROZEN -> RETIRED: read-only for good; writes are sent to the new custodian.
    Retiring again with the same handover note answers RETIRED (the incoming register
    asks, and either custodian may also have asked)."""
    with keeper.lock:
        loaded = _begin(keeper, caller)
        ceremony, outgoing, incoming = loaded.ceremony, loaded.current, loaded.following
        if ceremony.state is CustodyState.RETIRED and incoming is not None:
            require_custodian(caller, "retire the register", outgoing, incoming)
            if _same_text(handover, ceremony.handover):
                return
        if ceremony.state is not CustodyState.FROZEN or incoming is None:
            raise wrong_state(ceremony.state, "retire")
        require_custodian(caller, "retire the register", outgoing, incoming)
        now_s = keeper.now_us() // MICROS
        try:
            stated = verify_handover(handover, outgoing, incoming, now_s)
        except CustodyRefusal as error:
            raise refused(error, "handover") from None
        final = _final(ceremony)
        if (stated.size, stated.root_hash) != (final.size, final.root_hash):
            raise InvalidArgument.field(
                "handover",
                f"the note hands over size {stated.size}, not this register's final checkpoint",
                reason="DOCUMENT_MISMATCH",
            )
        try:
            first = open_checkpoint(first_checkpoint, [incoming.log_key], incoming.origin)
        except VerificationError as error:
            raise InvalidArgument.field(
                "first_checkpoint",
                f"not a checkpoint signed by {incoming.log_key.label}: {error}",
                reason="BAD_CHECKPOINT",
            ) from None
        try:
            cosigned = verify_cosignatures(
                first_checkpoint, [w.cosigner for w in incoming.witnesses], now_s
            )
        except CustodyRefusal as error:
            raise refused(error, "first_checkpoint") from None
        if len(cosigned) < incoming.witness_quorum:
            raise InvalidArgument.field(
                "first_checkpoint",
                f"{incoming.witness_quorum} witness cosignatures needed, {len(cosigned)} given",
                reason="WITNESS_QUORUM_NOT_MET",
            )
        if first.size <= final.size:
            raise InvalidArgument.field(
                "first_checkpoint",
                f"size {first.size} is not beyond the final size {final.size}",
                reason="BAD_CHECKPOINT",
            )
        try:
            verify_consistency(
                final.size, first.size, list(proof), final.root_hash, first.root_hash
            )
        except (VerificationError, ValueError) as error:
            raise InvalidArgument.field(
                "consistency_proof", str(error), reason="INCONSISTENT"
            ) from None
        keeper.save(
            loaded,
            replace(
                ceremony,
                state=CustodyState.RETIRED,
                pending_kind=PendingKind.NONE,
                pending_document="",
                handover=handover,
                first_checkpoint=first_checkpoint,
                moved_custodian=incoming.custodian,
                moved_endpoint=incoming.endpoint,
                detail=f"handed over to {incoming.custodian}; read-only",
            ),
        )


def _same_text(note: str, stored: str) -> bool:
    """Whether two signed notes carry the same text (their signatures may differ)."""
    try:
        return document_text(note)[0] == document_text(stored)[0]
    except MalformedNote:
        return False
