"""The public IMEI lookup, on its own listener, through real sockets.

No credentials; registered or not, brand and model, nothing else; a token
bucket per client address (the bucket's clock is a hand-moved one here, so
the counts of OK and RESOURCE_EXHAUSTED do not depend on how fast the test
runs); the register's authenticated port does not serve it, and the lookup
port serves nothing else but health.
"""

from __future__ import annotations

import datetime
import socket
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from ceir.api.server import RunningServer, ServerConfig, create_server
from ceir.service.clock import ManualClock
from ceir.service.lookup import RateLimiter
from ceir.v1 import (
    lookup_pb2,
    lookup_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    registry_pb2,
    types_pb2,
)

from .helpers import TELKOMSEL_IMSI, Client, error_reason, imei, violations

TAC = 35_444_000
BURST = 3


class FrozenClock:
    """A clock that moves only when told (the buckets' refill)."""

    def __init__(self) -> None:
        self.now = 1_700_000_000_000_000

    def now_us(self) -> int:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += int(seconds * 1_000_000)


@pytest.fixture
def bucket_clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def lookup_server(
    db_url: str, tokens: dict[str, str], clock: ManualClock, bucket_clock: FrozenClock
) -> Iterator[RunningServer]:
    running = create_server(
        ServerConfig(
            db=db_url,
            address="127.0.0.1:0",
            clock=clock,
            access_log=False,
            insecure=True,
            lookup_address="127.0.0.1:0",
            lookup_rate=1.0,
            lookup_burst=BURST,
            lookup_clock=bucket_clock,
        )
    )
    yield running
    running.stop(grace=1)


@pytest.fixture
def public(lookup_server: RunningServer) -> Iterator[lookup_pb2_grpc.PublicLookupServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{lookup_server.lookup_port}") as channel:
        yield lookup_pb2_grpc.PublicLookupServiceStub(channel)


@pytest.fixture
def org(lookup_server: RunningServer, tokens: dict[str, str]) -> Iterator[dict[str, Client]]:
    with grpc.insecure_channel(f"127.0.0.1:{lookup_server.port}") as channel:
        yield {name: Client(channel, token) for name, token in tokens.items()}


def device(serial: int) -> str:
    return imei(serial, tac=TAC)


def lookup(
    public: lookup_pb2_grpc.PublicLookupServiceStub, value: str
) -> lookup_pb2.LookupImeiResponse:
    return public.LookupImei(lookup_pb2.LookupImeiRequest(imei=value), timeout=30)


def test_registered_unregistered_and_stolen_look_alike_but_for_registered(
    public: lookup_pb2_grpc.PublicLookupServiceStub,
    org: dict[str, Client],
    bucket_clock: FrozenClock,
) -> None:
    kemenperin, telkomsel = org["kemenperin"], org["telkomsel"]
    kemenperin.register(device(1), device(2), reference="TPP-9", brand="Samsung", model="A51")
    telkomsel.call(
        telkomsel.registry.ReportStolen,
        registry_pb2.ReportStolenRequest(
            imeis=[device(2)], police_report="LP/1", subscriber_imsi=TELKOMSEL_IMSI
        ),
    )
    registered = lookup(public, device(1))
    stolen = lookup(public, device(2))
    unknown = lookup(public, device(3))
    assert (registered.imei_key, registered.registered) == (device(1)[:14], True)
    assert (registered.brand, registered.model) == ("Samsung", "A51")
    # A stolen registered phone is just "registered": which list, or why, is not said.
    assert (stolen.registered, stolen.brand, stolen.model) == (True, "Samsung", "A51")
    assert unknown == lookup_pb2.LookupImeiResponse(imei_key=device(3)[:14], registered=False)
    # Nothing but these four fields exists to carry personal data or a reason.
    assert [f.name for f in lookup_pb2.LookupImeiResponse.DESCRIPTOR.fields] == [
        "imei_key",
        "registered",
        "brand",
        "model",
    ]
    assert TELKOMSEL_IMSI not in str(stolen) and "LP/1" not in str(stolen)


def test_an_expired_tourist_registration_is_not_registered(
    public: lookup_pb2_grpc.PublicLookupServiceStub, org: dict[str, Client], clock: ManualClock
) -> None:
    until = datetime.datetime.fromtimestamp(clock.now_us() / 1e6, datetime.UTC)
    valid_until = until + datetime.timedelta(days=1)
    telkomsel = org["telkomsel"]
    telkomsel.register(
        device(4),
        source=types_pb2.REGISTRATION_SOURCE_TOURIST,
        reference="PASSPORT",
        brand="Apple",
        model="iPhone",
        valid_until=valid_until,
    )
    assert lookup(public, device(4)).registered
    clock.advance(2 * 86_400)
    assert lookup(public, device(4)) == lookup_pb2.LookupImeiResponse(
        imei_key=device(4)[:14], registered=False
    )


def bad_luhn(serial: int) -> str:
    """A 15-digit value whose check digit is wrong."""
    good = device(serial)
    return good[:14] + str((int(good[14]) + 1) % 10)


@pytest.mark.parametrize(
    "value",
    ["", "12345", "3544400000001x", bad_luhn(5), "123456789012345678", "1234567890123", "٣" * 15],
)
def test_anything_but_an_imei_is_invalid_argument_on_field_imei(
    public: lookup_pb2_grpc.PublicLookupServiceStub, value: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        lookup(public, value)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert [field for field, _ in violations(caught.value)] == ["imei"]


def retry_delay(error: grpc.RpcError) -> Duration | None:
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            delay: Duration = info.retry_delay
            return delay
    return None


def outcomes(public: lookup_pb2_grpc.PublicLookupServiceStub, count: int) -> list[str]:
    found: list[str] = []
    for _ in range(count):
        try:
            lookup(public, device(6))
            found.append("OK")
        except grpc.RpcError as error:
            found.append(error.code().name)
    return found


def test_the_rate_limit_per_address_with_retry_info(
    public: lookup_pb2_grpc.PublicLookupServiceStub, bucket_clock: FrozenClock
) -> None:
    assert outcomes(public, BURST + 2) == ["OK"] * BURST + ["RESOURCE_EXHAUSTED"] * 2
    with pytest.raises(grpc.RpcError) as caught:
        lookup(public, device(6))
    assert error_reason(caught.value) == "LOOKUP_RATE_LIMITED"
    delay = retry_delay(caught.value)
    assert delay is not None and delay.ToNanoseconds() == 1_000_000_000  # 1 token at 1/s
    bucket_clock.advance(2)  # two tokens back
    assert outcomes(public, 3) == ["OK", "OK", "RESOURCE_EXHAUSTED"]
    bucket_clock.advance(3600)  # full again, never more than the burst
    assert outcomes(public, BURST + 1) == ["OK"] * BURST + ["RESOURCE_EXHAUSTED"]


def test_bad_requests_spend_tokens_too(
    public: lookup_pb2_grpc.PublicLookupServiceStub,
) -> None:
    codes = []
    for _ in range(BURST + 1):
        with pytest.raises(grpc.RpcError) as caught:
            lookup(public, "not an imei")
        codes.append(caught.value.code())
    assert codes == [grpc.StatusCode.INVALID_ARGUMENT] * BURST + [
        grpc.StatusCode.RESOURCE_EXHAUSTED
    ]


def test_the_address_table_is_bounded() -> None:
    clock = FrozenClock()
    limiter = RateLimiter(1.0, 1, clock=clock, max_addresses=3)
    for address in ("a", "b", "c", "d"):
        assert limiter.take(address) == 0.0
    assert len(limiter) == 3
    assert limiter.take("d") > 0  # still remembered
    assert limiter.take("a") == 0.0  # pushed out: starts again with a full bucket
    with pytest.raises(ValueError):
        RateLimiter(0, 1)


def test_the_authenticated_port_does_not_serve_the_lookup(
    lookup_server: RunningServer, tokens: dict[str, str]
) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{lookup_server.port}") as channel:
        stub = lookup_pb2_grpc.PublicLookupServiceStub(channel)
        bearer = (("authorization", f"Bearer {tokens['kominfo']}"),)
        with pytest.raises(grpc.RpcError) as caught:
            stub.LookupImei(lookup_pb2.LookupImeiRequest(imei=device(7)), metadata=bearer)
        assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED


def test_the_lookup_port_serves_only_the_lookup_and_health(
    lookup_server: RunningServer, tokens: dict[str, str]
) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{lookup_server.lookup_port}") as channel:
        bearer = (("authorization", f"Bearer {tokens['kominfo']}"),)
        with pytest.raises(grpc.RpcError) as caught:
            policy_pb2_grpc.PolicyServiceStub(channel).GetPolicy(
                policy_pb2.GetPolicyRequest(), metadata=bearer, timeout=30
            )
        assert caught.value.code() is grpc.StatusCode.UNIMPLEMENTED
        health = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="ceir.v1.PublicLookupService"), timeout=30
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING


def test_the_lookup_is_off_by_default(server: RunningServer) -> None:
    assert server.lookup_port is None and server.lookup_server is None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_lookup_address_in_use_fails_the_start_whole(db_url: str, tokens: dict[str, str]) -> None:
    register_port = _free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match="cannot listen"):
            create_server(
                ServerConfig(
                    db=db_url,
                    address=f"127.0.0.1:{register_port}",
                    access_log=False,
                    insecure=True,
                    lookup_address=f"127.0.0.1:{port}",
                )
            )
    with socket.socket() as again:  # the register's port was let go
        again.bind(("127.0.0.1", register_port))
