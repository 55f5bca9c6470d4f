"""What a node trusts about the register's custody, and its key epochs.

A node starts from one custody policy (version 0, a file it is configured
with) and trusts a later one only by walking the chain (``ceir.custody``).
Each policy's log key signs one stretch of the one log, an **epoch**:
policy k's key signs the checkpoints above the final size of epoch k - 1 up
to its own final size N (the FROZEN leaf), and nothing after it. So:

- a checkpoint of key k larger than epoch k's final size is a split view
  (unless a verified abort reopened the epoch: ``CustodyTrust.reopen``);
- a checkpoint of key k at a size inside an earlier epoch (the incoming
  register serves the handed-over log too) is accepted only if consistent
  with that epoch's final checkpoint, the ``anchor`` (``Opened.anchor``).

``CustodyTrust`` is that state; ``save`` writes it atomically (temp file,
fsync, rename, fsync of the directory), so a crash mid-switch leaves either
the old state or the new one, and ``load`` re-verifies the policy chain from
the configured policy 0 before trusting what the file says.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ceir.audit.checkpoint import Checkpoint, open_checkpoint
from ceir.audit.errors import AuditError, UnknownKey
from ceir.custody import CustodyPolicy, walk_chain

__all__ = ["FORMAT", "CustodyTrust", "Final", "Opened", "note_text", "sha256_hex"]

FORMAT = "operators_sim/custody-trust/v1"


def note_text(note: str) -> str:
    """The text of a signed note (up to its blank line), or ``note`` itself when unsigned."""
    split = note.rfind("\n\n")
    return note if split < 0 else note[: split + 1]


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class Final:
    """The end of an epoch: its final size, the root there, and the old key's checkpoint."""

    size: int
    root: bytes
    checkpoint: str  # the signed note at ``size`` (old key), as the node verified it

    def as_json(self) -> dict[str, object]:
        return {
            "size": self.size,
            "root": base64.b64encode(self.root).decode(),
            "checkpoint": self.checkpoint,
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> Final:
        return cls(
            int(str(data["size"])),
            base64.b64decode(str(data["root"]), validate=True),
            str(data["checkpoint"]),
        )


@dataclass(frozen=True)
class Opened:
    """A checkpoint whose signature verified under the key of policy ``version``.

    ``beyond_final``: larger than that epoch's final size (a split view
    unless an abort reopens the epoch). ``anchor``: the final checkpoint of
    the epoch the size falls in, when the key is a later epoch's (prove the
    checkpoint consistent with it).
    """

    checkpoint: Checkpoint
    version: int
    final: Final | None = None
    beyond_final: bool = False
    anchor: Final | None = None


@dataclass
class CustodyTrust:
    """The node's custody state: the policies it trusts and where each key's epoch ends."""

    notes: list[str]  # the signed notes of policies 0..k (policy 0: the configured file)
    policies: list[CustodyPolicy]
    finals: list[Final] = field(default_factory=list)  # one per completed epoch
    frozen: Final | None = None  # epoch k's end, once the FROZEN leaf is verified
    announced: str = ""  # the signed note of policy k + 1, walked to, not yet in force
    handovers: list[str] = field(default_factory=list)  # the verified handover notes
    checkpoint: str = ""  # the last checkpoint the node verified
    endpoint: str = ""  # where the custodian serves the register (a policy endpoint)

    @classmethod
    def start(cls, policy_0: str) -> CustodyTrust:
        """The trust of a node configured with ``policy_0`` (its note or bare text)."""
        policy = CustodyPolicy.parse(note_text(policy_0), 0)
        return cls([policy_0], [policy], endpoint=policy.endpoint)

    # --- what is trusted --------------------------------------------------------------

    @property
    def current(self) -> CustodyPolicy:
        """The policy in force: its key signs the log now."""
        return self.policies[-1]

    @property
    def version(self) -> int:
        return self.current.version

    @property
    def origin(self) -> str:
        return self.current.origin

    def announced_policy(self) -> CustodyPolicy | None:
        return CustodyPolicy.parse(note_text(self.announced)) if self.announced else None

    def final_of(self, index: int) -> Final | None:
        """Where the epoch of ``policies[index]`` ends (None: open)."""
        if index < len(self.finals):
            return self.finals[index]
        return self.frozen

    # --- checkpoints ------------------------------------------------------------------

    def open(self, note: str) -> Opened:
        """The checkpoint ``note`` states, under whichever epoch's key signed it.

        Raises ``AuditError`` (``UnknownKey``, ``BadSignature``, ...) when no
        trusted log key signed it or it is of another log.
        """
        last_error: AuditError | None = None
        for index in range(len(self.policies) - 1, -1, -1):
            policy = self.policies[index]
            try:
                checkpoint = open_checkpoint(note, (policy.log_key,), policy.origin)
            except UnknownKey as error:
                last_error = error
                continue
            final = self.final_of(index)
            anchor = None
            if index > 0 and checkpoint.size <= self.finals[index - 1].size:
                anchor = self.finals[index - 1]
            return Opened(
                checkpoint,
                policy.version,
                final,
                final is not None and checkpoint.size > final.size,
                anchor,
            )
        assert last_error is not None  # there is always policy 0
        keys = ", ".join(p.log_key.label for p in self.policies)
        raise UnknownKey(f"{last_error} (the node's key epochs: {keys})", ())

    # --- the ceremony's steps, as the node verifies them --------------------------------

    def announce(self, signed_policy: str, now: int) -> CustodyPolicy:
        """Walk from the policy in force to ``signed_policy`` (k + 1); ``CustodyRefusal`` if not."""
        policy = walk_chain(self.current, [signed_policy], now)
        self.announced = signed_policy
        return policy

    def freeze(self, final: Final) -> None:
        self.frozen = final

    def reopen(self) -> None:
        """A verified abort: the epoch goes on under the same key, nothing announced."""
        self.frozen = None
        self.announced = ""

    def hand_over(self, signed_policy: str, final: Final, handover: str, endpoint: str) -> None:
        """Trust policy k + 1 from ``final.size`` on (the caller verified everything)."""
        policy = CustodyPolicy.parse(note_text(signed_policy))
        self.finals.append(final)
        self.notes.append(signed_policy)
        self.policies.append(policy)
        self.handovers.append(handover)
        self.frozen = None
        self.announced = ""
        self.endpoint = endpoint

    # --- persistence --------------------------------------------------------------------

    def as_json(self) -> dict[str, object]:
        return {
            "format": FORMAT,
            "policies": list(self.notes),
            "finals": [f.as_json() for f in self.finals],
            "frozen": self.frozen.as_json() if self.frozen else None,
            "announced": self.announced,
            "handovers": list(self.handovers),
            "checkpoint": self.checkpoint,
            "endpoint": self.endpoint,
        }

    def save(self, path: Path) -> None:
        """Write the state atomically: a crash leaves the old file or the new, never half."""
        data = json.dumps(self.as_json(), indent=1, sort_keys=True).encode()
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            with os.fdopen(handle, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # the rename itself survives a crash
        finally:
            os.close(directory)

    @classmethod
    def load(cls, path: Path, policy_0: str) -> CustodyTrust:
        """The state saved at ``path``, re-verified from ``policy_0``; a fresh start if none.

        The chain in the file must start with the configured policy 0 and
        walk from it (signatures, thresholds, quorums): a state file edited to
        trust another key is refused (``ValueError``). Expiry was judged when
        each step was taken; a node does not forget a handover because the
        policy it moved to has since expired.
        """
        fresh = cls.start(policy_0)
        if not path.exists():
            return fresh
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"{path} is not a {FORMAT} state file")
        notes = [str(n) for n in data["policies"]]
        if not notes or note_text(notes[0]) != note_text(policy_0):
            raise ValueError(f"{path} starts from another policy 0 than the node's")
        trust = fresh
        for note in notes[1:]:
            walk_chain(trust.current, [note], 0)  # 0: expiry not judged again (above)
            trust.notes.append(note)
            trust.policies.append(CustodyPolicy.parse(note_text(note)))
        trust.finals = [Final.from_json(f) for f in data["finals"]]
        if len(trust.finals) != len(trust.policies) - 1:
            raise ValueError(f"{path}: {len(trust.finals)} final sizes for {len(notes)} policies")
        for policy, final in zip(trust.policies, trust.finals, strict=False):
            _check_final(policy, final, path)
        frozen = data.get("frozen")
        trust.frozen = Final.from_json(frozen) if isinstance(frozen, dict) else None
        if trust.frozen is not None:
            _check_final(trust.current, trust.frozen, path)
        announced = str(data.get("announced") or "")
        if announced:
            walk_chain(trust.current, [announced], 0)
        trust.announced = announced
        trust.handovers = [str(h) for h in data.get("handovers", [])]
        trust.checkpoint = str(data.get("checkpoint") or "")
        if trust.checkpoint:
            trust.open(trust.checkpoint)  # signed by a key of the chain, or refused
        trust.endpoint = str(data.get("endpoint") or trust.current.endpoint)
        return trust


def _check_final(policy: CustodyPolicy, final: Final, path: Path) -> None:
    """The final checkpoint is the epoch key's, at the final size, with the final root."""
    checkpoint = open_checkpoint(final.checkpoint, (policy.log_key,), policy.origin)
    if checkpoint.size != final.size or checkpoint.root_hash != final.root:
        raise ValueError(
            f"{path}: the final checkpoint of policy {policy.version} is not at size "
            f"{final.size} with the recorded root"
        )
