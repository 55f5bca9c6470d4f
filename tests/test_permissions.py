"""The permission matrix, proven: every RPC of every ``ceir.v1`` service,
called by every kind of organisation and with every kind of bad credential,
through a real mutual-TLS server on SQLite.

``MATRIX`` below is the one table of expectations; docs/integration-teams.md
reproduces it ("Permission matrix") and a test compares the two. The RPCs
come from the generated descriptors, so a new RPC without a row fails.

Cells: ``allowed`` (OK, or a business answer such as NOT_FOUND,
ALREADY_EXISTS or FAILED_PRECONDITION: the call got past permission),
``denied`` (PERMISSION_DENIED), ``unauthenticated`` (UNAUTHENTICATED) and
``handshake`` (the TLS handshake fails; the client sees UNAVAILABLE and the
server handles nothing).
"""

from __future__ import annotations

import datetime
import importlib
import itertools
import pkgutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

import ceir.v1
from ceir.api.server import RunningServer, ServerConfig, create_server
from ceir.pki import (
    BRIEF_ORGANISATIONS,
    Issued,
    OrgIdentity,
    PkiFiles,
    init_pki,
    issue_client,
    load_issued,
    new_ca,
)
from ceir.service.orgs import add_organisation, revoke_organisation
from ceir.storage.database import Database
from ceir.v1 import (
    complaints_pb2,
    equipment_check_pb2,
    list_sync_pb2,
    policy_pb2,
    registry_pb2,
    types_pb2,
)

from .helpers import imei
from .test_docs import INTEGRATION, markdown_table

MATRIX = """
| RPC | operator | kemenperin | customs | kemlu | kominfo | no token | revoked token | token, no certificate | revoked organisation's certificate | expired certificate | foreign CA's certificate |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
| EquipmentCheckService.CheckEquipment | allowed | allowed | denied | denied | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| EquipmentCheckService.CheckEquipmentBatch | allowed | allowed | denied | denied | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| EquipmentCheckService.CheckEquipmentStream | allowed | allowed | denied | denied | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| RegistryService.RegisterDevice | allowed | allowed | allowed | allowed | denied | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| RegistryService.RevokeRegistration | allowed | allowed | allowed | allowed | denied | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| RegistryService.ReportStolen | allowed | denied | denied | denied | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| RegistryService.ReportRecovered | allowed | allowed | denied | denied | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| RegistryService.AddException | allowed | allowed | denied | denied | denied | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| RegistryService.RemoveException | allowed | allowed | denied | denied | denied | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| RegistryService.ListNotifications | allowed | allowed | denied | denied | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| RegistryService.GetImeiRecord | allowed | allowed | denied | denied | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| RegistryService.FindRangeUploads | denied | allowed | denied | denied | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| RegistryService.ImportRegistrations | allowed | allowed | allowed | allowed | denied | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| ListSyncService.GetSnapshot | allowed | allowed | denied | denied | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| ListSyncService.WatchChanges | allowed | allowed | denied | denied | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| PolicyService.GetPolicy | allowed | allowed | allowed | allowed | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| PolicyService.UpdatePolicy | denied | denied | denied | denied | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| TransparencyService.GetCheckpoint | allowed | allowed | denied | denied | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| TransparencyService.GetInclusionProof | allowed | allowed | denied | denied | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| TransparencyService.GetConsistencyProof | allowed | allowed | denied | denied | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| CustodyService.GetCustody | allowed | allowed | allowed | allowed | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| CustodyService.ProposePolicy | allowed | allowed | allowed | allowed | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| CustodyService.SubmitSignature | allowed | allowed | allowed | allowed | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| CustodyService.ReportReadiness | allowed | allowed | allowed | allowed | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| CustodyService.Freeze | allowed | allowed | allowed | allowed | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| CustodyService.SubmitCosignature | allowed | allowed | allowed | allowed | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| CustodyService.Transfer | allowed | allowed | allowed | allowed | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| CustodyService.Activate | allowed | allowed | allowed | allowed | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| CustodyService.Retire | allowed | allowed | allowed | allowed | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| CustodyService.Abort | allowed | allowed | allowed | allowed | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| ComplaintService.FileComplaint | allowed | allowed | denied | denied | denied | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| ComplaintService.GetComplaint | allowed | allowed | denied | denied | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| ComplaintService.ListComplaints | allowed | allowed | denied | denied | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| ComplaintService.UpdateComplaint | allowed | allowed | denied | denied | denied | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| ComplaintService.ResolveComplaint | allowed | allowed | denied | denied | denied | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| ComplaintService.DiagnoseImei | allowed | allowed | denied | denied | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| OversightService.ListAccountAlerts | denied | allowed | denied | denied | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| OversightService.ListRegistrationsBy | denied | allowed | denied | denied | allowed | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
| OversightService.RevokeRegistrationsBy | denied | allowed | denied | denied | denied | unauthenticated | unauthenticated | handshake | unauthenticated | handshake | handshake |
"""  # noqa: E501  # a Markdown table, reproduced verbatim in the docs

KINDS = ("operator", "kemenperin", "customs", "kemlu", "kominfo")
# Who calls for each kind: an organisation of the brief, with its certificate.
KIND_ORG = {
    "operator": "telkomsel",
    "kemenperin": "kemenperin",
    "customs": "bea-cukai",
    "kemlu": "kemlu",
    "kominfo": "kominfo",
}
TELKOMSEL_IMSI = "510101234567890"
ALLOWED_CODES = {
    grpc.StatusCode.OK,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
}
CLASS_OF_CODE = {
    grpc.StatusCode.PERMISSION_DENIED: "denied",
    grpc.StatusCode.UNAUTHENTICATED: "unauthenticated",
    grpc.StatusCode.UNAVAILABLE: "handshake",
}
_serials = itertools.count(1)


def matrix() -> tuple[list[str], dict[str, dict[str, str]]]:
    """The columns and, per RPC, the expected class of each cell."""
    lines = MATRIX.strip().splitlines()
    header = [cell.strip() for cell in lines[0].strip().strip("|").split("|")]
    rows = markdown_table(MATRIX, header)
    return header[1:], {row["RPC"]: {k: v for k, v in row.items() if k != "RPC"} for row in rows}


# Served by a witness's own listener (``ceir custody witness serve``), not by
# the register: anyone may call it, and tests/witness checks it.
NOT_SERVED_BY_THE_REGISTER = ("WitnessService",)


def published_rpcs() -> dict[str, MethodDescriptor]:
    """Every RPC of every ceir.v1 service the register serves, by ``Service.Method``."""
    found: dict[str, MethodDescriptor] = {}
    for module_info in pkgutil.iter_modules(ceir.v1.__path__):
        if not module_info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"ceir.v1.{module_info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            if service.name in NOT_SERVED_BY_THE_REGISTER:
                continue
            for method in service.methods:
                found[f"{service.name}.{method.name}"] = method
    return found


# --- minimal, valid requests ------------------------------------------------------------


def _fresh_imei() -> str:
    return imei(next(_serials), tac=35_450_000)


def _device(kind: str) -> registry_pb2.DeviceRegistration:
    source = {
        "operator": types_pb2.REGISTRATION_SOURCE_TOURIST,
        "customs": types_pb2.REGISTRATION_SOURCE_CUSTOMS,
        "kemlu": types_pb2.REGISTRATION_SOURCE_DIPLOMAT,
    }.get(kind, types_pb2.REGISTRATION_SOURCE_TPP_IMPORT)
    device = registry_pb2.DeviceRegistration(
        imeis=[_fresh_imei()], source=source, reference="REF-1", brand="Brand", model="Model"
    )
    if source == types_pb2.REGISTRATION_SOURCE_TOURIST:
        device.valid_until.FromDatetime(
            datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=7)
        )
    return device


def _request_id() -> str:
    return f"matrix-{next(_serials)}"


def _check() -> equipment_check_pb2.CheckEquipmentRequest:
    return equipment_check_pb2.CheckEquipmentRequest(imei=_fresh_imei(), imsi=TELKOMSEL_IMSI)


# For each RPC, the request(s) a caller of this kind sends: valid, so that a
# caller allowed to make the call gets past the permission check.
REQUESTS: dict[str, Callable[[str], Message | list[Message]]] = {
    "EquipmentCheckService.CheckEquipment": lambda kind: _check(),
    "EquipmentCheckService.CheckEquipmentBatch": lambda kind: (
        equipment_check_pb2.CheckEquipmentBatchRequest(checks=[_check()])
    ),
    "EquipmentCheckService.CheckEquipmentStream": lambda kind: [
        equipment_check_pb2.CheckEquipmentStreamRequest(correlation_id=1, check=_check())
    ],
    "RegistryService.RegisterDevice": lambda kind: registry_pb2.RegisterDeviceRequest(
        request_id=_request_id(), device=_device(kind)
    ),
    "RegistryService.RevokeRegistration": lambda kind: registry_pb2.RevokeRegistrationRequest(
        request_id=_request_id(), imeis=[_fresh_imei()], reason="matrix"
    ),
    "RegistryService.ReportStolen": lambda kind: registry_pb2.ReportStolenRequest(
        request_id=_request_id(),
        imeis=[_fresh_imei()],
        police_report="LP/1/2020",
        subscriber_imsi=TELKOMSEL_IMSI,
    ),
    "RegistryService.ReportRecovered": lambda kind: registry_pb2.ReportRecoveredRequest(
        request_id=_request_id(), imeis=[_fresh_imei()], police_report="LP/1/2020"
    ),
    "RegistryService.AddException": lambda kind: registry_pb2.AddExceptionRequest(
        request_id=_request_id(), imei=_fresh_imei(), imsi=TELKOMSEL_IMSI, reason="matrix"
    ),
    "RegistryService.RemoveException": lambda kind: registry_pb2.RemoveExceptionRequest(
        request_id=_request_id(), imei=_fresh_imei(), imsi=TELKOMSEL_IMSI
    ),
    "RegistryService.ListNotifications": lambda kind: registry_pb2.ListNotificationsRequest(),
    "RegistryService.GetImeiRecord": lambda kind: registry_pb2.GetImeiRecordRequest(
        imei=_fresh_imei()
    ),
    "RegistryService.FindRangeUploads": lambda kind: registry_pb2.FindRangeUploadsRequest(),
    "RegistryService.ImportRegistrations": lambda kind: [
        registry_pb2.ImportRegistrationsRequest(
            request_id=_request_id(), rows=[registry_pb2.ImportRow(row=1, device=_device(kind))]
        )
    ],
    "ListSyncService.GetSnapshot": lambda kind: list_sync_pb2.GetSnapshotRequest(),
    "ListSyncService.WatchChanges": lambda kind: list_sync_pb2.WatchChangesRequest(),
    "PolicyService.GetPolicy": lambda kind: policy_pb2.GetPolicyRequest(),
    "PolicyService.UpdatePolicy": lambda kind: policy_pb2.UpdatePolicyRequest(
        request_id=_request_id(),
        policy=types_pb2.Policy(grace_days=30),
        update_mask=FieldMask(paths=["grace_days"]),
    ),
    "TransparencyService.GetCheckpoint": lambda kind: _message("TransparencyService.GetCheckpoint"),
    "TransparencyService.GetInclusionProof": lambda kind: _message(
        "TransparencyService.GetInclusionProof", sequence=1
    ),
    "TransparencyService.GetConsistencyProof": lambda kind: _message(
        "TransparencyService.GetConsistencyProof", first_size=1
    ),
    "CustodyService.GetCustody": lambda kind: _message("CustodyService.GetCustody"),
    "CustodyService.ProposePolicy": lambda kind: _message("CustodyService.ProposePolicy"),
    "CustodyService.SubmitSignature": lambda kind: _message("CustodyService.SubmitSignature"),
    "CustodyService.ReportReadiness": lambda kind: _message("CustodyService.ReportReadiness"),
    "CustodyService.Freeze": lambda kind: _message("CustodyService.Freeze"),
    "CustodyService.SubmitCosignature": lambda kind: _message("CustodyService.SubmitCosignature"),
    "CustodyService.Transfer": lambda kind: _message("CustodyService.Transfer"),
    "CustodyService.Activate": lambda kind: _message("CustodyService.Activate"),
    "CustodyService.Retire": lambda kind: _message("CustodyService.Retire"),
    "CustodyService.Abort": lambda kind: _message("CustodyService.Abort"),
    "ComplaintService.FileComplaint": lambda kind: complaints_pb2.FileComplaintRequest(
        request_id=_request_id(),
        imeis=[_fresh_imei()],
        category=complaints_pb2.COMPLAINT_CATEGORY_NO_SIGNAL,
        imsi=TELKOMSEL_IMSI if kind == "operator" else "",
    ),
    "ComplaintService.GetComplaint": lambda kind: complaints_pb2.GetComplaintRequest(
        tracking_id="C-999999"
    ),
    "ComplaintService.ListComplaints": lambda kind: complaints_pb2.ListComplaintsRequest(),
    "ComplaintService.UpdateComplaint": lambda kind: complaints_pb2.UpdateComplaintRequest(
        request_id=_request_id(),
        tracking_id="C-999999",
        state=complaints_pb2.COMPLAINT_STATE_INVESTIGATING,
    ),
    "ComplaintService.ResolveComplaint": lambda kind: complaints_pb2.ResolveComplaintRequest(
        request_id=_request_id(),
        tracking_id="C-999999",
        note="matrix",
        no_action=complaints_pb2.NoAction(),
    ),
    "ComplaintService.DiagnoseImei": lambda kind: complaints_pb2.DiagnoseImeiRequest(
        imei=_fresh_imei(), imsi=TELKOMSEL_IMSI
    ),
    # An abused account: a window in 2000, where nobody registered anything.
    "OversightService.ListAccountAlerts": lambda kind: _message(
        "OversightService.ListAccountAlerts"
    ),
    "OversightService.ListRegistrationsBy": lambda kind: _message(
        "OversightService.ListRegistrationsBy",
        organisation="kemenperin",
        start_time=Timestamp(seconds=946_684_800),
        end_time=Timestamp(seconds=946_771_200),
    ),
    "OversightService.RevokeRegistrationsBy": lambda kind: _message(
        "OversightService.RevokeRegistrationsBy",
        request_id=_request_id(),
        organisation="kemenperin",
        start_time=Timestamp(seconds=946_684_800),
        end_time=Timestamp(seconds=946_771_200),
        reason="matrix",
    ),
}


def _message(rpc: str, **fields: Any) -> Message:
    """A request built from the descriptor (for services this test need not import)."""
    method = published_rpcs()[rpc]
    return message_factory.GetMessageClass(method.input_type)(**fields)


# --- calling ------------------------------------------------------------------------------


def call(channel: grpc.Channel, rpc: str, kind: str, metadata: tuple[tuple[str, str], ...]) -> str:
    """Make one call of ``rpc`` and return the class of its outcome."""
    method = published_rpcs()[rpc]
    path = f"/{method.containing_service.full_name}/{method.name}"
    response_class = message_factory.GetMessageClass(method.output_type)
    kwargs: dict[str, Any] = {
        "request_serializer": lambda message: message.SerializeToString(),
        "response_deserializer": response_class.FromString,
    }
    request = REQUESTS[rpc](kind)
    options: dict[str, Any] = {"metadata": metadata, "timeout": 30}
    try:
        if method.client_streaming and method.server_streaming:
            assert isinstance(request, list)
            _first(channel.stream_stream(path, **kwargs)(iter(request), **options))
        elif method.client_streaming:
            assert isinstance(request, list)
            channel.stream_unary(path, **kwargs)(iter(request), **options)
        elif method.server_streaming:
            _first(channel.unary_stream(path, **kwargs)(request, **options))
        else:
            channel.unary_unary(path, **kwargs)(request, **options)
    except grpc.RpcError as error:
        failed: grpc.Call = error  # type: ignore[assignment]  # every client RpcError is a Call
        code = failed.code()
        if code in ALLOWED_CODES:
            return "allowed"
        return CLASS_OF_CODE.get(code, f"unexpected {code.name}: {failed.details()}")
    return "allowed"


def _first(responses: Any) -> None:
    """Read the first answer of a stream (a feed never ends), then hang up."""
    try:
        next(responses)
    except StopIteration:
        pass
    finally:
        responses.cancel()  # a stream is also a Call


# --- the server and the callers ------------------------------------------------------------


@dataclass
class Setup:
    running: RunningServer
    pki: PkiFiles
    tokens: dict[str, str]
    revoked_org: Issued
    expired: Issued
    foreign: Issued

    def mtls(self, client: Issued | None, kind_org: str | None = None) -> grpc.Channel:
        """A channel to the mutual-TLS port, with this client certificate (or none)."""
        key: bytes | None
        cert: bytes | None
        if client is None and kind_org is not None:
            key = self.pki.key(self.pki.clients[kind_org]).read_bytes()
            cert = self.pki.clients[kind_org].read_bytes()
        elif client is not None:
            key, cert = client.key_pem, client.cert_pem
        else:
            key = cert = None
        credentials = grpc.ssl_channel_credentials(self.pki.ca.read_bytes(), key, cert)
        return grpc.secure_channel(f"localhost:{self.running.port}", credentials)

    def token_channel(self) -> grpc.Channel:
        """A channel to the token port: TLS, no client certificate."""
        credentials = grpc.ssl_channel_credentials(self.pki.ca.read_bytes())
        return grpc.secure_channel(f"localhost:{self.running.token_port}", credentials)


KIND_OF = {org.name: org.kind for org in BRIEF_ORGANISATIONS}
MCC_MNCS = {"telkomsel": ["510-10"]}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    base = tmp_path_factory.mktemp("matrix")
    pki = init_pki(base / "pki", organisations=tuple(
        org for org in BRIEF_ORGANISATIONS if org.name in KIND_ORG.values()
    ))  # fmt: skip
    db_url = f"sqlite:///{base / 'ceir.db'}"
    db = Database(db_url)
    db.migrate()
    try:
        tokens = {
            name: add_organisation(db, name, KIND_OF[name], MCC_MNCS.get(name, []))
            for name in KIND_ORG.values()
        }
        tokens["retired"] = add_organisation(db, "retired", "kominfo", [])
        revoke_organisation(db, "retired")
        add_organisation(db, "withdrawn", "operator", ["510-89"])
        revoke_organisation(db, "withdrawn")
    finally:
        db.dispose()
    ca = load_issued(pki.ca)
    long_ago = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    telkomsel = OrgIdentity("telkomsel", "operator", "PT Telekomunikasi Selular")
    running = create_server(
        ServerConfig(
            db=db_url,
            address="127.0.0.1:0",
            tls_key=pki.key(pki.server),
            tls_cert=pki.server,
            client_ca=pki.ca,
            token_address="127.0.0.1:0",
            access_log=False,
            follow_interval=0.2,
        )
    )
    setup = Setup(
        running,
        pki,
        tokens,
        revoked_org=issue_client(ca, OrgIdentity("withdrawn", "operator", "Withdrawn Op")),
        expired=issue_client(ca, telkomsel, days=1, not_before=long_ago),
        foreign=issue_client(new_ca("Not the CEIR's CA"), telkomsel),
    )
    # One change in the register, so that the change feed has a first answer.
    with setup.mtls(None, "kemenperin") as channel:
        assert call(channel, "RegistryService.RegisterDevice", "kemenperin", ()) == "allowed"
    yield setup
    running.stop(grace=1)


def calls_handled(running: RunningServer) -> float:
    """How many RPCs the server's interceptor has seen, whatever their outcome."""
    return sum(
        sample.value
        for family in running.metrics.registry.collect()
        if family.name == "ceir_rpc_calls"
        for sample in family.samples
        if sample.name.endswith("_total")
    )


def column_outcomes(setup: Setup, column: str, rpcs: list[str]) -> dict[str, str]:
    """Call every RPC as the column says; the class of each outcome."""
    if column in KINDS:
        with setup.mtls(None, KIND_ORG[column]) as channel:
            return {rpc: call(channel, rpc, column, ()) for rpc in rpcs}
    if column == "no token":
        with setup.token_channel() as channel:
            return {rpc: call(channel, rpc, "kominfo", ()) for rpc in rpcs}
    if column == "revoked token":
        bearer = (("authorization", f"Bearer {setup.tokens['retired']}"),)
        with setup.token_channel() as channel:
            return {rpc: call(channel, rpc, "kominfo", bearer) for rpc in rpcs}
    if column == "revoked organisation's certificate":
        with setup.mtls(setup.revoked_org) as channel:
            return {rpc: call(channel, rpc, "operator", ()) for rpc in rpcs}
    # The handshake columns: a fresh connection per call, so that each call
    # makes its own handshake rather than reuse a failed channel's state.
    client = {
        "token, no certificate": None,
        "expired certificate": setup.expired,
        "foreign CA's certificate": setup.foreign,
    }[column]
    bearer = (("authorization", f"Bearer {setup.tokens['telkomsel']}"),)
    outcomes: dict[str, str] = {}
    for rpc in rpcs:
        with setup.mtls(client) as channel:
            outcomes[rpc] = call(channel, rpc, "operator", bearer)
    return outcomes


def test_matrix_has_a_row_for_every_rpc() -> None:
    _columns, expected = matrix()
    assert sorted(expected) == sorted(published_rpcs())
    assert sorted(REQUESTS) == sorted(published_rpcs())


def test_matrix_columns_are_every_kind_and_every_bad_credential() -> None:
    columns, _expected = matrix()
    assert columns[: len(KINDS)] == list(KINDS)


def test_every_rpc_answers_every_caller_as_the_matrix_says(setup: Setup) -> None:
    columns, expected = matrix()
    rpcs = sorted(expected)
    actual: dict[str, dict[str, str]] = {rpc: {} for rpc in rpcs}
    for column in columns:
        for rpc, outcome in column_outcomes(setup, column, rpcs).items():
            actual[rpc][column] = outcome
    wrong = [
        f"{rpc} / {column}: expected {expected[rpc][column]}, got {actual[rpc][column]}"
        for rpc in rpcs
        for column in columns
        if actual[rpc][column] != expected[rpc][column]
    ]
    assert not wrong, "\n".join(wrong)


def test_a_failed_handshake_reaches_no_rpc(setup: Setup) -> None:
    before = calls_handled(setup.running)
    for column in ("token, no certificate", "expired certificate", "foreign CA's certificate"):
        outcomes = column_outcomes(setup, column, ["PolicyService.GetPolicy"])
        assert outcomes == {"PolicyService.GetPolicy": "handshake"}
    assert calls_handled(setup.running) == before


def test_docs_reproduce_the_matrix() -> None:
    columns, expected = matrix()
    text = INTEGRATION.read_text(encoding="utf-8")
    rows = markdown_table(text, ["RPC", *columns])
    assert {row["RPC"]: {c: row[c] for c in columns} for row in rows} == expected
