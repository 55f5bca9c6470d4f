"""The canonical byte encoding of one change: the leaf of the Merkle log.

Protobuf bytes are not canonical (field order, default values and unknown
fields may vary between encoders), so a leaf has its own encoding, specified
byte by byte in ``docs/trust.md``. Any implementation can rebuild it from the
fields of a public ``ceir.v1.ListChange``, so it holds exactly what the
public message carries to every receiver, no more. The first byte names the
encoding version; a change's ``leaf_version`` says which one its leaf has,
and the log is append-only, so a leaf once written keeps its version.

Version 1 (changes written before version 2): a fixed part of 71 bytes,
then five strings: the IMSI, MSISDN, device id, operator MCC-MNC and the
policy's updated-by. No actor.

Version 2: the same 71 bytes, then a subscriber commitment (presence byte
and 32 bytes, at offset 71), the count of device slot keys (offset 104) and
the keys (u64 each), then nine strings: actor, device id, operator MCC-MNC,
reference, brand, model, police report, reason, policy updated-by. The IMSI
and MSISDN are never in a version 2 leaf; the commitment
(``commitment.subscriber_commitment``) stands for them.

=======  ======  =============================================================
offset   length  field (both versions)
=======  ======  =============================================================
0        1       encoding version, 0x01 or 0x02
1        1       kind (``ChangeKind``, 1 to 11; 11 in version 2 only)
2        8       sequence, u64 (1 for the first change)
10       8       commit time, i64 microseconds
18       1+8     imei key: presence, u64 (0 to 10^14 - 1)
27       1+1     registration source: presence, u8
29       1+8     valid until: presence, i64 microseconds
38       1+1     blacklist cause: presence, u8
40       1+8     block date: presence, i64 microseconds
49       1+1     policy: presence, phase u8
51       4       policy grace days, u32
55       4       policy clone threshold, u32
59       4       policy clone window seconds, u32
63       8       policy update time, i64 microseconds (0 when unset)
=======  ======  =============================================================

Integers are big-endian, fixed width, signed ones two's complement. A
presence byte is 0 or 1; an absent value (and an absent policy's fields and
updated-by) is all zero bytes. Every field is always written, so each change
has exactly one encoding, and ``decode_leaf`` refuses any other bytes.

- ``leaf_view(change)`` is what the change's leaf records (a ``Leaf``);
- ``encode_change(change)`` its bytes, ``encode_leaf(leaf)`` the same from a ``Leaf``;
- ``decode_leaf(data)`` the ``Leaf`` that bytes record, by their version byte:
  ``decode_leaf(encode_change(c)) == leaf_view(c)``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ceir.domain.model import CURRENT_LEAF_VERSION, Change

from . import _leaf_v1, _leaf_v2
from ._leaf_fields import Leaf
from .errors import LeafEncodingError

__all__ = [
    "LEAF_VERSION",
    "LEAF_VERSIONS",
    "Leaf",
    "decode_leaf",
    "encode_change",
    "encode_changes",
    "encode_leaf",
    "leaf_view",
]

LEAF_VERSION = CURRENT_LEAF_VERSION  # the version of every new change's leaf
LEAF_VERSIONS = (_leaf_v1.VERSION, _leaf_v2.VERSION)  # the versions this library reads


def leaf_view(change: Change) -> Leaf:
    """What the leaf of ``change`` records, by its ``leaf_version``.

    Version 1 drops the actor and the version 2 fields; version 2 drops the
    IMSI, MSISDN and salt and holds their commitment instead (raising
    ``LeafEncodingError`` for an IMSI without a 16-byte salt, or an MSISDN or
    salt without an IMSI). ``decode_leaf(encode_change(c)) == leaf_view(c)``.
    """
    version = change.leaf_version
    if version == _leaf_v2.VERSION:
        return _leaf_v2.view(change)
    if version == _leaf_v1.VERSION:
        return _leaf_v1.view(change)
    raise _unknown_version(f"leaf_version {version}", "encoder")


def encode_change(change: Change) -> bytes:
    """The canonical leaf bytes of a numbered change, in its ``leaf_version``.

    Raises ``LeafEncodingError`` naming the field when a value cannot be
    encoded: a sequence below 1, an integer out of its field's range, an IMEI
    key that is not 14 digits, a string that is not valid Unicode or longer
    than 65,535 UTF-8 bytes, more than 16 slot keys, and (version 2) the
    subscriber errors of ``leaf_view``; an unknown ``leaf_version``.
    """
    version = change.leaf_version
    if version == _leaf_v2.VERSION:
        fast = _leaf_v2.encode_plain(change)
    elif version == _leaf_v1.VERSION:
        fast = _leaf_v1.encode_plain(change)
    else:
        raise _unknown_version(f"leaf_version {version}", "encoder")
    return fast if fast is not None else encode_leaf(leaf_view(change))


def encode_changes(changes: Sequence[Change]) -> list[bytes]:
    """``encode_change`` of each change, in order: the same bytes, with the
    registrations an import writes encoded in bulk."""
    leaves = _leaf_v2.encode_registrations(changes)
    return [
        leaf if leaf is not None else encode_change(change)
        for leaf, change in zip(leaves, changes, strict=True)
    ]


def encode_leaf(leaf: Leaf) -> bytes:
    """The canonical bytes of ``leaf`` (each field checked, as ``encode_change``).

    Refuses a field that the leaf's version does not record (an actor in
    version 1, a clear IMSI in version 2) and a commitment that is not 32
    bytes or empty.
    """
    if leaf.leaf_version == _leaf_v2.VERSION:
        return _leaf_v2.encode(leaf)
    if leaf.leaf_version == _leaf_v1.VERSION:
        return _leaf_v1.encode(leaf)
    raise _unknown_version(f"leaf_version {leaf.leaf_version}", "encoder")


def decode_leaf(data: bytes) -> Leaf:
    """What the leaf ``data`` records, read with the encoding its first byte names.

    Refuses (``LeafEncodingError``, with the offset) anything that
    ``encode_leaf`` would not have produced: an unknown version, unknown enum
    values, presence bytes other than 0 and 1, non-zero bytes under an absent
    value, invalid UTF-8, truncated or trailing bytes.
    """
    if not data:
        raise LeafEncodingError("leaf is empty: no encoding version at offset 0")
    version = data[0]
    if version == _leaf_v2.VERSION:
        return _leaf_v2.decode(data)
    if version == _leaf_v1.VERSION:
        return _leaf_v1.decode(data)
    raise _unknown_version(f"leaf encoding version {version} at offset 0", "verifier")


def _unknown_version(what: str, who: str) -> LeafEncodingError:
    known = ", ".join(str(version) for version in LEAF_VERSIONS)
    return LeafEncodingError(f"{what} is not one this {who} knows ({known})")
