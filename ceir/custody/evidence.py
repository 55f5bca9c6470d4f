"""The evidence of a handover: a directory anyone can check, long after, with no server.

Files (``docs/custody.md``, "Evidence of a handover", specifies them)::

    policy-0.note           the outgoing custodian's policy: the trust root
    policy-1.note           the incoming custodian's policy, signed
    checkpoint-final.note   the old key's last checkpoint, at size N, cosigned
    checkpoint-first.note   the new key's first checkpoint, at size M, cosigned
    consistency.txt         "N M", then one base64 hash per line: RFC 9162 proof N -> M
    handover.note           the handover note with every signature
    keys.txt                one C2SP verifier key per line: every key the policies name

``write_evidence`` writes such a directory from its parts (the drill does);
``verify_evidence`` runs every check and returns one ``Check`` per line of
its report. Every check runs even when an earlier one failed, reading the
policies as written, so that one report shows every problem; the evidence
holds only when every check passes.

Time: the evidence is checked later, after the policies may have expired,
so expiry is judged at the handover's time, the first checkpoint's time
line: policy 1 had to be unexpired when the incoming register activated.
Cosignatures dated after the checker's own clock are refused all the same.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ceir.audit.checkpoint import Checkpoint, open_checkpoint
from ceir.audit.errors import AuditError
from ceir.audit.merkle import HASH_SIZE, verify_consistency

from ._lines import split_note
from .chain import walk_chain
from .cosignature import verify_cosignatures
from .handover import verify_handover
from .policy import CustodyPolicy

__all__ = [
    "FILES",
    "Check",
    "consistency_text",
    "evidence_keys",
    "parse_consistency",
    "verify_evidence",
    "write_evidence",
]

POLICY_0 = "policy-0.note"
POLICY_1 = "policy-1.note"
FINAL = "checkpoint-final.note"
FIRST = "checkpoint-first.note"
CONSISTENCY = "consistency.txt"
HANDOVER = "handover.note"
KEYS = "keys.txt"
FILES = (POLICY_0, POLICY_1, FINAL, FIRST, CONSISTENCY, HANDOVER, KEYS)
MAX_FILE_BYTES = 1 << 20  # far more than any of them needs; a bigger file is not evidence
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,19}")


@dataclass(frozen=True)
class Check:
    """One line of the report: what was checked, whether it held, and why not."""

    ok: bool
    what: str
    detail: str = ""

    def line(self) -> str:
        """``ok   <what>`` or ``FAIL <what>: <detail>``."""
        if self.ok:
            return f"ok   {self.what}" + (f" ({self.detail})" if self.detail else "")
        return f"FAIL {self.what}: {self.detail}"


def policy_text(note: str) -> str:
    """The policy text of a signed policy note, or the text itself when it is not signed."""
    if "\n\n" not in note:
        return note
    return split_note(note)[0]


def evidence_keys(policies: Sequence[CustodyPolicy]) -> list[str]:
    """The lines of keys.txt: every verifier key the policies name, sorted, each once."""
    keys: set[str] = set()
    for policy in policies:
        keys.add(policy.log_key.vkey)
        keys.update(officer.verifier.vkey for officer in policy.officers)
        for witness in policy.witnesses:
            keys.update((witness.verifier.vkey, witness.cosigner.vkey))
    return sorted(keys)


def consistency_text(first_size: int, second_size: int, proof: Sequence[bytes]) -> str:
    """consistency.txt: ``N M`` then one base64 hash per line, each line ending in a newline."""
    lines = [f"{first_size} {second_size}", *(base64.b64encode(h).decode() for h in proof)]
    return "".join(line + "\n" for line in lines)


def parse_consistency(text: str) -> tuple[int, int, list[bytes]]:
    """N, M and the proof's hashes; ``ValueError`` saying which line is wrong."""
    if not text.endswith("\n"):
        raise ValueError("consistency.txt does not end with a newline")
    header, *hashes = text[:-1].split("\n")
    sizes = header.split(" ")
    if len(sizes) != 2 or not all(_DECIMAL.fullmatch(s) for s in sizes):
        raise ValueError(f"line 1, {header!r}, is not 'N M' (two decimals, one space)")
    proof = []
    for number, line in enumerate(hashes, start=2):
        try:
            digest = base64.b64decode(line, validate=True)
        except (binascii.Error, ValueError):
            digest = b""
        if len(digest) != HASH_SIZE or base64.b64encode(digest).decode() != line:
            raise ValueError(f"line {number}, {line!r}, is not the base64 of a 32-byte hash")
        proof.append(digest)
    return int(sizes[0]), int(sizes[1]), proof


def write_evidence(
    directory: Path,
    *,
    policy_0: str,
    policy_1: str,
    final_checkpoint: str,
    first_checkpoint: str,
    consistency_proof: Sequence[bytes],
    handover: str,
) -> None:
    """Write the evidence directory (created if missing; existing files are never replaced).

    N and M are read from the checkpoints, keys.txt from the policies.
    """
    policies = [CustodyPolicy.parse(policy_text(note)) for note in (policy_0, policy_1)]
    sizes = [
        Checkpoint.parse(split_note(note)[0]).size for note in (final_checkpoint, first_checkpoint)
    ]
    contents = {
        POLICY_0: policy_0,
        POLICY_1: policy_1,
        FINAL: final_checkpoint,
        FIRST: first_checkpoint,
        CONSISTENCY: consistency_text(sizes[0], sizes[1], consistency_proof),
        HANDOVER: handover,
        KEYS: "".join(key + "\n" for key in evidence_keys(policies)),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in contents.items():
        with (directory / name).open("x", encoding="utf-8", newline="") as file:
            file.write(text)


def verify_evidence(directory: Path, now: int) -> list[Check]:
    """Every check of the evidence in ``directory``, in report order.

    ``now`` (Unix seconds) is the checker's clock, for cosignature dates;
    policy expiry is judged at the handover (see the module docstring).
    """
    return _Verifier(directory, now).checks()


class _Verifier:
    def __init__(self, directory: Path, now: int) -> None:
        self.directory = directory
        self.now = now
        self.report: list[Check] = []
        self.texts: dict[str, str] = {}
        self.v0: CustodyPolicy | None = None
        self.v1: CustodyPolicy | None = None
        self.final: Checkpoint | None = None
        self.first: Checkpoint | None = None

    def checks(self) -> list[Check]:
        for name in FILES:
            self._read(name)
        self._check("policy-0.note is a custody policy, the trust root", self._policy_0)
        at, source = self._handover_time()
        self._check(
            f"policy-1.note succeeds policy 0 (expiry judged at {_utc(at)}, {source})",
            lambda: self._policy_1(at),
        )
        self._check("checkpoint-final.note is signed by policy 0's log key", self._final_signed)
        self._check(
            "checkpoint-final.note is cosigned by policy 0's witness quorum",
            lambda: self._cosigned(FINAL, self.v0, "0"),
        )
        self._check(
            "handover.note is signed as policy 1 requires and names the final checkpoint",
            lambda: self._handover(at),
        )
        self._check("checkpoint-first.note is signed by policy 1's log key", self._first_signed)
        self._check(
            "checkpoint-first.note is cosigned by policy 1's witness quorum",
            lambda: self._cosigned(FIRST, self.v1, "1"),
        )
        self._check(
            "consistency.txt proves the first checkpoint extends the final one",
            self._consistency,
        )
        self._check("keys.txt lists exactly the keys the policies name", self._keys)
        return self.report

    def _read(self, name: str) -> None:
        path = self.directory / name
        try:
            data = path.read_bytes() if path.stat().st_size <= MAX_FILE_BYTES else None
            if data is None:
                self.report.append(Check(False, f"{name} is readable", "larger than 1 MiB"))
                return
            self.texts[name] = data.decode("utf-8")
        except FileNotFoundError:
            self.report.append(Check(False, f"{name} is present", f"no file {path}"))
        except (OSError, UnicodeDecodeError) as error:
            self.report.append(Check(False, f"{name} is readable", str(error)))

    def _check(self, what: str, check: Callable[[], str]) -> None:
        try:
            detail = check()
        except _Missing as missing:
            self.report.append(Check(False, what, f"cannot check: {missing}"))
        except (AuditError, ValueError, KeyError) as error:
            reason = getattr(error, "reason", "")
            self.report.append(Check(False, what, f"{error}" + (f" [{reason}]" if reason else "")))
        else:
            self.report.append(Check(True, what, detail))

    def _text(self, name: str) -> str:
        if name not in self.texts:
            raise _Missing(f"{name} is missing or unreadable")
        return self.texts[name]

    def _policy(self, name: str) -> CustodyPolicy:
        return CustodyPolicy.parse(policy_text(self._text(name)))

    def _policy_0(self) -> str:
        self.v0 = self._policy(POLICY_0)
        if self.v0.version != 0:
            raise ValueError(f"it is version {self.v0.version}, not 0")
        return f"custodian {self.v0.custodian}, log key {self.v0.log_key.label}"

    def _handover_time(self) -> tuple[int, str]:
        for name, source in ((FIRST, "the first checkpoint's time"), (FINAL, "the final one's")):
            try:
                return Checkpoint.parse(split_note(self._text(name))[0]).time_us // 10**6, source
            except (_Missing, AuditError):
                continue
        return self.now, "now: neither checkpoint states a time"

    def _policy_1(self, at: int) -> str:
        note = self._text(POLICY_1)
        self.v1 = self._policy(POLICY_1)  # as written, for the checks after this one
        if self.v0 is None:
            raise _Missing("policy 0 did not parse")
        walk_chain(self.v0, [note], at)
        return f"custodian {self.v1.custodian}, log key {self.v1.log_key.label}"

    def _checkpoint(self, name: str, policy: CustodyPolicy | None, version: str) -> Checkpoint:
        if policy is None:
            raise _Missing(f"policy {version} did not parse")
        return open_checkpoint(self._text(name), [policy.log_key], policy.origin)

    def _final_signed(self) -> str:
        self.final = self._checkpoint(FINAL, self.v0, "0")
        return f"size {self.final.size}"

    def _first_signed(self) -> str:
        self.first = self._checkpoint(FIRST, self.v1, "1")
        return f"size {self.first.size}"

    def _cosigned(self, name: str, policy: CustodyPolicy | None, version: str) -> str:
        if policy is None:
            raise _Missing(f"policy {version} did not parse")
        found = verify_cosignatures(
            self._text(name), [w.cosigner for w in policy.witnesses], self.now
        )
        if len(found) < policy.witness_quorum:
            raise ValueError(
                f"{policy.witness_quorum} of policy {version}'s witnesses must cosign; "
                f"{len(found)} did" + (f" ({', '.join(c.witness for c in found)})" if found else "")
            )
        return ", ".join(c.witness for c in found)

    def _handover(self, at: int) -> str:
        if self.v0 is None or self.v1 is None:
            raise _Missing("a policy did not parse")
        handover = verify_handover(self._text(HANDOVER), self.v0, self.v1, at)
        if self.final is None:
            raise _Missing("the final checkpoint did not verify")
        if (handover.size, handover.root_hash) != (self.final.size, self.final.root_hash):
            raise ValueError(
                f"it names size {handover.size} and root "
                f"{base64.b64encode(handover.root_hash).decode()}; the final checkpoint states "
                f"size {self.final.size} and root {base64.b64encode(self.final.root_hash).decode()}"
            )
        return f"size {handover.size}"

    def _consistency(self) -> str:
        first_size, second_size, proof = parse_consistency(self._text(CONSISTENCY))
        if self.final is None or self.first is None:
            raise _Missing("a checkpoint did not verify")
        if (first_size, second_size) != (self.final.size, self.first.size):
            raise ValueError(
                f"it is from {first_size} to {second_size}; the checkpoints are at "
                f"{self.final.size} and {self.first.size}"
            )
        if second_size <= first_size:
            raise ValueError(f"the first checkpoint ({second_size}) is not after the final one")
        verify_consistency(
            first_size, second_size, proof, self.final.root_hash, self.first.root_hash
        )
        return f"{first_size} -> {second_size}, {len(proof)} hashes"

    def _keys(self) -> str:
        text = self._text(KEYS)
        if self.v0 is None or self.v1 is None:
            raise _Missing("a policy did not parse")
        listed = text.splitlines()
        wanted = set(evidence_keys([self.v0, self.v1]))
        missing, extra = sorted(wanted - set(listed)), sorted(set(listed) - wanted)
        if missing or extra or len(listed) != len(set(listed)):
            parts = [f"missing {k}" for k in missing] + [f"not in the policies: {k}" for k in extra]
            raise ValueError("; ".join(parts) or "a key is listed twice")
        return f"{len(listed)} keys"


def _utc(seconds: int) -> str:
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{seconds} (Unix seconds)"


class _Missing(Exception):
    """A check cannot run because what it needs did not parse or verify."""
