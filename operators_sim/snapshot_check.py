"""A node's check of a snapshot against the signed log (``docs/trust.md``,
"Snapshot statement"), written from that page as an integration team
would, not borrowed from the server.

The snapshot's last chunk carries the custodian's signed statement (size,
root, digest of the lists) and the Merkle frontier at the snapshot's
sequence. The node recomputes the digest from the chunks it received,
checks the statement's signature, size and root against the signed
checkpoint of the first chunk, and that the frontier hashes to that root.
Then it may serve from the snapshot and verify the feed after it, without
replaying the changes before it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from collections.abc import Sequence

from ceir.audit.checkpoint import Checkpoint
from ceir.audit.errors import InconsistentTree, MalformedCheckpoint
from ceir.audit.merkle import Frontier
from ceir.audit.note import open_note
from ceir.v1 import list_sync_pb2 as sync_pb

from .verification import Trust

LEGACY_SALT = bytes(16)
_SECTION = {
    sync_pb.SNAPSHOT_LIST_WHITELIST: 0,
    sync_pb.SNAPSHOT_LIST_BLACKLIST: 1,
    sync_pb.SNAPSHOT_LIST_NOTIFICATION: 2,
    sync_pb.SNAPSHOT_LIST_EXCEPTION: 3,
}
SNAPSHOT_MISMATCH = "SNAPSHOT_MISMATCH"


def subscriber_commitment(salt: bytes, imsi: str, msisdn: str) -> bytes:
    """SHA-256("ceir/subscriber/v1" 0x00 || salt || u16 len || imsi || u16 len || msisdn)."""
    data = b"ceir/subscriber/v1\x00" + salt
    for text in (imsi, msisdn):
        raw = text.encode()
        data += len(raw).to_bytes(2, "big") + raw
    return hashlib.sha256(data).digest()


class SnapshotDigest:
    """The digest of a snapshot's lists, fed chunk by chunk in stream order."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256(b"ceir/lists/v1\x00")
        self._section = -1
        self._started = False

    def add(self, chunk: sync_pb.GetSnapshotResponse) -> None:
        if not self._started:
            policy = chunk.policy
            self._hash.update(
                struct.pack(
                    ">QBIII",
                    chunk.sequence,
                    policy.phase,
                    policy.grace_days,
                    policy.clone_threshold,
                    policy.clone_window_seconds,
                )
            )
            self._started = True
        section = _SECTION.get(chunk.list)
        if section is None:
            if chunk.imei_keys:
                raise ValueError(f"snapshot chunk of unknown list {chunk.list}")
            return  # an empty chunk that names no list adds nothing
        self._enter(section)
        keys = chunk.imei_keys
        if section == 0:
            rows = zip(keys, chunk.valid_until_unix, strict=True)
            self._hash.update(b"".join(struct.pack(">Qq", k, v) for k, v in rows))
        elif section == 1:
            rows3 = zip(keys, chunk.blacklist_causes, chunk.block_dates_unix, strict=True)
            self._hash.update(b"".join(struct.pack(">QBq", k, c, d) for k, c, d in rows3))
        elif section == 2:
            ids = identities(chunk, with_msisdn=True)
            dates = chunk.block_dates_unix
            self._hash.update(
                b"".join(
                    struct.pack(">Q32sq", k, i, d) for k, i, d in zip(keys, ids, dates, strict=True)
                )
            )
        else:
            ids = identities(chunk, with_msisdn=False)
            pairs = zip(keys, ids, strict=True)
            self._hash.update(b"".join(struct.pack(">Q32s", k, i) for k, i in pairs))

    def _enter(self, section: int) -> None:
        if section < self._section:
            raise ValueError("snapshot lists out of order")
        while self._section < section:
            self._section += 1
            self._hash.update(b"WBNE"[self._section : self._section + 1])

    def digest(self) -> bytes:
        self._enter(3)
        return self._hash.digest()


def identities(chunk: sync_pb.GetSnapshotResponse, *, with_msisdn: bool) -> list[bytes]:
    """Each pair's commitment; where the numbers are given, checked against them."""
    commitments = list(chunk.subscriber_commitments)
    if len(commitments) != len(chunk.imei_keys):
        raise ValueError(
            f"snapshot chunk has {len(chunk.imei_keys)} pairs but "
            f"{len(commitments)} subscriber commitments"
        )
    salts = list(chunk.subscriber_salts) or [b""] * len(commitments)
    msisdns = list(chunk.msisdns) if with_msisdn else [""] * len(commitments)
    for index, imsi in enumerate(chunk.imsis):
        if not imsi:
            continue  # another operator's subscriber: the commitment is all there is
        opened = subscriber_commitment(salts[index] or LEGACY_SALT, imsi, msisdns[index])
        if opened != commitments[index]:
            raise ValueError(
                f"pair {index} of a snapshot chunk: IMSI {imsi} does not open its commitment"
            )
    return commitments


def check_snapshot(
    trust: Trust,
    checkpoint: Checkpoint,
    sequence: int,
    digest: bytes,
    statement_note: str,
    frontier_hashes: Sequence[bytes],
) -> Frontier:
    """The frontier at the snapshot's sequence, once the snapshot is proven
    to be the lists the custodian signed for it; raises ``AuditError`` or
    ``InconsistentTree`` (with the reason) otherwise."""
    origin, size, root, signed_digest = _statement(statement_note, trust)
    if origin != trust.origin:
        raise MalformedCheckpoint(f"lists statement of log {origin!r}, expected {trust.origin!r}")
    if not size == checkpoint.size == sequence:
        raise InconsistentTree(
            f"snapshot at sequence {sequence}, checkpoint of size {checkpoint.size}, "
            f"lists statement of size {size}: they must be the same"
        )
    if root != checkpoint.root_hash:
        raise InconsistentTree("the lists statement names another root than the checkpoint")
    if signed_digest != digest:
        raise InconsistentTree(
            f"the snapshot's lists hash to {digest.hex()[:16]}…, the signed statement says "
            f"{signed_digest.hex()[:16]}…: the snapshot is not the register's lists"
        )
    try:
        frontier = Frontier(sequence, frontier_hashes)
    except ValueError as error:
        raise InconsistentTree(f"the snapshot's frontier is malformed: {error}") from None
    if frontier.root() != checkpoint.root_hash:
        raise InconsistentTree("the snapshot's frontier does not hash to the checkpoint's root")
    return frontier


def _statement(note: str, trust: Trust) -> tuple[str, int, bytes, bytes]:
    """Origin, size, root and digest of a signed statement (five lines, the
    first ``ceir/lists/v1``), its signature verified with a trusted key."""
    lines = open_note(note, trust.verifiers).text.split("\n")
    if len(lines) != 6 or lines[0] != "ceir/lists/v1" or lines[5]:
        raise MalformedCheckpoint("the note is not a lists statement (ceir/lists/v1)")
    origin, size, root, digest = lines[1:5]
    try:
        if not size.isdigit() or (size != "0" and size.startswith("0")):
            raise ValueError(size)
        hashes = base64.b64decode(root, validate=True), base64.b64decode(digest, validate=True)
    except (ValueError, binascii.Error):
        raise MalformedCheckpoint(
            "the lists statement's size, root or digest is malformed"
        ) from None
    if any(len(value) != 32 for value in hashes):
        raise MalformedCheckpoint("the lists statement's root or digest is not 32 bytes")
    return origin, int(size), hashes[0], hashes[1]
