"""The register's tamper-evident change log: a pure library (no database, no protobuf).

Every list change is a leaf of an RFC 6962 Merkle tree; the custodian signs
checkpoints of the tree; operators verify them. ``docs/trust.md`` specifies
the bytes and says what each check proves.

==============  ===============================================================
module          what it holds
==============  ===============================================================
``leaf``        the canonical byte encoding of a change (versions 1 and 2)
``commitment``  salted commitments to a subscriber, in place of IMSI and MSISDN
``merkle``      hashing, the frontier, the ``HashStore`` protocol, proofs
``note``        signed notes (c2sp.org/signed-note), Ed25519 signers, verifiers
``checkpoint``  checkpoints (c2sp.org/tlog-checkpoint) with a time line
``keys``        the custodian's key in PEM files, Go note key strings
``verify``      ties changes to checkpoints: sequence, leaf, replay, gossip
``errors``      the exception hierarchy
==============  ===============================================================
"""

from .checkpoint import Checkpoint, open_checkpoint, sign_checkpoint
from .commitment import new_salt, subscriber_commitment
from .errors import (
    AuditError,
    BadLeaf,
    BadProof,
    BadSignature,
    InconsistentTree,
    KeyFormatError,
    LeafEncodingError,
    MalformedCheckpoint,
    MalformedNote,
    MissingHashes,
    UnknownKey,
    VerificationError,
)
from .keys import (
    generate_signing_key,
    load_private_key,
    load_public_key,
    save_private_key,
    save_public_key,
    verifier_from_file,
)
from .leaf import (
    LEAF_VERSION,
    LEAF_VERSIONS,
    Leaf,
    decode_leaf,
    encode_change,
    encode_changes,
    encode_leaf,
    leaf_view,
)
from .merkle import (
    EMPTY_ROOT,
    TILE_HEIGHT,
    Frontier,
    HashStore,
    MemoryHashStore,
    Prover,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    tree_hash,
    verify_consistency,
    verify_inclusion,
)
from .note import Note, NoteSignature, Signer, Verifier, open_note, sign_note
from .verify import change_leaf_hash, check_leaf_hash, check_same_view, replay

__all__ = [
    "EMPTY_ROOT",
    "LEAF_VERSION",
    "LEAF_VERSIONS",
    "TILE_HEIGHT",
    "AuditError",
    "BadLeaf",
    "BadProof",
    "BadSignature",
    "Checkpoint",
    "Frontier",
    "HashStore",
    "InconsistentTree",
    "KeyFormatError",
    "Leaf",
    "LeafEncodingError",
    "MalformedCheckpoint",
    "MalformedNote",
    "MemoryHashStore",
    "MissingHashes",
    "Note",
    "NoteSignature",
    "Prover",
    "Signer",
    "UnknownKey",
    "VerificationError",
    "Verifier",
    "change_leaf_hash",
    "check_leaf_hash",
    "check_same_view",
    "decode_leaf",
    "encode_change",
    "encode_changes",
    "encode_leaf",
    "generate_signing_key",
    "leaf_hash",
    "leaf_view",
    "load_private_key",
    "load_public_key",
    "new_salt",
    "node_hash",
    "open_checkpoint",
    "open_note",
    "replay",
    "root_from_inclusion_proof",
    "save_private_key",
    "save_public_key",
    "sign_checkpoint",
    "sign_note",
    "subscriber_commitment",
    "tree_hash",
    "verifier_from_file",
    "verify_consistency",
    "verify_inclusion",
]
