"""A gRPC proxy in front of a register, for the faults a drill stages in transit.

It forwards every ``ceir.v1`` method to the upstream register, bytes
unchanged, each caller over an upstream channel with its own organisation's
client certificate (taken from the common name of the certificate it
presented), so the register still sees who calls. Errors come back as the
register sent them, details included. Two faults:

- ``alter``: the feed (``WatchChanges``) carries one change altered, every
  time it passes (``transfer-corrupt``: between the two registers);
- ``inject``: once armed, each caller's feed gets one more message, given
  by the drill, once it has passed the sequence the message follows
  (``split-view``: a checkpoint the old key signed after the freeze, between
  the nodes and the outgoing register).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from grpc_status import rpc_status

from ceir.v1 import (
    complaints_pb2,
    custody_pb2,
    equipment_check_pb2,
    list_sync_pb2,
    policy_pb2,
    registry_pb2,
    transparency_pb2,
)
from ceir.v1 import list_sync_pb2 as sync_pb

from ..transport import CHANNEL_OPTIONS, Tls, open_channel

log = logging.getLogger("operators_sim.drill.proxy")

_MODULES = (
    complaints_pb2,
    custody_pb2,
    equipment_check_pb2,
    list_sync_pb2,
    policy_pb2,
    registry_pb2,
    transparency_pb2,
)
WATCH = "/ceir.v1.ListSyncService/WatchChanges"

Alter = Callable[[sync_pb.WatchChangesResponse], bool]
"""Rewrites a feed message in place; True when it changed it."""


def alter_change(sequence: int) -> Alter:
    """Rewrite the IMEI key of the change numbered ``sequence``, wherever it passes."""

    def alter(message: sync_pb.WatchChangesResponse) -> bool:
        for change in message.changes:
            if change.sequence == sequence:
                change.imei_key = f"{(int(change.imei_key or 0) + 1) % 10**14:014d}"
                return True
        return False

    return alter


def _identity(data: bytes) -> bytes:
    return data


class Proxy:
    """Listens on 127.0.0.1 with the given server certificate (mutual TLS),
    forwards to ``upstream`` with each caller's client certificate from
    ``pki`` (``<org>.pem``, ``<org>.key``, ``ca.pem``)."""

    def __init__(
        self,
        upstream: str,
        pki: Path,
        server: tuple[bytes, bytes],
        port: int = 0,
    ) -> None:
        self.upstream = upstream
        self.pki = pki
        self.alter: Alter | None = None
        self.altered = 0
        self._inject: sync_pb.WatchChangesResponse | None = None
        self._inject_after = 0
        self._injected: set[str] = set()  # callers that got it
        self._channels: dict[str, grpc.Channel] = {}
        self._lock = threading.Lock()
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="proxy"),
            options=[("grpc.so_reuseport", 0)],
        )
        self._server.add_generic_rpc_handlers((_Handler(self),))
        key, certificate = server
        credentials = grpc.ssl_server_credentials(
            [(key, certificate)],
            root_certificates=(pki / "ca.pem").read_bytes(),
            require_client_auth=True,
        )
        self.port = self._server.add_secure_port(f"127.0.0.1:{port}", credentials)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop(grace=0.5).wait()
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()

    def inject(self, message: sync_pb.WatchChangesResponse, after: int) -> None:
        """Send ``message`` once to each caller, on its feed (open now or later)
        once that feed has passed sequence ``after``."""
        with self._lock:
            self._inject_after = after
            self._inject = message

    def injection_for(self, caller: str, sequence: int) -> sync_pb.WatchChangesResponse | None:
        """The message to inject now on ``caller``'s feed, at ``sequence`` (once)."""
        with self._lock:
            message = self._inject
            if message is None or sequence < self._inject_after or caller in self._injected:
                return None
            self._injected.add(caller)
            return message

    @property
    def injected(self) -> set[str]:
        with self._lock:
            return set(self._injected)

    def channel(self, organisation: str) -> grpc.Channel:
        with self._lock:
            channel = self._channels.get(organisation)
            if channel is None:
                tls = Tls(
                    (self.pki / "ca.pem").read_bytes(),
                    client_cert=(self.pki / f"{organisation}.pem").read_bytes(),
                    client_key=(self.pki / f"{organisation}.key").read_bytes(),
                )
                channel = open_channel(self.upstream, tls, CHANNEL_OPTIONS)
                self._channels[organisation] = channel
            return channel


def _caller(context: grpc.ServicerContext) -> str:
    names = context.auth_context().get("x509_common_name") or [b""]
    name = names[0]
    return name.decode() if isinstance(name, bytes) else str(name)


def _abort(context: grpc.ServicerContext, error: grpc.RpcError) -> None:
    """End the call as the upstream ended it, status details included."""
    call = error if isinstance(error, grpc.Call) else None
    status = None
    if call is not None:
        try:
            status = rpc_status.from_call(call)
        except ValueError:
            status = None
    if status is not None:
        context.abort_with_status(rpc_status.to_status(status))
    code = call.code() if call is not None else grpc.StatusCode.UNAVAILABLE
    context.abort(code, call.details() if call is not None else str(error))


if TYPE_CHECKING:
    _GenericHandler = grpc.GenericRpcHandler[bytes, bytes]
else:  # the stubs are generic, grpc's class is not
    _GenericHandler = grpc.GenericRpcHandler


class _Handler(_GenericHandler):
    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy
        self.methods: dict[str, tuple[bool, bool]] = {}
        for module in _MODULES:
            for service in module.DESCRIPTOR.services_by_name.values():
                for method in service.methods:
                    path = f"/{service.full_name}/{method.name}"
                    self.methods[path] = (method.client_streaming, method.server_streaming)

    def service(
        self, details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        path = details.method
        shape = self.methods.get(path)
        if shape is None:
            return None
        client_streaming, server_streaming = shape
        proxy = self.proxy

        def upstream(context: grpc.ServicerContext) -> grpc.Channel:
            return proxy.channel(_caller(context))

        metadata = tuple(
            (key, value)
            for key, value in details.invocation_metadata
            if not key.startswith(("grpc-", ":"))
        )
        if path == WATCH:
            return grpc.unary_stream_rpc_method_handler(
                lambda request, context: self._watch(path, request, context, metadata)
            )
        if not client_streaming and not server_streaming:

            def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
                call = upstream(context).unary_unary(path, _identity, _identity)
                try:
                    return bytes(call(request, metadata=metadata, timeout=context.time_remaining()))
                except grpc.RpcError as error:
                    _abort(context, error)
                    raise

            return grpc.unary_unary_rpc_method_handler(unary)
        if not client_streaming:

            def unary_stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
                call = upstream(context).unary_stream(path, _identity, _identity)(
                    request, metadata=metadata
                )
                context.add_callback(call.cancel)
                try:
                    yield from call
                except grpc.RpcError as error:
                    _abort(context, error)

            return grpc.unary_stream_rpc_method_handler(unary_stream)
        if not server_streaming:

            def stream_unary(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
                call = upstream(context).stream_unary(path, _identity, _identity)
                try:
                    return bytes(call(requests, metadata=metadata))
                except grpc.RpcError as error:
                    _abort(context, error)
                    raise

            return grpc.stream_unary_rpc_method_handler(stream_unary)

        def stream_stream(
            requests: Iterator[bytes], context: grpc.ServicerContext
        ) -> Iterator[bytes]:
            call = upstream(context).stream_stream(path, _identity, _identity)(
                requests, metadata=metadata
            )
            context.add_callback(call.cancel)
            try:
                yield from call
            except grpc.RpcError as error:
                _abort(context, error)

        return grpc.stream_stream_rpc_method_handler(stream_stream)

    def _watch(
        self,
        path: str,
        request: bytes,
        context: grpc.ServicerContext,
        metadata: tuple[tuple[str, Any], ...],
    ) -> Iterator[bytes]:
        """The feed, read upstream by a thread so that an injection need not
        wait for the register's next message."""
        proxy = self.proxy
        caller = _caller(context)
        sequence = sync_pb.WatchChangesRequest.FromString(request).after_sequence
        call = proxy.channel(caller).unary_stream(path, _identity, _identity)(
            request, metadata=metadata
        )
        context.add_callback(call.cancel)
        messages: queue.Queue[bytes | grpc.RpcError | None] = queue.Queue()

        def pump() -> None:
            try:
                for data in call:
                    messages.put(data)
                messages.put(None)
            except grpc.RpcError as error:
                messages.put(error)

        threading.Thread(target=pump, name="proxy-feed", daemon=True).start()
        while context.is_active():
            forged = proxy.injection_for(caller, sequence)
            if forged is not None:
                yield forged.SerializeToString()
            try:
                item = messages.get(timeout=0.2)
            except queue.Empty:
                continue
            if item is None:
                return
            if isinstance(item, grpc.RpcError):
                _abort(context, item)
                return
            data = self._altered(item)
            sent = sync_pb.WatchChangesResponse.FromString(data)
            if sent.changes:
                sequence = sent.changes[-1].sequence
            yield data

    def _altered(self, data: bytes) -> bytes:
        alter = self.proxy.alter
        if alter is None:
            return data
        message = sync_pb.WatchChangesResponse.FromString(data)
        if not alter(message):
            return data
        self.proxy.altered += 1
        log.info("altered a feed message in transit")
        return message.SerializeToString()
