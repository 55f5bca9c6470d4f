"""Checkpoints: the custodian's signed statement of the log's size, root and time.

The text follows c2sp.org/tlog-checkpoint, with the time as the first
extension line::

    <origin>                         e.g. ceir.example/changes
    <tree size, decimal>             no leading zeros
    <root hash, base64>              32 bytes, RFC 6962 MTH
    time <microseconds since 1970-01-01T00:00:00Z, decimal>
    [further extension lines]

and is signed as a signed note (``ceir.audit.note``). Tools that know only
the C2SP format read origin, size and root and ignore the time line; the
custodian's Ed25519 note signature covers the whole text, time included.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import MalformedCheckpoint
from .merkle import HASH_SIZE
from .note import Signer, Verifier, open_note, sign_note

__all__ = ["Checkpoint", "open_checkpoint", "sign_checkpoint"]

TIME_PREFIX = "time "
_DECIMAL = re.compile(r"0|[1-9][0-9]*")
_CONTROL = re.compile(r"[\x00-\x1f]")
_MAX_SIZE = 2**64 - 1


@dataclass(frozen=True)
class Checkpoint:
    """The log's origin, size, root hash and time, as the custodian states them."""

    origin: str
    size: int
    root_hash: bytes
    time_us: int
    extensions: tuple[str, ...] = ()
    """Extension lines after the time line, without their newlines."""

    def __post_init__(self) -> None:
        if not self.origin or _CONTROL.search(self.origin):
            raise ValueError(f"origin {self.origin!r} is empty or holds control characters")
        if not 0 <= self.size <= _MAX_SIZE:
            raise ValueError(f"tree size {self.size} is outside 0 to 2**64 - 1")
        if len(self.root_hash) != HASH_SIZE:
            raise ValueError(f"root hash is {len(self.root_hash)} bytes, expected {HASH_SIZE}")
        if self.time_us < 0:
            raise ValueError(f"checkpoint time {self.time_us} is before 1970")
        for line in self.extensions:
            if not line or _CONTROL.search(line):
                raise ValueError(f"extension line {line!r} is empty or holds control characters")

    def text(self) -> str:
        """The note text: one line per field, each ending in a newline."""
        lines = [
            self.origin,
            str(self.size),
            base64.b64encode(self.root_hash).decode(),
            f"{TIME_PREFIX}{self.time_us}",
            *self.extensions,
        ]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """The checkpoint a note text states; ``MalformedCheckpoint`` says which line is wrong."""
        if not text.endswith("\n"):
            raise MalformedCheckpoint("checkpoint text does not end with a newline")
        lines = text[:-1].split("\n")
        if len(lines) < 4:
            raise MalformedCheckpoint(
                f"checkpoint has {len(lines)} lines, expected origin, size, root hash and time"
            )
        origin, size_line, root_line, time_line, *extensions = lines
        if not _DECIMAL.fullmatch(size_line) or int(size_line) > _MAX_SIZE:
            raise MalformedCheckpoint(
                f"line 2, tree size {size_line!r}, is not a decimal without leading zeros"
            )
        root = _decode_root(root_line)
        time_text = time_line.removeprefix(TIME_PREFIX)
        if time_text == time_line or not _DECIMAL.fullmatch(time_text):
            raise MalformedCheckpoint(
                f"line 4, {time_line!r}, is not 'time <microseconds since 1970, decimal>'"
            )
        try:
            return cls(origin, int(size_line), root, int(time_text), tuple(extensions))
        except ValueError as error:
            raise MalformedCheckpoint(f"checkpoint is not valid: {error}") from None


def _decode_root(line: str) -> bytes:
    try:
        root = base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        root = b""
    if len(root) != HASH_SIZE or base64.b64encode(root).decode() != line:
        raise MalformedCheckpoint(
            f"line 3, root hash {line!r}, is not the base64 of {HASH_SIZE} bytes"
        )
    return root


def sign_checkpoint(checkpoint: Checkpoint, signers: Sequence[Signer]) -> str:
    """The signed note of the checkpoint (the custodian's key first, cosigners after)."""
    return sign_note(checkpoint.text(), signers)


def open_checkpoint(message: str | bytes, verifiers: Iterable[Verifier], origin: str) -> Checkpoint:
    """Verify a signed checkpoint of the log ``origin`` and return what it states.

    Raises ``MalformedNote``/``BadSignature``/``UnknownKey`` from the note,
    and ``MalformedCheckpoint`` when the text is not a checkpoint or is one
    of another log.
    """
    checkpoint = Checkpoint.parse(open_note(message, verifiers).text)
    if checkpoint.origin != origin:
        raise MalformedCheckpoint(
            f"checkpoint is for log {checkpoint.origin!r}, expected {origin!r}"
        )
    return checkpoint
