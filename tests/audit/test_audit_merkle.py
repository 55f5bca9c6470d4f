"""RFC 6962 hashing, proofs and their verification.

Reference vectors: transparency-dev/merkle, ``proof/verify_test.go`` (the
certificate-transparency-go / Trillian vectors for the eight leaves below),
at commit 02194e9afb6c1d95b5381350007963aa70fff472. Their inclusion vectors
number leaves from 1; here indexes start at 0.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ceir.audit.errors import BadProof, InconsistentTree, MissingHashes, VerificationError
from ceir.audit.merkle import (
    EMPTY_ROOT,
    Frontier,
    MemoryHashStore,
    Prover,
    leaf_hash,
    node_hash,
    root_from_inclusion_proof,
    tree_hash,
    verify_consistency,
    verify_inclusion,
)

LEAVES = [
    bytes.fromhex(text)
    for text in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
LEAF_HASHES = [leaf_hash(leaf) for leaf in LEAVES]

# ROOTS[n - 1] is the root of the first n leaves.
ROOTS = [
    bytes.fromhex(text)
    for text in (
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    )
]


def _hashes(*texts: str) -> list[bytes]:
    return [bytes.fromhex(text) for text in texts]


# (leaf index from 0, tree size, audit path)
INCLUSION_VECTORS = [
    (
        0,
        8,
        _hashes(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        5,
        8,
        _hashes(
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (2, 3, _hashes("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (
        1,
        5,
        _hashes(
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
]

# (size1, size2, proof)
CONSISTENCY_VECTORS = [
    (1, 1, []),
    (
        1,
        8,
        _hashes(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        6,
        8,
        _hashes(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (
        2,
        5,
        _hashes(
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    (
        6,
        7,
        _hashes(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
]

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def _reference_mth(hashes: Sequence[bytes]) -> bytes:
    """MTH straight from the RFC's recursive definition."""
    if not hashes:
        return EMPTY_ROOT
    if len(hashes) == 1:
        return hashes[0]
    split = 1 << ((len(hashes) - 1).bit_length() - 1)
    return node_hash(_reference_mth(hashes[:split]), _reference_mth(hashes[split:]))


def _reference_path(index: int, hashes: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) from RFC 9162 §2.1.3.1."""
    if len(hashes) <= 1:
        return []
    split = 1 << ((len(hashes) - 1).bit_length() - 1)
    if index < split:
        return [*_reference_path(index, hashes[:split]), _reference_mth(hashes[split:])]
    return [*_reference_path(index - split, hashes[split:]), _reference_mth(hashes[:split])]


def _reference_subproof(size1: int, hashes: Sequence[bytes], whole: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) from RFC 9162 §2.1.4.1."""
    if size1 == len(hashes):
        return [] if whole else [_reference_mth(hashes)]
    split = 1 << ((len(hashes) - 1).bit_length() - 1)
    if size1 <= split:
        return [*_reference_subproof(size1, hashes[:split], whole), _reference_mth(hashes[split:])]
    rest = _reference_subproof(size1 - split, hashes[split:], False)
    return [*rest, _reference_mth(hashes[:split])]


def _store(hashes: Sequence[bytes], tile_height: int) -> tuple[MemoryHashStore, Prover]:
    store = MemoryHashStore(tile_height)
    store.extend(hashes)
    return store, Prover(store, tile_height)


def _random_hashes(count: int, seed: int = 0) -> list[bytes]:
    return [leaf_hash(f"{seed}:{i}".encode()) for i in range(count)]


def _flip(digest: bytes, bit: int) -> bytes:
    return bytes([digest[0] ^ bit]) + digest[1:]


# --- hashing and roots -------------------------------------------------------


def test_empty_tree_root_is_the_hash_of_nothing() -> None:
    assert hashlib.sha256(b"").digest() == EMPTY_ROOT
    assert tree_hash([]) == EMPTY_ROOT
    assert Frontier().root() == EMPTY_ROOT


def test_leaf_and_node_hashes_are_domain_separated() -> None:
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert (
        node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()
    )


@pytest.mark.parametrize("size", range(1, 9))
def test_roots_of_the_reference_tree_match_the_vectors(size: int) -> None:
    assert tree_hash(LEAF_HASHES[:size]) == ROOTS[size - 1]


@pytest.mark.parametrize("tile_height", [1, 2, 3, 8])
def test_prover_gives_the_reference_roots_of_every_past_size(tile_height: int) -> None:
    _, prover = _store(LEAF_HASHES, tile_height)
    assert prover.root(0) == EMPTY_ROOT
    assert [prover.root(size) for size in range(1, 9)] == ROOTS


# --- inclusion proofs --------------------------------------------------------


@pytest.mark.parametrize("tile_height", [1, 2, 8])
@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_inclusion_proofs_match_the_vectors(
    tile_height: int, index: int, size: int, proof: list[bytes]
) -> None:
    _, prover = _store(LEAF_HASHES, tile_height)
    assert prover.inclusion_proof(index, size) == proof


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_reference_inclusion_proofs_verify(index: int, size: int, proof: list[bytes]) -> None:
    root = ROOTS[size - 1]
    assert root_from_inclusion_proof(LEAF_HASHES[index], index, size, proof) == root
    verify_inclusion(LEAF_HASHES[index], index, size, proof, root)


def _corrupt_inclusion(
    index: int, size: int, proof: list[bytes], root: bytes, leaf: bytes
) -> list[tuple[str, int, int, list[bytes], bytes, bytes]]:
    """The probes of transparency-dev/merkle's corruptInclusionProof."""
    probes = [
        ("index - 1", index - 1, size, proof, root, leaf),
        ("index + 1", index + 1, size, proof, root, leaf),
        ("index ^ 2", index ^ 2, size, proof, root, leaf),
        ("size * 2", index, size * 2, proof, root, leaf),
        ("size // 2", index, size // 2, proof, root, leaf),
        ("wrong leaf", index, size, proof, root, b"WrongLeaf"),
        ("empty root", index, size, proof, EMPTY_ROOT, leaf),
        ("random root", index, size, proof, SOME_HASH, leaf),
        ("trailing garbage", index, size, [*proof, b""], root, leaf),
        ("trailing root", index, size, [*proof, root], root, leaf),
        ("preceding garbage", index, size, [b"", *proof], root, leaf),
        ("preceding root", index, size, [root, *proof], root, leaf),
    ]
    for position in range(len(proof)):
        wrong = list(proof)
        wrong[position] = _flip(wrong[position], 8)
        probes.append((f"proof[{position}] bit 3", index, size, wrong, root, leaf))
    if proof:
        probes.append(("removed component", index, size, proof[:-1], root, leaf))
    if len(proof) > 1:
        probes.append(("inserted component", index, size, [SOME_HASH, *proof], root, leaf))
    return probes


@pytest.mark.parametrize(("index", "size", "proof"), INCLUSION_VECTORS)
def test_corrupted_inclusion_proofs_are_refused(index: int, size: int, proof: list[bytes]) -> None:
    root = ROOTS[size - 1]
    for desc, p_index, p_size, p_proof, p_root, p_leaf in _corrupt_inclusion(
        index, size, proof, root, LEAF_HASHES[index]
    ):
        with pytest.raises(BadProof):
            verify_inclusion(p_leaf, p_index, p_size, p_proof, p_root)
            pytest.fail(f"verified against: {desc}")


@pytest.mark.parametrize(("index", "size"), [(0, 0), (1, 1), (2, 1), (-1, 4)])
def test_inclusion_in_an_impossible_position_is_refused(index: int, size: int) -> None:
    with pytest.raises(BadProof, match="not in a tree"):
        verify_inclusion(SOME_HASH, index, size, [], EMPTY_ROOT)


def test_single_leaf_tree_proves_inclusion_with_an_empty_path() -> None:
    digest = leaf_hash(b"data")
    verify_inclusion(digest, 0, 1, [], digest)
    with pytest.raises(BadProof):
        verify_inclusion(digest, 0, 1, [], EMPTY_ROOT)


def test_inclusion_failure_names_the_leaf_and_both_roots() -> None:
    index, size, proof = INCLUSION_VECTORS[0]
    with pytest.raises(BadProof) as caught:
        verify_inclusion(LEAF_HASHES[index], index, size, proof, SOME_HASH)
    message = str(caught.value)
    assert "leaf 0" in message
    assert ROOTS[7][:6].hex() in message
    assert SOME_HASH[:6].hex() in message


# --- consistency proofs ------------------------------------------------------


@pytest.mark.parametrize("tile_height", [1, 2, 8])
@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY_VECTORS)
def test_consistency_proofs_match_the_vectors(
    tile_height: int, size1: int, size2: int, proof: list[bytes]
) -> None:
    _, prover = _store(LEAF_HASHES, tile_height)
    assert prover.consistency_proof(size1, size2) == proof


@pytest.mark.parametrize(("size1", "size2", "proof"), CONSISTENCY_VECTORS)
def test_reference_consistency_proofs_verify(size1: int, size2: int, proof: list[bytes]) -> None:
    verify_consistency(size1, size2, proof, ROOTS[size1 - 1], ROOTS[size2 - 1])


def _corrupt_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes]
) -> list[tuple[str, int, int, bytes, bytes, list[bytes]]]:
    """The probes of transparency-dev/merkle's corruptConsistencyProof."""
    probes = [
        ("size1 - 1", size1 - 1, size2, root1, root2, proof),
        ("size1 + 1", size1 + 1, size2, root1, root2, proof),
        ("size1 ^ 2", size1 ^ 2, size2, root1, root2, proof),
        ("size2 * 2", size1, size2 * 2, root1, root2, proof),
        ("size2 // 2", size1, size2 // 2, root1, root2, proof),
        ("wrong root1", size1, size2, b"WrongRoot", root2, proof),
        ("wrong root2", size1, size2, root1, b"WrongRoot", proof),
        ("swapped roots", size1, size2, root2, root1, proof),
        ("empty proof", size1, size2, root1, root2, []),
        ("trailing garbage", size1, size2, root1, root2, [*proof, b""]),
        ("trailing root1", size1, size2, root1, root2, [*proof, root1]),
        ("trailing root2", size1, size2, root1, root2, [*proof, root2]),
        ("preceding garbage", size1, size2, root1, root2, [b"", *proof]),
        ("preceding root1", size1, size2, root1, root2, [root1, *proof]),
        ("preceding root2", size1, size2, root1, root2, [root2, *proof]),
        ("preceding proof[0]", size1, size2, root1, root2, [proof[0], *proof]),
        ("truncated proof", size1, size2, root1, root2, proof[:-1]),
    ]
    for position in range(len(proof)):
        wrong = list(proof)
        wrong[position] = _flip(wrong[position], 16)
        probes.append((f"proof[{position}] bit 4", size1, size2, root1, root2, wrong))
    return probes


@pytest.mark.parametrize(("size1", "size2", "proof"), [v for v in CONSISTENCY_VECTORS if v[2]])
def test_corrupted_consistency_proofs_are_refused(
    size1: int, size2: int, proof: list[bytes]
) -> None:
    for desc, p_size1, p_size2, p_root1, p_root2, p_proof in _corrupt_consistency(
        size1, size2, ROOTS[size1 - 1], ROOTS[size2 - 1], proof
    ):
        with pytest.raises(VerificationError):
            verify_consistency(p_size1, p_size2, p_proof, p_root1, p_root2)
            pytest.fail(f"verified against: {desc}")


ROOT1, ROOT2 = b"don't care 1", b"don't care 2"


@pytest.mark.parametrize(
    ("size1", "size2", "root1", "root2", "proof", "valid"),
    [
        (0, 0, ROOT1, ROOT2, [], False),
        (1, 1, ROOT1, ROOT2, [], False),
        # sizes that are always consistent
        (0, 0, ROOT1, ROOT1, [], True),
        (0, 1, ROOT1, ROOT2, [], True),
        (1, 1, ROOT2, ROOT2, [], True),
        # time travel to the past
        (1, 0, ROOT1, ROOT2, [], False),
        (2, 1, ROOT1, ROOT2, [], False),
        # an empty proof for different sizes
        (1, 2, ROOT1, ROOT2, [], False),
        # roots differ
        (0, 0, EMPTY_ROOT, ROOT2, [], False),
        (1, 1, EMPTY_ROOT, ROOT2, [], False),
        # roots match but the proof is not empty
        (0, 0, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        (0, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
        (1, 1, EMPTY_ROOT, EMPTY_ROOT, [EMPTY_ROOT], False),
    ],
)
def test_trivial_consistency_cases(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes], valid: bool
) -> None:
    if valid:
        verify_consistency(size1, size2, proof, root1, root2)
    else:
        with pytest.raises(VerificationError):
            verify_consistency(size1, size2, proof, root1, root2)


def test_two_roots_for_one_size_is_reported_as_a_fork() -> None:
    with pytest.raises(InconsistentTree, match="forked"):
        verify_consistency(8, 8, [], ROOTS[7], SOME_HASH)


def test_a_shrinking_log_is_reported_with_the_missing_leaves() -> None:
    with pytest.raises(InconsistentTree, match="only grows") as caught:
        verify_consistency(8, 5, [], ROOTS[7], ROOTS[4])
    assert (caught.value.first, caught.value.end) == (5, 8)


def test_a_rewritten_prefix_breaks_consistency() -> None:
    rewritten = list(LEAF_HASHES)
    rewritten[3] = leaf_hash(b"rewritten")
    _, honest = _store(LEAF_HASHES, 2)
    _, forged = _store(rewritten, 2)
    proof = forged.consistency_proof(6, 8)
    with pytest.raises(InconsistentTree, match="old root"):
        verify_consistency(6, 8, proof, honest.root(6), forged.root(8))


# --- properties against the RFC's recursive definitions -----------------------

sizes_and_tiles = st.tuples(st.integers(1, 600), st.integers(1, 9))


@settings(max_examples=60, deadline=None)
@given(sizes_and_tiles, st.data())
def test_every_inclusion_proof_matches_the_rfc_and_verifies(
    size_tile: tuple[int, int], data: st.DataObject
) -> None:
    size, tile_height = size_tile
    hashes = _random_hashes(size + data.draw(st.integers(0, 40)), seed=size)
    _, prover = _store(hashes, tile_height)
    root = _reference_mth(hashes[:size])
    assert prover.root(size) == root
    for index in data.draw(st.lists(st.integers(0, size - 1), min_size=1, max_size=8)):
        proof = prover.inclusion_proof(index, size)
        assert proof == _reference_path(index, hashes[:size])
        verify_inclusion(hashes[index], index, size, proof, root)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 600), st.integers(1, 600), st.integers(1, 9))
def test_consistency_proofs_between_random_sizes_match_the_rfc_and_verify(
    a: int, b: int, tile_height: int
) -> None:
    size1, size2 = min(a, b), max(a, b)
    hashes = _random_hashes(size2, seed=size2)
    _, prover = _store(hashes, tile_height)
    proof = prover.consistency_proof(size1, size2)
    expected = [] if size1 == size2 else _reference_subproof(size1, hashes, True)
    assert proof == expected
    verify_consistency(size1, size2, proof, prover.root(size1), prover.root(size2))


@settings(max_examples=80, deadline=None)
@given(st.integers(2, 300), st.data())
def test_tampering_with_any_byte_of_an_inclusion_proof_fails(
    size: int, data: st.DataObject
) -> None:
    hashes = _random_hashes(size)
    _, prover = _store(hashes, 3)
    index = data.draw(st.integers(0, size - 1))
    proof = prover.inclusion_proof(index, size)
    root = prover.root(size)
    target = data.draw(st.sampled_from(["proof", "leaf", "root"]))
    byte = data.draw(st.integers(0, 31))
    bit = 1 << data.draw(st.integers(0, 7))

    def tamper(digest: bytes) -> bytes:
        return digest[:byte] + bytes([digest[byte] ^ bit]) + digest[byte + 1 :]

    leaf = hashes[index]
    if target == "proof":
        position = data.draw(st.integers(0, len(proof) - 1))
        proof[position] = tamper(proof[position])
    elif target == "leaf":
        leaf = tamper(leaf)
    else:
        root = tamper(root)
    with pytest.raises(BadProof):
        verify_inclusion(leaf, index, size, proof, root)


@settings(max_examples=80, deadline=None)
@given(st.integers(2, 300), st.data())
def test_tampering_with_any_byte_of_a_consistency_proof_fails(
    size2: int, data: st.DataObject
) -> None:
    size1 = data.draw(st.integers(1, size2 - 1))
    hashes = _random_hashes(size2)
    _, prover = _store(hashes, 3)
    proof = prover.consistency_proof(size1, size2)
    roots = [prover.root(size1), prover.root(size2)]
    target = data.draw(st.sampled_from(["proof", "root1", "root2"]))
    byte = data.draw(st.integers(0, 31))
    bit = 1 << data.draw(st.integers(0, 7))

    def tamper(digest: bytes) -> bytes:
        return digest[:byte] + bytes([digest[byte] ^ bit]) + digest[byte + 1 :]

    if target == "proof":
        position = data.draw(st.integers(0, len(proof) - 1))
        proof[position] = tamper(proof[position])
    else:
        which = 0 if target == "root1" else 1
        roots[which] = tamper(roots[which])
    with pytest.raises(VerificationError):
        verify_consistency(size1, size2, proof, roots[0], roots[1])


# --- frontier and store --------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 700))
def test_frontier_root_is_the_rfc_root_at_every_size(size: int) -> None:
    hashes = _random_hashes(size)
    frontier = Frontier()
    for count, digest in enumerate(hashes, start=1):
        frontier.append(digest)
        if count % 97 == 0 or count == size:
            assert frontier.root() == _reference_mth(hashes[:count])
    assert frontier.size == size
    assert len(frontier.hashes) == size.bit_count()


def test_frontier_reports_every_perfect_node_once_with_its_hash() -> None:
    hashes = _random_hashes(45)
    reported: list[tuple[int, int, bytes]] = []
    frontier = Frontier(
        on_node=lambda level, index, digest: reported.append((level, index, digest))
    )
    frontier.extend(hashes)
    expected = [
        (level, index, _reference_mth(hashes[index << level : (index + 1) << level]))
        for level in range(1, 6)
        for index in range(45 >> level)
    ]
    assert sorted(reported) == sorted(expected)


@pytest.mark.parametrize("size", [0, 1, 7, 8, 255, 256, 257, 1000])
def test_prover_rebuilds_the_frontier_from_the_store(size: int) -> None:
    hashes = _random_hashes(size + 5)
    store, prover = _store(hashes, 8)
    rebuilt = prover.frontier(size)
    direct = Frontier()
    direct.extend(hashes[:size])
    assert rebuilt.hashes == direct.hashes
    rebuilt.extend(hashes[size:])
    assert rebuilt.root() == store.root()


def test_a_frontier_copy_appends_independently() -> None:
    frontier = Frontier()
    frontier.extend(_random_hashes(5))
    before = frontier.root()
    scratch = frontier.copy()
    scratch.append(SOME_HASH)
    assert frontier.root() == before
    assert frontier.size == 5
    assert scratch.size == 6


@pytest.mark.parametrize(
    ("size", "hashes"), [(-1, []), (3, [SOME_HASH]), (1, [b"short"]), (2, [SOME_HASH, SOME_HASH])]
)
def test_a_frontier_refuses_an_impossible_state(size: int, hashes: list[bytes]) -> None:
    with pytest.raises(ValueError, match="frontier"):
        Frontier(size, hashes)


def test_a_frontier_refuses_a_leaf_hash_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="leaf hash 0 must be 32 bytes"):
        Frontier().append(b"not a hash")


def test_proofs_beyond_the_stored_leaves_name_the_missing_hashes() -> None:
    _, prover = _store(_random_hashes(10), 2)
    with pytest.raises(MissingHashes, match=r"store returned \d+ of"):
        prover.root(11)


def test_prover_refuses_impossible_requests() -> None:
    _, prover = _store(_random_hashes(10), 2)
    with pytest.raises(ValueError, match="not in a tree"):
        prover.inclusion_proof(10, 10)
    with pytest.raises(ValueError, match="no consistency proof"):
        prover.consistency_proof(5, 4)
    assert prover.consistency_proof(0, 10) == []
    assert prover.consistency_proof(10, 10) == []


class _CountingStore:
    def __init__(self, inner: MemoryHashStore) -> None:
        self.inner = inner
        self.reads = 0

    def node_hashes(self, level: int, start: int, end: int) -> Sequence[bytes]:
        found = self.inner.node_hashes(level, start, end)
        self.reads += len(found)
        return found


def test_proofs_in_a_large_tree_read_few_stored_hashes() -> None:
    size = 70_000
    store = MemoryHashStore()
    store.extend(_random_hashes(size))
    counting = _CountingStore(store)
    prover = Prover(counting, cache_size=0)
    root = prover.root(size)
    assert root == store.root()
    before = counting.reads
    index = 31_337
    proof = prover.inclusion_proof(index, size)
    verify_inclusion(store.node_hashes(0, index, index + 1)[0], index, size, proof, root)
    assert counting.reads - before <= len(proof) * 128
    consistency = prover.consistency_proof(12_345, size)
    verify_consistency(12_345, size, consistency, prover.root(12_345), root)
