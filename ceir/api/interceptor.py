"""The one server interceptor: authentication, error mapping, metrics and
the access log, for every RPC of the register.

Servicers read the authenticated caller with ``current_caller()`` and raise
domain errors; this module turns them into gRPC statuses. Health and
reflection stay open so that load balancers and tools like grpcurl can
discover the server.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from ceir.domain.errors import CeirError
from ceir.domain.model import Caller
from ceir.service.orgs import Authenticator

from .errors import internal_status, status_code, to_status
from .observability import Metrics

log = logging.getLogger("ceir.access")
_caller: contextvars.ContextVar[Caller] = contextvars.ContextVar("ceir_caller")
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def current_caller() -> Caller:
    """The organisation of the call being handled."""
    return _caller.get()


class CallInterceptor(grpc.ServerInterceptor):  # type: ignore[misc]
    def __init__(
        self, authenticator: Authenticator, metrics: Metrics, access_log: bool = True
    ) -> None:
        self.authenticator = authenticator
        self.metrics = metrics
        self.access_log = access_log

    def intercept_service(
        self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        method: str = details.method
        if handler is None or method.startswith(OPEN_SERVICES):
            return handler
        metadata = dict(details.invocation_metadata or ())
        authorization = metadata.get("authorization")
        short = method.rsplit("/", 1)[-1]
        call = _Call(self, short, authorization)
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                call.unary(handler.unary_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                call.unary(handler.stream_unary),
                handler.request_deserializer,
                handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                call.streaming(handler.unary_stream),
                handler.request_deserializer,
                handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            call.streaming(handler.stream_stream),
            handler.request_deserializer,
            handler.response_serializer,
        )


class _Call:
    """One RPC's wrapping: who calls, how it ended, how long it took."""

    def __init__(self, owner: CallInterceptor, method: str, authorization: str | None) -> None:
        self.owner = owner
        self.method = method
        self.authorization = authorization
        self.caller_name = "-"

    def unary(
        self, behaviour: Callable[[Any, grpc.ServicerContext], Any]
    ) -> Callable[[Any, grpc.ServicerContext], Any]:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            code = "OK"
            try:
                _caller.set(self._authenticate())
                return behaviour(request, context)
            except BaseException as error:
                code = self._fail(error, context)
                raise
            finally:
                self._record(code, started, context)

        return handle

    def streaming(
        self, behaviour: Callable[[Any, grpc.ServicerContext], Iterator[Any]]
    ) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
        def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            started = time.perf_counter()
            code = "OK"
            try:
                _caller.set(self._authenticate())
                yield from behaviour(request, context)
            except GeneratorExit:
                code = "CANCELLED"
                raise
            except BaseException as error:
                code = self._fail(error, context)
                raise
            finally:
                self._record(code, started, context)

        return handle

    def _authenticate(self) -> Caller:
        caller = self.owner.authenticator.caller_for(self.authorization)
        self.caller_name = caller.name
        return caller

    def _fail(self, error: BaseException, context: grpc.ServicerContext) -> str:
        """Abort the call with the right status (raises), returning its code name."""
        if isinstance(error, CeirError):
            code = status_code(error).name
            with contextlib.suppress(Exception):  # abort always raises; the status is set
                context.abort_with_status(to_status(error))
            return code
        if isinstance(error, grpc.RpcError) or type(error).__name__ == "_AbortError":
            code_value = context.code() if hasattr(context, "code") else None
            return getattr(code_value, "name", "ABORTED")
        log.exception(
            "unexpected failure in %s",
            self.method,
            extra={"method": self.method, "org": self.caller_name},
        )
        with contextlib.suppress(Exception):  # abort always raises; the status is set
            context.abort_with_status(internal_status())
        return "INTERNAL"

    def _record(self, code: str, started: float, context: grpc.ServicerContext) -> None:
        elapsed = time.perf_counter() - started
        self.owner.metrics.observe(self.method, code, elapsed)
        if self.owner.access_log:
            log.info(
                "rpc",
                extra={
                    "method": self.method,
                    "code": code,
                    "org": self.caller_name,
                    "ms": round(elapsed * 1000, 3),
                    "peer": context.peer(),
                },
            )
