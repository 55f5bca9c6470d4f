"""The outgoing register's steps: propose, sign, report readiness, freeze, cosign, abort.

Each takes the keeper's lock, catches up first (``CustodyKeeper.catch_up``:
an expired ceremony is aborted), reads the
ceremony, checks the caller and the state, and commits (``CustodyKeeper.
commit_step`` with a leaf, ``save`` without). ``ceir.custody`` refusals
become INVALID_ARGUMENT with their reason (``refused``).
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy.orm import Session

from ceir.audit import Checkpoint
from ceir.audit.note import Verifier, sign_note
from ceir.custody import (
    CustodyPolicy,
    CustodyRefusal,
    Handover,
    PolicyExpired,
    verify_abort,
    verify_successor,
)
from ceir.domain.custody import ABORTABLE, IN_CHARGE, Ceremony, CustodyState, PendingKind
from ceir.domain.errors import FailedPrecondition, InvalidArgument
from ceir.domain.model import Caller
from ceir.domain.permissions import Action, require
from ceir.storage import custody_repository as custody_repo

from .custody import MICROS, CustodyKeeper, Loaded, parse_policy_note
from .custody_documents import (
    document_text,
    merge_cosignatures,
    merge_signatures,
    refused,
    sha256_hex,
)
from .custody_incoming import confirm_retirement
from .custody_rules import (
    require_custodian,
    require_operator,
    require_proposer,
    wrong_state,
)

__all__ = [
    "MAX_NOTICE_SECONDS",
    "abort",
    "freeze",
    "propose",
    "report_readiness",
    "submit_cosignature",
    "submit_signature",
]

MAX_NOTICE_SECONDS = 366 * 86_400
# How long SubmitCosignature on the incoming register waits for the custodian's Retire.
RETIRE_SECONDS = 10.0


def _begin(keeper: CustodyKeeper, caller: Caller) -> Loaded:
    require(caller, Action.CUSTODY)
    keeper.catch_up()
    return keeper.load()


def _takes_proposals(ceremony: Ceremony) -> bool:
    return ceremony.state in (CustodyState.OPERATING, CustodyState.ABORTED) or (
        ceremony.state is CustodyState.ACTIVE and ceremony.writable
    )


# --- the next policy ----------------------------------------------------------------------


def propose(keeper: CustodyKeeper, caller: Caller, policy: str, notice_s: int) -> None:
    """Put policy k + 1 up for signature (a bare text or a signed note); a proposal
    still collecting signatures is replaced."""
    with keeper.lock:
        loaded = _begin(keeper, caller)
        ceremony, current = loaded.ceremony, loaded.current
        require_proposer(caller, current)
        if not _takes_proposals(ceremony):
            raise wrong_state(ceremony.state, "propose a policy")
        if not 0 <= notice_s <= MAX_NOTICE_SECONDS:
            raise InvalidArgument.field(
                "notice", f"0 to {MAX_NOTICE_SECONDS} seconds, got {notice_s}"
            )
        version = current.version + 1
        try:
            proposed = parse_policy_note(policy, version)
        except CustodyRefusal as error:
            raise refused(error, "policy") from None
        if proposed.version != version or proposed.origin != current.origin:
            raise InvalidArgument.field(
                "policy",
                f"the next policy is version {version} of log {current.origin}; this is version "
                f"{proposed.version} of {proposed.origin}",
                reason="WRONG_VERSION" if proposed.version != version else "WRONG_ORIGIN",
            )
        if proposed.expired(keeper.now_us() // MICROS):
            raise InvalidArgument.field(
                "policy", f"the policy expired at {proposed.expires}", reason=PolicyExpired.reason
            )
        document = proposed.text()
        if "\n\n" in policy:  # signatures came with it
            document = merge_signatures(document, policy, _policy_keys(current, proposed), "policy")
        pending = replace(
            ceremony,
            state=CustodyState.OPERATING,
            pending_kind=PendingKind.POLICY,
            pending_document=document,
            pending_notice_s=notice_s,
            abort_note="",
            detail=f"policy {version} proposed by {caller.name}",
        )
        _announce_or_save(keeper, caller, loaded, pending, proposed)


def _policy_keys(current: CustodyPolicy, proposed: CustodyPolicy) -> list[Verifier]:
    return [*current.note_verifiers(), *proposed.note_verifiers()]


def submit_signature(keeper: CustodyKeeper, caller: Caller, note: str) -> None:
    """Merge signature lines into the pending document (a policy or the handover note)."""
    with keeper.lock:
        loaded = _begin(keeper, caller)
        ceremony, current = loaded.ceremony, loaded.current
        if ceremony.pending_kind is PendingKind.POLICY:
            proposed = keeper.parse(document_text(ceremony.pending_document)[0])
            merged = merge_signatures(
                ceremony.pending_document, note, _policy_keys(current, proposed)
            )
            pending = replace(ceremony, pending_document=merged)
            _announce_or_save(keeper, caller, loaded, pending, proposed)
        elif ceremony.pending_kind is PendingKind.HANDOVER:
            following = loaded.following
            assert following is not None
            keys = [
                *_policy_keys(current, following),
                current.log_key,
                following.log_key,
            ]
            merged = merge_signatures(ceremony.pending_document, note, keys)
            keeper.save(loaded, replace(ceremony, pending_document=merged, handover=merged))
        else:
            raise wrong_state(ceremony.state, "sign", "no document is collecting signatures")


def _announce_or_save(
    keeper: CustodyKeeper,
    caller: Caller,
    loaded: Loaded,
    pending: Ceremony,
    proposed: CustodyPolicy,
) -> None:
    """Announce the policy when its signatures satisfy the chain rules, else keep collecting."""
    note = pending.pending_document
    now_us = keeper.now_us()
    try:
        if "\n\n" not in note:
            raise InvalidArgument("no signature yet")
        verify_successor(loaded.current, note, now_us // MICROS)
    except (CustodyRefusal, InvalidArgument) as error:
        why = getattr(error, "reason", "")
        detail = f"collecting signatures for policy {proposed.version}: {why} {error}".strip()
        keeper.save(loaded, replace(pending, detail=detail))
        return
    notice_ends = now_us + pending.pending_notice_s * MICROS

    def announced(session: Session, _checkpoint: str) -> Ceremony:
        custody_repo.add_policy(
            session, proposed.version, note, sha256_hex(proposed.text()), now_us
        )
        return replace(
            pending,
            state=CustodyState.ANNOUNCED,
            pending_kind=PendingKind.NONE,
            pending_document="",
            announced_at_us=now_us,
            notice_ends_at_us=notice_ends,
            detail=f"policy {proposed.version} announced; waiting for the operators",
            updated_at_us=now_us,
        )

    keeper.commit_step(
        caller, loaded, CustodyState.ANNOUNCED, proposed.version, sha256_hex(note), announced
    )
    _ready_if_all_reported(keeper, caller)


# --- readiness ---------------------------------------------------------------------------


def report_readiness(keeper: CustodyKeeper, caller: Caller, version: int, text_sha256: str) -> None:
    """Record that the calling operator's nodes verified the announced policy."""
    with keeper.lock:
        require_operator(caller)
        loaded = _begin(keeper, caller)
        ceremony, following = loaded.ceremony, loaded.following
        if ceremony.state not in (CustodyState.ANNOUNCED, CustodyState.READY) or following is None:
            raise wrong_state(ceremony.state, "report readiness", "no policy is announced")
        if version != following.version:
            raise InvalidArgument.field(
                "policy_version",
                f"the announced policy is version {following.version}, not {version}",
                reason="WRONG_VERSION",
            )
        if text_sha256 != sha256_hex(following.text()):
            raise InvalidArgument.field(
                "policy_sha256",
                f"not the SHA-256 of policy {version}'s text as announced",
                reason="POLICY_MISMATCH",
            )
        ready, _waiting = keeper.readiness(following)
        if caller.name in ready:
            return
        now_us = keeper.now_us()
        keeper.save(
            loaded,
            ceremony,
            lambda session: custody_repo.record_readiness(
                session, caller.name, version, text_sha256, now_us
            ),
        )
        _ready_if_all_reported(keeper, caller)


def _ready_if_all_reported(keeper: CustodyKeeper, caller: Caller) -> None:
    loaded = keeper.load()
    following = loaded.following
    if loaded.ceremony.state is not CustodyState.ANNOUNCED or following is None:
        return
    _ready, waiting = keeper.readiness(following)
    if waiting:
        keeper.save(loaded, replace(loaded.ceremony, detail=f"waiting for {', '.join(waiting)}"))
        return
    keeper.commit_step(
        caller,
        loaded,
        CustodyState.READY,
        following.version,
        "",
        lambda _session, _note: replace(
            loaded.ceremony,
            state=CustodyState.READY,
            detail="every operator is ready; the custodian may freeze",
            updated_at_us=keeper.now_us(),
        ),
    )


# --- the freeze ----------------------------------------------------------------------------


def freeze(keeper: CustodyKeeper, caller: Caller) -> None:
    """READY -> FROZEN: leaf N and the final checkpoint at N in one transaction; the
    handover note, signed by the old log key, becomes the pending document."""
    with keeper.lock:
        loaded = _begin(keeper, caller)
        ceremony, current, following = loaded.ceremony, loaded.current, loaded.following
        require_custodian(caller, "freeze the register", current)
        if ceremony.state is not CustodyState.READY or following is None:
            why = ceremony.detail if ceremony.state is CustodyState.ANNOUNCED else ""
            raise wrong_state(ceremony.state, "freeze", why)
        now_us = keeper.now_us()
        notice_ends = ceremony.notice_ends_at_us or 0
        if now_us < notice_ends:
            raise FailedPrecondition(
                f"the notice period of policy {following.version} runs until "
                f"{notice_ends // MICROS} (Unix seconds)",
                reason="NOTICE_PERIOD",
                retry_after=(notice_ends - now_us) / MICROS,
            )
        signer = keeper.register.log.signer
        assert signer is not None  # CustodyKeeper.open requires it

        def frozen(_session: Session, note: str) -> Ceremony:
            final = Checkpoint.parse(note.split("\n\n")[0] + "\n")
            handover = Handover.between(current, following, final.size, final.root_hash)
            signed = sign_note(handover.text(), [signer.signer])
            return replace(
                ceremony,
                state=CustodyState.FROZEN,
                pending_kind=PendingKind.HANDOVER,
                pending_document=signed,
                handover=signed,
                final_size=final.size,
                final_checkpoint=note,
                detail=f"frozen at size {final.size}; the handover note is collecting signatures",
                updated_at_us=now_us,
            )

        keeper.commit_step(
            caller,
            loaded,
            CustodyState.FROZEN,
            following.version,
            sha256_hex(following.text()),
            frozen,
        )


# --- cosignatures ---------------------------------------------------------------------------


def submit_cosignature(keeper: CustodyKeeper, caller: Caller, checkpoint: str) -> None:
    """Merge witness cosignatures into the final checkpoint (outgoing, policy k's
    witnesses) or the first checkpoint (incoming, policy k + 1's, now in force)."""
    with keeper.lock:
        loaded = _begin(keeper, caller)
        ceremony, current = loaded.ceremony, loaded.current
        witnesses = [w.cosigner for w in current.witnesses]
        now_s = keeper.now_us() // MICROS
        if ceremony.state in (CustodyState.FROZEN, CustodyState.RETIRED):
            merged, _count = merge_cosignatures(
                ceremony.final_checkpoint, checkpoint, witnesses, now_s
            )
            keeper.save(loaded, replace(ceremony, final_checkpoint=merged))
        elif ceremony.state is CustodyState.ACTIVE and ceremony.first_checkpoint:
            merged, count = merge_cosignatures(
                ceremony.first_checkpoint, checkpoint, witnesses, now_s
            )
            detail = ceremony.detail
            if not ceremony.writable:
                detail = (
                    "the witnesses cosigned the first checkpoint; writes start once "
                    f"{loaded.chain[ceremony.version - 1].custodian} retires"
                    if count >= current.witness_quorum
                    else f"{count} of the {current.witness_quorum} witness cosignatures needed"
                )
            keeper.save(loaded, replace(ceremony, first_checkpoint=merged, detail=detail))
            # The outgoing register's retirement is the commit point: writes wait for it.
            confirm_retirement(keeper, RETIRE_SECONDS)
        else:
            raise wrong_state(ceremony.state, "add cosignatures", "no checkpoint awaits them")


# --- abort -----------------------------------------------------------------------------------


def abort(keeper: CustodyKeeper, caller: Caller, note: str) -> None:
    """Call the handover off with the outgoing officers' abort note: an announced
    ceremony ends with an ABORTED leaf (N + 1 when frozen); a proposal not yet
    announced is dropped."""
    with keeper.lock:
        loaded = _begin(keeper, caller)
        ceremony, current, following = loaded.ceremony, loaded.current, loaded.following
        if ceremony.state in ABORTABLE and following is not None:
            proposed = following
        elif ceremony.pending_kind is PendingKind.POLICY and ceremony.state in (
            *IN_CHARGE,
            CustodyState.ACTIVE,
        ):
            proposed = keeper.parse(document_text(ceremony.pending_document)[0])
        else:
            raise wrong_state(ceremony.state, "abort", "no handover is under way")
        try:
            abort_note = verify_abort(note, current, proposed)
        except CustodyRefusal as error:
            raise refused(error, "abort_note") from None
        detail = f"policy {proposed.version} called off by the {current.custodian} officers"
        if following is None:
            keeper.save(
                loaded,
                Ceremony(
                    CustodyState.ABORTED,
                    ceremony.version,
                    abort_note=note,
                    detail=detail,
                ),
            )
            return
        keeper.commit_step(
            caller,
            loaded,
            CustodyState.ABORTED,
            proposed.version,
            sha256_hex(abort_note.text()),
            lambda session, _checkpoint: keeper.aborted(session, loaded, note, detail),
        )
