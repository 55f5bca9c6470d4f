"""Evidence a node writes about custody: portable files anyone can check without a server.

Two kinds of directory under the node's evidence directory, in the file
format of ``ceir custody verify`` (the plan's evidence directory; the same
names, so the same tools read them):

``handover-<k>/``, once the node followed the handover to policy k::

    policy-0.note           the policy the handover left (k - 1), the trust root here
    policy-1.note           the policy it moved to (k), signed
    checkpoint-final.note   the old key's checkpoint at the final size N
    checkpoint-first.note   the new key's first checkpoint, cosigned
    consistency.txt         "N M", then one base64 hash per line: RFC 9162 proof N -> M
    handover.note           the handover note with its signatures
    keys.txt                one C2SP verifier key per line, every key the two policies name

``split-view-<size>-<root prefix>/``, when the old key signed past its final size::

    policy-<v>.note          the policies the node trusts, 0 to k
    checkpoint-final.note    the old key's checkpoint at the final size N (or the node's
                             last verified one, if the log went past N in the same message)
    checkpoint-conflict.note the old key's checkpoint of a larger size M: it should not exist
    consistency.txt          "N M" and the proof the register gave, when it gave one
    consistency-failure.txt  why there is no valid proof (absent when the proof verified:
                             a consistent log past N is still a second history, of keys
                             handed over)
    keys.txt                 as above
    split-view.txt           what the node saw, in words

Files are written once (``x`` mode): evidence is never overwritten.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ceir.custody import CustodyPolicy
from ceir.custody.evidence import consistency_text, evidence_keys

from .custody_state import note_text

__all__ = ["consistency_text", "evidence_keys", "write_handover", "write_split_view"]


def _write(directory: Path, contents: dict[str, str]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in contents.items():
        path = directory / name
        if path.exists():
            continue  # written before (a restart): evidence is never replaced
        with path.open("x", encoding="utf-8", newline="") as file:
            file.write(text)
    return directory


def _keys(policy_notes: Sequence[str]) -> str:
    policies = [CustodyPolicy.parse(note_text(note)) for note in policy_notes]
    return "".join(key + "\n" for key in evidence_keys(policies))


def write_handover(
    directory: Path,
    *,
    policy_before: str,
    policy_after: str,
    final_checkpoint: str,
    first_checkpoint: str,
    final_size: int,
    first_size: int,
    consistency_proof: Sequence[bytes],
    handover: str,
) -> Path:
    """The evidence of one handover the node verified and followed."""
    return _write(
        directory,
        {
            "policy-0.note": policy_before,
            "policy-1.note": policy_after,
            "checkpoint-final.note": final_checkpoint,
            "checkpoint-first.note": first_checkpoint,
            "consistency.txt": consistency_text(final_size, first_size, consistency_proof),
            "handover.note": handover,
            "keys.txt": _keys([policy_before, policy_after]),
        },
    )


def write_split_view(
    directory: Path,
    *,
    policies: Sequence[str],
    final_checkpoint: str,
    conflicting_checkpoint: str,
    final_size: int,
    conflicting_size: int,
    proof: Sequence[bytes] | None,
    failure: str,
    description: str,
) -> Path:
    """The evidence of a split view: both signed notes and the proof (or why there is none)."""
    contents = {f"policy-{v}.note": note for v, note in enumerate(policies)}
    contents["checkpoint-final.note"] = final_checkpoint
    contents["checkpoint-conflict.note"] = conflicting_checkpoint
    if proof is not None:
        contents["consistency.txt"] = consistency_text(final_size, conflicting_size, proof)
    if failure:
        contents["consistency-failure.txt"] = failure.rstrip("\n") + "\n"
    contents["keys.txt"] = _keys(policies)
    contents["split-view.txt"] = description.rstrip("\n") + "\n"
    return _write(directory, contents)
