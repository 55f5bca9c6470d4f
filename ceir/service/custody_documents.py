"""The ceremony's documents: signature lines checked one by one and merged.

Signatures are made off the server (``ceir custody sign``) and arrive a few
at a time. Each submitted line must be by a key the policies list for the
document and verify over exactly the pending text; lines merge, a key that
signed already counts once. Witness cosignatures of checkpoints merge the
same way (lines by other keys, the log's own among them, are left out).
A pending document with no signature yet is its bare text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from ceir.audit.errors import MalformedNote
from ceir.audit.note import NoteSignature, Verifier
from ceir.custody import CosignatureVerifier, CustodyRefusal, split_note, verify_cosignatures
from ceir.domain.errors import InvalidArgument

__all__ = [
    "document_text",
    "merge_cosignatures",
    "merge_signatures",
    "refused",
    "sha256_hex",
]


def sha256_hex(text: str) -> str:
    """Lowercase hex SHA-256 of ``text`` (UTF-8): how leaves and reports name documents."""
    return hashlib.sha256(text.encode()).hexdigest()


def document_text(document: str) -> tuple[str, tuple[NoteSignature, ...]]:
    """The text of a pending document and its signature lines (none for a bare text)."""
    if "\n\n" not in document:
        return document, ()
    return split_note(document)


def refused(error: CustodyRefusal, field: str) -> InvalidArgument:
    """A ``ceir.custody`` refusal as INVALID_ARGUMENT with its reason, naming ``field``."""
    return InvalidArgument.field(field, str(error), reason=error.reason)


def _submitted(note: str, text: str, field: str) -> tuple[NoteSignature, ...]:
    try:
        submitted_text, lines = split_note(note)
    except MalformedNote as error:
        raise InvalidArgument.field(
            field, f"not a signed note: {error}", reason="NOTE_FORMAT"
        ) from None
    if submitted_text != text:
        raise InvalidArgument.field(
            field,
            "the note's text is not the pending document's (fetch it with GetCustody and sign it "
            "as it is)",
            reason="DOCUMENT_MISMATCH",
        )
    return lines


def merge_signatures(
    document: str, note: str, keys: Iterable[Verifier], field: str = "signed_note"
) -> str:
    """``document`` with the signature lines of ``note`` it lacks, each checked.

    Refused, with nothing merged: another text (DOCUMENT_MISMATCH), a line
    by a key not listed (UNKNOWN_SIGNER), a line that does not verify
    (BAD_SIGNATURE).
    """
    text, present_lines = document_text(document)
    lines = _submitted(note, text, field)
    listed = {(key.name, key.key_id): key for key in keys}
    present = {(line.name, line.key_id) for line in present_lines}
    added: list[NoteSignature] = []
    message = text.encode()
    for line in lines:
        key = listed.get((line.name, line.key_id))
        if key is None:
            raise InvalidArgument.field(
                field,
                f"{line.label} is not a key the policies list for this document",
                reason="UNKNOWN_SIGNER",
            )
        if not key.verify(message, line.signature):
            raise InvalidArgument.field(
                field, f"the signature by {key.label} does not verify", reason="BAD_SIGNATURE"
            )
        if (line.name, line.key_id) not in present:
            present.add((line.name, line.key_id))
            added.append(line)
    return _with_lines(text, (*present_lines, *added))


def merge_cosignatures(
    checkpoint: str, note: str, witnesses: Sequence[CosignatureVerifier], now_s: int
) -> tuple[str, int]:
    """``checkpoint`` with the witnesses' cosignatures of ``note`` it lacks, and how
    many witnesses have cosigned it now.

    Every cosignature by a listed witness must verify (BAD_SIGNATURE,
    COSIGNATURE_FORMAT, COSIGNATURE_FROM_FUTURE); other lines are ignored.
    """
    text, present_lines = split_note(checkpoint)
    lines = _submitted(note, text, "checkpoint")
    try:
        verify_cosignatures(note, witnesses, now_s)
    except CustodyRefusal as error:
        raise refused(error, "checkpoint") from None
    listed = {(w.name, w.key_id) for w in witnesses}
    present = {(line.name, line.key_id) for line in present_lines}
    added = []
    for line in lines:
        key = (line.name, line.key_id)
        if key in listed and key not in present:
            present.add(key)
            added.append(line)
    merged = _with_lines(text, (*present_lines, *added))
    return merged, len(verify_cosignatures(merged, witnesses))


def _with_lines(text: str, lines: Sequence[NoteSignature]) -> str:
    if not lines:
        return text
    return text + "\n" + "".join(line.line() for line in lines)
