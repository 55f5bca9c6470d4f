"""Custody policies: who holds the register, who may hand it over, who witnesses.

A policy is a text of lines, each ending in a newline (U+000A), fields
separated by one space (U+0020), in exactly this order::

    ceir/custody-policy/v1                   the format; nothing else is accepted
    version <n>                              0, 1, 2, ...: decimal, no leading zeros
    origin <log origin>                      the log's checkpoint origin line
    custodian <organisation>                 who runs the register and signs its log
    endpoint <host:port>                     where the custodian serves it
    log-key <verifier key>                   the custodian's log key (type 0x01)
    complaints <organisation>                who owns the complaints desk
    expires <Unix seconds>                   after this the policy is not to be acted on
    organisation <organisation> <threshold>  one line per organisation, sorted by name
    officer <organisation> <verifier key>    one line per officer, by organisation then name
    witness-quorum <q>                       how many witnesses must sign
    witness <verifier key> <cosigner key>    one line per witness, sorted by name

An officer's name is its key's name. A witness has two keys under one name:
a plain note key (type 0x01) with which it signs policies and handover
notes, and a cosigner key (type 0x04, ``ceir.custody.cosignature``) with
which it cosigns checkpoints; c2sp.org/signed-note asks that one key not
serve two signature types.

Rules, beyond the syntax (``CustodyPolicy`` refuses anything else):

- organisation names are lowercase ``[a-z0-9]`` words joined by ``-`` or
  ``.``; origin and endpoint are printable ASCII without spaces;
- every officer's organisation has an ``organisation`` line, every
  ``organisation`` line has at least ``threshold`` officers, and the
  custodian has one;
- every threshold is at least 2: no single officer ever acts alone;
- at least one witness, and ``1 <= witness-quorum <= witnesses``;
- key names are distinct across the log key, officers and witnesses, and
  no public key appears twice anywhere in the policy.

Expiry is in whole seconds since 1970-01-01T00:00:00Z, as c2sp cosignature
timestamps (a policy lives for months, not microseconds).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

from ceir.audit.errors import KeyFormatError
from ceir.audit.note import Verifier

from .cosignature import CosignatureVerifier
from .errors import MalformedPolicy

__all__ = ["FORMAT", "CustodyPolicy", "Officer", "Threshold", "Witness"]

FORMAT = "ceir/custody-policy/v1"
MIN_THRESHOLD = 2
_MAX_INT = 2**63 - 1
_ORGANISATION = re.compile(r"[a-z0-9]+(?:[-.][a-z0-9]+)*")
_TOKEN = re.compile(r"[!-~]+")  # printable ASCII, no space
_DECIMAL = re.compile(r"0|[1-9][0-9]{0,18}")


@dataclass(frozen=True)
class Officer:
    """A person of an organisation who approves policies with an Ed25519 key kept off the server."""

    organisation: str
    verifier: Verifier

    @property
    def name(self) -> str:
        """The officer's name: the name of the key."""
        return self.verifier.name

    def line(self) -> str:
        """The policy line, without its newline."""
        return f"officer {self.organisation} {self.verifier.vkey}"


@dataclass(frozen=True)
class Witness:
    """A witness (Kominfo, for one): a note key for policies, a cosigner key for checkpoints."""

    verifier: Verifier
    cosigner: CosignatureVerifier

    def __post_init__(self) -> None:
        if self.verifier.name != self.cosigner.name:
            raise ValueError(
                f"witness keys have two names, {self.verifier.name!r} and {self.cosigner.name!r}"
            )
        if self.verifier.public_key == self.cosigner.public_key:
            raise ValueError(
                f"witness {self.verifier.name} uses one key for note signatures and cosignatures"
            )

    @property
    def name(self) -> str:
        """The witness's name, shared by both its keys."""
        return self.verifier.name

    def line(self) -> str:
        """The policy line, without its newline."""
        return f"witness {self.verifier.vkey} {self.cosigner.vkey}"


@dataclass(frozen=True)
class Threshold:
    """How many distinct officers of ``organisation`` must sign: M of its N officers."""

    organisation: str
    required: int


@dataclass(frozen=True)
class CustodyPolicy:
    """One version of the custody policy (see the module docstring for its text).

    Officers, thresholds and witnesses are kept in their canonical order
    whatever order they are given in, so that equal policies are equal values.
    """

    version: int
    origin: str
    custodian: str
    endpoint: str
    log_key: Verifier
    complaints: str
    expires: int
    thresholds: tuple[Threshold, ...]
    officers: tuple[Officer, ...]
    witness_quorum: int
    witnesses: tuple[Witness, ...]

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "thresholds", tuple(sorted(self.thresholds, key=lambda t: t.organisation))
        )
        object.__setattr__(
            self, "officers", tuple(sorted(self.officers, key=lambda o: (o.organisation, o.name)))
        )
        object.__setattr__(self, "witnesses", tuple(sorted(self.witnesses, key=lambda w: w.name)))
        _check_scalars(self)
        _check_officers(self)
        _check_witnesses(self)
        _check_keys(self)

    def officers_of(self, organisation: str) -> tuple[Officer, ...]:
        """The officers of ``organisation``, by name."""
        return tuple(o for o in self.officers if o.organisation == organisation)

    def threshold_of(self, organisation: str) -> int:
        """How many of ``organisation``'s officers must sign; ``KeyError`` if it has none."""
        for threshold in self.thresholds:
            if threshold.organisation == organisation:
                return threshold.required
        raise KeyError(f"policy version {self.version} lists no officers of {organisation!r}")

    def note_verifiers(self) -> tuple[Verifier, ...]:
        """Every key that may sign a policy or handover note: officers, then witnesses."""
        return (*(o.verifier for o in self.officers), *(w.verifier for w in self.witnesses))

    def roles(self) -> dict[bytes, str]:
        """Each public key of the policy and its role, e.g. ``officer ayu of telkomsel``."""
        roles = {self.log_key.public_key: f"log key {self.log_key.name}"}
        for officer in self.officers:
            roles[officer.verifier.public_key] = f"officer {officer.name} of {officer.organisation}"
        for witness in self.witnesses:
            roles[witness.verifier.public_key] = f"witness {witness.name} (note key)"
            roles[witness.cosigner.public_key] = f"witness {witness.name} (cosigner key)"
        return roles

    def expired(self, now: int) -> bool:
        """True when ``now`` (Unix seconds) is at or after the expiry."""
        return now >= self.expires

    def text(self) -> str:
        """The canonical text: every line ends in a newline."""
        return "".join(line + "\n" for line in self._lines())

    def _lines(self) -> Iterator[str]:
        yield FORMAT
        yield f"version {self.version}"
        yield f"origin {self.origin}"
        yield f"custodian {self.custodian}"
        yield f"endpoint {self.endpoint}"
        yield f"log-key {self.log_key.vkey}"
        yield f"complaints {self.complaints}"
        yield f"expires {self.expires}"
        for threshold in self.thresholds:
            yield f"organisation {threshold.organisation} {threshold.required}"
        for officer in self.officers:
            yield officer.line()
        yield f"witness-quorum {self.witness_quorum}"
        for witness in self.witnesses:
            yield witness.line()

    @classmethod
    def parse(cls, text: str, version: int | None = None) -> CustodyPolicy:
        """The policy a canonical text states.

        Raises ``MalformedPolicy`` naming the first wrong line; ``version``
        (the version the caller expects) only labels the error.
        """
        try:
            policy = _Reader(text).policy()
        except (ValueError, KeyFormatError) as error:
            raise MalformedPolicy(str(error), version) from None
        canonical = policy.text()
        if canonical != text:
            raise MalformedPolicy(_first_difference(text, canonical), version)
        return policy


def _check_scalars(policy: CustodyPolicy) -> None:
    if not 0 <= policy.version <= _MAX_INT:
        raise ValueError(f"version {policy.version} is outside 0 to 2**63 - 1")
    if not 0 <= policy.expires <= _MAX_INT:
        raise ValueError(f"expiry {policy.expires} is outside 0 to 2**63 - 1")
    for what, value in (("origin", policy.origin), ("endpoint", policy.endpoint)):
        if not _TOKEN.fullmatch(value):
            raise ValueError(f"{what} {value!r} is empty or not printable ASCII without spaces")
    for what, value in (("custodian", policy.custodian), ("complaints", policy.complaints)):
        _check_organisation(what, value)


def _check_organisation(what: str, name: str) -> None:
    if not _ORGANISATION.fullmatch(name):
        raise ValueError(
            f"{what} {name!r} is not an organisation name (lowercase a-z, 0-9, joined by - or .)"
        )


def _check_officers(policy: CustodyPolicy) -> None:
    required = {t.organisation: t.required for t in policy.thresholds}
    if len(required) != len(policy.thresholds):
        raise ValueError("an organisation has two threshold lines")
    counts = Counter(officer.organisation for officer in policy.officers)
    for organisation, threshold in required.items():
        _check_organisation("organisation", organisation)
        if not MIN_THRESHOLD <= threshold <= counts[organisation]:
            raise ValueError(
                f"{organisation}'s threshold {threshold} is not between {MIN_THRESHOLD} "
                f"and its {counts[organisation]} officers"
            )
    for organisation in counts:
        if organisation not in required:
            raise ValueError(f"officers of {organisation!r} have no threshold line")
    if policy.custodian not in required:
        raise ValueError(f"the custodian {policy.custodian!r} has no officers")


def _check_witnesses(policy: CustodyPolicy) -> None:
    if not 1 <= policy.witness_quorum <= len(policy.witnesses):
        raise ValueError(
            f"witness quorum {policy.witness_quorum} is not between 1 and the "
            f"{len(policy.witnesses)} witnesses"
        )


def _check_keys(policy: CustodyPolicy) -> None:
    names = Counter(
        [policy.log_key.name, *(o.name for o in policy.officers)]
        + [w.name for w in policy.witnesses]
    )
    twice = sorted(name for name, count in names.items() if count > 1)
    if twice:
        raise ValueError(f"key name {twice[0]!r} is used by two keys of the policy")
    keys = [
        policy.log_key.public_key,
        *(o.verifier.public_key for o in policy.officers),
        *(w.verifier.public_key for w in policy.witnesses),
        *(w.cosigner.public_key for w in policy.witnesses),
    ]
    if len(set(keys)) != len(keys):
        raise ValueError("one public key is listed twice in the policy (under two names or roles)")


class _Reader:
    """Reads a policy text line by line, naming the line of any error."""

    def __init__(self, text: str) -> None:
        if not text.endswith("\n"):
            raise ValueError("policy text does not end with a newline")
        self._lines = text[:-1].split("\n")
        self._next = 0

    def policy(self) -> CustodyPolicy:
        self._fields("", 0, FORMAT)
        version = self._integer("version")
        origin, custodian, endpoint = (self._field(k) for k in ("origin", "custodian", "endpoint"))
        log_key = Verifier.from_vkey(self._field("log-key"))
        complaints = self._field("complaints")
        expires = self._integer("expires")
        thresholds = []
        while self._at("organisation"):
            organisation, required = self._fields("organisation", 2)
            thresholds.append(Threshold(organisation, _decimal(required, "threshold")))
        officers = []
        while self._at("officer"):
            organisation, vkey = self._fields("officer", 2)
            officers.append(Officer(organisation, Verifier.from_vkey(vkey)))
        quorum = self._integer("witness-quorum")
        witnesses = []
        while self._at("witness"):
            note_key, cosigner_key = self._fields("witness", 2)
            witnesses.append(
                Witness(Verifier.from_vkey(note_key), CosignatureVerifier.from_vkey(cosigner_key))
            )
        if self._next < len(self._lines):
            raise ValueError(f"line {self._next + 1}, {self._lines[self._next]!r}, is not expected")
        return CustodyPolicy(
            version,
            origin,
            custodian,
            endpoint,
            log_key,
            complaints,
            expires,
            tuple(thresholds),
            tuple(officers),
            quorum,
            tuple(witnesses),
        )

    def _at(self, keyword: str) -> bool:
        return self._next < len(self._lines) and self._lines[self._next].startswith(keyword + " ")

    def _fields(self, keyword: str, count: int, whole: str = "") -> list[str]:
        number = self._next + 1
        if self._next >= len(self._lines):
            raise ValueError(f"the policy ends before line {number} ({keyword or whole})")
        line = self._lines[self._next]
        self._next += 1
        if whole:
            if line != whole:
                raise ValueError(f"line {number} is {line!r}, expected {whole!r}")
            return []
        words = line.split(" ")
        if words[0] != keyword or len(words) != count + 1 or not all(words[1:]):
            raise ValueError(
                f"line {number} is {line!r}, expected {keyword!r} and {count} field(s) "
                "separated by single spaces"
            )
        return words[1:]

    def _field(self, keyword: str) -> str:
        return self._fields(keyword, 1)[0]

    def _integer(self, keyword: str) -> int:
        return _decimal(self._field(keyword), keyword)


def _decimal(text: str, what: str) -> int:
    if not _DECIMAL.fullmatch(text) or int(text) > _MAX_INT:
        raise ValueError(f"{what} {text!r} is not a decimal below 2**63 without leading zeros")
    return int(text)


def _first_difference(text: str, canonical: str) -> str:
    given, wanted = text.split("\n"), canonical.split("\n")
    for number, (line, expected) in enumerate(zip(given, wanted, strict=False), start=1):
        if line != expected:
            return f"not canonical: line {number} is {line!r}, the canonical form is {expected!r}"
    return "not canonical: lines are missing or extra"
