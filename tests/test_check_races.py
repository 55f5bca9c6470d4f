"""Checks racing registrations and pairings on the same IMEIs, through real
servers: threads against one SQLite server, and two servers on one PostgreSQL
database (each deciding from its own copy of the lists).

A check decides from the lists in memory and writes its effect (a new
notification, or a block once the grace has run out) afterwards; whatever
committed in between must win. So the log may never show a notification or a
grace-expiry block for an IMEI after that IMEI's registration, nor after the
pairing of the checked IMSI with it. The grace is 0 days, so the second check
of an unregistered IMEI blocks it and both kinds of effect race.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from functools import partial

import grpc
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from ceir.api.server import RunningServer, ServerConfig, create_server
from ceir.domain.model import BlacklistCause, Change, ChangeKind
from ceir.service.clock import ManualClock
from ceir.storage import repository as repo
from ceir.storage.database import Database
from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import policy_pb2, registry_pb2, types_pb2

from .helpers import INDOSAT_IMSI, TELKOMSEL_IMSI, Client, imei

ROUNDS = 2
PER_ROUND = 60  # a third registered, a third paired, a third left alone


@pytest.fixture
def two_sides(db_url: str, tokens: dict[str, str]) -> Iterator[tuple[str, str]]:
    """Addresses of the server that takes writes and the one that checks:
    the same SQLite server twice, or two servers on one PostgreSQL database."""
    clock = ManualClock()
    count = 1 if db_url.startswith("sqlite") else 2
    with ExitStack() as stack:
        running: list[RunningServer] = []
        for _ in range(count):
            server = create_server(
                ServerConfig(
                    db=db_url,
                    address="127.0.0.1:0",
                    clock=clock,
                    access_log=False,
                    follow_interval=0.2,
                    insecure=True,
                )
            )
            stack.callback(server.stop, 1)
            running.append(server)
        yield f"127.0.0.1:{running[0].port}", f"127.0.0.1:{running[-1].port}"
    gc.collect()


def test_no_check_effect_lands_after_a_registration_or_pairing(
    db_url: str, tokens: dict[str, str], two_sides: tuple[str, str]
) -> None:
    writes, checks = two_sides
    with grpc.insecure_channel(writes) as near, grpc.insecure_channel(checks) as far:
        kemenperin = Client(near, tokens["kemenperin"])
        pairing = Client(far, tokens["telkomsel"])
        checkers = (
            Client(far, tokens["telkomsel"]),
            Client(near, tokens["telkomsel"]),
            Client(far, tokens["indosat"]),
        )
        _set_grace_days(Client(near, tokens["kominfo"]), 0, Client(far, tokens["kominfo"]))
        for round_ in range(ROUNDS):
            devices = [imei(s) for s in range(round_ * PER_ROUND, (round_ + 1) * PER_ROUND)]
            _race_round(kemenperin, pairing, checkers, devices)

    changes = _log(db_url)
    wrong = _wrong_effects(changes)
    assert not wrong, f"{len(wrong)} effects the committed lists did not call for:\n" + "\n".join(
        wrong
    )
    kinds = [(c.kind, c.blacklist_cause) for c in changes]
    # Both kinds of effect happened, so both raced.
    assert (ChangeKind.NOTIFICATION_NEW, None) in kinds
    assert (ChangeKind.BLACKLIST_BLOCKED, BlacklistCause.NOTIFICATION_EXPIRED) in kinds
    registrations = sum(c.kind is ChangeKind.WHITELIST_ADDED for c in changes)
    pairings = sum(c.kind is ChangeKind.EXCEPTION_ADDED for c in changes)
    assert (registrations, pairings) == (ROUNDS * PER_ROUND // 3, ROUNDS * PER_ROUND // 3)


def _race_round(
    kemenperin: Client, pairing: Client, checkers: tuple[Client, Client, Client], devices: list[str]
) -> None:
    """Register a third of the devices and pair another third with the
    Telkomsel IMSI while three callers keep checking them."""
    registered, paired = devices[0::3], devices[1::3]
    unpaired = [d for d in devices if d not in paired]
    batch, unary, other_operator = checkers
    done = threading.Event()
    _race(
        [partial(_register_each, kemenperin, registered), partial(_pair_each, pairing, paired)],
        [
            _until(done, partial(_check_batch, batch, devices)),
            _until(done, partial(_check_each, unary, devices, TELKOMSEL_IMSI)),
            # The paired IMEIs are checked with the paired IMSI only: any
            # block of theirs after the pairing is then a check's doing.
            _until(done, partial(_check_each, other_operator, unpaired, INDOSAT_IMSI)),
        ],
        done,
    )


# --- the race -------------------------------------------------------------------------------


def _race(
    writers: list[Callable[[], None]], checkers: list[Callable[[], None]], done: threading.Event
) -> None:
    """Run writers and checkers together from one start; the checkers stop
    once every writer is done. Re-raises the first failure of any thread."""
    start = threading.Barrier(len(writers) + len(checkers))
    failures: list[BaseException] = []
    remaining = [len(writers)]
    lock = threading.Lock()

    def run(work: Callable[[], None], writer: bool) -> None:
        try:
            start.wait(timeout=30)
            work()
        except BaseException as error:  # reported by the main thread
            failures.append(error)
        finally:
            if writer:
                with lock:
                    remaining[0] -= 1
                    if remaining[0] == 0:
                        done.set()
            elif failures:
                done.set()

    threads = [threading.Thread(target=run, args=(w, True)) for w in writers] + [
        threading.Thread(target=run, args=(c, False)) for c in checkers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads)
    if failures:
        raise failures[0]


def _until(done: threading.Event, sweep: Callable[[], None]) -> Callable[[], None]:
    """Sweep until the writers are done, then once more."""

    def run() -> None:
        while not done.is_set():
            sweep()
        sweep()

    return run


def _register_each(kemenperin: Client, devices: list[str]) -> None:
    for device in devices:
        kemenperin.register(device)


def _pair_each(operator: Client, devices: list[str]) -> None:
    for device in devices:
        operator.call(
            operator.registry.AddException,
            registry_pb2.AddExceptionRequest(imei=device, imsi=TELKOMSEL_IMSI),
        )


def _check_batch(client: Client, devices: list[str]) -> None:
    client.call(
        client.check.CheckEquipmentBatch,
        check_pb.CheckEquipmentBatchRequest(
            checks=[check_pb.CheckEquipmentRequest(imei=d, imsi=TELKOMSEL_IMSI) for d in devices]
        ),
    )


def _check_each(client: Client, devices: list[str], imsi: str) -> None:
    for device in devices:
        client.check_imei(device, imsi=imsi)


def _set_grace_days(kominfo: Client, days: int, other: Client) -> None:
    """Set the grace and wait until the other server follows."""
    kominfo.call(
        kominfo.policy.UpdatePolicy,
        policy_pb2.UpdatePolicyRequest(
            policy=types_pb2.Policy(grace_days=days),
            update_mask=FieldMask(paths=["grace_days"]),
        ),
    )
    deadline = time.monotonic() + 30
    get = policy_pb2.GetPolicyRequest()
    while other.call(other.policy.GetPolicy, get).policy.grace_days != days:
        assert time.monotonic() < deadline, "the second server never saw the policy"
        time.sleep(0.05)


# --- judging the log ------------------------------------------------------------------------


def _log(db_url: str) -> list[Change]:
    db = Database(db_url)
    try:
        with db.read() as connection:
            return repo.changes_after(connection, 0, 1_000_000)
    finally:
        db.dispose()


def _wrong_effects(changes: list[Change]) -> list[str]:
    """Every check effect that the lists as committed before it did not call
    for: an IMEI registered, a pair paired, an IMEI blocked or a pair
    notified already."""
    registered: dict[int, int] = {}
    paired: dict[int, int] = {}  # only the paired IMSI checks these IMEIs
    blocked: set[int] = set()
    notified: set[tuple[int, str]] = set()
    wrong: list[str] = []
    for change in changes:
        key, seq, kind = change.imei_key, change.sequence, change.kind
        if key is None:
            continue
        if kind is ChangeKind.WHITELIST_ADDED:
            registered.setdefault(key, seq)
        elif kind is ChangeKind.EXCEPTION_ADDED:
            paired.setdefault(key, seq)
        elif kind is ChangeKind.BLACKLIST_UNBLOCKED:
            blocked.discard(key)
        elif kind in (ChangeKind.NOTIFICATION_RESOLVED, ChangeKind.NOTIFICATION_BLACKLISTED):
            notified.discard((key, change.imsi))
        elif kind is ChangeKind.NOTIFICATION_NEW:
            if key in registered:
                wrong.append(f"{key:014d} notified at {seq}, registered at {registered[key]}")
            if key in paired and change.imsi == TELKOMSEL_IMSI:
                wrong.append(f"{key:014d} notified at {seq}, paired at {paired[key]}")
            if key in blocked:
                wrong.append(f"{key:014d} notified at {seq} while blocked")
            if (key, change.imsi) in notified:
                wrong.append(f"{key:014d}/{change.imsi} notified again at {seq}")
            notified.add((key, change.imsi))
        elif kind is ChangeKind.BLACKLIST_BLOCKED:
            if change.blacklist_cause is BlacklistCause.NOTIFICATION_EXPIRED:
                if key in registered:
                    wrong.append(f"{key:014d} blocked at {seq}, registered at {registered[key]}")
                if key in paired:
                    wrong.append(f"{key:014d} blocked at {seq}, paired at {paired[key]}")
                if key in blocked:
                    wrong.append(f"{key:014d} blocked again at {seq}")
            blocked.add(key)
    return wrong
