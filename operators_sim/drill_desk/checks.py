"""The desk-move drill's checks: the register's complaints before and after
the move, compared field by field, and the desks' calls after it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ceir.v1 import complaints_pb2 as complaints_pb

from .desks import CLOSED, state_name

MOVED = complaints_pb.COMPLAINT_STEP_KIND_MOVED
EXAMPLES = 5


@dataclass(frozen=True)
class Check:
    """One named check: passed or not, and what was found."""

    name: str
    ok: bool
    detail: str


def check(name: str, failures: Iterable[str], passed: str) -> Check:
    """A check that passed when ``failures`` is empty (the first few are its detail)."""
    found = list(failures)
    if not found:
        return Check(name, True, passed)
    more = f" (and {len(found) - EXAMPLES} more)" if len(found) > EXAMPLES else ""
    return Check(name, False, "; ".join(found[:EXAMPLES]) + more)


Listing = dict[str, complaints_pb.Complaint]


def compare(before: Listing, after: Listing, duplicated: int, owner: str) -> list[Check]:
    """Lost, duplicated, moved, kept and untouched, as separate checks."""
    open_ids = [t for t, c in before.items() if c.state not in CLOSED]
    closed_ids = [t for t, c in before.items() if c.state in CLOSED]
    # a complaint missing after the move fails every check about it, not only "lost"
    missing = [f"{t} not listed" for t in before if t not in after]
    return [
        check(
            "no complaint lost",
            (f"{t} not listed after the move" for t in before if t not in after),
            f"all {len(before)} listed after the move",
        ),
        check(
            "none duplicated or made up",
            [f"{duplicated} tracking ids listed twice"] * bool(duplicated)
            + [f"{t} listed after the move only" for t in after if t not in before],
            f"{len(after)} complaints, each listed once",
        ),
        check(
            f"every open complaint owned by {owner}",
            [
                f"{t} owned by {after[t].owner}"
                for t in open_ids
                if t in after and after[t].owner != owner
            ]
            + [m for m in missing if m.split()[0] in open_ids],
            f"{len(open_ids)} open complaints moved",
        ),
        check(
            "tracking id, state, deadline and filing kept",
            [
                _kept(before[t], after[t])
                for t in open_ids
                if t in after and _kept(before[t], after[t])
            ]
            + [m for m in missing if m.split()[0] in open_ids],
            "every open complaint as it was, owner aside",
        ),
        check(
            "history kept, plus one MOVED step",
            [
                _history(before[t], after[t], owner)
                for t in open_ids
                if t in after and _history(before[t], after[t], owner)
            ]
            + [m for m in missing if m.split()[0] in open_ids],
            "every open complaint's history as it was, then moved",
        ),
        check(
            "closed complaints untouched",
            [f"{t} changed" for t in closed_ids if t in after and after[t] != before[t]]
            + [m for m in missing if m.split()[0] in closed_ids],
            f"{len(closed_ids)} resolved or rejected complaints as they were",
        ),
    ]


def _kept(old: complaints_pb.Complaint, new: complaints_pb.Complaint) -> str:
    """What changed that must not have ("" when nothing)."""
    changed = [
        name
        for name in ("tracking_id", "state", "category", "imei_keys", "deadline", "file_time")
        if getattr(old, name) != getattr(new, name)
    ]
    return f"{old.tracking_id}: {', '.join(changed)} changed" if changed else ""


def _history(old: complaints_pb.Complaint, new: complaints_pb.Complaint, owner: str) -> str:
    """What is wrong with the history after the move ("" when nothing)."""
    steps, kept = list(new.history), list(old.history)
    if steps[: len(kept)] != kept:
        return f"{old.tracking_id}: earlier steps changed"
    added = steps[len(kept) :]
    if len(added) != 1 or added[0].kind != MOVED:
        kinds = [complaints_pb.ComplaintStepKind.Name(s.kind) for s in added]
        return f"{old.tracking_id}: steps added {kinds}, expected one MOVED"
    step = added[0]
    if step.from_state != old.state or step.to_state != old.state or owner not in step.note:
        return (
            f"{old.tracking_id}: MOVED step {state_name(step.from_state)} -> "
            f"{state_name(step.to_state)} '{step.note}'"
        )
    return ""
