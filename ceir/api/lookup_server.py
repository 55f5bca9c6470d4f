"""The public lookup's own listener: ``PublicLookupService`` and health, nothing else.

A second ``grpc.aio.Server`` on the process's event loop, bound to
``ServerConfig.lookup_address`` (``ceir serve --lookup-listen``): a gRPC
server serves every service it has on every port it binds, so the public
lookup, which takes no credentials, cannot share the register's server.
The register's port does not serve it, and this one serves nothing else.

Transport: TLS with the register's server certificate when the register
serves TLS (no client certificate is asked for), plain text under
``--insecure``.

Each call first takes a token from its client address's bucket (the peer's
IP, without the port): over the limit it ends with RESOURCE_EXHAUSTED and
a google.rpc.RetryInfo before its request is even decoded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ceir.domain.errors import CeirError, ResourceExhausted
from ceir.service.lookup import LookupService, RateLimiter
from ceir.v1 import lookup_pb2

from .calls import decode
from .errors import internal_status, status_code, to_status
from .observability import Metrics

log = logging.getLogger("ceir.lookup")
aio_health: Any = health.aio  # type: ignore[attr-defined]  # the asyncio servicer
SERVICE = lookup_pb2.DESCRIPTOR.services_by_name["PublicLookupService"]


def client_address(peer: str) -> str:
    """The IP of a gRPC peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``), without the port."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1 : rest.find("]")]
    if kind == "ipv4":
        return rest.rsplit(":", 1)[0]
    return peer  # unix sockets and the like: the whole peer


class LookupHandler:
    """LookupImei: the rate limit, then the lookup in a worker thread."""

    def __init__(
        self,
        service: LookupService,
        limiter: RateLimiter,
        workers: Executor,
        metrics: Metrics | None = None,
    ) -> None:
        self.service = service
        self.limiter = limiter
        self.workers = workers
        self.metrics = metrics

    async def lookup(self, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        started = time.perf_counter()
        code = "OK"
        try:
            wait = self.limiter.take(client_address(context.peer()))
            if wait > 0:
                raise ResourceExhausted(
                    f"too many lookups from this address: {self.limiter.rate:g} a second, "
                    f"bursts of {self.limiter.burst}; retry in {wait:.1f} s",
                    reason="LOOKUP_RATE_LIMITED",
                    retry_after=wait,
                )
            request = decode(lookup_pb2.LookupImeiRequest, raw)
            loop = asyncio.get_running_loop()
            found = await loop.run_in_executor(self.workers, self.service.lookup, request.imei)
            return lookup_pb2.LookupImeiResponse(
                imei_key=found.imei_key,
                registered=found.registered,
                brand=found.brand,
                model=found.model,
            ).SerializeToString()
        except CeirError as error:
            code, status = status_code(error).name, to_status(error)
        except Exception:
            log.exception("unexpected failure in LookupImei")
            code, status = "INTERNAL", internal_status()
        finally:
            if self.metrics is not None:
                self.metrics.observe("LookupImei", code, time.perf_counter() - started)
        await context.abort(status.code, status.details, status.trailing_metadata)
        raise AssertionError("abort raises")  # pragma: no cover


async def start_lookup_server(
    handler: LookupHandler,
    address: str,
    tls: tuple[Path, Path] | None,
    options: list[tuple[str, Any]],
) -> tuple[grpc.aio.Server, int]:
    """Build, bind and start the lookup listener (on the event loop): the
    server and its port. ``tls``: (key, certificate) files, or None for plain text."""
    methods = {"LookupImei": grpc.unary_unary_rpc_method_handler(handler.lookup)}
    generic = grpc.method_handlers_generic_handler(SERVICE.full_name, methods)
    server = grpc.aio.server(handlers=[generic], options=options)
    health_servicer = aio_health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        if tls is None:
            port = server.add_insecure_port(address)
        else:
            key, cert = tls
            credentials = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
            port = server.add_secure_port(address, credentials)
    except RuntimeError:  # grpc.aio's "Failed to bind"
        port = 0
    if port == 0:
        raise OSError(f"cannot listen on {address}")
    for name in ("", SERVICE.full_name):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    await server.start()
    return server, port
