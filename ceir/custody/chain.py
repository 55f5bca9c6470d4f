"""The chain of custody policies: each version approved under the one before.

A node is configured with one policy it trusts (version 0 at first) and
moves to version k + 1 only when the signed note of v(k+1) carries, over
its exact text:

1. a threshold of the **outgoing** custodian's officers, as v(k) lists them
   (the organisation that holds the register agrees to let it go);
2. a threshold of the **incoming** custodian's officers, as v(k+1) lists
   them (the new holder agrees, and proves it holds the keys it names);
3. a quorum of **v(k)'s witnesses**, with v(k)'s quorum. The witnesses
   that count are those already trusted: a new policy could name witnesses
   of the proposer's choosing, so they would prove nothing. v(k+1)'s
   witnesses are trusted from then on, for v(k+2) and for handover notes.

When the custodian stays the same (a key rotation), both thresholds apply
to that organisation, once under v(k)'s officers and once under v(k+1)'s.

Each is counted over distinct listed keys: a key not listed is ignored and
never counted, a listed key that signs twice or whose signature fails
refuses the note. v(k+1) must have version k + 1 and v(k)'s origin, and
must not bring back a public key of v(k) under another name or role.

Expiry: the policy a node ends on must not have expired (``now`` before
its ``expires``); policies walked through on the way may have, as TUF lets
a client walk through expired intermediate root metadata, since each one
was later approved by its own officers. So an approval expires with the
policy it approves: a signed v(k+1) that was not acted on before its expiry
can no longer become any node's policy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from ceir.audit.errors import MalformedNote
from ceir.audit.note import Signer, sign_note

from ._approvals import require_officers, require_witnesses, verified_keys
from ._lines import split_note
from .errors import KeyReused, MalformedPolicy, PolicyExpired, WrongOrigin, WrongVersion
from .policy import CustodyPolicy

__all__ = ["check_not_expired", "sign_policy", "verify_successor", "walk_chain"]


def sign_policy(policy: CustodyPolicy, signers: Iterable[Signer]) -> str:
    """The signed note of ``policy``'s text by each of ``signers`` (officers, witnesses)."""
    return sign_note(policy.text(), signers)


def verify_successor(previous: CustodyPolicy, signed_next: str, now: int) -> CustodyPolicy:
    """The policy that follows ``previous``, if ``signed_next`` is approved and unexpired.

    Raises a ``CustodyRefusal`` whose ``version`` is ``previous.version + 1``
    and whose ``reason`` says why.
    """
    policy = _approved_successor(previous, signed_next)
    check_not_expired(policy, now)
    return policy


def walk_chain(trusted: CustodyPolicy, signed_policies: Sequence[str], now: int) -> CustodyPolicy:
    """The latest policy reached from ``trusted`` through ``signed_policies``, one version each.

    ``signed_policies`` are the signed notes of versions ``trusted.version + 1``
    onwards, in order. The first that fails stops the walk: its
    ``CustodyRefusal`` names its version and reason. The policy reached last
    (``trusted`` itself when there are none) must not have expired.
    """
    current = trusted
    for signed in signed_policies:
        current = _approved_successor(current, signed)
    check_not_expired(current, now)
    return current


def check_not_expired(policy: CustodyPolicy, now: int) -> None:
    """Raise ``PolicyExpired`` when ``now`` (Unix seconds) is at or after the policy's expiry."""
    if policy.expired(now):
        raise PolicyExpired(
            f"expired at {policy.expires} (Unix seconds); now is {now}", policy.version
        )


def _approved_successor(previous: CustodyPolicy, signed_next: str) -> CustodyPolicy:
    version = previous.version + 1
    try:
        text, lines = split_note(signed_next)
    except MalformedNote as error:
        raise MalformedPolicy(f"not a signed note: {error}", version) from None
    policy = CustodyPolicy.parse(text, version)
    if policy.version != version:
        raise WrongVersion(
            f"the note holds policy version {policy.version}; after version "
            f"{previous.version} only version {version} is accepted",
            version,
        )
    if policy.origin != previous.origin:
        raise WrongOrigin(
            f"the policy is for log {policy.origin!r}, the trusted one for {previous.origin!r}",
            version,
        )
    _check_no_key_reused(previous, policy)
    verified = verified_keys(
        signed_next, lines, (previous.note_verifiers(), policy.note_verifiers()), version
    )
    require_officers(verified, lines, previous, previous.custodian, "outgoing custodian", version)
    require_officers(verified, lines, policy, policy.custodian, "incoming custodian", version)
    require_witnesses(verified, lines, previous, version)
    return policy


def _check_no_key_reused(previous: CustodyPolicy, policy: CustodyPolicy) -> None:
    before = previous.roles()
    for key, role in policy.roles().items():
        if before.get(key, role) != role:
            raise KeyReused(
                f"a public key that was {before[key]} in version {previous.version} "
                f"comes back as {role}",
                policy.version,
            )
