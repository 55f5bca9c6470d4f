"""A small certificate authority for demos and tests: ``ceir pki init``.

It makes what mutual TLS needs: a CA (key and self-signed certificate), a
server certificate for the CEIR naming the hosts clients dial, and one client
certificate per organisation of the brief, whose subject common name (CN) is
the organisation's name in the register. The CEIR takes the caller's
organisation from that CN, so a certificate proves "the holder of this key is
organisation X, as vouched for by this CA".

This is not how a production CA is run (no offline root, no revocation lists,
keys written unencrypted): a real deployment issues certificates from its own
PKI. Keys are ECDSA P-256 and written readable by their owner only, never
over an existing file.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_pem_private_key,
)
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ceir.organisations import BRIEF_ORGANISATIONS as _TABLE

__all__ = [
    "BRIEF_ORGANISATIONS",
    "DEFAULT_DAYS",
    "DEFAULT_HOSTS",
    "Issued",
    "OrgIdentity",
    "PkiFiles",
    "init_pki",
    "issue_client",
    "issue_server",
    "load_issued",
    "new_ca",
    "write_issued",
]

DEFAULT_DAYS = 365
DEFAULT_HOSTS = ("localhost", "127.0.0.1")
# Certificates are valid from a little before now, so that a clock slightly
# behind ours does not reject a certificate made a second ago.
_BACKDATE = datetime.timedelta(minutes=5)


@dataclass(frozen=True)
class OrgIdentity:
    """Who a client certificate names: CN = name, O = full name, OU = kind."""

    name: str
    kind: str
    full_name: str


BRIEF_ORGANISATIONS: tuple[OrgIdentity, ...] = tuple(
    OrgIdentity(org.name, org.kind, org.full_name) for org in _TABLE
)
"""The certificate identities of ``ceir.organisations``' table, in its order."""


@dataclass(frozen=True)
class Issued:
    """A private key and the certificate for it."""

    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def key_pem(self) -> bytes:
        return self.key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())

    @property
    def cert_pem(self) -> bytes:
        return self.certificate.public_bytes(Encoding.PEM)


@dataclass(frozen=True)
class PkiFiles:
    """Where ``init_pki`` wrote everything."""

    directory: Path
    ca: Path
    server: Path
    clients: dict[str, Path]

    def key(self, certificate: Path) -> Path:
        """The key file beside a certificate file (``x.pem`` -> ``x.key``)."""
        return certificate.with_suffix(".key")


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _name(common_name: str, organisation: str, unit: str | None = None) -> x509.Name:
    attributes = [
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
    ]
    if unit:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, unit))
    return x509.Name(attributes)


def _builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    days: float,
    not_before: datetime.datetime | None,
) -> x509.CertificateBuilder:
    start = not_before if not_before is not None else _now() - _BACKDATE
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def new_ca(
    common_name: str = "CEIR demo CA",
    days: float = DEFAULT_DAYS,
    not_before: datetime.datetime | None = None,
) -> Issued:
    """A new certificate authority: a key and its self-signed certificate."""
    key = _new_key()
    name = _name(common_name, "CEIR simulation (demo and test use only)")
    certificate = (
        _builder(name, name, key, days, not_before)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Issued(key, certificate)


def _leaf(
    ca: Issued,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    days: float,
    not_before: datetime.datetime | None,
    alt_names: list[x509.GeneralName] | None = None,
) -> Issued:
    key = _new_key()
    builder = (
        _builder(subject, ca.certificate.subject, key, days, not_before)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
    )
    if alt_names:
        builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
    return Issued(key, builder.sign(ca.key, hashes.SHA256()))


def _alt_name(host: str) -> x509.GeneralName:
    """An IP address SAN for an address, a DNS SAN otherwise."""
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def issue_server(
    ca: Issued,
    hosts: tuple[str, ...] | list[str] = DEFAULT_HOSTS,
    days: float = DEFAULT_DAYS,
    not_before: datetime.datetime | None = None,
) -> Issued:
    """The CEIR's server certificate, valid for each of ``hosts`` (DNS names or IPs)."""
    if not hosts:
        raise ValueError("a server certificate needs at least one host name or address")
    return _leaf(
        ca,
        _name(hosts[0], "CEIR custodian", "ceir"),
        ExtendedKeyUsageOID.SERVER_AUTH,
        days,
        not_before,
        [_alt_name(host) for host in hosts],
    )


def issue_client(
    ca: Issued,
    org: OrgIdentity,
    days: float = DEFAULT_DAYS,
    not_before: datetime.datetime | None = None,
) -> Issued:
    """A client certificate for ``org``: CN is the organisation's name in the register."""
    return _leaf(
        ca,
        _name(org.name, org.full_name, org.kind),
        ExtendedKeyUsageOID.CLIENT_AUTH,
        days,
        not_before,
    )


def write_issued(issued: Issued, certificate: Path) -> None:
    """Write ``certificate`` (``x.pem``) and its key (``x.key``, mode 0600).

    Raises ``FileExistsError`` rather than replace either file.
    """
    key = certificate.with_suffix(".key")
    for path in (certificate, key):
        if path.exists():
            raise FileExistsError(f"{path} exists already; not replacing it")
    descriptor = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(issued.key_pem)
    with certificate.open("xb") as file:
        file.write(issued.cert_pem)


def load_issued(certificate: Path) -> Issued:
    """Read back a certificate (``x.pem``) and its key (``x.key``)."""
    key = load_pem_private_key(certificate.with_suffix(".key").read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{certificate.with_suffix('.key')}: not an ECDSA key")
    return Issued(key, x509.load_pem_x509_certificate(certificate.read_bytes()))


def init_pki(
    directory: Path,
    hosts: tuple[str, ...] | list[str] = DEFAULT_HOSTS,
    days: float = DEFAULT_DAYS,
    organisations: tuple[OrgIdentity, ...] = BRIEF_ORGANISATIONS,
) -> PkiFiles:
    """Create a CA, a server certificate and one client certificate per organisation.

    Files in ``directory`` (created if missing): ``ca.pem``/``ca.key``,
    ``server.pem``/``server.key`` and ``<org>.pem``/``<org>.key``. Raises
    ``FileExistsError`` before writing anything if any of them exists.
    """
    directory.mkdir(parents=True, exist_ok=True)
    names = ["ca", "server", *(org.name for org in organisations)]
    if len(set(names)) != len(names):
        raise ValueError("organisation names must be unique and not 'ca' or 'server'")
    for name in names:
        for suffix in (".pem", ".key"):
            if (directory / f"{name}{suffix}").exists():
                raise FileExistsError(
                    f"{directory / (name + suffix)} exists already; use an empty directory"
                )
    ca = new_ca(days=days)
    write_issued(ca, directory / "ca.pem")
    write_issued(issue_server(ca, hosts, days), directory / "server.pem")
    clients: dict[str, Path] = {}
    for org in organisations:
        path = directory / f"{org.name}.pem"
        write_issued(issue_client(ca, org, days), path)
        clients[org.name] = path
    return PkiFiles(directory, directory / "ca.pem", directory / "server.pem", clients)
