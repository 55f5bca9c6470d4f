"""The custodian's change feed over gRPC, for a standby register.

A standby (``ceir.service.standby``) reads the public
``ListSyncService.WatchChanges`` of the custodian as any operator node does,
over mutual TLS with a client certificate of the incoming custodian's
organisation: a regulator's, which the feed gives every subscriber's IMSI,
MSISDN and salt, so that the standby can store the rows and rebuild every
leaf. Each ``ListChange`` is converted back to the domain's ``Change``.

The channel is kept for the standby's whole life (gRPC reconnects it) and
is public (``channel``), so that the custody ceremony can ask the custodian
for its state over the same authenticated connection.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import grpc

from ceir.audit import AuditError
from ceir.domain.model import Change
from ceir.service.standby import FeedBatch, FeedRefused, FeedUnavailable
from ceir.v1 import list_sync_pb2 as sync_pb
from ceir.v1 import list_sync_pb2_grpc as sync_grpc
from ceir.v1 import types_pb2 as pb

from . import convert

__all__ = ["GrpcFeed", "standby_channel"]

# Codes no retry mends: the custodian refuses this caller or its position.
_REFUSED = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.OUT_OF_RANGE,  # SEQUENCE_AHEAD: the standby holds more than the custodian
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.UNIMPLEMENTED,
}


def standby_channel(
    address: str,
    *,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    ca: Path | None = None,
    server_name: str | None = None,
) -> grpc.Channel:
    """A channel to the custodian: mutual TLS with the client certificate
    (TLS with ``ca`` alone; plain text with neither, for tests)."""
    if (client_cert is None) != (client_key is None):
        raise ValueError("a standby's mutual TLS needs both --client-cert and --client-key")
    if client_cert is None and ca is None:
        return grpc.insecure_channel(address)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=ca.read_bytes() if ca is not None else None,
        private_key=client_key.read_bytes() if client_key is not None else None,
        certificate_chain=client_cert.read_bytes() if client_cert is not None else None,
    )
    options = [("grpc.ssl_target_name_override", server_name)] if server_name else []
    return grpc.secure_channel(address, credentials, options=options)


class GrpcFeed:
    """``ceir.service.standby.Feed`` over a channel to the custodian."""

    def __init__(self, channel: grpc.Channel, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self.channel = channel
        self.metadata = metadata
        self._stub = sync_grpc.ListSyncServiceStub(channel)
        self._lock = threading.Lock()
        self._call: grpc.CallIterator[sync_pb.WatchChangesResponse] | None = None  # to cancel it
        self._cancelled = False

    def watch(self, after: int) -> Iterator[FeedBatch]:
        request = sync_pb.WatchChangesRequest(after_sequence=after)
        with self._lock:
            if self._cancelled:
                return
            stream = self._stub.WatchChanges(request, metadata=self.metadata)
            self._call = stream
        try:
            for message in stream:
                yield FeedBatch(
                    [_change(change) for change in message.changes],
                    message.checkpoint,
                    message.head_sequence,
                )
        except grpc.RpcError as error:
            code = error.code()
            detail = f"{code.name}: {error.details()}"
            if code in _REFUSED:
                raise FeedRefused(f"the custodian refused the feed ({detail})") from error
            raise FeedUnavailable(detail) from error
        finally:
            with self._lock:
                self._call = None
        raise FeedUnavailable("the custodian ended the feed")

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._call is not None:
                self._call.cancel()  # type: ignore[no-untyped-call]

    def close(self) -> None:
        self.cancel()
        self.channel.close()


def _change(message: pb.ListChange) -> Change:
    """The change a feed message states, with everything its leaf and rows need."""
    if message.subscriber_commitment and not message.subscriber_salt:
        raise FeedRefused(
            f"change {message.sequence} came with its subscriber withheld (a commitment "
            "only): the standby's client certificate must be a regulator's, which is given "
            "every subscriber"
        )
    try:
        return convert.change_from_pb(message)
    except (ValueError, AuditError) as error:
        raise FeedRefused(f"change {message.sequence} cannot be read: {error}") from error
