"""The transparency log's read operations: checkpoints and proofs.

Who may read the log is ``Action.READ_LOG`` (those who receive the lists).
Sizes beyond the committed log, and changes beyond the tree asked about,
are the caller's error (INVALID_ARGUMENT naming the field).
"""

from __future__ import annotations

from dataclasses import dataclass

from ceir.domain.errors import FailedPrecondition, InvalidArgument
from ceir.domain.model import Caller
from ceir.domain.permissions import Action, require

from .register import Register

__all__ = ["ConsistencyProof", "InclusionProof", "TransparencyService"]


@dataclass(frozen=True)
class InclusionProof:
    leaf_index: int
    tree_size: int
    hashes: list[bytes]
    checkpoint: str


@dataclass(frozen=True)
class ConsistencyProof:
    first_size: int
    second_size: int
    hashes: list[bytes]
    checkpoint: str


class TransparencyService:
    def __init__(self, register: Register) -> None:
        self.register = register

    def checkpoint(self, caller: Caller) -> tuple[int, str]:
        """The latest tree size and its signed checkpoint."""
        require(caller, Action.READ_LOG)
        if self.register.log.signer is None:
            raise FailedPrecondition(
                "this server has no signing key, so it publishes no checkpoints "
                "(start it with ceir serve --signing-key FILE)",
                reason="LOG_NOT_SIGNED",
            )
        size = self._size()
        return size, self._checkpoint_at(size)

    def inclusion_proof(self, caller: Caller, sequence: int, tree_size: int) -> InclusionProof:
        """The audit path of change ``sequence`` in the tree of ``tree_size`` (0: latest)."""
        require(caller, Action.READ_LOG)
        size = self._tree_size("tree_size", tree_size)
        if not 1 <= sequence <= size:
            raise InvalidArgument.field(
                "sequence", f"a change of the tree of size {size}: 1 to {size}, got {sequence}"
            )
        hashes = self.register.log.inclusion_proof(sequence - 1, size)
        return InclusionProof(sequence - 1, size, hashes, self._checkpoint_at(size))

    def consistency_proof(self, caller: Caller, first: int, second: int) -> ConsistencyProof:
        """The proof that tree ``first`` is a prefix of tree ``second`` (0: latest)."""
        require(caller, Action.READ_LOG)
        size = self._tree_size("second_size", second)
        if first > size:
            raise InvalidArgument.field("first_size", f"at most second_size ({size}), got {first}")
        hashes = self.register.log.consistency_proof(first, size)
        return ConsistencyProof(first, size, hashes, self._checkpoint_at(size))

    def _size(self) -> int:
        return self.register.state.sequence

    def _tree_size(self, field: str, requested: int) -> int:
        size = self._size()
        if requested == 0:
            return size
        if requested > size:
            raise InvalidArgument.field(
                field, f"at most the log's size, {size}, or 0 for it; got {requested}"
            )
        return requested

    def _checkpoint_at(self, size: int) -> str:
        return self.register.log.checkpoint_at(size, self.register.clock.now_us())
