"""Organisations and their bearer tokens.

Tokens are shown once, when created, and stored as SHA-256 hashes. The
server keeps a short-lived cache of token lookups, so a revoked token stops
working within ``CACHE_SECONDS``.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time

from sqlalchemy import select, update

from ceir.domain.errors import AlreadyExists, InvalidArgument, NotFound, Unauthenticated
from ceir.domain.identifiers import validate_mcc_mnc
from ceir.domain.model import Caller, OrgKind
from ceir.storage.database import Database
from ceir.storage.schema import Organisation

from .clock import Clock, SystemClock

CACHE_SECONDS = 5.0
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


class Authenticator:
    """Turns a bearer token into a Caller, with a small time-limited cache."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache: dict[str, tuple[float, Caller | None]] = {}
        self._lock = threading.Lock()

    def caller_for(self, authorization: str | None) -> Caller:
        if not authorization:
            raise Unauthenticated(
                "missing 'authorization: Bearer <token>' metadata", reason="MISSING_TOKEN"
            )
        now = time.monotonic()
        # Keyed by the metadata as sent: a call with a cached token parses
        # and hashes nothing.
        cached = self._cache.get(authorization)
        if cached is None or now - cached[0] > CACHE_SECONDS:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated(
                    "authorization metadata must be 'Bearer <token>'", reason="BAD_AUTHORIZATION"
                )
            cached = (now, self._lookup(hash_token(token.strip())))
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[authorization] = cached
        if cached[1] is None:
            raise Unauthenticated("unknown or revoked token", reason="INVALID_TOKEN")
        return cached[1]

    def _lookup(self, digest: str) -> Caller | None:
        with self.db.read() as connection:
            row = connection.execute(
                select(Organisation).where(
                    Organisation.token_sha256 == digest, Organisation.revoked_at_us.is_(None)
                )
            ).first()
        if row is None:
            return None
        codes = tuple(code for code in row.mcc_mncs.split(",") if code)
        return Caller(name=row.name, kind=OrgKind(row.kind), mcc_mncs=codes)
