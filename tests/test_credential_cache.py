"""The credential cache under a flood of made-up tokens: each costs one
lookup, none evicts a valid caller, and through a real server a valid
caller's calls keep succeeding while the flood runs."""

from __future__ import annotations

import secrets
import threading

import grpc
import pytest

from ceir.api.server import RunningServer
from ceir.domain.model import Caller, OrgKind
from ceir.service import orgs
from ceir.service.orgs import CredentialCache
from ceir.v1 import equipment_check_pb2, equipment_check_pb2_grpc

from .helpers import Client

VALID = Caller(name="telkomsel", kind=OrgKind.OPERATOR, mcc_mncs=("510-10",))


class CountingLookup:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def __call__(self, key: str) -> Caller | None:
        self.calls.append(key)
        return VALID if key == "valid" else None


def test_a_flood_of_invalid_tokens_costs_one_lookup_each_and_keeps_valid_callers() -> None:
    lookup = CountingLookup()
    cache = CredentialCache(lookup, limit=100, miss_limit=64)
    assert cache.get("valid") is VALID
    invalid = [f"made-up-{n}" for n in range(100_000)]
    for token in invalid:
        assert cache.get(token) is None
    assert len(lookup.calls) == 1 + len(invalid) == cache.lookups  # one each, no more
    assert cache.holds("valid")  # never evicted
    assert cache.known == 1 and len(cache) == 1 + 64  # the misses stay bounded
    assert cache.get(invalid[-1]) is None and len(lookup.calls) == 1 + len(invalid)


def test_known_callers_form_a_real_lru() -> None:
    cache = CredentialCache(lambda key: Caller(key, OrgKind.KOMINFO, ()), limit=3)
    for key in ("a", "b", "c"):
        cache.get(key)
    assert cache.cached("a")[0]  # a used: b is now the least recent
    cache.get("d")
    assert [cache.cached(k)[0] for k in "abcd"] == [True, False, True, True]


def test_entries_expire_so_revocation_takes_effect(monkeypatch: pytest.MonkeyPatch) -> None:
    lookup = CountingLookup()
    cache = CredentialCache(lookup)
    cache.get("valid")
    cache.get("nobody")
    monkeypatch.setattr(orgs, "CACHE_SECONDS", -1.0)  # every entry is now stale
    assert cache.cached("valid") == (False, None) and cache.cached("nobody") == (False, None)
    cache.get("valid")
    assert lookup.calls == ["valid", "nobody", "valid"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_valid_caller_is_served_through_a_flood_of_invalid_tokens(
    server: RunningServer, clients: dict[str, Client]
) -> None:
    stop = threading.Event()
    refused = [0]

    def flood() -> None:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = equipment_check_pb2_grpc.EquipmentCheckServiceStub(channel)
            request = equipment_check_pb2.CheckEquipmentRequest(imei="352099001761481")
            while not stop.is_set():
                token = "ceir_" + secrets.token_urlsafe(32)
                try:
                    stub.CheckEquipment(
                        request, metadata=(("authorization", f"Bearer {token}"),), timeout=30
                    )
                except grpc.RpcError as error:
                    assert error.code() in (
                        grpc.StatusCode.UNAUTHENTICATED,
                        grpc.StatusCode.RESOURCE_EXHAUSTED,
                    )
                    refused[0] += 1

    flooders = [threading.Thread(target=flood) for _ in range(4)]
    for thread in flooders:
        thread.start()
    try:
        valid = clients["telkomsel"]
        answers = [valid.check_imei("352099001761481") for _ in range(200)]
    finally:
        stop.set()
        for thread in flooders:
            thread.join()
    assert len(answers) == 200 and all(a.status for a in answers)
    assert refused[0] > 0  # the flood ran alongside
