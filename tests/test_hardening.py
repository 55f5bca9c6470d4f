"""Hostile and careless callers, through real sockets: credentials are
checked before any message is read, a call that never sends is answered,
an undecodable request is a clean INVALID_ARGUMENT with an access-log line,
revocation ends open streams, a feed ahead of the register is told so, a
certificate must name one organisation, and snapshots are rationed."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

import ceir.api.calls
import ceir.service.orgs
from ceir.api.server import RunningServer, ServerConfig, create_server
from ceir.api.streams import MAX_SNAPSHOTS_PER_ORG, ListSyncStreams
from ceir.domain.errors import ResourceExhausted
from ceir.pki import _leaf, init_pki, load_issued
from ceir.service.orgs import add_organisation, revoke_organisation
from ceir.v1 import (
    equipment_check_pb2,
    list_sync_pb2,
    policy_pb2,
    policy_pb2_grpc,
    registry_pb2,
    types_pb2,
)

from .helpers import TELKOMSEL_IMSI, Client, error_reason, imei

CHECK = "/ceir.v1.EquipmentCheckService/CheckEquipment"
CHECK_STREAM = "/ceir.v1.EquipmentCheckService/CheckEquipmentStream"
IMPORT = "/ceir.v1.RegistryService/ImportRegistrations"


class Silence:
    """A request iterator that sends nothing until released (a client that
    opened a call and never sends); release it before the channel closes."""

    def __init__(self, first: list[bytes] | None = None) -> None:
        self._first = list(first or [])
        self._released = threading.Event()

    def __iter__(self) -> Iterator[bytes]:
        yield from self._first
        self._released.wait(60)

    def release(self) -> None:
        self._released.set()


def _bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


def _held_call(
    channel: grpc.Channel,
    method: str,
    metadata: tuple[tuple[str, str], ...] = (),
    timeout: float = 20,
    first: list[bytes] | None = None,
) -> tuple[grpc.RpcError, Silence]:
    """Open ``method`` with a request stream that never sends (after
    ``first``); the error it ends with."""
    silence = Silence(first)
    call: Any = channel.stream_unary(method, None, None)
    try:
        call(iter(silence), metadata=metadata, timeout=timeout)
    except grpc.RpcError as error:
        return error, silence
    finally:
        silence.release()
    raise AssertionError(f"{method} answered a call that sent nothing")


# --- credentials before messages ---------------------------------------------------------


def test_a_call_without_credentials_is_refused_before_it_sends(channel: grpc.Channel) -> None:
    # A deadline far beyond the answer: a server that waited for the message
    # would end this call DEADLINE_EXCEEDED instead.
    error, _ = _held_call(channel, CHECK)
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(error) == "MISSING_TOKEN"


def test_a_call_with_a_made_up_token_is_refused_before_it_sends(channel: grpc.Channel) -> None:
    error, _ = _held_call(channel, CHECK, _bearer("ceir_not-a-token"))
    assert error.code() is grpc.StatusCode.UNAUTHENTICATED
    assert error_reason(error) == "INVALID_TOKEN"


def test_an_organisation_that_may_not_import_is_refused_before_its_first_chunk(
    channel: grpc.Channel, tokens: dict[str, str]
) -> None:
    error, _ = _held_call(channel, IMPORT, _bearer(tokens["kominfo"]))
    assert error.code() is grpc.StatusCode.PERMISSION_DENIED
    assert error_reason(error) == "ACTION_NOT_ALLOWED"


def test_an_authenticated_call_that_never_sends_is_answered(
    channel: grpc.Channel, tokens: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ceir.api.calls, "READ_TIMEOUT_SECONDS", 0.5)
    error, _ = _held_call(channel, CHECK, _bearer(tokens["telkomsel"]))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(error) == "REQUEST_TIMEOUT"


def test_a_unary_call_that_ends_without_a_message_is_invalid(
    channel: grpc.Channel, tokens: dict[str, str]
) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        call: Any = channel.stream_unary(CHECK, None, None)
        call(iter(()), metadata=_bearer(tokens["telkomsel"]), timeout=20)
    assert failure.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(failure.value) == "NO_REQUEST"


# --- undecodable requests ----------------------------------------------------------------


@pytest.fixture
def logged_server(sqlite_url: str) -> Iterator[tuple[RunningServer, str]]:
    running = create_server(
        ServerConfig(db=sqlite_url, address="127.0.0.1:0", insecure=True, access_log=True)
    )
    token = add_organisation(running.register.db, "telkomsel", "operator", ["510-10"])
    yield running, token
    running.stop(grace=1)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"\x0a\x05352", id="truncated"),
        pytest.param(b"\x0a\x02\xff\xfe", id="imei-not-utf8"),
        pytest.param(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", id="bad-tag"),
    ],
)
def test_an_undecodable_request_is_invalid_and_logged(
    logged_server: tuple[RunningServer, str], raw: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    running, token = logged_server
    caplog.set_level(logging.INFO, logger="ceir.access")
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        call: Any = channel.unary_unary(CHECK, None, None)
        with pytest.raises(grpc.RpcError) as failure:
            call(raw, metadata=_bearer(token), timeout=20)
    assert failure.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(failure.value) == "UNDECODABLE_REQUEST"
    assert "ceir.v1.CheckEquipmentRequest" in str(failure.value.details())
    assert running.access_log is not None
    running.access_log.flush()  # written by the access log's thread
    lines = [r for r in caplog.records if r.name == "ceir.access"]
    assert [(r.method, r.code, r.org) for r in lines] == [  # type: ignore[attr-defined]
        ("CheckEquipment", "INVALID_ARGUMENT", "telkomsel")
    ]
    counted = running.metrics.calls.labels("CheckEquipment", "INVALID_ARGUMENT")._value.get()
    assert counted == 1


def test_an_undecodable_message_in_a_stream_ends_it_cleanly(
    channel: grpc.Channel, tokens: dict[str, str]
) -> None:
    good = equipment_check_pb2.CheckEquipmentStreamRequest(correlation_id=7)
    good.check.imei = imei(1)
    call: Any = channel.stream_stream(CHECK_STREAM, None, None)
    answers = call(
        iter([good.SerializeToString(), b"\x0a\x05\x08"]),
        metadata=_bearer(tokens["telkomsel"]),
        timeout=20,
    )
    first = equipment_check_pb2.CheckEquipmentStreamResponse.FromString(next(answers))
    assert first.correlation_id == 7
    with pytest.raises(grpc.RpcError) as failure:
        next(answers)
    assert failure.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(failure.value) == "UNDECODABLE_REQUEST"


# --- revocation reaches open streams -----------------------------------------------------


def test_revoking_an_organisation_ends_its_open_streams(
    server: RunningServer, clients: dict[str, Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The credential cache is what bounds the delay; the stream's own re-check
    # runs every second. Shorten the cache so the test does not wait on it.
    monkeypatch.setattr(ceir.service.orgs, "CACHE_SECONDS", 0.2)
    xl, telkomsel = clients["xl"], clients["telkomsel"]
    head = telkomsel.check_imei(imei(5)).sequence
    feed: Any = xl.sync.WatchChanges(
        list_sync_pb2.WatchChangesRequest(after_sequence=head), metadata=xl.metadata, timeout=30
    )
    stream_input = Silence()
    first = equipment_check_pb2.CheckEquipmentStreamRequest(correlation_id=1)
    first.check.imei = imei(6)
    first.check.imsi = TELKOMSEL_IMSI

    def requests() -> Iterator[equipment_check_pb2.CheckEquipmentStreamRequest]:
        yield first
        stream_input._released.wait(60)

    checks: Any = telkomsel.check.CheckEquipmentStream(
        requests(), metadata=telkomsel.metadata, timeout=30
    )
    try:
        assert next(checks).correlation_id == 1  # the stream works before revocation
        revoke_organisation(server.register.db, "xl")
        revoke_organisation(server.register.db, "telkomsel")
        for stream in (feed, checks):
            with pytest.raises(grpc.RpcError) as failure:
                for _ in stream:
                    pass
            # Ended by the server for the revocation, not by the deadline.
            assert failure.value.code() is grpc.StatusCode.UNAUTHENTICATED
            assert error_reason(failure.value) == "INVALID_TOKEN"
    finally:
        stream_input.release()


# --- the feed ahead of the register ------------------------------------------------------


def test_a_feed_ahead_of_the_register_is_out_of_range(clients: dict[str, Client]) -> None:
    telkomsel = clients["telkomsel"]
    head = telkomsel.check_imei(imei(9)).sequence
    feed: Any = telkomsel.sync.WatchChanges(
        list_sync_pb2.WatchChangesRequest(after_sequence=head + 5),
        metadata=telkomsel.metadata,
        timeout=20,
    )
    with pytest.raises(grpc.RpcError) as failure:
        next(feed)
    assert failure.value.code() is grpc.StatusCode.OUT_OF_RANGE
    assert error_reason(failure.value) == "SEQUENCE_AHEAD"
    assert f"head {head}" in str(failure.value.details())


def test_a_feed_at_the_head_stays_open(clients: dict[str, Client]) -> None:
    telkomsel = clients["telkomsel"]
    head = telkomsel.check_imei(imei(10)).sequence
    feed: Any = telkomsel.sync.WatchChanges(
        list_sync_pb2.WatchChangesRequest(after_sequence=head),
        metadata=telkomsel.metadata,
        timeout=30,
    )
    telkomsel.check_imei(imei(11))  # a new notification: the next change
    assert next(feed).changes[0].sequence == head + 1
    feed.cancel()


# --- certificates ------------------------------------------------------------------------


def test_a_certificate_naming_two_organisations_is_refused(tmp_path: Path) -> None:
    pki = init_pki(tmp_path / "pki")
    running = create_server(
        ServerConfig(
            db=f"sqlite:///{tmp_path / 'ceir.db'}",
            address="127.0.0.1:0",
            tls_key=pki.key(pki.server),
            tls_cert=pki.server,
            client_ca=pki.ca,
            access_log=False,
        )
    )
    try:
        for name, kind in (("xl", "operator"), ("kominfo", "kominfo")):
            add_organisation(running.register.db, name, kind, ["510-11"] if name == "xl" else [])
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, "xl"),
                x509.NameAttribute(NameOID.COMMON_NAME, "kominfo"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Two names"),
            ]
        )
        two = _leaf(load_issued(pki.ca), subject, ExtendedKeyUsageOID.CLIENT_AUTH, 1, None)
        credentials = grpc.ssl_channel_credentials(pki.ca.read_bytes(), two.key_pem, two.cert_pem)
        with grpc.secure_channel(f"localhost:{running.port}", credentials) as channel:
            stub = policy_pb2_grpc.PolicyServiceStub(channel)
            with pytest.raises(grpc.RpcError) as failure:
                stub.GetPolicy(policy_pb2.GetPolicyRequest(), timeout=20)
        assert failure.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert error_reason(failure.value) == "AMBIGUOUS_CERTIFICATE"
    finally:
        running.stop(grace=1)


# --- snapshots are rationed --------------------------------------------------------------


def test_an_organisation_gets_a_bounded_number_of_snapshots_at_once() -> None:
    streams = ListSyncStreams.__new__(ListSyncStreams)
    streams._snapshots = {}
    held = [streams._snapshot_slot("xl") for _ in range(MAX_SNAPSHOTS_PER_ORG)]
    for slot in held:
        slot.__enter__()
    with pytest.raises(ResourceExhausted), streams._snapshot_slot("xl"):
        pass
    with streams._snapshot_slot("telkomsel"):  # others are not held up by xl's
        pass
    for slot in held:
        slot.__exit__(None, None, None)
    with streams._snapshot_slot("xl"):  # freed again
        pass
    assert streams._snapshots == {}


def test_snapshot_chunks_are_cut_as_the_reader_takes_them(clients: dict[str, Client]) -> None:
    kemenperin = clients["kemenperin"]
    for serial in range(5):
        kemenperin.register(imei(100 + serial), request_id=f"snap-{serial}")
    chunks = list(
        kemenperin.sync.GetSnapshot(
            list_sync_pb2.GetSnapshotRequest(chunk_size=2), metadata=kemenperin.metadata, timeout=20
        )
    )
    assert [len(c.imei_keys) for c in chunks] == [2, 2, 1]
    assert [c.last for c in chunks] == [False, False, True]
    assert chunks[0].total_entries == 5
    assert len({c.sequence for c in chunks}) == 1


def test_import_registrations_unchanged_for_those_who_may(
    clients: dict[str, Client],
) -> None:
    kemenperin = clients["kemenperin"]
    chunk = registry_pb2.ImportRegistrationsRequest(request_id="imp-1")
    row = chunk.rows.add(row=1)
    row.device.imeis.append(imei(300))
    row.device.source = types_pb2.REGISTRATION_SOURCE_TPP_IMPORT
    row.device.reference = "TPP-9"
    answer = kemenperin.call(kemenperin.registry.ImportRegistrations, iter([chunk]))
    assert (answer.rows_received, answer.rows_accepted) == (1, 1)
