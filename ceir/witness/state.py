"""What a witness remembers of each log: the last checkpoint it cosigned and its policy chain.

A witness that forgot would cosign a fork: the state file is written whole
to a temporary file, flushed to disk, then renamed over the old one (and the
directory flushed), so that a crash leaves the old state or the new, never
half of either. Saved before the cosignature is returned: a witness never
hands out a cosignature it could forget.

The file is JSON::

    {"format": "ceir/witness-state/v1",
     "logs": {"<origin>": {"size": N, "root": "<base64>", "epoch": j,
                           "policies": ["<signed policy note v1>", ...]}}}

``epoch`` is the version of the policy whose log key signed the last
cosigned checkpoint; ``policies`` the signed notes of versions 1 and up that
the witness walked to from its trusted policy 0.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ceir.audit.merkle import EMPTY_ROOT, HASH_SIZE

__all__ = ["FORMAT", "LogState", "StateError", "load_state", "save_state"]

FORMAT = "ceir/witness-state/v1"


class StateError(Exception):
    """The state file is not a witness state: the witness refuses to start on it."""


@dataclass(frozen=True)
class LogState:
    """One log as the witness last cosigned it."""

    size: int = 0
    root: bytes = EMPTY_ROOT
    epoch: int = 0
    policies: tuple[str, ...] = ()


def load_state(path: Path) -> dict[str, LogState]:
    """The logs of the state file; none when the file does not exist yet."""
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        document = json.loads(raw)
        if document.get("format") != FORMAT:
            raise StateError(f"{path} is not a {FORMAT} file")
        return {origin: _log(entry) for origin, entry in document["logs"].items()}
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as error:
        raise StateError(f"{path} is not a readable witness state: {error}") from None


def save_state(path: Path, logs: dict[str, LogState]) -> None:
    """Replace the state file atomically (temporary file, fsync, rename, fsync the directory)."""
    document = {
        "format": FORMAT,
        "logs": {
            origin: {
                "size": log.size,
                "root": base64.b64encode(log.root).decode(),
                "epoch": log.epoch,
                "policies": list(log.policies),
            }
            for origin, log in sorted(logs.items())
        },
    }
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("w", encoding="utf-8") as file:
        json.dump(document, file, indent=1)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _log(entry: dict[str, Any]) -> LogState:
    size, epoch = entry["size"], entry["epoch"]
    root = base64.b64decode(entry["root"], validate=True)
    policies = entry["policies"]
    if not isinstance(size, int) or not isinstance(epoch, int) or size < 0 or epoch < 0:
        raise ValueError("size and epoch must be whole numbers, 0 or more")
    if len(root) != HASH_SIZE:
        raise ValueError(f"root is {len(root)} bytes, not {HASH_SIZE}")
    if not isinstance(policies, list) or not all(isinstance(p, str) for p in policies):
        raise ValueError("policies must be a list of signed notes")
    return LogState(size, root, epoch, tuple(policies))
