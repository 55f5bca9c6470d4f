"""The worked example of docs/custody.md: public keys from fixed seeds, two policy versions.

Every key's seed is ``SHA-256("ceir docs example key: " + phrase)``, as the
example key of docs/trust.md (whose phrase is "public, never use it"): they
are public, so anyone can check the page, and must never be used.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceir.audit.note import Signer
from ceir.custody.cosignature import Cosigner
from ceir.custody.policy import CustodyPolicy, Officer, Threshold, Witness

ORIGIN = "ceir.example/changes"
NOW = 1_641_427_200  # 6 January 2022 00:00 UTC, the day of the grant


def private_key(phrase: str) -> Ed25519PrivateKey:
    """The example key of ``phrase``."""
    seed = hashlib.sha256(f"ceir docs example key: {phrase}".encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(seed)


def signer(name: str, phrase: str) -> Signer:
    """A note signer under ``name`` with the example key of ``phrase``."""
    return Signer(name, private_key(phrase))


OLD_LOG = signer(ORIGIN, "public, never use it")  # docs/trust.md's key, Telkomsel's log key
NEW_LOG = signer(ORIGIN, "kemenperin log key")
AYU = signer("officer.telkomsel.example/ayu", "telkomsel officer ayu")
BUDI = signer("officer.telkomsel.example/budi", "telkomsel officer budi")
CITRA = signer("officer.telkomsel.example/citra", "telkomsel officer citra")
DEWI = signer("officer.kemenperin.example/dewi", "kemenperin officer dewi")
EKO = signer("officer.kemenperin.example/eko", "kemenperin officer eko")
FAJAR = signer("officer.kemenperin.example/fajar", "kemenperin officer fajar")
KOMINFO = signer("witness.kominfo.example", "kominfo witness note key")
KOMINFO_COSIGNER = Cosigner("witness.kominfo.example", private_key("kominfo witness cosigner key"))

TELKOMSEL_OFFICERS = (AYU, BUDI, CITRA)
KEMENPERIN_OFFICERS = (DEWI, EKO, FAJAR)
KOMINFO_WITNESS = Witness(KOMINFO.verifier, KOMINFO_COSIGNER.verifier)


def officers(organisation: str, signers: tuple[Signer, ...]) -> tuple[Officer, ...]:
    """The officers of ``organisation`` holding ``signers``' keys."""
    return tuple(Officer(organisation, s.verifier) for s in signers)


V0 = CustodyPolicy(
    version=0,
    origin=ORIGIN,
    custodian="telkomsel",
    endpoint="ceir.telkomsel.example:8443",
    log_key=OLD_LOG.verifier,
    complaints="telkomsel",
    expires=1_672_531_200,  # 1 January 2023
    thresholds=(Threshold("telkomsel", 2),),
    officers=officers("telkomsel", TELKOMSEL_OFFICERS),
    witness_quorum=1,
    witnesses=(KOMINFO_WITNESS,),
)
V1 = CustodyPolicy(
    version=1,
    origin=ORIGIN,
    custodian="kemenperin",
    endpoint="ceir.kemenperin.example:8443",
    log_key=NEW_LOG.verifier,
    complaints="telkomsel",
    expires=1_735_689_600,  # 1 January 2025
    thresholds=(Threshold("kemenperin", 2),),
    officers=officers("kemenperin", KEMENPERIN_OFFICERS),
    witness_quorum=1,
    witnesses=(KOMINFO_WITNESS,),
)
V1_SIGNERS = (AYU, BUDI, DEWI, EKO, KOMINFO)
"""Two Telkomsel officers (outgoing), two Kemenperin officers (incoming), Kominfo."""
