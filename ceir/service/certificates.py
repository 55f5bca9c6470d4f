"""Organisations identified by their client certificate (mutual TLS).

The TLS layer has already checked the certificate: signed by the client CA
the server was given, within its validity period, and the holder has its
key. What is left is the register's own question: is the organisation the
certificate names (its subject common name) one we know, and not revoked?
Lookups are cached for ``CACHE_SECONDS``, as tokens are, so revoking an
organisation locks out its certificate within that time too.

A certificate must name exactly one organisation: one with two common
names is refused, never read as its first.
"""

from __future__ import annotations

import functools

from cryptography import x509
from cryptography.x509.oid import NameOID

from ceir.domain.errors import Unauthenticated
from ceir.domain.model import Caller
from ceir.storage.database import Database
from ceir.storage.schema import Organisation

from .orgs import CredentialCache, NeedsLookup, lookup_organisation

__all__ = ["CertificateAuthenticator", "organisation_named_by"]


@functools.lru_cache(maxsize=1_024)
def organisation_named_by(pem: bytes) -> str:
    """The one common name of a (verified) client certificate's subject."""
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise Unauthenticated(
            "the client certificate cannot be read", reason="BAD_CERTIFICATE"
        ) from None
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1:
        raise Unauthenticated(
            f"the client certificate must name exactly one organisation (subject common "
            f"name); it names {len(names)}",
            reason="AMBIGUOUS_CERTIFICATE",
        )
    value = names[0].value
    return value.decode() if isinstance(value, bytes) else value


class CertificateAuthenticator:
    """Turns a verified certificate's common name into a Caller."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.cache = CredentialCache(
            lambda name: lookup_organisation(db, Organisation.name == name)
        )

    def caller_for(self, common_name: str) -> Caller:
        """The active organisation named ``common_name``; Unauthenticated otherwise."""
        return _answer(common_name, self.cache.get(common_name))

    def cached_caller_for(self, common_name: str) -> Caller:
        """As ``caller_for`` from the cache alone; NeedsLookup if it cannot say."""
        fresh, caller = self.cache.cached(common_name)
        if not fresh:
            raise NeedsLookup(common_name)
        return _answer(common_name, caller)


def _answer(common_name: str, caller: Caller | None) -> Caller:
    if caller is None:
        raise Unauthenticated(
            f"client certificate names {common_name!r}, which is not an active "
            "organisation of the register",
            reason="UNKNOWN_CERTIFICATE_ORG",
        )
    return caller
