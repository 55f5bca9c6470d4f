"""Personal data stays with its operator: XL's node never receives a
Telkomsel subscriber's IMSI or MSISDN in clear, through any RPC an operator
may call, and still verifies every leaf and every root of the log, from
the very bytes it received. Telkomsel and the regulators do receive them.

Every response XL gets is recorded by a client interceptor on its channel,
as bytes, and searched for the numbers (in text, as a protobuf string
field carries them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest

from ceir.api.server import RunningServer
from ceir.v1 import (
    equipment_check_pb2,
    list_sync_pb2,
    policy_pb2,
    registry_pb2,
    transparency_pb2,
    types_pb2,
)
from operators_sim.verification import LogVerifier, Trust

from .helpers import Client, imei

pytestmark = pytest.mark.usefixtures("server")

TSEL_IMSI = "510109876543210"
TSEL_MSISDN = "6281298765432"
TSEL_OTHER_IMSI = "510105555555555"
XL_IMSI = "510111111111111"
SECRETS = (TSEL_IMSI.encode(), TSEL_MSISDN.encode(), TSEL_OTHER_IMSI.encode())


class Recorder(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[type-arg]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[type-arg]
):
    """Keeps the serialised bytes of every response on the channel."""

    def __init__(self) -> None:
        self.responses: list[bytes] = []

    def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        outcome = continuation(details, request)
        if outcome.exception() is None:
            self.responses.append(outcome.result().SerializeToString())
        return outcome

    def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return _Recorded(continuation(details, request), self.responses)


class _Recorded:
    def __init__(self, call: Any, into: list[bytes]) -> None:
        self._call = call
        self._into = into

    def __iter__(self) -> Iterator[Any]:
        for message in self._call:
            self._into.append(message.SerializeToString())
            yield message

    def cancel(self) -> bool:
        return bool(self._call.cancel())


def _telkomsel_subscriber_data(clients: dict[str, Client]) -> list[str]:
    """Notifications, an exception pair and a stolen report for Telkomsel
    subscribers, and the same for XL's own; the IMEIs involved."""
    tsel, xl, ministry = clients["telkomsel"], clients["xl"], clients["kemenperin"]
    notified, paired, stolen, shared = imei(7001), imei(7002), imei(7003), imei(7004)
    tsel.check_imei(notified, TSEL_IMSI, TSEL_MSISDN)  # unregistered: notified
    tsel.check_imei(shared, TSEL_OTHER_IMSI, TSEL_MSISDN)
    xl.check_imei(shared, XL_IMSI, "6281711111111")  # the same IMEI, XL's own subscriber
    tsel.call(
        tsel.registry.AddException,
        registry_pb2.AddExceptionRequest(imei=paired, imsi=TSEL_IMSI, reason="test handset"),
    )
    ministry.register(stolen)
    tsel.call(
        tsel.registry.ReportStolen,
        registry_pb2.ReportStolenRequest(
            imeis=[stolen], police_report="LP/123/XI/2026", subscriber_imsi=TSEL_IMSI
        ),
    )
    ministry.register(notified)  # resolves the notification: its end carries the pair too
    return [notified, paired, stolen, shared]


def _telkomsel_salts(server: RunningServer, regulator_token: str) -> set[bytes]:
    """The salts of Telkomsel subscribers' changes, as a regulator receives them."""
    client = _xl_client(server, regulator_token, Recorder())
    try:
        head = client.call(client.log.GetCheckpoint, transparency_pb2.GetCheckpointRequest())
        stream = client.call(client.sync.WatchChanges, list_sync_pb2.WatchChangesRequest())
        salts: set[bytes] = set()
        for message in stream:
            salts |= {c.subscriber_salt for c in message.changes if c.imsi.startswith("51010")}
            if message.changes[-1].sequence >= head.tree_size:
                break
        stream.cancel()  # type: ignore[no-untyped-call]
        return salts - {b""}
    finally:
        client.channel.close()


def _xl_client(server: RunningServer, token: str, recorder: Recorder) -> Client:
    channel = grpc.intercept_channel(grpc.insecure_channel(f"127.0.0.1:{server.port}"), recorder)
    return Client(channel, token)


def _every_read(xl: Client, imeis: list[str]) -> list[list_sync_pb2.WatchChangesResponse]:
    """Call every RPC an operator may read through; the feed's messages."""
    head = xl.call(xl.log.GetCheckpoint, transparency_pb2.GetCheckpointRequest()).tree_size
    list(xl.call(xl.sync.GetSnapshot, list_sync_pb2.GetSnapshotRequest()))
    feed: list[list_sync_pb2.WatchChangesResponse] = []
    stream = xl.call(xl.sync.WatchChanges, list_sync_pb2.WatchChangesRequest())
    for message in stream:
        feed.append(message)
        if message.changes and message.changes[-1].sequence >= head:
            break
    stream.cancel()  # type: ignore[no-untyped-call]
    for value in imeis:
        xl.call(xl.registry.GetImeiRecord, registry_pb2.GetImeiRecordRequest(imei=value))
        xl.check_imei(value, XL_IMSI)
    batch = [equipment_check_pb2.CheckEquipmentRequest(imei=v, imsi=XL_IMSI) for v in imeis]
    xl.call(
        xl.check.CheckEquipmentBatch, equipment_check_pb2.CheckEquipmentBatchRequest(checks=batch)
    )
    xl.call(xl.registry.ListNotifications, registry_pb2.ListNotificationsRequest(page_size=1000))
    xl.call(xl.policy.GetPolicy, policy_pb2.GetPolicyRequest())
    for sequence in range(1, head + 1):
        xl.call(
            xl.log.GetInclusionProof,
            transparency_pb2.GetInclusionProofRequest(sequence=sequence, tree_size=head),
        )
    return feed


def test_xl_never_receives_a_telkomsel_subscriber_in_clear_and_still_verifies_the_log(
    server: RunningServer, clients: dict[str, Client], tokens: dict[str, str]
) -> None:
    imeis = _telkomsel_subscriber_data(clients)
    recorder = Recorder()
    xl = _xl_client(server, tokens["xl"], recorder)
    try:
        feed = _every_read(xl, imeis)
    finally:
        xl.channel.close()
    assert len(recorder.responses) > 10
    # Nor the salts of Telkomsel's commitments, with which its IMSIs could be tried.
    salts = _telkomsel_salts(server, tokens["kominfo"])
    assert len(salts) >= 3
    secrets = (*SECRETS, *salts)
    leaked = [i for i, data in enumerate(recorder.responses) if any(s in data for s in secrets)]
    assert leaked == [], "Telkomsel subscriber data reached XL"
    # XL's own subscriber does reach it, in clear, with its salt.
    assert any(XL_IMSI.encode() in data for data in recorder.responses)

    # Telkomsel's subscriber changes reached XL as commitments only ...
    about_subscribers = [c for m in feed for c in m.changes if c.subscriber_commitment]
    assert {c.kind for c in about_subscribers} >= {
        types_pb2.CHANGE_KIND_NOTIFICATION_NEW,
        types_pb2.CHANGE_KIND_NOTIFICATION_RESOLVED,
        types_pb2.CHANGE_KIND_EXCEPTION_ADDED,
        types_pb2.CHANGE_KIND_BLACKLIST_BLOCKED,
    }
    hidden = [c for c in about_subscribers if not c.imsi]
    assert hidden and all(not c.msisdn and not c.subscriber_salt for c in hidden)
    # ... and the very messages XL received verify, leaf by leaf, root by root.
    signer = server.register.log.signer
    assert signer is not None
    verifier = LogVerifier(
        Trust((signer.signer.verifier,), signer.origin),
        lambda first, second: server.register.log.consistency_proof(first, second),
    )
    verified = [c for m in feed for c in verifier.receive(m.changes, m.checkpoint)]
    assert verifier.stats.alerts == {}
    assert [c.sequence for c in verified] == list(range(1, len(verified) + 1))
    assert verifier.verified_sequence == feed[-1].changes[-1].sequence


@pytest.mark.parametrize("reader", ["telkomsel", "kominfo"])
def test_the_subscribers_operator_and_regulators_receive_the_numbers(
    server: RunningServer, clients: dict[str, Client], tokens: dict[str, str], reader: str
) -> None:
    _telkomsel_subscriber_data(clients)
    recorder = Recorder()
    client = _xl_client(server, tokens[reader], recorder)
    try:
        list(client.call(client.sync.GetSnapshot, list_sync_pb2.GetSnapshotRequest()))
        head = client.call(client.log.GetCheckpoint, transparency_pb2.GetCheckpointRequest())
        stream = client.call(client.sync.WatchChanges, list_sync_pb2.WatchChangesRequest())
        salted = []
        for message in stream:
            salted += [c for c in message.changes if c.subscriber_salt]
            if message.changes[-1].sequence >= head.tree_size:
                break
        stream.cancel()  # type: ignore[no-untyped-call]
    finally:
        client.channel.close()
    received = b"".join(recorder.responses)
    assert TSEL_IMSI.encode() in received and TSEL_MSISDN.encode() in received
    assert {c.imsi for c in salted} >= {TSEL_IMSI, TSEL_OTHER_IMSI}
