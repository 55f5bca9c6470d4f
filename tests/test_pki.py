"""The demo certificate authority: what ``ceir pki init`` writes."""

from __future__ import annotations

import datetime
import ipaddress
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from typer.testing import CliRunner

from ceir.cli import app
from ceir.pki import BRIEF_ORGANISATIONS, init_pki, issue_client, load_issued, new_ca

ORG_NAMES = [
    "telkomsel",
    "indosat",
    "xl",
    "tri",
    "smartfren",
    "kemenperin",
    "bea-cukai",
    "kemlu",
    "kominfo",
]


def _certificate(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    return str(name.get_attributes_for_oid(oid)[0].value)


def test_init_writes_a_ca_a_server_and_every_organisation_of_the_brief(tmp_path: Path) -> None:
    files = init_pki(tmp_path / "pki")
    expected = {"ca", "server", *ORG_NAMES}
    assert {p.stem for p in files.directory.iterdir()} == expected
    assert {p.suffix for p in files.directory.iterdir()} == {".pem", ".key"}
    assert sorted(files.clients) == sorted(ORG_NAMES)


def test_keys_are_readable_by_their_owner_only(tmp_path: Path) -> None:
    files = init_pki(tmp_path)
    for key in tmp_path.glob("*.key"):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE(files.ca.stat().st_mode) & 0o044  # certificates are public


def test_every_certificate_is_signed_by_the_ca(tmp_path: Path) -> None:
    files = init_pki(tmp_path)
    ca = _certificate(files.ca)
    ca.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    for path in [files.server, *files.clients.values()]:
        certificate = _certificate(path)
        certificate.verify_directly_issued_by(ca)
        assert not certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_client_certificates_name_the_organisation_and_its_kind(tmp_path: Path) -> None:
    files = init_pki(tmp_path)
    for org in BRIEF_ORGANISATIONS:
        subject = _certificate(files.clients[org.name]).subject
        assert _attribute(subject, NameOID.COMMON_NAME) == org.name
        assert _attribute(subject, NameOID.ORGANIZATION_NAME) == org.full_name
        assert _attribute(subject, NameOID.ORGANIZATIONAL_UNIT_NAME) == org.kind
        usage = _certificate(files.clients[org.name]).extensions.get_extension_for_class(
            x509.ExtendedKeyUsage
        )
        assert list(usage.value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    customs = _certificate(files.clients["bea-cukai"]).subject
    assert _attribute(customs, NameOID.ORGANIZATIONAL_UNIT_NAME) == "customs"


def test_server_certificate_names_the_hosts_given(tmp_path: Path) -> None:
    files = init_pki(tmp_path, hosts=["ceir.example", "10.1.2.3"])
    names = _certificate(files.server).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert names.value.get_values_for_type(x509.DNSName) == ["ceir.example"]
    assert names.value.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.1.2.3")]


def test_default_hosts_are_localhost_and_the_loopback_address(tmp_path: Path) -> None:
    files = init_pki(tmp_path)
    names = _certificate(files.server).extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert names.value.get_values_for_type(x509.DNSName) == ["localhost"]
    assert names.value.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]


def test_validity_is_the_days_asked_for(tmp_path: Path) -> None:
    files = init_pki(tmp_path, days=30)
    certificate = _certificate(files.clients["xl"])
    lifetime = certificate.not_valid_after_utc - certificate.not_valid_before_utc
    assert lifetime == datetime.timedelta(days=30)
    assert certificate.not_valid_before_utc <= datetime.datetime.now(datetime.UTC)


def test_init_refuses_to_replace_existing_files(tmp_path: Path) -> None:
    init_pki(tmp_path)
    before = (tmp_path / "ca.key").read_bytes()
    with pytest.raises(FileExistsError, match=r"ca\.pem"):
        init_pki(tmp_path)
    assert (tmp_path / "ca.key").read_bytes() == before


def test_an_expired_certificate_can_be_made_for_tests(tmp_path: Path) -> None:
    ca = new_ca()
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=10)
    expired = issue_client(ca, BRIEF_ORGANISATIONS[0], days=1, not_before=long_ago)
    assert expired.certificate.not_valid_after_utc < datetime.datetime.now(datetime.UTC)


def test_load_issued_reads_back_a_certificate_and_its_key(tmp_path: Path) -> None:
    files = init_pki(tmp_path)
    issued = load_issued(files.clients["kemlu"])
    assert issued.certificate == _certificate(files.clients["kemlu"])
    assert issued.key.public_key() == issued.certificate.public_key()


def test_cli_pki_init_writes_the_files_and_says_how_to_serve(tmp_path: Path) -> None:
    target = tmp_path / "pki"
    result = CliRunner().invoke(
        app, ["pki", "init", str(target), "--days", "7", "--host", "ceir.test"]
    )
    assert result.exit_code == 0, result.output
    assert "--client-ca" in result.stdout
    names = _certificate(target / "server.pem").extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    )
    assert names.value.get_values_for_type(x509.DNSName) == ["ceir.test"]
    again = CliRunner().invoke(app, ["pki", "init", str(target)])
    assert again.exit_code == 1
    assert "exists already" in again.stderr
