"""docs/trust.md: every byte, hash, key and signature it shows is what the library gives."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceir.audit import errors
from ceir.audit.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from ceir.audit.commitment import COMMITMENT_DOMAIN, subscriber_commitment
from ceir.audit.leaf import encode_change
from ceir.audit.merkle import EMPTY_ROOT, MemoryHashStore, Prover, leaf_hash
from ceir.audit.note import Signer, Verifier
from ceir.domain.model import BlacklistCause, Change, ChangeKind, RegistrationSource

from .test_audit_leaf import EXAMPLE
from .test_audit_leaf_v2 import NOTIFIED, SALT

DOC = (Path(__file__).parents[2] / "docs" / "trust.md").read_text(encoding="utf-8")
ORIGIN = "ceir.example/changes"
STOLEN = Change(
    kind=ChangeKind.BLACKLIST_BLOCKED,
    imei_key=EXAMPLE.imei_key,
    blacklist_cause=BlacklistCause.STOLEN,
    sequence=2,
    committed_at_us=1_587_254_400_000_000,
    actor="telkomsel",
    leaf_version=1,
)
# The version 2 example: change 3 is NOTIFIED; change 4 registers its device.
REGISTERED = Change(
    kind=ChangeKind.WHITELIST_ADDED,
    imei_key=35_693_803_564_380,
    source=RegistrationSource.TPP_IMPORT,
    device_id="dev-42",
    sequence=4,
    committed_at_us=1_614_679_200_000_000,
    actor="kemenperin",
    reference="TPP-IMP/2021/000417",
    brand="Contoh",
    model="C2 Duo",
    device_imei_keys=(35_693_803_564_380, 35_693_803_564_398),
)
SEED = hashlib.sha256(b"ceir docs example key: public, never use it").digest()
SIGNER = Signer(ORIGIN, Ed25519PrivateKey.from_private_bytes(SEED))


def _code_blocks() -> list[str]:
    return re.findall(r"```\n(.*?)```", DOC, flags=re.DOTALL)


def _block_after(heading: str) -> list[str]:
    position = DOC.index(heading)
    return re.findall(r"```\n(.*?)```", DOC[position:], flags=re.DOTALL)


def _annotated_bytes(heading: str) -> str:
    annotated = _block_after(heading)[0]
    hex_parts = []
    for line in annotated.splitlines():
        match = re.match(r"([0-9a-f]+(?: [0-9a-f]+)*)\s{2,}", line)
        assert match, f"line without bytes: {line!r}"
        hex_parts.append(match.group(1).replace(" ", ""))
    return "".join(hex_parts)


def test_the_annotated_example_leaf_is_its_encoding() -> None:
    assert _annotated_bytes("Change 1:") == encode_change(EXAMPLE).hex()


def test_the_annotated_version_2_example_leaves_are_their_encodings() -> None:
    assert _annotated_bytes("Change 3:") == encode_change(NOTIFIED).hex()
    assert _annotated_bytes("Change 4:") == encode_change(REGISTERED).hex()


def test_the_example_leaves_are_shown_whole() -> None:
    blocks = [block.strip() for block in _code_blocks()]
    for change in (EXAMPLE, STOLEN, NOTIFIED, REGISTERED):
        assert encode_change(change).hex() in blocks
    for change in (EXAMPLE, NOTIFIED, REGISTERED):
        assert f"As one string, {len(encode_change(change))} bytes" in DOC
    assert [encode_change(change)[0] for change in (EXAMPLE, STOLEN, NOTIFIED, REGISTERED)] == [
        1,
        1,
        2,
        2,
    ]


def test_the_example_commitment_is_right() -> None:
    hashed = bytes.fromhex(_block_after("The hashed bytes")[0].strip())
    assert hashed.startswith(COMMITMENT_DOMAIN + SALT)
    assert f"The hashed bytes, {len(hashed)} of them" in DOC
    commitment = subscriber_commitment(SALT, NOTIFIED.imsi, NOTIFIED.msisdn)
    assert hashlib.sha256(hashed).digest() == commitment
    assert f"commitment  {commitment.hex()}" in DOC
    assert f"salt `{SALT.hex()}`" in DOC


def test_the_mixed_example_log_hashes_to_the_documented_root() -> None:
    store = MemoryHashStore()
    store.extend(
        leaf_hash(encode_change(change)) for change in (EXAMPLE, STOLEN, NOTIFIED, REGISTERED)
    )
    assert f"leaf hash of change 3  {store.node_hashes(0, 2, 3)[0].hex()}" in DOC
    assert f"leaf hash of change 4  {store.node_hashes(0, 3, 4)[0].hex()}" in DOC
    assert f"root of size 4         {store.root().hex()}" in DOC


def test_the_example_hashes_and_root_are_right() -> None:
    store = MemoryHashStore()
    store.extend(leaf_hash(encode_change(change)) for change in (EXAMPLE, STOLEN))
    prover = Prover(store)
    assert f"leaf hash of change 1  {store.node_hashes(0, 0, 1)[0].hex()}" in DOC
    assert f"leaf hash of change 2  {store.node_hashes(0, 1, 2)[0].hex()}" in DOC
    assert f"root of size 2         {prover.root(2).hex()}" in DOC
    assert EMPTY_ROOT.hex() in DOC
    assert (
        prover.inclusion_proof(0, 2)
        == prover.consistency_proof(1, 2)
        == [store.node_hashes(0, 1, 2)[0]]
    )


def test_the_example_key_and_signed_checkpoint_verify() -> None:
    vkey = SIGNER.verifier.vkey
    assert vkey in DOC
    signed = next(block for block in _code_blocks() if block.startswith(ORIGIN + "\n"))
    checkpoint = open_checkpoint(signed, [Verifier.from_vkey(vkey)], ORIGIN)
    store = MemoryHashStore()
    store.extend(leaf_hash(encode_change(change)) for change in (EXAMPLE, STOLEN))
    assert checkpoint == Checkpoint(ORIGIN, 2, store.root(), 1_587_254_401_000_000)
    assert sign_checkpoint(checkpoint, [SIGNER]) == signed


def test_every_error_reason_is_documented() -> None:
    classes = [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.AuditError)
    ]
    assert len(classes) == 12
    for error in classes:
        assert re.search(rf"\b{error.__name__}\b", DOC)
        assert f"[{error.reason}]" in DOC
