"""The bytes of a list checkpoint file: a signed statement, then the lists as columns.

A list checkpoint holds every list at one tree size S of the change log, so
that a start-up can load them with a few large reads instead of replaying S
changes (``ceir.service.list_checkpoint`` says when it is written and how it
is checked). The file is::

    ceir/list-checkpoint/v1 LF
    <length of the statement in bytes, decimal> LF
    <the statement: a signed note>
    <the columns>

The statement's text (signed with the log's key, as checkpoints are) is::

    ceir/list-checkpoint/v1
    <origin>
    <S, decimal>
    <root of the first S leaves, base64>
    <SHA-256 of the columns' bytes, base64>
    <time written, Unix microseconds>
    <frontier hash, base64>    one line per bit set in S, largest subtree first

The columns are an 8-byte big-endian length, a JSON header (sequence, policy,
each array's name, dtype and length, the notification and exception pairs),
then each array's raw little-endian bytes in the header's order: whitelist
keys, the positions of the whitelisted keys that expire and their expiries,
blacklist keys, causes and block dates. Nothing in
the columns is trusted before their digest matches the signed one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from ceir.domain.lists import NO_DATE, ListColumns
from ceir.domain.model import Phase, Policy

__all__ = [
    "HEADER",
    "CheckpointStatement",
    "FileRefused",
    "StoredColumns",
    "read_file",
    "write_file",
]

HEADER = "ceir/list-checkpoint/v1"
_MAX_STATEMENT = 16_384  # 64 frontier lines and a signature fit many times over
# Most registrations never expire, so the whitelist's expiries are stored
# sparsely: the positions of the keys that have one, and those expiries.
_ARRAYS = (
    ("whitelist_keys", "<u8"),
    ("whitelist_expiring", "<u8"),
    ("whitelist_expiring_until_us", "<i8"),
    ("blacklist_keys", "<u8"),
    ("blacklist_causes", "|u1"),
    ("blacklist_block_date_us", "<i8"),
)
_CHUNK = 1 << 24  # bytes hashed and written at a time


class FileRefused(Exception):
    """The file is not a list checkpoint this register can use; says why."""


@dataclass(frozen=True)
class CheckpointStatement:
    """What the signed statement binds: the lists at size ``size`` of the log
    ``origin`` with root ``root``, whose columns hash to ``digest``."""

    origin: str
    size: int
    root: bytes
    digest: bytes
    written_us: int
    frontier: tuple[bytes, ...]

    def text(self) -> str:
        lines = [
            HEADER,
            self.origin,
            str(self.size),
            _b64(self.root),
            _b64(self.digest),
            str(self.written_us),
            *(_b64(digest) for digest in self.frontier),
        ]
        return "".join(line + "\n" for line in lines)

    @classmethod
    def parse(cls, text: str) -> CheckpointStatement:
        lines = text.split("\n")
        if len(lines) < 7 or lines[-1] != "" or lines[0] != HEADER:
            raise FileRefused(f"the statement is not a '{HEADER}' statement")
        origin, size, root, digest, written = lines[1:6]
        if not size.isdecimal() or not written.isdecimal():
            raise FileRefused("the statement's size or time is not a decimal")
        frontier = tuple(_hash(line) for line in lines[6:-1])
        if len(frontier) != int(size).bit_count():
            raise FileRefused(
                f"the statement gives {len(frontier)} frontier hashes for size {size}"
            )
        return cls(origin, int(size), _hash(root), _hash(digest), int(written), frontier)


@dataclass(frozen=True)
class StoredColumns:
    """A file read: its signed note, and the columns with their digest."""

    note: str
    digest: bytes  # SHA-256 of the columns' bytes as read
    columns: ListColumns


def write_file(path: Path, note: str, columns: ListColumns) -> None:
    """Write the file atomically: a temporary file beside it, flushed to disk,
    then renamed over it (a crash leaves the old file or the new one, whole)."""
    _remove_abandoned(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    statement = note.encode("utf-8")
    try:
        with open(temporary, "wb") as out:
            out.write(f"{HEADER}\n{len(statement)}\n".encode())
            out.write(statement)
            for part in _column_parts(columns):
                out.write(part)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a power cut
    finally:
        os.close(directory)


def _remove_abandoned(path: Path) -> None:
    """Remove temporary files a killed writer left (its process is gone)."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        pid = stale.name[len(path.name) + 2 : -len(".tmp")]
        if pid.isdecimal() and int(pid) != os.getpid() and not _alive(int(pid)):
            stale.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def columns_digest(columns: ListColumns) -> bytes:
    """The SHA-256 of the columns' bytes, as ``write_file`` writes them."""
    hasher = hashlib.sha256()
    for part in _column_parts(columns):
        hasher.update(part)
    return hasher.digest()


def read_file(path: Path) -> StoredColumns:
    """Read a file (raises ``FileRefused`` for one that is not well formed,
    ``OSError`` when it cannot be read)."""
    with open(path, "rb") as source:
        first = source.readline(64)
        if first != f"{HEADER}\n".encode():
            raise FileRefused(f"the file does not start with '{HEADER}'")
        length = source.readline(16).strip()
        if not length.isdigit() or int(length) > _MAX_STATEMENT:
            raise FileRefused("the statement's length is not a decimal of a few kilobytes")
        statement = source.read(int(length))
        try:
            note = statement.decode("utf-8")
        except UnicodeDecodeError as error:
            raise FileRefused("the statement is not UTF-8") from error
        hasher = hashlib.sha256()
        remaining = os.fstat(source.fileno()).st_size - source.tell()
        columns = _read_columns(source, hasher, remaining)
        if source.read(1):
            raise FileRefused("the file has bytes after its columns")
    return StoredColumns(note, hasher.digest(), columns)


def _column_parts(columns: ListColumns) -> list[bytes | memoryview]:
    until = columns.whitelist_valid_until_us
    expiring = np.flatnonzero(until != NO_DATE)
    sparse = {"whitelist_expiring": expiring, "whitelist_expiring_until_us": until[expiring]}
    arrays = [
        np.ascontiguousarray(sparse.get(name, getattr(columns, name, None)), dtype=dtype)
        for name, dtype in _ARRAYS
    ]
    header = {
        "sequence": columns.sequence,
        "policy": _policy(columns.policy),
        "arrays": [
            [name, dtype, len(array)] for (name, dtype), array in zip(_ARRAYS, arrays, strict=True)
        ],
        "notifications": [
            [key, imsi, msisdn, block, salt.hex()]
            for key, imsi, msisdn, block, salt in columns.notifications
        ],
        "exceptions": [[key, imsi, salt.hex()] for key, imsi, salt in columns.exceptions],
    }
    encoded = json.dumps(header, separators=(",", ":")).encode()
    parts: list[bytes | memoryview] = [len(encoded).to_bytes(8, "big"), encoded]
    for array in arrays:
        raw = array.data.cast("B")
        parts += [raw[start : start + _CHUNK] for start in range(0, len(raw), _CHUNK)]
    return parts


def _read_columns(source: IO[bytes], hasher: Any, remaining: int) -> ListColumns:
    """The columns, hashed as they are read; nothing larger than the file
    (``remaining`` bytes) is allocated, whatever the header claims."""
    size_bytes = source.read(8)
    if len(size_bytes) != 8 or int.from_bytes(size_bytes, "big") > remaining:
        raise FileRefused("the columns' header is cut short")
    encoded = source.read(int.from_bytes(size_bytes, "big"))
    hasher.update(size_bytes)
    hasher.update(encoded)
    try:
        header = json.loads(encoded)
        described = [(str(n), str(d), int(c)) for n, d, c in header["arrays"]]
        if [(n, d) for n, d, _ in described] != list(_ARRAYS):
            raise FileRefused("the columns are not the ones this version writes")
        left = remaining - len(size_bytes) - len(encoded)
        if sum(count * np.dtype(dtype).itemsize for _, dtype, count in described) > left:
            raise FileRefused("the columns' header names more bytes than the file holds")
        arrays: dict[str, Any] = {}
        for name, dtype, count in described:
            array = np.empty(count, dtype=dtype)
            raw = array.data.cast("B")
            for start in range(0, len(raw), _CHUNK):
                part = raw[start : start + _CHUNK]
                if source.readinto(part) != len(part):  # type: ignore[attr-defined]  # a buffered file
                    raise FileRefused(f"the file ends inside column {name}")
                hasher.update(part)
            arrays[name] = array
        until = np.full(len(arrays["whitelist_keys"]), NO_DATE, dtype=np.int64)
        until[arrays.pop("whitelist_expiring")] = arrays.pop("whitelist_expiring_until_us")
        return ListColumns(
            whitelist_valid_until_us=until,
            sequence=int(header["sequence"]),
            policy=_policy_of(header["policy"]),
            notifications=[
                (int(k), str(i), str(m), int(b), bytes.fromhex(s))
                for k, i, m, b, s in header["notifications"]
            ],
            exceptions=[(int(k), str(i), bytes.fromhex(s)) for k, i, s in header["exceptions"]],
            **arrays,
        )
    except (ValueError, KeyError, TypeError, IndexError) as error:
        raise FileRefused(f"the columns' header is malformed ({error})") from error


def _policy(policy: Policy) -> dict[str, Any]:
    return {
        "phase": int(policy.phase),
        "grace_days": policy.grace_days,
        "clone_threshold": policy.clone_threshold,
        "clone_window_seconds": policy.clone_window_seconds,
        "updated_at_us": policy.updated_at_us,
        "updated_by": policy.updated_by,
    }


def _policy_of(data: dict[str, Any]) -> Policy:
    return Policy(**{**data, "phase": Phase(data["phase"])})


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _hash(line: str) -> bytes:
    try:
        value = base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        value = b""
    if len(value) != 32:
        raise FileRefused(f"{line!r} is not the base64 of a 32-byte hash")
    return value
