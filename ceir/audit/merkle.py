"""RFC 6962 / RFC 9162 Merkle tree hashing, proofs, and their verification.

Hashing (RFC 9162 §2.1.1)::

    leaf hash  = SHA-256(0x00 || leaf bytes)
    node hash  = SHA-256(0x01 || left hash || right hash)
    MTH({})    = SHA-256("")
    MTH(D[n])  = node hash(MTH(D[0:k]), MTH(D[k:n]))   k = largest power of 2 < n

Three pieces serve a log of millions of leaves:

- ``Frontier`` (a compact range over ``[0, size)``) appends a leaf hash in
  amortised O(1) and gives the root in O(log n), holding one hash per set bit
  of the size. The server keeps one to compute roots; an operator keeps one
  over the changes it applied and compares its root with each checkpoint.
- ``HashStore`` is what the server must provide for proofs: the hashes of
  complete ("perfect") subtrees at levels 0, ``tile_height``,
  ``2 * tile_height``, ... (level 0 being the leaf hashes). ``Frontier``
  reports every subtree it completes (``on_node``) so the server can store
  those at the kept levels in the same transaction as the leaves.
- ``Prover`` builds roots of past sizes, inclusion proofs (§2.1.3.1) and
  consistency proofs (§2.1.4.1) from a ``HashStore``, reading at most
  ``2 ** (tile_height - 1)`` stored hashes per proof node.

``verify_inclusion`` and ``verify_consistency`` implement §2.1.3.2 and
§2.1.4.2 and raise ``BadProof`` / ``InconsistentTree`` saying what failed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from .errors import BadProof, InconsistentTree, MissingHashes

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "TILE_HEIGHT",
    "Frontier",
    "HashStore",
    "MemoryHashStore",
    "NodeCallback",
    "Prover",
    "leaf_hash",
    "node_hash",
    "root_from_inclusion_proof",
    "tree_hash",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
TILE_HEIGHT = 8  # as in c2sp.org/tlog-tiles: 256 hashes per stored row segment

_sha256 = hashlib.sha256

NodeCallback = Callable[[int, int, bytes], None]
"""Called with (level, index, hash) for each perfect subtree a frontier completes."""


def leaf_hash(leaf: bytes) -> bytes:
    """SHA-256(0x00 || leaf): the hash of one leaf's bytes."""
    return _sha256(b"\x00" + leaf).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right): the hash of an interior node."""
    return _sha256(b"\x01" + left + right).digest()


def tree_hash(leaf_hashes: Iterable[bytes]) -> bytes:
    """MTH of the leaves whose hashes are given, in order."""
    frontier = Frontier()
    frontier.extend(leaf_hashes)
    return frontier.root()


def short(digest: bytes) -> str:
    """The first bytes of a hash in hex, for messages."""
    return digest[:6].hex() + "…" if len(digest) > 6 else digest.hex() or "<empty>"


class Frontier:
    """The roots of the perfect subtrees that make up ``[0, size)``, left to right.

    For size 13 (0b1101) it holds the roots of leaves [0, 8), [8, 12) and
    [12, 13). Save ``size`` and ``hashes`` to persist it; ``Prover.frontier``
    rebuilds it from a ``HashStore``.
    """

    __slots__ = ("_hashes", "_on_node", "_size")

    def __init__(
        self,
        size: int = 0,
        hashes: Sequence[bytes] = (),
        on_node: NodeCallback | None = None,
    ) -> None:
        if size < 0:
            raise ValueError(f"a frontier's size cannot be negative, got {size}")
        if len(hashes) != size.bit_count():
            raise ValueError(
                f"a frontier of size {size} holds {size.bit_count()} hashes, got {len(hashes)}"
            )
        for position, digest in enumerate(hashes):
            _check_hash(digest, f"frontier hash {position}")
        self._size = size
        self._hashes = list(hashes)
        self._on_node = on_node

    @property
    def size(self) -> int:
        """The number of leaves appended."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """The subtree roots, largest (leftmost) first."""
        return tuple(self._hashes)

    def copy(self, on_node: NodeCallback | None = None) -> Frontier:
        """An independent frontier in the same state (e.g. to append inside a transaction)."""
        return Frontier(self._size, self._hashes, on_node)

    def append(self, leaf_hash: bytes) -> None:
        """Append the hash of the next leaf (index ``size``)."""
        if len(leaf_hash) != HASH_SIZE:
            _check_hash(leaf_hash, f"leaf hash {self._size}")
        # Each set low bit of the size is a subtree the new leaf completes.
        size = carry = self._size
        hashes, on_node = self._hashes, self._on_node
        digest = leaf_hash
        level = 0
        while carry & 1:
            digest = _sha256(b"\x01" + hashes.pop() + digest).digest()
            carry >>= 1
            level += 1
            if on_node is not None:
                on_node(level, size >> level, digest)
        hashes.append(digest)
        self._size = size + 1

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Append many leaf hashes, in order."""
        for digest in leaf_hashes:
            self.append(digest)

    def root(self) -> bytes:
        """MTH of the leaves appended so far (``EMPTY_ROOT`` when none)."""
        if not self._hashes:
            return EMPTY_ROOT
        hashes = self._hashes
        digest = hashes[-1]
        for position in range(len(hashes) - 2, -1, -1):
            digest = _sha256(b"\x01" + hashes[position] + digest).digest()
        return digest


class HashStore(Protocol):
    """Read access to stored hashes of perfect subtrees.

    Node ``(level, index)`` is the root of leaves
    ``[index * 2**level, (index + 1) * 2**level)``; level 0 holds leaf hashes.
    A store used by ``Prover(store, tile_height=h)`` keeps every perfect node
    whose level is a multiple of ``h``.
    """

    def node_hashes(self, level: int, start: int, end: int) -> Sequence[bytes]:
        """The hashes of nodes ``(level, start)`` to ``(level, end - 1)``, in order.

        Return what is stored; a short answer means the nodes do not exist yet.
        """
        ...


class MemoryHashStore:
    """A ``HashStore`` in memory that appends leaves, for tests and offline audits.

    It is also the reference for a database store: keep the leaf hashes
    (level 0) and whatever ``Frontier`` reports at levels that are multiples
    of ``tile_height``.
    """

    def __init__(self, tile_height: int = TILE_HEIGHT) -> None:
        if tile_height < 1:
            raise ValueError(f"tile height must be 1 or more, got {tile_height}")
        self.tile_height = tile_height
        self._levels: dict[int, list[bytes]] = {0: []}
        self._frontier = Frontier(on_node=self._keep)

    def _keep(self, level: int, index: int, digest: bytes) -> None:
        if level % self.tile_height == 0:
            row = self._levels.setdefault(level, [])
            assert len(row) == index, "perfect nodes complete left to right"
            row.append(digest)

    @property
    def size(self) -> int:
        """The number of leaves stored."""
        return self._frontier.size

    def append(self, leaf_hash: bytes) -> None:
        """Store the next leaf hash and the perfect nodes it completes."""
        self._frontier.append(leaf_hash)
        self._levels[0].append(leaf_hash)

    def extend(self, leaf_hashes: Iterable[bytes]) -> None:
        """Store many leaf hashes, in order."""
        for digest in leaf_hashes:
            self.append(digest)

    def root(self) -> bytes:
        """The root of all stored leaves."""
        return self._frontier.root()

    def node_hashes(self, level: int, start: int, end: int) -> Sequence[bytes]:
        """Stored hashes of nodes ``(level, start)`` to ``(level, end - 1)``."""
        return self._levels.get(level, [])[start:end]


class Prover:
    """Roots and proofs for any size up to what a ``HashStore`` holds.

    Perfect nodes above level 0 are cached (they never change in an
    append-only log); ``cache_size`` bounds how many.
    """

    def __init__(
        self, store: HashStore, tile_height: int = TILE_HEIGHT, cache_size: int = 65_536
    ) -> None:
        if tile_height < 1:
            raise ValueError(f"tile height must be 1 or more, got {tile_height}")
        self._store = store
        self._tile_height = tile_height
        self._cache: dict[tuple[int, int], bytes] = {}
        self._cache_size = cache_size

    def root(self, size: int) -> bytes:
        """MTH of the first ``size`` leaves."""
        _check_size(size)
        return EMPTY_ROOT if size == 0 else self._range_hash(0, size)

    def frontier(self, size: int, on_node: NodeCallback | None = None) -> Frontier:
        """The frontier of the first ``size`` leaves, e.g. to resume appending after a restart."""
        _check_size(size)
        hashes = []
        start = 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size >> level & 1:
                hashes.append(self._perfect(level, start >> level))
                start += 1 << level
        return Frontier(size, hashes, on_node)

    def inclusion_proof(self, index: int, size: int) -> list[bytes]:
        """The audit path of leaf ``index`` in the tree of ``size`` leaves, bottom up."""
        if not 0 <= index < size:
            raise ValueError(f"leaf index {index} is not in a tree of size {size}")
        return [self._range_hash(lo, hi) for lo, hi in _inclusion_ranges(index, size)]

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """The proof that the tree of ``size1`` leaves is a prefix of the one of ``size2``.

        Empty when ``size1`` is 0 or equals ``size2`` (nothing to prove).
        """
        if not 0 <= size1 <= size2:
            raise ValueError(f"no consistency proof from size {size1} to size {size2}")
        if size1 == 0 or size1 == size2:
            return []
        return [self._range_hash(lo, hi) for lo, hi in _consistency_ranges(size1, size2)]

    def _range_hash(self, lo: int, hi: int) -> bytes:
        """MTH(D[lo:hi]) for a subtree of the RFC's recursion (``lo`` aligned)."""
        width = hi - lo
        if width & (width - 1) == 0 and lo % width == 0:
            level = width.bit_length() - 1
            return self._perfect(level, lo >> level)
        split = 1 << ((width - 1).bit_length() - 1)
        return node_hash(self._range_hash(lo, lo + split), self._range_hash(lo + split, hi))

    def _perfect(self, level: int, index: int) -> bytes:
        cached = self._cache.get((level, index))
        if cached is not None:
            return cached
        base = level - level % self._tile_height
        span = 1 << (level - base)
        row = list(self._store.node_hashes(base, index * span, (index + 1) * span))
        if len(row) != span:
            raise MissingHashes(
                f"node ({level}, {index}) needs stored hashes ({base}, {index * span}) to "
                f"({base}, {(index + 1) * span - 1}); the store returned {len(row)} of {span}"
            )
        for offset, digest in enumerate(row):
            _check_hash(digest, f"stored hash ({base}, {index * span + offset})", MissingHashes)
        while len(row) > 1:
            row = [node_hash(row[i], row[i + 1]) for i in range(0, len(row), 2)]
        if level > 0:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[(level, index)] = row[0]
        return row[0]


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTHs form PATH(index, D[size]), bottom up."""
    ranges = []
    lo, hi = 0, size
    while hi - lo > 1:
        split = lo + (1 << ((hi - lo - 1).bit_length() - 1))
        if index < split:
            ranges.append((split, hi))
            hi = split
        else:
            ranges.append((lo, split))
            lo = split
    ranges.reverse()
    return ranges


def _consistency_ranges(size1: int, size2: int) -> list[tuple[int, int]]:
    """The leaf ranges whose MTHs form PROOF(size1, D[size2]) (0 < size1 < size2)."""
    ranges = []
    lo, hi, whole = 0, size2, True
    while size1 != hi - lo:
        split = lo + (1 << ((hi - lo - 1).bit_length() - 1))
        if size1 <= split - lo:
            ranges.append((split, hi))
            hi = split
        else:
            ranges.append((lo, split))
            size1 -= split - lo
            lo = split
            whole = False
    if not whole:
        ranges.append((lo, hi))
    ranges.reverse()
    return ranges


def root_from_inclusion_proof(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]
) -> bytes:
    """The root that leaf ``index`` with this audit path implies (RFC 9162 §2.1.3.2).

    Raises ``BadProof`` when the proof cannot belong to a tree of ``size``.
    """
    if not 0 <= index < size:
        raise BadProof(f"leaf index {index} is not in a tree of size {size}")
    _check_hash(leaf_hash, f"leaf hash of leaf {index}", BadProof)
    expected = _inclusion_length(index, size)
    if len(proof) != expected:
        raise BadProof(
            f"inclusion proof for leaf {index} in a tree of size {size} has "
            f"{len(proof)} hashes, expected {expected}"
        )
    fn, sn = index, size - 1
    digest = leaf_hash
    for position, sibling in enumerate(proof):
        _check_hash(sibling, f"inclusion proof hash {position}", BadProof)
        if fn & 1 or fn == sn:
            digest = node_hash(sibling, digest)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            digest = node_hash(digest, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:  # unreachable with the length checked, kept as the RFC's own check
        raise BadProof(f"inclusion proof for leaf {index} is too short for size {size}")
    return digest


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that the leaf with this hash is leaf ``index`` of the tree with ``root``.

    Raises ``BadProof`` naming the leaf and both roots when it is not.
    """
    computed = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if computed != root:
        raise BadProof(
            f"leaf {index} (hash {short(leaf_hash)}) with its inclusion proof gives root "
            f"{short(computed)} for size {size}, but the expected root is {short(root)}"
        )


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check that the tree (size1, root1) is a prefix of the tree (size2, root2).

    Implements RFC 9162 §2.1.4.2, with the conventions of the RFC 6962 tools
    for the trivial cases: from size 0 anything follows (empty proof), and
    equal sizes need equal roots (empty proof). Raises ``BadProof`` for a
    proof of the wrong shape and ``InconsistentTree`` when the hashes do not
    lead to both roots: either the log rewrote its first ``size1`` leaves or
    the proof was altered.
    """
    _check_size(size1)
    if size1 > size2:
        raise InconsistentTree(
            f"tree size went from {size1} to {size2}: a log only grows", size2, size1
        )
    if size1 == 0 or size1 == size2:
        if proof:
            raise BadProof(
                f"consistency proof from size {size1} to {size2} must be empty, "
                f"has {len(proof)} hashes"
            )
        if size1 == size2 and root1 != root2:
            raise InconsistentTree(
                f"two roots for tree size {size1}: {short(root1)} and {short(root2)} "
                "(a forked log)",
                0,
                size1,
            )
        return
    expected = _consistency_length(size1, size2)
    if len(proof) != expected:
        raise BadProof(
            f"consistency proof from size {size1} to {size2} has {len(proof)} hashes, "
            f"expected {expected}"
        )
    for position, digest in enumerate(proof):
        _check_hash(digest, f"consistency proof hash {position}", BadProof)
    path = list(proof)
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    first = second = path[0]
    for sibling in path[1:]:
        if sn == 0:
            raise BadProof(f"consistency proof from size {size1} to {size2} is too long")
        if fn & 1 or fn == sn:
            first = node_hash(sibling, first)
            second = node_hash(sibling, second)
            while fn and not fn & 1:
                fn >>= 1
                sn >>= 1
        else:
            second = node_hash(second, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise BadProof(f"consistency proof from size {size1} to {size2} is too short")
    if first != root1:
        raise InconsistentTree(
            f"consistency proof from size {size1} to {size2} gives old root {short(first)}, "
            f"but the old checkpoint's root is {short(root1)}",
            0,
            size1,
        )
    if second != root2:
        raise InconsistentTree(
            f"consistency proof from size {size1} to {size2} gives new root {short(second)}, "
            f"but the new checkpoint's root is {short(root2)}",
            0,
            size1,
        )


def _inclusion_length(index: int, size: int) -> int:
    """How many hashes PATH(index, D[size]) has (0 <= index < size)."""
    inner = (index ^ (size - 1)).bit_length()
    return inner + (index >> inner).bit_count()


def _consistency_length(size1: int, size2: int) -> int:
    """How many hashes PROOF(size1, D[size2]) has (0 < size1 < size2)."""
    inner = ((size1 - 1) ^ (size2 - 1)).bit_length()
    border = ((size1 - 1) >> inner).bit_count()
    trailing = (size1 & -size1).bit_length() - 1  # levels shared by the old tree's last subtree
    start = 0 if size1 == 1 << trailing else 1
    return start + inner - trailing + border


def _check_size(size: int) -> None:
    if size < 0:
        raise ValueError(f"a tree size cannot be negative, got {size}")


def _check_hash(digest: bytes, what: str, error: type[Exception] = ValueError) -> None:
    if not isinstance(digest, bytes) or len(digest) != HASH_SIZE:
        size = len(digest) if isinstance(digest, bytes) else type(digest).__name__
        raise error(f"{what} must be {HASH_SIZE} bytes, got {size}")
