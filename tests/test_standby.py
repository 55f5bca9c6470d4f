"""A standby register follows the custodian's log over mutual TLS, through
real sockets: the same leaves, root and list rows; it survives restarts of
either side; an altered change or a checkpoint under another key stops it
before anything unverified is stored; and its start-up proof accepts the
custodian's key for the checkpoints it holds."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest
from sqlalchemy import create_engine, text

from ceir.api.server import RunningServer, ServerConfig, create_server
from ceir.audit import Signer, Verifier, generate_signing_key, save_private_key
from ceir.audit.checkpoint import open_checkpoint
from ceir.audit.keys import load_private_key
from ceir.domain.custody_steps import custody_change
from ceir.pki import PkiFiles, init_pki
from ceir.service.merkle_log import DEFAULT_ORIGIN
from ceir.service.orgs import add_organisation
from ceir.service.register import Register, ReplicaGap, ReplicaMismatch
from ceir.service.startup_proof import LogNotVerified, prove_at_start
from ceir.storage import repository as repo
from ceir.storage.database import Database
from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import equipment_check_pb2_grpc as check_grpc
from ceir.v1 import registry_pb2, registry_pb2_grpc, types_pb2

from .helpers import imei

ORGS = {"telkomsel": ("operator", ["510-10"]), "kemenperin": ("kemenperin", [])}
TABLES = {
    "changes": "sequence",
    "tree_nodes": 'level, "index"',
    "whitelist": "imei_key",
    "devices": "id",
    "blacklist": "imei_key",
    "notifications": "imei_key, imsi",
    "exceptions": "imei_key, imsi",
    "register_state": "id",
    # The account alert's counts (migration 0010): the standby counts what it copies.
    "account_rates": "organisation, hour_us",
}
WAIT = 60.0  # seconds: a bound on a wait that ends as soon as its condition holds


@dataclass
class Setup:
    tmp: Path
    pki: PkiFiles
    old_key: Path  # the custodian's signing key
    new_key: Path  # the standby's (the incoming custodian's)

    @property
    def custodian_db(self) -> str:
        return f"sqlite:///{self.tmp / 'custodian.db'}"

    @property
    def standby_db(self) -> str:
        return f"sqlite:///{self.tmp / 'standby.db'}"

    def old_verifier(self) -> Verifier:
        return _verifier(self.old_key)

    def custodian(self, port: int = 0) -> RunningServer:
        return create_server(
            ServerConfig(
                db=self.custodian_db,
                address=f"127.0.0.1:{port}",
                tls_key=self.pki.key(self.pki.server),
                tls_cert=self.pki.server,
                client_ca=self.pki.ca,
                signing_key=self.old_key,
                access_log=False,
            )
        )

    def standby(self, custodian: RunningServer, *keys: Verifier) -> RunningServer:
        return create_server(self.standby_config(custodian, *keys))

    def standby_config(self, custodian: RunningServer, *keys: Verifier) -> ServerConfig:
        kemenperin = self.pki.clients["kemenperin"]
        return ServerConfig(
            db=self.standby_db,
            address="127.0.0.1:0",
            tls_key=self.pki.key(self.pki.server),
            tls_cert=self.pki.server,
            client_ca=self.pki.ca,
            signing_key=self.new_key,
            access_log=False,
            trusted_log_keys=keys or (self.old_verifier(),),
            standby_of=f"localhost:{custodian.port}",
            client_cert=kemenperin,
            client_key=self.pki.key(kemenperin),
        )

    def channel(self, server: RunningServer, org: str) -> grpc.Channel:
        cert = self.pki.clients[org]
        credentials = grpc.ssl_channel_credentials(
            self.pki.ca.read_bytes(), self.pki.key(cert).read_bytes(), cert.read_bytes()
        )
        return grpc.secure_channel(f"localhost:{server.port}", credentials)


def _verifier(key_file: Path) -> Verifier:
    return Signer(DEFAULT_ORIGIN, load_private_key(key_file)).verifier


@pytest.fixture
def setup(tmp_path: Path) -> Setup:
    pki = init_pki(tmp_path / "pki")
    old_key, new_key = tmp_path / "old.pem", tmp_path / "new.pem"
    save_private_key(generate_signing_key(), old_key)
    save_private_key(generate_signing_key(), new_key)
    made = Setup(tmp_path, pki, old_key, new_key)
    db = Database(made.custodian_db)
    db.migrate()
    for name, (kind, codes) in ORGS.items():
        add_organisation(db, name, kind, codes)
    db.dispose()
    return made


@pytest.fixture
def custodian(setup: Setup) -> Iterator[RunningServer]:
    running = setup.custodian()
    yield running
    running.stop(grace=0)


def _write(setup: Setup, custodian: RunningServer, first: int, count: int) -> None:
    """Notifications (a subscriber with its salt), then registrations resolving them."""
    with (
        setup.channel(custodian, "telkomsel") as operator,
        setup.channel(custodian, "kemenperin") as ministry,
    ):
        checks = check_grpc.EquipmentCheckServiceStub(operator)
        registry = registry_pb2_grpc.RegistryServiceStub(ministry)
        for serial in range(first, first + count):
            checks.CheckEquipment(
                check_pb.CheckEquipmentRequest(
                    imei=imei(serial), imsi=f"5101000000{serial:05d}", msisdn="6281100000"
                ),
                timeout=30,
            )
            if serial % 2:
                registry.RegisterDevice(
                    registry_pb2.RegisterDeviceRequest(
                        request_id=f"r-{serial}",
                        device=registry_pb2.DeviceRegistration(
                            imeis=[imei(serial)],
                            source=types_pb2.REGISTRATION_SOURCE_TPP_IMPORT,
                            reference=f"TPP-{serial}",
                            brand="B",
                            model="M",
                        ),
                    ),
                    timeout=30,
                )


def _custody_leaf(custodian: RunningServer) -> None:
    """A custody leaf in the custodian's log (the ceremony writes these; here
    the custodian appends one directly, unsigned, and its next write signs it)."""
    register = custodian.register
    step = custody_change("ANNOUNCED", 1, hashlib.sha256(b"policy 1").hexdigest(), "kominfo")
    register.replicate(
        [
            replace(
                step,
                sequence=register.state.sequence + 1,
                committed_at_us=register.clock.now_us(),
            )
        ]
    )


def _rows(url: str) -> dict[str, list[tuple[object, ...]]]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return {
                table: [
                    tuple(row)
                    for row in connection.execute(text(f"SELECT * FROM {table} ORDER BY {key}"))
                ]
                for table, key in TABLES.items()
            }
    finally:
        engine.dispose()


def _head(url: str) -> int:
    db = Database(url)
    try:
        with db.read() as connection:
            return repo.last_sequence(connection)
    finally:
        db.dispose()


def test_a_standby_holds_the_custodian_s_leaves_root_and_rows(
    setup: Setup, custodian: RunningServer
) -> None:
    _write(setup, custodian, 1, 6)
    _custody_leaf(custodian)
    standby = setup.standby(custodian)
    try:
        assert standby.standby is not None and standby.register.standby_of
        _write(setup, custodian, 7, 4)  # live, after the standby caught up
        head = custodian.register.state.sequence
        assert standby.standby.wait_for(head, WAIT), standby.standby.error
        assert standby.register.log.root(head) == custodian.register.log.root(head)
        assert standby.register.state.sequence == head
        assert standby.register.log.signer is None  # a standby signs nothing
        assert standby.standby_signer is not None
        # The checkpoint it holds is the custodian's, verified under its key.
        latest = standby.standby.latest_checkpoint
        assert open_checkpoint(latest, [setup.old_verifier()], DEFAULT_ORIGIN).size == head
        assert standby.register.state.sizes() == custodian.register.state.sizes()
    finally:
        standby.stop(grace=0)
    assert _rows(setup.standby_db) == _rows(setup.custodian_db)


def test_a_standby_resumes_after_either_side_restarts(
    setup: Setup, custodian: RunningServer
) -> None:
    _write(setup, custodian, 1, 4)
    standby = setup.standby(custodian)
    assert standby.standby is not None
    assert standby.standby.wait_for(custodian.register.state.sequence, WAIT)
    standby.stop(grace=0)

    # The standby restarts: its latest checkpoint is the custodian's, which
    # its start-up proof accepts under the trusted key, not its own.
    _write(setup, custodian, 5, 2)
    with pytest.raises(LogNotVerified, match="not signed by this server's key"):
        plain = replace(setup.standby_config(custodian), standby_of=None, trusted_log_keys=())
        create_server(replace(plain, client_cert=None, client_key=None))
    standby = setup.standby(custodian)
    try:
        assert standby.standby is not None
        assert standby.standby.wait_for(custodian.register.state.sequence, WAIT)

        # The custodian restarts on the same port: the standby reconnects.
        port = custodian.port
        custodian.stop(grace=0)
        restarted = setup.custodian(port)
        try:
            _write(setup, restarted, 7, 3)
            head = restarted.register.state.sequence
            assert standby.standby.wait_for(head, WAIT), standby.standby.error
            assert standby.standby.reconnects >= 1
            assert standby.register.log.root(head) == restarted.register.log.root(head)
        finally:
            restarted.stop(grace=0)
    finally:
        standby.stop(grace=0)
    assert _rows(setup.standby_db) == _rows(setup.custodian_db)


def test_a_change_altered_at_the_source_stops_the_standby_at_the_last_verified_checkpoint(
    setup: Setup, custodian: RunningServer
) -> None:
    _write(setup, custodian, 1, 3)
    standby = setup.standby(custodian)
    assert standby.standby is not None
    verified = custodian.register.state.sequence
    assert standby.standby.wait_for(verified, WAIT)
    standby.stop(grace=0)
    _write(setup, custodian, 4, 3)
    # An insider edits a change the custodian has signed, before the standby reads it.
    engine = create_engine(setup.custodian_db)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE changes SET reference = 'TPP-forged' WHERE sequence = :s"),
            {"s": verified + 2},
        )
    engine.dispose()
    standby = setup.standby(custodian)
    try:
        assert standby.standby is not None
        assert not standby.standby.wait_for(custodian.register.state.sequence, WAIT)
        assert "do not hash to the verified checkpoint's root" in standby.standby.error
        assert standby.standby.size == verified
        assert standby.register.state.sequence == verified
    finally:
        standby.stop(grace=0)
    assert _head(setup.standby_db) == verified  # nothing unverified was stored


def test_checkpoints_under_another_key_are_refused(setup: Setup, custodian: RunningServer) -> None:
    _write(setup, custodian, 1, 2)
    stranger = _verifier(setup.new_key)  # not the custodian's key
    standby = setup.standby(custodian, stranger)
    try:
        assert standby.standby is not None
        assert not standby.standby.wait_for(1, WAIT)
        assert "checkpoint is refused" in standby.standby.error
    finally:
        standby.stop(grace=0)
    assert _head(setup.standby_db) == 0


def test_replicate_refuses_a_gap_and_a_wrong_root(setup: Setup, custodian: RunningServer) -> None:
    _write(setup, custodian, 1, 3)
    with custodian.register.db.read() as connection:
        changes = repo.changes_after(connection, 0, 100)
    db = Database(setup.standby_db)
    db.migrate()
    register = Register(db)
    try:
        with pytest.raises(ReplicaGap, match="expected change 1, got 2"):
            register.replicate(changes[1:])
        with pytest.raises(ReplicaGap, match="expected change 3, got 4"):
            register.replicate([*changes[:2], *changes[3:]])
        with pytest.raises(ReplicaMismatch):
            register.replicate(changes[:3], expect_root=custodian.register.log.root(2))
        assert register.state.sequence == 0
        with db.read() as connection:
            assert repo.last_sequence(connection) == 0
        register.replicate(changes[:3], expect_root=custodian.register.log.root(3))
        register.replicate(changes[3:])
        size = len(changes)
        assert register.log.root(size) == custodian.register.log.root(size)
    finally:
        register.close()
        db.dispose()


def test_the_start_up_proof_takes_the_checkpoint_under_a_trusted_key(
    setup: Setup, custodian: RunningServer
) -> None:
    _write(setup, custodian, 1, 2)
    custodian.stop(grace=0)
    db = Database(setup.custodian_db)
    try:
        old, new = setup.old_verifier(), _verifier(setup.new_key)
        with pytest.raises(LogNotVerified, match="not signed by this server's key"):
            prove_at_start(db, new, custodian.register.log.origin)
        with pytest.raises(LogNotVerified, match="nor a trusted one"):
            prove_at_start(db, new, custodian.register.log.origin, trusted=[new])
        proof = prove_at_start(db, new, custodian.register.log.origin, trusted=[old])
        assert proof.signature_checked and proof.size == proof.checkpoint_size
    finally:
        db.dispose()
