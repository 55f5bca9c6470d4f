"""Every RPC of the register, served on one asyncio event loop: who calls
(decided before any request message is read), decoding, errors mapped to
statuses, metrics and the access log.

Why an event loop (docs/architecture.md, "Concurrency"): a call that waits —
for a request that never comes, for the next change of a feed, for a slow
reader — costs a coroutine, not a thread, so no number of idle or hostile
calls can take the capacity that checks need. Blocking work (the database,
hashing, building large answers) runs in a bounded pool of worker threads,
and only once a whole request is in hand: a worker never waits on the
network.

Every method is registered with gRPC as taking a stream of raw bytes, even
the unary ones (the wire format is the same), so that this module decides
when a message is read: after the credentials in the call's metadata (or
its client certificate) have been checked, and decoded here, so that an
undecodable request is an ``INVALID_ARGUMENT`` with an access-log line like
any other failure.

Who calls: on a mutual-TLS connection, the organisation named by the
client certificate's common name (the TLS layer has verified the
certificate against the client CA). A bearer token sent on such a
connection must name the same organisation, or the call is refused: a
certificate and a token that disagree are a misconfiguration or an attack,
and neither should silently win. Without a client certificate the bearer
token alone identifies the caller. Health and reflection stay open so that
load balancers and tools like grpcurl can discover the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message

from ceir.domain.errors import CeirError, InvalidArgument, ResourceExhausted, Unauthenticated
from ceir.domain.model import Caller
from ceir.service.certificates import CertificateAuthenticator, organisation_named_by
from ceir.service.orgs import Authenticator, NeedsLookup

from .access_log import AccessLog
from .errors import internal_status, status_code, to_status
from .observability import Metrics

log = logging.getLogger("ceir.access")
M = TypeVar("M", bound=Message)
T = TypeVar("T")
_caller: contextvars.ContextVar[Caller] = contextvars.ContextVar("ceir_caller")

# A unary call's request must arrive within this time of the call's start.
READ_TIMEOUT_SECONDS = 30.0
# Open streams re-check their caller's credentials this often, so that a
# revoked organisation loses them within this plus the credential cache's age.
REAUTH_SECONDS = 1.0
# A stream whose reader takes no message for this long is ended: its
# pending answer is all that a slow reader may hold of the server.
WRITE_STALL_SECONDS = 60.0

UnaryBehaviour = Callable[[Any, Any], Message]
AtOnce = Callable[[Any], Message | Callable[[], Message] | None]
StreamBehaviour = Callable[["Call"], Awaitable[Message | None]]


def current_caller() -> Caller:
    """The organisation of the call being handled."""
    return _caller.get()


class Call:
    """One RPC in progress, as a streaming implementation sees it."""

    def __init__(self, gate: Gate, context: grpc.aio.ServicerContext[Any, Any], caller: Caller):
        self.gate = gate
        self.context = context
        self.caller = caller

    async def read(self, request_type: type[M], timeout: float | None = None) -> M | None:
        """The next request message, or None at the end of the client's stream."""
        try:
            # asyncio.timeout, not wait_for: no task per read on the unary path.
            async with asyncio.timeout(timeout):
                raw = await self.context.read()
        except TimeoutError:
            raise InvalidArgument(
                f"no request message within {timeout:.0f} s of the call's start",
                reason="REQUEST_TIMEOUT",
            ) from None
        if raw is grpc.aio.EOF:  # type: ignore[attr-defined]  # missing from the stubs
            return None
        return decode(request_type, raw)

    async def request(self, request_type: type[M]) -> M:
        """The call's one request message (of a call with a unary request)."""
        request = await self.read(request_type, READ_TIMEOUT_SECONDS)
        if request is None:
            raise InvalidArgument("the call ended without a request message", reason="NO_REQUEST")
        return request

    async def write(self, message: Message | bytes) -> None:
        """Send one response message, waiting (not a thread) for a slow reader."""
        raw = message if isinstance(message, bytes) else message.SerializeToString()
        try:
            async with asyncio.timeout(WRITE_STALL_SECONDS):
                await self.context.write(raw)
        except TimeoutError:
            raise ResourceExhausted(
                f"the stream's reader took no message for {WRITE_STALL_SECONDS:.0f} s; "
                "the server ended the stream",
                reason="SLOW_READER",
            ) from None

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in a worker thread, off the event loop."""
        return await self.gate.run(function, *args)


def decode(request_type: type[M], raw: bytes) -> M:
    """Parse a request, turning a malformed one into INVALID_ARGUMENT."""
    try:
        return request_type.FromString(raw)
    except (DecodeError, RuntimeError, ValueError):
        name = request_type.DESCRIPTOR.full_name
        raise InvalidArgument(
            f"the request is not a valid {name} message (truncated, or a string "
            "field that is not UTF-8)",
            reason="UNDECODABLE_REQUEST",
        ) from None


class Gate:
    """What every method of the register goes through."""

    def __init__(
        self,
        authenticator: Authenticator,
        metrics: Metrics,
        workers: Executor,
        lookups: Executor,
        *,
        access_log: AccessLog | None = None,
        certificates: CertificateAuthenticator | None = None,
    ) -> None:
        self.authenticator = authenticator
        # None: the server verifies no client certificates (plain text, or
        # TLS without a client CA), so none can identify a caller.
        self.certificates = certificates
        self.metrics = metrics
        self.access_log = access_log  # None: no access log
        self.workers = workers
        # Credential lookups have threads of their own: made-up tokens, each
        # a database query, then queue behind each other, not behind checks.
        self.lookups = lookups

    # --- the handlers gRPC is given --------------------------------------------------

    def unary(
        self,
        method: str,
        request_type: type[Message],
        behaviour: UnaryBehaviour,
        at_once: AtOnce | None = None,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """A unary method whose ``behaviour(request, context)`` may block.

        ``at_once(request)``, if given, runs first on the event loop and must
        never block: its answer; or the rest of the work, to run in a worker;
        or None to run ``behaviour`` in a worker.
        """

        async def handle(request: Message, call: Call) -> Message:
            if at_once is not None:
                answer = at_once(request)
                if isinstance(answer, Message):
                    return answer
                if answer is not None:
                    return await self.run(answer)
            return await self.run(behaviour, request, call.context)

        return self._handler(method, request_type, handle, server_streaming=False)

    def streaming(
        self, method: str, behaviour: StreamBehaviour, *, server_streaming: bool
    ) -> grpc.RpcMethodHandler[Any, Any]:
        """A method with a client or server stream: ``behaviour(call)`` reads and
        writes itself, under a watch that ends it if the caller is revoked."""

        async def handle(_request: None, call: Call) -> Message | None:
            return await self._supervised(call, behaviour)

        return self._handler(method, None, handle, server_streaming=server_streaming)

    def _handler(
        self,
        method: str,
        request_type: type[Message] | None,
        handle: Callable[[Any, Call], Awaitable[Message | None]],
        *,
        server_streaming: bool,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        async def behaviour(_requests: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            started = time.perf_counter()
            code = "OK"
            org = "-"
            status: grpc.Status | None = None
            try:
                caller = await self.identify(context)
                org = caller.name
                _caller.set(caller)
                call = Call(self, context, caller)
                request = None if request_type is None else await call.request(request_type)
                response = await handle(request, call)
                return None if response is None else response.SerializeToString()
            except asyncio.CancelledError:
                code = "CANCELLED"
                raise
            except grpc.aio.AbortError:
                code = _code_name(context)
                raise
            except Exception as error:
                code, status = self._status_of(error, method, org)
            finally:
                self._record(method, code, started, context, org)
            # Logged before the caller hears of it. Raises AbortError, which
            # gRPC takes as the call's end.
            await context.abort(status.code, status.details, status.trailing_metadata)

        # No (de)serialisers: raw bytes both ways, decoded and encoded above.
        if server_streaming:
            return grpc.stream_stream_rpc_method_handler(behaviour)
        return grpc.stream_unary_rpc_method_handler(behaviour)

    async def _supervised(self, call: Call, behaviour: StreamBehaviour) -> Message | None:
        """Run a stream, ending it when its caller's credentials stop being valid."""
        task = asyncio.ensure_future(behaviour(call))
        try:
            while True:
                done, _ = await asyncio.wait({task}, timeout=REAUTH_SECONDS)
                if done:
                    return task.result()
                await self.identify(call.context)  # raises once revoked
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    # --- who calls --------------------------------------------------------------------

    async def identify(self, context: grpc.aio.ServicerContext[Any, Any]) -> Caller:
        """The caller, from the cache on the loop, or from the database in a lookup thread."""
        try:
            return self._identify(context, cached=True)
        except NeedsLookup:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self.lookups, self._identify, context, False)

    def _identify(self, context: grpc.aio.ServicerContext[Any, Any], cached: bool) -> Caller:
        authorization = _authorization(context)
        tokens = self.authenticator
        by_token = tokens.cached_caller_for if cached else tokens.caller_for
        if self.certificates is not None:
            pem = _certificate(context)
            if pem is not None:
                name = organisation_named_by(pem)
                certificates = self.certificates
                by_name = certificates.cached_caller_for if cached else certificates.caller_for
                caller = by_name(name)
                if authorization is not None:
                    token_caller = by_token(authorization)
                    if token_caller.name != caller.name:
                        raise Unauthenticated(
                            f"the client certificate names {caller.name!r} but the bearer "
                            f"token belongs to {token_caller.name!r}; send one or make them agree",
                            reason="CREDENTIALS_DISAGREE",
                        )
                return caller
        return by_token(authorization)

    # --- work off the loop ------------------------------------------------------------

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        """``function(*args)`` in a worker thread, with this call's context."""
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        return await loop.run_in_executor(self.workers, context.run, function, *args)

    # --- endings ----------------------------------------------------------------------

    def _status_of(self, error: Exception, method: str, org: str) -> tuple[str, grpc.Status]:
        """The status a failure ends its call with, and its code's name."""
        if isinstance(error, CeirError):
            return status_code(error).name, to_status(error)
        log.error(
            "unexpected failure in %s",
            method,
            exc_info=error,
            extra={"method": method, "org": org},
        )
        return "INTERNAL", internal_status()

    def _record(
        self,
        method: str,
        code: str,
        started: float,
        context: grpc.aio.ServicerContext[Any, Any],
        org: str,
    ) -> None:
        elapsed = time.perf_counter() - started
        self.metrics.observe(method, code, elapsed)
        if self.access_log is not None:  # queued: written by the access log's thread
            self.access_log.add(method, code, org, elapsed, context.peer())


def _code_name(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    code = context.code()
    return getattr(code, "name", "ABORTED")


def _authorization(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    """The call's ``authorization`` metadata (the last, if sent twice)."""
    found: str | None = None
    for key, value in context.invocation_metadata() or ():
        if key == "authorization" and isinstance(value, str):
            found = value
    return found


def _certificate(context: grpc.aio.ServicerContext[Any, Any]) -> bytes | None:
    """The verified client certificate (PEM), if the peer sent one."""
    pems = context.auth_context().get("x509_pem_cert")
    if not pems:
        return None
    pem = next(iter(pems))
    return pem if isinstance(pem, bytes) else str(pem).encode()
