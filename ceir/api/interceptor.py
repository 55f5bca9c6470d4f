"""The one server interceptor: authentication, error mapping, metrics and
the access log, for every RPC of the register.

Servicers read the authenticated caller with ``current_caller()`` and raise
domain errors; this module turns them into gRPC statuses. Health and
reflection stay open so that load balancers and tools like grpcurl can
discover the server.

Who calls: on a mutual-TLS connection, the organisation named by the
client certificate's common name (the TLS layer has verified the
certificate against the client CA). A bearer token sent on such a
connection must name the same organisation, or the call is refused: a
certificate and a token that disagree are a misconfiguration or an attack,
and neither should silently win. Without a client certificate the bearer
token alone identifies the caller.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc

from ceir.domain.errors import CeirError, Unauthenticated
from ceir.domain.model import Caller
from ceir.service.certificates import CertificateAuthenticator
from ceir.service.orgs import Authenticator

from .errors import internal_status, status_code, to_status
from .observability import Metrics

log = logging.getLogger("ceir.access")
_caller: contextvars.ContextVar[Caller] = contextvars.ContextVar("ceir_caller")
OPEN_SERVICES = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def current_caller() -> Caller:
    """The organisation of the call being handled."""
    return _caller.get()


class CallInterceptor(grpc.ServerInterceptor):  # type: ignore[type-arg]  # generic only in stubs
    def __init__(
        self,
        authenticator: Authenticator,
        metrics: Metrics,
        access_log: bool = True,
        certificates: CertificateAuthenticator | None = None,
    ) -> None:
        self.authenticator = authenticator
        # None: the server verifies no client certificates (plain text, or
        # TLS without a client CA), so none can identify a caller.
        self.certificates = certificates
        self.metrics = metrics
        self.access_log = access_log
        # Each method's handler is wrapped once, not on every call: the
        # wrapper reads the token from the call's own metadata.
        self._wrapped: dict[str, tuple[Any, Any]] = {}

    def intercept_service(
        self, continuation: Callable[[Any], Any], details: grpc.HandlerCallDetails
    ) -> Any:
        handler = continuation(details)
        method: str = details.method
        if handler is None or method.startswith(OPEN_SERVICES):
            return handler
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(handler, method.rsplit("/", 1)[-1])
        self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, handler: Any, method: str) -> Any:
        call = _Call(self, method)
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


def _authorization(context: grpc.ServicerContext) -> str | None:
    """The call's ``authorization`` metadata (the last, if sent twice)."""
    found: str | None = None
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            found = value
    return found


def _certificate_name(context: grpc.ServicerContext) -> str | None:
    """The verified client certificate's common name, if the peer sent one."""
    names = context.auth_context().get("x509_common_name")
    if not names:
        return None
    name = names[0]
    return name.decode() if isinstance(name, bytes) else str(name)


class _Call:
    """One method's wrapping: who calls, how it ended, how long it took."""

    def __init__(self, owner: CallInterceptor, method: str) -> None:
        self.owner = owner
        self.method = method

    def unary(
        self, behaviour: Callable[[Any, grpc.ServicerContext], Any]
    ) -> Callable[[Any, grpc.ServicerContext], Any]:
        def handle(request: Any, context: grpc.ServicerContext) -> Any:
            started = time.perf_counter()
            code = "OK"
            caller_name = "-"
            try:
                caller = self.identify(context)
                caller_name = caller.name
                _caller.set(caller)
                return behaviour(request, context)
            except BaseException as error:
                code = self._fail(error, context, caller_name)
                raise
            finally:
                self._record(code, started, context, caller_name)

        return handle

    def streaming(
        self, behaviour: Callable[[Any, grpc.ServicerContext], Iterator[Any]]
    ) -> Callable[[Any, grpc.ServicerContext], Iterator[Any]]:
        def handle(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            started = time.perf_counter()
            code = "OK"
            caller_name = "-"
            try:
                caller = self.identify(context)
                caller_name = caller.name
                _caller.set(caller)
                yield from behaviour(request, context)
            except GeneratorExit:
                code = "CANCELLED"
                raise
            except BaseException as error:
                code = self._fail(error, context, caller_name)
                raise
            finally:
                self._record(code, started, context, caller_name)

        return handle

    def identify(self, context: grpc.ServicerContext) -> Caller:
        """The caller, from its client certificate or its bearer token."""
        owner = self.owner
        authorization = _authorization(context)
        if owner.certificates is not None:
            common_name = _certificate_name(context)
            if common_name is not None:
                caller = owner.certificates.caller_for(common_name)
                if authorization is not None:
                    by_token = owner.authenticator.caller_for(authorization)
                    if by_token.name != caller.name:
                        raise Unauthenticated(
                            f"the client certificate names {caller.name!r} but the bearer "
                            f"token belongs to {by_token.name!r}; send one or make them agree",
                            reason="CREDENTIALS_DISAGREE",
                        )
                return caller
        return owner.authenticator.caller_for(authorization)

    def _fail(self, error: BaseException, context: grpc.ServicerContext, caller_name: str) -> str:
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
            extra={"method": self.method, "org": caller_name},
        )
        with contextlib.suppress(Exception):  # abort always raises; the status is set
            context.abort_with_status(internal_status())
        return "INTERNAL"

    def _record(
        self, code: str, started: float, context: grpc.ServicerContext, caller_name: str
    ) -> None:
        elapsed = time.perf_counter() - started
        self.owner.metrics.observe(self.method, code, elapsed)
        if self.owner.access_log:
            log.info(
                "rpc",
                extra={
                    "method": self.method,
                    "code": code,
                    "org": caller_name,
                    "ms": round(elapsed * 1000, 3),
                    "peer": context.peer(),
                },
            )
