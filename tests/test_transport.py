"""Transport security: mutual TLS names the caller, tokens on their own port,
plain text only when asked for. Real sockets, a real server on SQLite."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

import ceir.service.orgs
from ceir.api.server import RunningServer, ServerConfig, create_server
from ceir.cli import app
from ceir.pki import PkiFiles, init_pki
from ceir.service.orgs import add_organisation, revoke_organisation
from ceir.v1 import policy_pb2, policy_pb2_grpc, registry_pb2, registry_pb2_grpc, types_pb2

from .helpers import error_reason, imei

ORGS = {
    "kemenperin": ("kemenperin", []),
    "kominfo": ("kominfo", []),
    "xl": ("operator", ["510-11"]),
}


@dataclass
class Mtls:
    running: RunningServer
    pki: PkiFiles
    tokens: dict[str, str]

    def channel(self, org: str | None) -> grpc.Channel:
        key = cert = None
        if org is not None:
            cert = self.pki.clients[org].read_bytes()
            key = self.pki.key(self.pki.clients[org]).read_bytes()
        credentials = grpc.ssl_channel_credentials(self.pki.ca.read_bytes(), key, cert)
        return grpc.secure_channel(f"localhost:{self.running.port}", credentials)

    def token_channel(self) -> grpc.Channel:
        credentials = grpc.ssl_channel_credentials(self.pki.ca.read_bytes())
        return grpc.secure_channel(f"localhost:{self.running.token_port}", credentials)


@pytest.fixture
def mtls(tmp_path: Path) -> Iterator[Mtls]:
    pki = init_pki(tmp_path / "pki")
    running = create_server(
        ServerConfig(
            db=f"sqlite:///{tmp_path / 'ceir.db'}",
            address="127.0.0.1:0",
            tls_key=pki.key(pki.server),
            tls_cert=pki.server,
            client_ca=pki.ca,
            token_address="127.0.0.1:0",
            access_log=False,
        )
    )
    tokens = {
        name: add_organisation(running.register.db, name, kind, codes)
        for name, (kind, codes) in ORGS.items()
    }
    yield Mtls(running, pki, tokens)
    running.stop(grace=1)


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def _register(
    channel: grpc.Channel, serial: int, metadata: tuple[tuple[str, str], ...] = ()
) -> str:
    """Register one TPP import; the organisation the register recorded."""
    answer = registry_pb2_grpc.RegistryServiceStub(channel).RegisterDevice(
        registry_pb2.RegisterDeviceRequest(
            request_id=f"t-{serial}",
            device=registry_pb2.DeviceRegistration(
                imeis=[imei(serial)],
                source=types_pb2.REGISTRATION_SOURCE_TPP_IMPORT,
                reference="TPP-1",
                brand="B",
                model="M",
            ),
        ),
        metadata=metadata,
        timeout=30,
    )
    return answer.registration.registered_by


def _get_policy(channel: grpc.Channel, metadata: tuple[tuple[str, str], ...] = ()) -> None:
    policy_pb2_grpc.PolicyServiceStub(channel).GetPolicy(
        policy_pb2.GetPolicyRequest(), metadata=metadata, timeout=30
    )


# --- configuration ------------------------------------------------------------------------


def test_a_server_without_tls_or_insecure_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--insecure"):
        create_server(ServerConfig(db=str(tmp_path / "c.db"), address="127.0.0.1:0"))
    assert not (tmp_path / "c.db").exists()  # nothing opened


def test_transport_settings_that_do_not_fit_are_refused(tmp_path: Path) -> None:
    pki = init_pki(tmp_path / "pki")
    db = str(tmp_path / "c.db")
    with pytest.raises(ValueError, match="--client-ca needs"):
        create_server(ServerConfig(db=db, client_ca=pki.ca, insecure=True))
    with pytest.raises(ValueError, match="contradicts"):
        create_server(
            ServerConfig(db=db, tls_key=pki.key(pki.server), tls_cert=pki.server, insecure=True)
        )
    with pytest.raises(ValueError, match="--token-listen"):
        create_server(
            ServerConfig(
                db=db, tls_key=pki.key(pki.server), tls_cert=pki.server, token_address="x:1"
            )
        )


def test_plain_text_is_served_only_when_asked_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="ceir.server"):
        running = create_server(
            ServerConfig(
                db=str(tmp_path / "c.db"), address="127.0.0.1:0", insecure=True, access_log=False
            )
        )
    running.stop(grace=1)
    assert any("PLAIN TEXT" in record.getMessage() for record in caplog.records)


# --- who calls ----------------------------------------------------------------------------


def test_the_certificate_names_the_caller(mtls: Mtls) -> None:
    with mtls.channel("kemenperin") as channel:
        assert _register(channel, 1) == "kemenperin"


def test_a_token_of_the_same_organisation_may_come_with_the_certificate(mtls: Mtls) -> None:
    with mtls.channel("kemenperin") as channel:
        assert _register(channel, 2, _bearer(mtls.tokens["kemenperin"])) == "kemenperin"


def test_a_certificate_and_a_token_that_disagree_are_refused(mtls: Mtls) -> None:
    with mtls.channel("xl") as channel, pytest.raises(grpc.RpcError) as failure:
        _get_policy(channel, _bearer(mtls.tokens["kominfo"]))
    assert failure.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(failure.value) == "CREDENTIALS_DISAGREE"


def test_a_certificate_of_an_organisation_not_in_the_register_is_refused(mtls: Mtls) -> None:
    with mtls.channel("telkomsel") as channel, pytest.raises(grpc.RpcError) as failure:
        _get_policy(channel)
    assert failure.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(failure.value) == "UNKNOWN_CERTIFICATE_ORG"


def test_revoking_the_organisation_locks_out_its_certificate(
    mtls: Mtls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ceir.service.orgs, "CACHE_SECONDS", 0.0)
    with mtls.channel("kominfo") as channel:
        _get_policy(channel)
        revoke_organisation(mtls.running.register.db, "kominfo")
        with pytest.raises(grpc.RpcError) as failure:
            _get_policy(channel)
    assert error_reason(failure.value) == "UNKNOWN_CERTIFICATE_ORG"


def test_tokens_work_on_the_token_port_without_a_certificate(mtls: Mtls) -> None:
    with mtls.token_channel() as channel:
        assert _register(channel, 3, _bearer(mtls.tokens["kemenperin"])) == "kemenperin"
        with pytest.raises(grpc.RpcError) as failure:
            _get_policy(channel)
    assert error_reason(failure.value) == "MISSING_TOKEN"


def test_the_mutual_tls_port_refuses_a_connection_without_a_certificate(mtls: Mtls) -> None:
    with mtls.channel(None) as channel, pytest.raises(grpc.RpcError) as failure:
        _get_policy(channel, _bearer(mtls.tokens["kominfo"]))
    assert failure.value.code() is grpc.StatusCode.UNAVAILABLE


# --- the command line ---------------------------------------------------------------------


def test_cli_connects_with_a_client_certificate_and_no_token(mtls: Mtls) -> None:
    pki = mtls.pki
    where = ["--ceir", f"localhost:{mtls.running.port}", "--ca-cert", str(pki.ca)]
    mine = ["--client-cert", str(pki.clients["kominfo"])]
    mine += ["--client-key", str(pki.key(pki.clients["kominfo"]))]
    result = CliRunner(env={"CEIR_TOKEN": None}).invoke(app, ["policy", "show", *where, *mine])
    assert result.exit_code == 0, result.output
    refused = CliRunner(env={"CEIR_TOKEN": "x"}).invoke(
        app, ["policy", "show", *where, "--timeout", "10"]
    )
    assert refused.exit_code == 1
    assert "TLS handshake failed" in refused.stderr


def test_cli_needs_a_certificate_or_a_token(mtls: Mtls) -> None:
    where = ["--ceir", f"localhost:{mtls.running.port}", "--ca-cert", str(mtls.pki.ca)]
    result = CliRunner(env={"CEIR_TOKEN": None}).invoke(app, ["policy", "show", *where])
    assert result.exit_code == 1
    assert "--client-cert" in result.stderr and "--token" in result.stderr


def test_cli_serve_without_tls_or_insecure_is_a_one_line_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["serve", "--db", str(tmp_path / "s.db")])
    assert result.exit_code == 1
    assert "--insecure" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
