"""Organisations identified by their client certificate (mutual TLS).

The TLS layer has already checked the certificate: signed by the client CA
the server was given, within its validity period, and the holder has its
key. What is left is the register's own question: is the organisation the
certificate names (its subject common name) one we know, and not revoked?
Lookups are cached for ``CACHE_SECONDS``, as tokens are, so revoking an
organisation locks out its certificate within that time too.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import select

from ceir.domain.errors import Unauthenticated
from ceir.domain.model import Caller, OrgKind
from ceir.storage.database import Database
from ceir.storage.schema import Organisation

from .orgs import CACHE_SECONDS

__all__ = ["CertificateAuthenticator"]


class CertificateAuthenticator:
    """Turns a verified certificate's common name into a Caller."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._cache: dict[str, tuple[float, Caller | None]] = {}
        self._lock = threading.Lock()

    def caller_for(self, common_name: str) -> Caller:
        """The active organisation named ``common_name``; Unauthenticated otherwise."""
        now = time.monotonic()
        cached = self._cache.get(common_name)
        if cached is None or now - cached[0] > CACHE_SECONDS:
            cached = (now, self._lookup(common_name))
            with self._lock:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[common_name] = cached
        if cached[1] is None:
            raise Unauthenticated(
                f"client certificate names {common_name!r}, which is not an active "
                "organisation of the register",
                reason="UNKNOWN_CERTIFICATE_ORG",
            )
        return cached[1]

    def _lookup(self, name: str) -> Caller | None:
        with self.db.read() as connection:
            row = connection.execute(
                select(Organisation).where(
                    Organisation.name == name, Organisation.revoked_at_us.is_(None)
                )
            ).first()
        if row is None:
            return None
        codes = tuple(code for code in row.mcc_mncs.split(",") if code)
        return Caller(name=row.name, kind=OrgKind(row.kind), mcc_mncs=codes)
