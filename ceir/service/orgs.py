"""Organisations and their bearer tokens.

Tokens are shown once, when created, and stored as SHA-256 hashes. The
server keeps a short-lived cache of token lookups, so a revoked token stops
working within ``CACHE_SECONDS`` (and open streams end within a second more:
the server re-checks their credentials every second).
"""

from __future__ import annotations

import contextlib
import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from sqlalchemy import ColumnElement, select, update

from ceir.domain.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated
from ceir.domain.identifiers import validate_mcc_mnc
from ceir.domain.model import Caller, OrgKind
from ceir.storage.database import Database
from ceir.storage.schema import Organisation

from .clock import Clock, SystemClock

CACHE_SECONDS = 2.0
TOKEN_PREFIX = "ceir_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def add_organisation(
    db: Database, name: str, kind: str, mcc_mncs: list[str], clock: Clock | None = None
) -> str:
    """Create an organisation and return its new token (shown only now)."""
    name = name.strip()
    if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
        raise InvalidArgument.field("name", "1 to 64 letters, digits, '-' or '_'")
    try:
        org_kind = OrgKind(kind)
    except ValueError:
        raise InvalidArgument.field(
            "kind", f"one of {', '.join(k.value for k in OrgKind)}, not {kind!r}"
        ) from None
    codes = [validate_mcc_mnc(code) for code in mcc_mncs]
    if org_kind is OrgKind.OPERATOR and not codes:
        raise InvalidArgument.field("mcc_mnc", "an operator needs at least one MCC-MNC")
    if org_kind is not OrgKind.OPERATOR and codes:
        raise InvalidArgument.field("mcc_mnc", "only operators have MCC-MNCs")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    now_us = (clock or SystemClock()).now_us()
    with db.write() as session:
        if session.scalar(select(Organisation.id).where(Organisation.name == name)) is not None:
            raise AlreadyExists(f"organisation {name!r} exists already", reason="ORG_EXISTS")
        session.add(
            Organisation(
                name=name,
                kind=org_kind.value,
                mcc_mncs=",".join(codes),
                token_sha256=hash_token(token),
                created_at_us=now_us,
            )
        )
    return token


def revoke_organisation(db: Database, name: str, clock: Clock | None = None) -> None:
    now_us = (clock or SystemClock()).now_us()
    with db.write() as session:
        result = session.execute(
            update(Organisation)
            .where(
                Organisation.name == name,
                Organisation.revoked_at_us.is_(None),
            )
            .values(revoked_at_us=now_us)
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFound(f"no active organisation named {name!r}", reason="ORG_NOT_FOUND")


def list_organisations(db: Database) -> list[tuple[str, str, str, bool]]:
    with db.write() as session:
        rows = session.execute(select(Organisation).order_by(Organisation.name)).scalars()
        return [(o.name, o.kind, o.mcc_mncs, o.revoked_at_us is not None) for o in rows]


class CredentialCache:
    """Credential lookups, each trusted for ``CACHE_SECONDS``.

    Known callers are kept in an LRU of ``limit``; unknown credentials in a
    separate, smaller LRU of ``miss_limit``. So a stream of made-up
    credentials costs one lookup each and pushes out only other made-up
    ones: it never evicts a valid caller. ``cached`` never touches the
    database, so an event loop may call it; ``get`` looks up what is
    missing or stale.
    """

    def __init__(
        self,
        lookup: Callable[[str], Caller | None],
        limit: int = 10_000,
        miss_limit: int = 1_024,
    ) -> None:
        self._lookup = lookup
        self._limit = limit
        self._miss_limit = miss_limit
        self._known: OrderedDict[str, tuple[float, Caller]] = OrderedDict()
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self.lookups = 0  # database lookups made (for tests and the bench)

    def __len__(self) -> int:
        return len(self._known) + len(self._unknown)

    @property
    def known(self) -> int:
        return len(self._known)

    def holds(self, key: str) -> bool:
        """Whether a known caller's entry is held for ``key``, fresh or not."""
        return key in self._known

    def cached(self, key: str) -> tuple[bool, Caller | None]:
        """(True, the caller or None if unknown) if a fresh lookup is held."""
        now = time.monotonic()
        entry = self._known.get(key)
        if entry is not None and now - entry[0] <= CACHE_SECONDS:
            with contextlib.suppress(KeyError):  # no lock: a race may only lose the touch
                self._known.move_to_end(key)
            return True, entry[1]
        missed = self._unknown.get(key)
        if missed is not None and now - missed <= CACHE_SECONDS:
            return True, None
        return False, None

    def get(self, key: str) -> Caller | None:
        """The caller for ``key`` (None if unknown), looked up if not fresh."""
        fresh, caller = self.cached(key)
        if fresh:
            return caller
        caller = self._lookup(key)
        now = time.monotonic()
        with self._lock:
            self.lookups += 1
            if caller is None:
                self._known.pop(key, None)
                self._unknown[key] = now
                self._unknown.move_to_end(key)
                while len(self._unknown) > self._miss_limit:
                    self._unknown.popitem(last=False)
            else:
                self._unknown.pop(key, None)
                self._known[key] = (now, caller)
                self._known.move_to_end(key)
                while len(self._known) > self._limit:
                    self._known.popitem(last=False)
        return caller


class NeedsLookup(Exception):
    """Raised by ``cached_caller_for`` when only the database can answer."""


class Authenticator:
    """Turns a bearer token into a Caller, with a small time-limited cache."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # Keyed by the metadata as sent: a call with a cached token parses
        # and hashes nothing.
        self.cache = CredentialCache(self._lookup_authorization)

    def caller_for(self, authorization: str | None) -> Caller:
        """The token's organisation; Unauthenticated if there is none."""
        return self._answer(authorization, self.cache.get(_parse(authorization)))

    def cached_caller_for(self, authorization: str | None) -> Caller:
        """As ``caller_for`` from the cache alone; NeedsLookup if it cannot say."""
        key = _parse(authorization)
        fresh, caller = self.cache.cached(key)
        if not fresh:
            raise NeedsLookup(key)
        return self._answer(authorization, caller)

    @staticmethod
    def _answer(authorization: str | None, caller: Caller | None) -> Caller:
        if caller is None:
            raise Unauthenticated("unknown or revoked token", reason="INVALID_TOKEN")
        return caller

    def _lookup_authorization(self, authorization: str) -> Caller | None:
        token = authorization.partition(" ")[2].strip()
        return lookup_organisation(self.db, Organisation.token_sha256 == hash_token(token))


def _parse(authorization: str | None) -> str:
    """The authorization metadata if it is well formed ("Bearer <token>")."""
    if not authorization:
        raise Unauthenticated(
            "missing 'authorization: Bearer <token>' metadata", reason="MISSING_TOKEN"
        )
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated(
            "authorization metadata must be 'Bearer <token>'", reason="BAD_AUTHORIZATION"
        )
    return authorization


def lookup_organisation(db: Database, condition: ColumnElement[bool]) -> Caller | None:
    """The active organisation that matches ``condition``, as a Caller."""
    with db.read() as connection:
        row = connection.execute(
            select(Organisation).where(condition, Organisation.revoked_at_us.is_(None))
        ).first()
    if row is None:
        return None
    codes = tuple(code for code in row.mcc_mncs.split(",") if code)
    return Caller(name=row.name, kind=OrgKind(row.kind), mcc_mncs=codes)
