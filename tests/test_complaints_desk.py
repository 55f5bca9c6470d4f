"""The complaints desk over time, on SQLite and PostgreSQL: deadlines and
escalation on the register's clock (ManualClock), counted in a metric and
in ListComplaints, on access and by the background sweep; and the move of
the desk when the custody policy in force names Kemenperin, with
complaints in every state, noticed by two servers at once."""

from __future__ import annotations

import dataclasses
import gc
import hashlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import sqlalchemy
from sqlalchemy.pool import NullPool

from ceir.api.server import RunningServer, ServerConfig, create_server
from ceir.domain.complaints import Category, ServiceLevels
from ceir.domain.custody import Ceremony, CustodyState
from ceir.service.clock import ManualClock
from ceir.storage import custody_repository as custody_repo
from ceir.storage.database import Database
from ceir.v1 import complaints_pb2 as pb
from ceir.v1 import types_pb2

from .custody.ceremony import YEAR, Keys, now_s
from .helpers import INDOSAT_IMSI, TELKOMSEL_IMSI, Client, error_reason, imei
from .test_complaints import INVESTIGATING, NO_SIGNAL, REJECTED, RESOLVED, WAITING, file, update

HOUR = 3_600
STOLEN = pb.COMPLAINT_CATEGORY_STOLEN_OR_LOST


def start(db_url: str, clock: ManualClock, **settings: Any) -> RunningServer:
    return create_server(
        ServerConfig(
            db=db_url,
            address="127.0.0.1:0",
            clock=clock,
            access_log=False,
            follow_interval=0.2,
            insecure=True,
            ephemeral_signing_key=True,
            **settings,
        )
    )


@pytest.fixture
def channel_of() -> Iterator[Any]:
    opened: list[grpc.Channel] = []

    def open_channel(server: RunningServer) -> grpc.Channel:
        channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
        opened.append(channel)
        return channel

    yield open_channel
    for channel in opened:
        channel.close()


def listing(client: Client) -> pb.ListComplaintsResponse:
    return client.call(client.complaints.ListComplaints, pb.ListComplaintsRequest(page_size=1000))


def missed_metric(server: RunningServer, category: str) -> float:
    value = server.metrics.registry.get_sample_value(
        "ceir_complaint_deadlines_missed_total", {"category": category}
    )
    return value or 0.0


def grandfather(client: Client, *values: str) -> None:
    client.register(*values, source=types_pb2.REGISTRATION_SOURCE_GRANDFATHERED, reference="d")


def test_a_missed_deadline_escalates_once_and_is_counted(
    clients: dict[str, Client], server: RunningServer, clock: ManualClock
) -> None:
    telkomsel = clients["telkomsel"]
    grandfather(telkomsel, imei(1), imei(2), imei(3))
    no_signal = file(telkomsel, imei(1), imsi=TELKOMSEL_IMSI)
    stolen = file(telkomsel, imei(2), category=STOLEN, imsi=TELKOMSEL_IMSI)
    early = file(telkomsel, imei(3), category=STOLEN, imsi=TELKOMSEL_IMSI)
    assert no_signal.deadline.seconds - no_signal.file_time.seconds == 48 * HOUR
    assert stolen.deadline.seconds - stolen.file_time.seconds == 24 * HOUR
    update(telkomsel, early.tracking_id, INVESTIGATING)
    update(telkomsel, early.tracking_id, REJECTED, "a duplicate of another complaint")
    clock.advance(25 * HOUR)  # past the stolen phone's 24 h, not the 48 h
    answer = listing(telkomsel)
    assert answer.deadlines_missed == 1
    escalated = {c.tracking_id: c for c in answer.complaints}[stolen.tracking_id]
    assert escalated.deadline_missed and escalated.escalated_to == "kemenperin"
    step = escalated.history[-1]
    assert step.kind == pb.COMPLAINT_STEP_KIND_ESCALATED and step.actor == "ceir"
    assert "escalated from telkomsel to kemenperin" in step.note
    assert escalated.owner == "telkomsel"  # the desk still owns it; Kemenperin watches
    assert missed_metric(server, "STOLEN_OR_LOST") == 1
    clock.advance(24 * HOUR)
    assert listing(telkomsel).deadlines_missed == 2
    assert listing(telkomsel).deadlines_missed == 2  # counted once each
    assert missed_metric(server, "NO_SIGNAL") == 1 and missed_metric(server, "STOLEN_OR_LOST") == 1


def test_the_background_sweep_escalates_without_a_call(
    db_url: str, tokens: dict[str, str], channel_of: Any
) -> None:
    clock = ManualClock()
    server = start(db_url, clock, complaint_sweep_seconds=0.1)
    try:
        telkomsel = Client(channel_of(server), tokens["telkomsel"])
        grandfather(telkomsel, imei(1))
        file(telkomsel, imei(1), category=STOLEN, imsi=TELKOMSEL_IMSI)
        clock.advance(25 * HOUR)
        deadline = time.monotonic() + 30
        while missed_metric(server, "STOLEN_OR_LOST") == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert missed_metric(server, "STOLEN_OR_LOST") == 1
    finally:
        server.stop(grace=1)
        gc.collect()


def test_service_levels_are_settings_and_customs_gets_two_days(
    db_url: str, tokens: dict[str, str], channel_of: Any
) -> None:
    levels = ServiceLevels().with_hours({Category.NO_SIGNAL: 2}, customs_hours=48)
    server = start(db_url, ManualClock(), complaint_levels=levels)
    try:
        clients = {name: Client(channel_of(server), token) for name, token in tokens.items()}
        telkomsel = clients["telkomsel"]
        grandfather(telkomsel, imei(1))
        quick = file(telkomsel, imei(1), imsi=TELKOMSEL_IMSI)
        assert quick.deadline.seconds - quick.file_time.seconds == 2 * HOUR
        # A customs registration: 2 x 24 h from it, the later deadline.
        clients["customs"].register(imei(2), source=types_pb2.REGISTRATION_SOURCE_CUSTOMS)
        telkomsel.check_imei(imei(2))  # seen by an operator
        customs = file(telkomsel, imei(2), imsi=TELKOMSEL_IMSI)
        assert customs.deadline.seconds - customs.file_time.seconds >= 48 * HOUR - 5
    finally:
        server.stop(grace=1)
        gc.collect()


def _store_policy(db_url: str, version: int, complaints: str, keys: Keys) -> None:
    """Put custody policy ``version`` in force, as a completed ceremony (or a
    policy change) leaves it: the desk reads the policy chain and the
    ceremony's version from the database. (The ceremony itself is tested in
    tests/custody; here only its outcome matters.)"""
    policy = dataclasses.replace(keys.policy(version, now_s() + YEAR), complaints=complaints)
    text = policy.text()
    db = Database(db_url)
    try:
        with db.write() as session:
            digest = hashlib.sha256(text.encode()).hexdigest()
            custody_repo.add_policy(session, version, text, digest, 0)
            custody_repo.save_ceremony(session, Ceremony(CustodyState.OPERATING, version))
    finally:
        db.dispose()


def test_the_desk_moves_with_every_open_complaint_and_none_lost(
    db_url: str, tokens: dict[str, str], channel_of: Any, clock: ManualClock
) -> None:
    keys = Keys.make()
    _store_policy(db_url, 0, "telkomsel", keys)  # the operators hold the desk
    first, second = start(db_url, clock), start(db_url, clock)
    try:
        clients = {name: Client(channel_of(first), token) for name, token in tokens.items()}
        others = {name: Client(channel_of(second), token) for name, token in tokens.items()}
        telkomsel, indosat = clients["telkomsel"], clients["indosat"]
        grandfather(telkomsel, *(imei(n) for n in range(1, 7)))
        indosat.check_imei(imei(7), imsi=INDOSAT_IMSI)
        made = {
            state: file(telkomsel, imei(n), imsi=TELKOMSEL_IMSI)
            for n, state in enumerate(
                ("submitted", "investigating", "waiting", "resolved", "rejected"), 1
            )
        }
        made["indosat"] = file(indosat, imei(7), imsi=INDOSAT_IMSI)
        # The custodian's own desk (policy 0's custodian): an unseen IMEI.
        made["unseen"] = file(indosat, imei(99), imsi=INDOSAT_IMSI)
        assert made["unseen"].owner == "telkomsel" and made["indosat"].owner == "indosat"
        for name in ("investigating", "waiting", "resolved", "rejected"):
            update(telkomsel, made[name].tracking_id, INVESTIGATING)
        update(telkomsel, made["waiting"].tracking_id, WAITING, "box asked for")
        update(telkomsel, made["resolved"].tracking_id, RESOLVED, "fixed by the network")
        update(telkomsel, made["rejected"].tracking_id, REJECTED, "not a register problem")
        before = {c.tracking_id: c for c in listing(clients["kominfo"]).complaints}
        assert len(before) == 7

        _store_policy(db_url, 1, "kemenperin", keys)  # the desk moves to Kemenperin
        # Both servers notice at once.
        readers = [clients["kominfo"], others["kominfo"], clients["kemenperin"]]
        threads = [threading.Thread(target=listing, args=(reader,)) for reader in readers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        after = {c.tracking_id: c for c in listing(others["kominfo"]).complaints}
        assert set(after) == set(before)  # none lost, none duplicated
        for name, filed in made.items():
            was, now = before[filed.tracking_id], after[filed.tracking_id]
            assert now.history[: len(was.history)] == was.history
            assert now.deadline == was.deadline and now.file_time == was.file_time
            if name in ("resolved", "rejected"):
                assert now == was, name  # closed complaints stay where they were
                continue
            assert now.owner == "kemenperin" and now.state == was.state, name
            moves = [s for s in now.history if s.kind == pb.COMPLAINT_STEP_KIND_MOVED]
            assert len(moves) == 1, name
            assert moves[0].note == (
                f"moved from {was.owner} to kemenperin (custody policy version 1)"
            )
        # The old desk is told who owns it now.
        with pytest.raises(grpc.RpcError) as caught:
            update(telkomsel, made["submitted"].tracking_id, INVESTIGATING)
        assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert error_reason(caught.value) == "NOT_DESK_OWNER"
        assert "kemenperin" in (caught.value.details() or "")
        # Kemenperin works it; new complaints go to Kemenperin's desk.
        kemenperin = others["kemenperin"]
        assert update(kemenperin, made["submitted"].tracking_id, INVESTIGATING).state == (
            INVESTIGATING
        )
        assert file(telkomsel, imei(1), imsi=TELKOMSEL_IMSI).owner == "kemenperin"
        assert file(kemenperin, imei(50), category=NO_SIGNAL).owner == "kemenperin"
        # Kemenperin's missed deadlines go to the regulator.
        clock.advance(49 * HOUR)
        escalated = {
            c.escalated_to
            for c in listing(clients["kominfo"]).complaints
            if c.owner == "kemenperin"
        }
        assert escalated == {"kominfo"}
    finally:
        for running in (first, second):
            running.stop(grace=1)
        gc.collect()


def test_tracking_ids_survive_restarts_and_stay_unique_across_servers(
    db_url: str, tokens: dict[str, str], channel_of: Any, clock: ManualClock
) -> None:
    first = start(db_url, clock)
    try:
        telkomsel = Client(channel_of(first), tokens["telkomsel"])
        assert file(telkomsel, imei(1), imsi=TELKOMSEL_IMSI).tracking_id == "C-000001"
    finally:
        first.stop(grace=1)
    again, other = start(db_url, clock), start(db_url, clock)
    try:
        one = Client(channel_of(again), tokens["telkomsel"])
        two = Client(channel_of(other), tokens["indosat"])
        ids = [file(client, imei(n), category=NO_SIGNAL).tracking_id for n, client in
               ((2, one), (3, two), (4, one), (5, two))]  # fmt: skip
        assert ids == ["C-000002", "C-000003", "C-000004", "C-000005"]
    finally:
        for running in (again, other):
            running.stop(grace=1)
        gc.collect()


def test_migration_0008_upgrades_and_downgrades(db_url: str) -> None:
    from .test_bulk_import import _migrate
    from .test_devices_in_changes import _downgrade

    _migrate(db_url, "0008")
    engine = sqlalchemy.create_engine(db_url, poolclass=NullPool)
    try:
        assert {"complaints", "complaint_steps"} <= set(
            sqlalchemy.inspect(engine).get_table_names()
        )
        _downgrade(db_url, "0007")
        assert not {"complaints", "complaint_steps"} & set(
            sqlalchemy.inspect(engine).get_table_names()
        )
        _migrate(db_url, "0008")
        assert {"complaints", "complaint_steps"} <= set(
            sqlalchemy.inspect(engine).get_table_names()
        )
    finally:
        engine.dispose()


def test_a_default_desk_the_register_does_not_know_leaves_the_desks_with_the_operators(
    db_url: str, tokens: dict[str, str], channel_of: Any
) -> None:
    """``--complaints-desk acme`` with no organisation acme: a desk nobody
    could work, so the operators keep theirs (complaints are not stranded)."""
    server = start(db_url, ManualClock(), complaints_desk="acme")
    try:
        telkomsel = Client(channel_of(server), tokens["telkomsel"])
        grandfather(telkomsel, imei(1))
        filed = file(telkomsel, imei(1), imsi=TELKOMSEL_IMSI)
        assert filed.owner == "telkomsel"
        assert update(telkomsel, filed.tracking_id, INVESTIGATING).state == INVESTIGATING
    finally:
        server.stop()
