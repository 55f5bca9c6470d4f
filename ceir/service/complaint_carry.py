"""Carrying the complaints desk across a handover.

Complaints live in tables outside the Merkle log, so the standby's pull of
the log does not bring them. At ``transfer`` (the outgoing register is
FROZEN: its write gate refuses every complaint write, moves and escalations
included) the incoming register reads every complaint with its history
from the outgoing one through the public ``ListComplaints``, as the incoming
custodian's organisation (a regulator, which reads them all), and with the
last page the outgoing's own count and digest of them
(``ceir.domain.complaint_digest``). The copy is refused unless what was
fetched has that count and that digest, and again unless what was stored
reads back with them; it is stored in the transfer's own transaction, with
the same tracking numbers, history, deadlines and escalations, replacing
whatever the incoming's tables held (a standby never files, so that is at
most a stale copy). After activation the desk in force is the new policy's:
if it names Kemenperin, the desk's ``refresh`` moves the open complaints to
it with a MOVED step, once the register takes writes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.orm import Session

from ceir.domain.complaint_digest import digest_of
from ceir.domain.complaints import Complaint, format_tracking_id
from ceir.domain.errors import FailedPrecondition
from ceir.storage import complaint_repository as complaints_repo

__all__ = ["OutgoingComplaints", "RemoteComplaints", "check", "store"]


@dataclass(frozen=True)
class OutgoingComplaints:
    """What the incoming register read of the outgoing one's complaints:
    the complaints, and the outgoing's own count and digest of them."""

    complaints: tuple[Complaint, ...]
    total: int
    digest: str


# Reads them over the standby's channel (the API layer builds it): (timeout) -> complaints.
RemoteComplaints = Callable[[float], OutgoingComplaints]


def check(fetched: OutgoingComplaints) -> None:
    """FailedPrecondition COMPLAINTS_DIFFER unless the complaints fetched are
    exactly those the outgoing register counted and digested."""
    numbers = Counter(c.id for c in fetched.complaints)
    twice = sorted(n for n, times in numbers.items() if times > 1)
    if twice:
        _refuse(
            f"{len(twice)} complaint(s) came twice ({_ids(twice)})",
            fetched,
            len(fetched.complaints),
        )
    ordered = sorted(fetched.complaints, key=lambda c: c.id)
    count, digest = digest_of(ordered)
    if count != fetched.total:
        _refuse(f"{count} complaint(s) fetched, the outgoing holds {fetched.total}", fetched, count)
    if digest != fetched.digest:
        _refuse(
            f"the complaints fetched have digest {digest}, the outgoing's is {fetched.digest}",
            fetched,
            count,
        )


def store(session: Session, fetched: OutgoingComplaints) -> None:
    """Replace this register's complaints by the fetched ones (checked), in
    ``session``; read them back and refuse (rolling back) unless they have the
    outgoing's count and digest."""
    ordered = sorted(fetched.complaints, key=lambda c: c.id)
    complaints_repo.replace_all(session, ordered)
    stored: list[Complaint] = []
    after = 0
    while True:
        batch = complaints_repo.page(session, None, None, after, 1_000)
        if not batch:
            break
        stored.extend(batch)
        after = batch[-1].id
    count, digest = digest_of(stored)
    if (count, digest) != (fetched.total, fetched.digest):
        _refuse(
            f"the complaints stored here read back as {count} with digest {digest}",
            fetched,
            count,
        )


def _ids(numbers: Sequence[int]) -> str:
    shown = ", ".join(format_tracking_id(n) for n in numbers[:5])
    return shown + (", ..." if len(numbers) > 5 else "")


def _refuse(why: str, fetched: OutgoingComplaints, count: int) -> None:
    raise FailedPrecondition(
        f"the complaints read from the outgoing register are not an exact copy: {why}; "
        "nothing was written, transfer again",
        reason="COMPLAINTS_DIFFER",
        metadata={
            "fetched": str(count),
            "outgoing_total": str(fetched.total),
            "outgoing_digest": fetched.digest,
        },
        retry_after=1.0,
    )
