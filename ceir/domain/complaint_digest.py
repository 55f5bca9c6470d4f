"""A digest of complaints with their history, to check a copy is exact.

At a handover the incoming register copies every complaint from the
outgoing one (``ceir.service.complaint_carry``); the outgoing states how
many it holds and their digest (``ListComplaints`` with ``include_digest``),
and the incoming computes the same over what it fetched, and again over
what it stored. Any field lost or changed on the way, any complaint
dropped or duplicated, changes the digest.

The canonical form: one JSON line per complaint, ascending tracking number,
with every stored field and every step; the digest is the SHA-256 of the
lines, in hex.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from .complaints import Complaint, ComplaintStep

__all__ = ["ComplaintDigest", "canonical_line", "digest_of"]


def _step(step: ComplaintStep) -> list[Any]:
    return [
        step.number,
        int(step.kind),
        step.at_us,
        step.actor,
        0 if step.from_state is None else int(step.from_state),
        int(step.to_state),
        step.note,
        step.action,
        list(step.change_sequences),
    ]


def canonical_line(complaint: Complaint) -> bytes:
    """One complaint in the canonical form (a JSON line)."""
    fields: list[Any] = [
        complaint.id,
        int(complaint.category),
        int(complaint.state),
        list(complaint.imei_keys),
        complaint.imsi,
        complaint.msisdn,
        complaint.description,
        complaint.filed_by,
        complaint.owner,
        complaint.filed_at_us,
        complaint.deadline_us,
        complaint.deadline_missed,
        complaint.escalated_to,
        complaint.closed_at_us,
        [_step(step) for step in complaint.history],
    ]
    text = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8") + b"\n"


class ComplaintDigest:
    """The digest of complaints fed in ascending tracking number (a stream:
    the server digests every complaint one batch at a time)."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.count = 0
        self._last = 0

    def add(self, complaint: Complaint) -> None:
        if complaint.id <= self._last:
            raise ValueError(
                f"complaint {complaint.tracking_id} out of order (after {self._last}): "
                "complaints are digested in ascending tracking number, each once"
            )
        self._last = complaint.id
        self._hash.update(canonical_line(complaint))
        self.count += 1

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def digest_of(complaints: Iterable[Complaint]) -> tuple[int, str]:
    """(count, digest) of complaints in ascending tracking number; ValueError
    if one is out of order or repeated."""
    digest = ComplaintDigest()
    for complaint in complaints:
        digest.add(complaint)
    return digest.count, digest.hexdigest()
