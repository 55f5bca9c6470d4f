"""What a handler sees of one write: the caller, the time, the lists, the
records, and the changes it adds.

A handler reads the in-memory lists (``state``, exact under the write lock)
and the records of registrations and blacklist entries (``records``: the
tables inside the write transaction, or ``ProjectedRows`` in memory for
tests), and emits changes with ``add``. It writes nothing else: the
pipeline (``Register.execute``) stores the changes, projects them into the
tables and applies them to the lists once committed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from ceir.domain.lists import ListState
from ceir.domain.model import CURRENT_LEAF_VERSION, BlacklistEntry, Caller, Change, Registration

__all__ = ["Records", "WriteUnit"]


class Records(Protocol):
    """The stored records the permission rules consult."""

    def registration_of(self, key: int) -> Registration | None:
        """The registration whose whitelist row this IMEI has, if any."""
        ...

    def blacklist_entry(self, key: int) -> BlacklistEntry | None:
        """The IMEI's blacklist entry, if any."""
        ...


@dataclass
class WriteUnit:
    """One write: who acts, when, against which lists, and the changes it adds."""

    caller: Caller
    now_us: int
    state: ListState
    records: Records
    next_sequence: int
    changes: list[Change] = field(default_factory=list)

    @property
    def actor(self) -> str:
        return self.caller.name

    def add(self, change: Change) -> Change:
        """Number a change, stamp it with this unit's time and actor, and queue it."""
        # What dataclasses.replace does, without its per-field introspection
        # and __init__ (an import numbers a change per IMEI): a copy of the
        # fields with four of them set.
        fields = change.__dict__.copy()
        fields["sequence"] = self.next_sequence
        fields["committed_at_us"] = self.now_us
        fields["actor"] = self.caller.name
        fields["leaf_version"] = CURRENT_LEAF_VERSION
        numbered = object.__new__(Change)
        object.__setattr__(numbered, "__dict__", fields)
        self.next_sequence += 1
        self.changes.append(numbered)
        return numbered

    def stamped(self, change: Change) -> dict[str, Any]:
        """A copy of the change's fields stamped with this unit's time, actor
        and leaf version, for ``add_stamped``."""
        fields = change.__dict__.copy()
        fields["committed_at_us"] = self.now_us
        fields["actor"] = self.caller.name
        fields["leaf_version"] = CURRENT_LEAF_VERSION
        return fields

    def add_stamped(self, fields: dict[str, Any]) -> None:
        """``add`` for a change given as fields already ``stamped`` (an import
        adds one per IMEI): numbered and queued without another copy."""
        fields["sequence"] = self.next_sequence
        numbered = object.__new__(Change)
        object.__setattr__(numbered, "__dict__", fields)
        self.next_sequence += 1
        self.changes.append(numbered)

    @property
    def sequence(self) -> int:
        """The register version once this unit commits."""
        return self.next_sequence - 1
