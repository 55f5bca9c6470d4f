"""Counting who signed a policy or handover note: distinct listed keys, each once.

Shared by ``chain`` (policies) and ``handover`` (handover notes). A
signature counts when its key is listed in a policy and it verifies; a
signature by any other key is ignored and never counted; a listed key's
signature that fails refuses the whole note, as does a listed key that
signed twice (a correctly assembled note never holds either).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from ceir.audit.errors import BadSignature, UnknownKey
from ceir.audit.note import NoteSignature, Verifier, open_note

from .errors import (
    BadCustodySignature,
    DuplicateSigner,
    ThresholdNotMet,
    UnknownSigner,
    WitnessQuorumNotMet,
)
from .policy import CustodyPolicy

Key = tuple[str, int]
"""A key as a signature line names it: key name and key ID."""


def verified_keys(
    message: str,
    lines: Sequence[NoteSignature],
    key_sets: Iterable[Iterable[Verifier]],
    version: int,
) -> frozenset[Key]:
    """The listed keys whose signatures on ``message`` verify.

    Each of ``key_sets`` is opened on its own (a policy's keys, a log key),
    so that two policies may list different keys under one name.
    """
    verified: set[Key] = set()
    listed: set[Key] = set()
    for keys in key_sets:
        keys = tuple(keys)
        listed.update((key.name, key.key_id) for key in keys)
        try:
            note = open_note(message, keys)
        except UnknownKey:
            continue
        except BadSignature as error:
            raise BadCustodySignature(str(error), version, error.key) from None
        verified.update((signature.name, signature.key_id) for signature in note.signatures)
    counts = Counter((line.name, line.key_id) for line in lines)
    for (name, key_id), count in counts.items():
        if count > 1 and (name, key_id) in listed:
            raise DuplicateSigner(
                f"key {name}+{key_id:08x} signed {count} times: each key signs once",
                version,
                f"{name}+{key_id:08x}",
            )
    if not verified:
        signed_by = tuple(f"{line.name}+{line.key_id:08x}" for line in lines)
        raise UnknownSigner(
            f"signed only by keys no policy lists: {', '.join(signed_by)}", version, signed_by
        )
    return frozenset(verified)


def require_officers(
    verified: frozenset[Key],
    lines: Sequence[NoteSignature],
    policy: CustodyPolicy,
    organisation: str,
    role: str,
    version: int,
) -> None:
    """Raise ``ThresholdNotMet`` unless enough of ``organisation``'s officers signed."""
    needed = policy.threshold_of(organisation)
    signed = [
        officer.name
        for officer in policy.officers_of(organisation)
        if (officer.name, officer.verifier.key_id) in verified
    ]
    if len(signed) < needed:
        raise ThresholdNotMet(
            f"{needed} of the {organisation} officers listed in policy version "
            f"{policy.version} ({role}) must sign; {len(signed)} did"
            f"{_who(signed)}{_ignored(verified, lines)}",
            version,
            organisation,
            needed,
            len(signed),
        )


def require_witnesses(
    verified: frozenset[Key], lines: Sequence[NoteSignature], policy: CustodyPolicy, version: int
) -> None:
    """Raise ``WitnessQuorumNotMet`` unless a quorum of ``policy``'s witnesses signed."""
    signed = [w.name for w in policy.witnesses if (w.name, w.verifier.key_id) in verified]
    if len(signed) < policy.witness_quorum:
        raise WitnessQuorumNotMet(
            f"{policy.witness_quorum} of the witnesses listed in policy version "
            f"{policy.version} must sign; {len(signed)} did{_who(signed)}"
            f"{_ignored(verified, lines)}",
            version,
            policy.witness_quorum,
            len(signed),
        )


def _who(names: list[str]) -> str:
    return f" ({', '.join(names)})" if names else ""


def _ignored(verified: frozenset[Key], lines: Sequence[NoteSignature]) -> str:
    ignored = sorted(
        {f"{line.name}+{line.key_id:08x}" for line in lines} - {f"{n}+{i:08x}" for n, i in verified}
    )
    return f"; ignored, not listed: {', '.join(ignored)}" if ignored else ""
