"""The drill's keys and custody policies, made fresh for every run.

A drill plays every party of the ceremony, so it makes every key: both log
keys (Telkomsel's, the outgoing custodian's, and Kemenperin's, the incoming
one's), three officers of each, Kominfo's witness keys (a note key for
policies and handover notes, a cosigner key for checkpoints) and one
outsider, an officer no policy lists (the ``wrong-signer`` scenario). The
registers get their log key as a PEM file and the witness its cosigner key;
officers' keys never leave the drill: it signs documents with them and
submits the signatures, as officers do with ``ceir custody sign``.

Keys come from the operating system's random source, never from ``--seed``:
a drill's keys must not be guessable from its report.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceir.audit.keys import generate_signing_key, save_private_key
from ceir.audit.note import Signer
from ceir.custody import Cosigner, CustodyPolicy, Officer, Threshold, Witness, sign_policy

__all__ = [
    "INCOMING",
    "OUTGOING",
    "WITNESS",
    "DrillKeys",
    "make_keys",
    "policy",
    "signed_policy_0",
    "write_log_key",
    "write_witness_keys",
]

OUTGOING = "telkomsel"
INCOMING = "kemenperin"
COMPLAINTS = "telkomsel"  # the operators keep the complaints desk for about two years
OFFICERS = {OUTGOING: ("ayu", "budi", "citra"), INCOMING: ("dewi", "eko", "fajar")}
THRESHOLD = 2
WITNESS = "witness.kominfo.go.id"
DAY = 86_400


@dataclass(frozen=True)
class DrillKeys:
    """Every key of a drill, private halves included (the drill plays every party)."""

    origin: str
    log_private: dict[str, Ed25519PrivateKey]  # organisation -> its log key
    officers: dict[str, tuple[Signer, ...]]  # organisation -> its officers
    witness_private: Ed25519PrivateKey  # Kominfo's note key: policies and handover notes
    cosigner_private: Ed25519PrivateKey  # Kominfo's cosigner key: the witness process's
    outsider: Signer  # an officer's key that no policy lists

    @property
    def log(self) -> dict[str, Signer]:
        """Each custodian's log key as a note signer, named like the origin."""
        return {org: Signer(self.origin, key) for org, key in self.log_private.items()}

    @property
    def witness(self) -> Signer:
        """Kominfo's note key: its staff sign policies and handover notes with it."""
        return Signer(WITNESS, self.witness_private)

    @property
    def cosigner(self) -> Cosigner:
        """Kominfo's cosigner: cosigns checkpoints (held by the witness process)."""
        return Cosigner(WITNESS, self.cosigner_private)

    def signers(self, organisation: str, count: int) -> tuple[Signer, ...]:
        """The first ``count`` officers of ``organisation``."""
        return self.officers[organisation][:count]

    def approvals(self) -> tuple[Signer, ...]:
        """The signatures policy 1 (and the handover note) need: two officers of
        each side and the witness."""
        return (
            *self.signers(OUTGOING, THRESHOLD),
            *self.signers(INCOMING, THRESHOLD),
            self.witness,
        )


def _officer(organisation: str, name: str) -> Signer:
    return Signer(f"officer.{organisation}.go.id/{name}", generate_signing_key())


def make_keys(origin: str, outgoing_log: Ed25519PrivateKey | None = None) -> DrillKeys:
    """New keys for one drill of the log ``origin`` (Telkomsel's log key is
    ``outgoing_log`` when given: a register whose log that key signed already)."""
    return DrillKeys(
        origin=origin,
        log_private={
            OUTGOING: outgoing_log or generate_signing_key(),
            INCOMING: generate_signing_key(),
        },
        officers={
            org: tuple(_officer(org, name) for name in names) for org, names in OFFICERS.items()
        },
        witness_private=generate_signing_key(),
        cosigner_private=generate_signing_key(),
        outsider=_officer(OUTGOING, "mallory"),
    )


def policy(
    keys: DrillKeys, version: int, custodian: str, endpoint: str, expires: int
) -> CustodyPolicy:
    """Policy ``version``: ``custodian`` runs the register at ``endpoint`` with
    its log key; its officers approve (2 of 3); Kominfo witnesses (1 of 1).

    Version 0 lists Telkomsel's officers; a later version lists the incoming
    custodian's, the outgoing officers' approval being counted against the
    version before it (``ceir.custody.verify_successor``).
    """
    witness = Witness(keys.witness.verifier, keys.cosigner.verifier)
    return CustodyPolicy(
        version=version,
        origin=keys.origin,
        custodian=custodian,
        endpoint=endpoint,
        log_key=keys.log[custodian].verifier,
        complaints=COMPLAINTS,
        expires=expires,
        thresholds=(Threshold(custodian, THRESHOLD),),
        officers=tuple(Officer(custodian, s.verifier) for s in keys.officers[custodian]),
        witness_quorum=1,
        witnesses=(witness,),
    )


def signed_policy_0(keys: DrillKeys, policy_0: CustodyPolicy) -> str:
    """Policy 0, the trust root, signed by Telkomsel's officers and Kominfo."""
    return sign_policy(policy_0, (*keys.signers(OUTGOING, THRESHOLD), keys.witness))


def write_witness_keys(keys: DrillKeys, path: Path) -> tuple[Path, Path]:
    """Kominfo's witness keys as ``ceir custody witness-key`` writes them: the
    note key in ``path``, the cosigner key in ``path.cosigner``."""
    from ceir.custody.keyfiles import write_cosigner_key, write_note_key

    cosigner = path.with_name(path.name + ".cosigner")
    write_note_key(path, WITNESS, keys.witness_private)
    write_cosigner_key(cosigner, WITNESS, keys.cosigner_private)
    return path, cosigner


def write_log_key(keys: DrillKeys, organisation: str, path: Path) -> Path:
    """``organisation``'s log key as the PEM file ``ceir serve --signing-key`` reads."""
    save_private_key(keys.log_private[organisation], path)
    return path
