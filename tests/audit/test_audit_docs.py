"""docs/trust.md: every byte, hash, key and signature it shows is what the library gives."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ceir.audit import errors
from ceir.audit.checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from ceir.audit.leaf import encode_change
from ceir.audit.merkle import EMPTY_ROOT, MemoryHashStore, Prover, leaf_hash
from ceir.audit.note import Signer, Verifier
from ceir.domain.model import BlacklistCause, Change, ChangeKind

from .test_audit_leaf import EXAMPLE

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
SEED = hashlib.sha256(b"ceir docs example key: public, never use it").digest()
SIGNER = Signer(ORIGIN, Ed25519PrivateKey.from_private_bytes(SEED))


def _code_blocks() -> list[str]:
    return re.findall(r"```\n(.*?)```", DOC, flags=re.DOTALL)


def _block_after(heading: str) -> list[str]:
    position = DOC.index(heading)
    return re.findall(r"```\n(.*?)```", DOC[position:], flags=re.DOTALL)


def test_the_annotated_example_leaf_is_its_encoding() -> None:
    annotated = _block_after("Change 1:")[0]
    hex_parts = []
    for line in annotated.splitlines():
        match = re.match(r"([0-9a-f]+(?: [0-9a-f]+)*)\s{2,}", line)
        assert match, f"line without bytes: {line!r}"
        hex_parts.append(match.group(1).replace(" ", ""))
    assert "".join(hex_parts) == encode_change(EXAMPLE).hex()


def test_the_example_leaves_are_shown_whole() -> None:
    blocks = [block.strip() for block in _code_blocks()]
    assert encode_change(EXAMPLE).hex() in blocks
    assert encode_change(STOLEN).hex() in blocks
    assert f"As one string, {len(encode_change(EXAMPLE))} bytes" in DOC


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
