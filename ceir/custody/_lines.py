"""The signature lines of a signed note, as written (before any key is trusted).

``ceir.audit.note.open_note`` answers which trusted keys signed; custody
also needs the lines themselves, in order and with repeats, to refuse a key
that signed twice and to read cosignatures, which are not plain note
signatures. The syntax is checked by ``open_note`` itself, so both agree on
what a well-formed note is.
"""

from __future__ import annotations

import base64
import contextlib

from ceir.audit.errors import UnknownKey
from ceir.audit.note import NoteSignature, open_note

_PREFIX = "— "


def split_note(message: str | bytes) -> tuple[str, tuple[NoteSignature, ...]]:
    """The note's text and every signature line on it, in order, repeats included.

    Raises ``MalformedNote`` (``ceir.audit.errors``) when the message is not a signed note.
    """
    with contextlib.suppress(UnknownKey):  # with no trusted key, every well-formed note
        open_note(message, ())
    text = message.decode("utf-8") if isinstance(message, bytes) else message
    split = text.rfind("\n\n")
    signatures = tuple(_signature(line) for line in text[split + 2 : -1].split("\n"))
    return text[: split + 1], signatures


def _signature(line: str) -> NoteSignature:
    # open_note has checked every line: prefix, key name, base64 of 5 bytes or more.
    name, _, encoded = line[len(_PREFIX) :].partition(" ")
    raw = base64.b64decode(encoded, validate=True)
    return NoteSignature(name, int.from_bytes(raw[:4], "big"), raw[4:])
