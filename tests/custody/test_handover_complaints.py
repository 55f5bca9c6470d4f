"""The complaints desk crosses a handover between two registers, through real sockets.

Complaints are not in the Merkle log, so the standby's copy of the log does
not bring them: the incoming register here starts on a copy of the frozen
register's database with its complaint tables emptied, as a standby's own
database has them. At transfer it reads every complaint from the outgoing
register (ListComplaints, as Kemenperin) with the outgoing's count and
digest, and stores them; once it takes writes, policy 1 (which names
Kemenperin's desk) moves the open ones.
"""

from __future__ import annotations

import dataclasses
import gc
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from ceir.api import complaint_remote
from ceir.api.server import RunningServer
from ceir.custody import CustodyPolicy, cosign, split_note
from ceir.domain.complaints import Complaint
from ceir.service.clock import ManualClock
from ceir.v1 import complaints_pb2 as cpb
from ceir.v1 import custody_pb2 as pb
from ceir.v1 import types_pb2

from ..helpers import INDOSAT_IMSI, TELKOMSEL_IMSI, Client, imei
from ..test_complaints import INVESTIGATING, NO_SIGNAL, REJECTED, RESOLVED, WAITING, file, update
from .ceremony import YEAR, Keys, custody, error_info, now_s, refused, signed, start
from .test_ceremony_server import frozen, submit
from .test_handover_servers import CopiedLog, copy_database

HOUR = 3_600
MOVED = cpb.COMPLAINT_STEP_KIND_MOVED


@pytest.fixture
def keys() -> Keys:
    return Keys.make()


@pytest.fixture
def policies(keys: Keys) -> tuple[CustodyPolicy, CustodyPolicy]:
    """Policy 0: the operators hold the desk; policy 1: Kemenperin takes it over."""
    v0 = keys.policy(0, now_s() + YEAR)
    v1 = dataclasses.replace(keys.policy(1, now_s() + 30 * 86_400), complaints="kemenperin")
    return v0, v1


@pytest.fixture
def server(
    db_url: str,
    tokens: dict[str, str],
    clock: ManualClock,
    tmp_path: Path,
    keys: Keys,
    policies: tuple[CustodyPolicy, CustodyPolicy],
) -> Iterator[RunningServer]:
    if not db_url.startswith("sqlite"):
        pytest.skip("the incoming register starts on a copy of the SQLite file")
    running = start(db_url, tmp_path, clock, keys, policies[0])
    yield running
    running.stop(grace=1)
    gc.collect()


def standby_database(source_url: str, target: Path) -> str:
    """The frozen register's database as a standby holds it: the log, no ceremony,
    no complaints (they are not in the log), the id counter never used."""
    url = copy_database(source_url, target)
    copy = sqlite3.connect(target)
    with copy:
        copy.execute("DELETE FROM complaint_steps")
        copy.execute("DELETE FROM complaints")
        copy.execute("DELETE FROM sqlite_sequence WHERE name = 'complaints'")
    copy.close()
    return url


def listing(client: Client) -> dict[str, cpb.Complaint]:
    request = cpb.ListComplaintsRequest(page_size=1000)
    answer = client.call(client.complaints.ListComplaints, request)
    assert not answer.next_page_token
    return {c.tracking_id: c for c in answer.complaints}


def desk_with_every_state(clients: dict[str, Client], clock: ManualClock) -> dict[str, str]:
    """Complaints in every state on the outgoing register, the open ones past their
    deadline and escalated; {name: tracking id}."""
    telkomsel, indosat = clients["telkomsel"], clients["indosat"]
    telkomsel.register(
        *(imei(n) for n in range(1, 7)),
        source=types_pb2.REGISTRATION_SOURCE_GRANDFATHERED,
        reference="dump-2020-09",
    )
    indosat.check_imei(imei(7), imsi=INDOSAT_IMSI)
    names = ("submitted", "investigating", "waiting", "resolved", "rejected")
    made = {
        name: file(telkomsel, imei(n), imsi=TELKOMSEL_IMSI, description=f"{name} ✓").tracking_id
        for n, name in enumerate(names, 1)
    }
    made["indosat"] = file(indosat, imei(7), imsi=INDOSAT_IMSI).tracking_id
    made["unseen"] = file(indosat, imei(99), imsi=INDOSAT_IMSI).tracking_id  # register's desk
    for name in ("investigating", "waiting", "resolved", "rejected"):
        update(telkomsel, made[name], INVESTIGATING)
    update(telkomsel, made["waiting"], WAITING, "box asked for")
    update(telkomsel, made["resolved"], RESOLVED, "fixed by the network")
    update(telkomsel, made["rejected"], REJECTED, "not a register problem")
    clock.advance(49 * HOUR)  # every open deadline passes: escalated on the next read
    escalated = listing(clients["kominfo"])
    assert all(c.deadline_missed for c in escalated.values() if c.state not in (RESOLVED, REJECTED))
    return made


def handed_over(
    server: RunningServer,
    db_url: str,
    clients: dict[str, Client],
    keys: Keys,
    policies: tuple[CustodyPolicy, CustodyPolicy],
    clock: ManualClock,
    tmp_path: Path,
) -> tuple[RunningServer, grpc.Channel, int]:
    """The outgoing register frozen; the incoming one started as its standby."""
    done = frozen(clients, keys, policies[1], clock)
    text = split_note(done.pending_document)[0]
    submit(
        clients["kominfo"], signed(text, *keys.telkomsel[:2], *keys.kemenperin[:2], keys.kominfo)
    )
    token = clients["kemenperin"].token
    custodian = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    standby = CopiedLog(custodian, token, done.final_size)
    url = standby_database(db_url, tmp_path / "incoming.db")
    running = start(url, tmp_path, clock, keys, policies[0], incoming=True, standby=standby)
    return running, custodian, done.final_size


def test_every_complaint_crosses_the_handover_and_the_open_ones_move_to_kemenperin(
    server: RunningServer,
    db_url: str,
    clients: dict[str, Client],
    keys: Keys,
    policies: tuple[CustodyPolicy, CustodyPolicy],
    clock: ManualClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(complaint_remote, "PAGE_SIZE", 2)  # several pages
    made = desk_with_every_state(clients, clock)
    telkomsel = clients["telkomsel"]
    new, custodian, _n = handed_over(server, db_url, clients, keys, policies, clock, tmp_path)
    try:
        # Frozen: the outgoing desk takes no complaint writes.
        for write in (
            lambda: file(telkomsel, imei(1), imsi=TELKOMSEL_IMSI),
            lambda: update(telkomsel, made["submitted"], INVESTIGATING),
        ):
            assert error_info(refused(write))[0] == "REGISTER_FROZEN"
        before = listing(clients["kominfo"])
        assert set(before) == set(made.values())

        with grpc.insecure_channel(f"127.0.0.1:{new.port}") as channel:
            here = {name: Client(channel, c.token) for name, c in clients.items()}
            kemenperin = here["kemenperin"]
            assert listing(here["kominfo"]) == {}  # the standby's database has none
            moved = kemenperin.call(kemenperin.custody.Transfer, pb.TransferRequest()).custody
            assert moved.state_name == "TRANSFERRED"
            # An exact copy: ids, history, deadlines, escalations, subscribers.
            assert listing(here["kominfo"]) == before
            again = kemenperin.call(kemenperin.custody.Transfer, pb.TransferRequest()).custody
            assert again.state_name == "TRANSFERRED"
            assert listing(here["kominfo"]) == before  # a retry neither drops nor doubles

            handover = custody(clients["kemenperin"]).handover
            active = kemenperin.call(
                kemenperin.custody.Activate, pb.ActivateRequest(handover=handover)
            ).custody
            cosigned = cosign(active.first_checkpoint, keys.kominfo_cosigner, now_s())
            writable = kemenperin.call(
                kemenperin.custody.SubmitCosignature,
                pb.SubmitCosignatureRequest(checkpoint=cosigned),
            ).custody
            assert "retired: writes are taken" in writable.detail

            after = listing(here["kominfo"])  # the desk in force is policy 1's: moves
            assert set(after) == set(before)  # none lost, none duplicated
            for name, tracking_id in made.items():
                was, now = before[tracking_id], after[tracking_id]
                if name in ("resolved", "rejected"):
                    assert now == was, name  # closed: untouched
                    continue
                assert now.history[: len(was.history)] == was.history, name
                added = now.history[len(was.history) :]
                assert [s.kind for s in added] == [MOVED], name
                assert added[0].note == (
                    f"moved from {was.owner} to kemenperin (custody policy version 1)"
                )
                assert (now.owner, now.state) == ("kemenperin", was.state), name
                assert now.deadline == was.deadline and now.file_time == was.file_time
                assert (now.deadline_missed, now.escalated_to) == (True, "kemenperin")

            # The new desk works them; the old one is told who owns them now.
            worked = update(kemenperin, made["submitted"], INVESTIGATING)
            assert worked.state == INVESTIGATING
            not_owner = refused(update, here["telkomsel"], made["waiting"], INVESTIGATING)
            assert error_info(not_owner) == ("NOT_DESK_OWNER", {"owner": "kemenperin"})
            # Tracking ids go on after the highest carried over.
            highest = max(int(t.removeprefix("C-")) for t in made.values())
            filed = file(kemenperin, imei(50), category=NO_SIGNAL)
            assert filed.tracking_id == f"C-{highest + 1:06d}"

        # The retired register sends complaint writers to the new custodian.
        for write in (
            lambda: file(telkomsel, imei(1), imsi=TELKOMSEL_IMSI),
            lambda: update(telkomsel, made["waiting"], INVESTIGATING),
        ):
            assert error_info(refused(write))[0] == "REGISTER_MOVED"
    finally:
        new.stop(grace=1)
        custodian.close()


def test_a_copy_that_is_not_exact_is_refused_and_nothing_is_written(
    server: RunningServer,
    db_url: str,
    clients: dict[str, Client],
    keys: Keys,
    policies: tuple[CustodyPolicy, CustodyPolicy],
    clock: ManualClock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = desk_with_every_state(clients, clock)
    new, custodian, _n = handed_over(server, db_url, clients, keys, policies, clock, tmp_path)
    exact = complaint_remote.from_message

    def lossy(message: cpb.Complaint) -> Complaint:
        # A conversion that loses the subscriber's account of one complaint.
        read = exact(message)
        if message.tracking_id == made["waiting"]:
            return dataclasses.replace(read, description="")
        return read

    try:
        with grpc.insecure_channel(f"127.0.0.1:{new.port}") as channel:
            kemenperin = Client(channel, clients["kemenperin"].token)
            kominfo = Client(channel, clients["kominfo"].token)
            monkeypatch.setattr(complaint_remote, "from_message", lossy)
            error = refused(kemenperin.call, kemenperin.custody.Transfer, pb.TransferRequest())
            assert error.code() is grpc.StatusCode.FAILED_PRECONDITION
            reason, metadata = error_info(error)
            assert reason == "COMPLAINTS_DIFFER"
            assert metadata["fetched"] == metadata["outgoing_total"] == str(len(made))
            assert "digest" in (error.details() or "")
            assert custody(kemenperin).state_name == "STANDBY"
            assert listing(kominfo) == {}  # nothing written

            monkeypatch.setattr(complaint_remote, "from_message", exact)
            moved = kemenperin.call(kemenperin.custody.Transfer, pb.TransferRequest()).custody
            assert moved.state_name == "TRANSFERRED"
            assert listing(kominfo) == listing(clients["kominfo"])
    finally:
        new.stop(grace=1)
        custodian.close()
