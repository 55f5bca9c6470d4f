"""A custody ceremony on real servers: keys made for the test, policies 0 and 1, helpers.

Telkomsel holds the register under policy 0 (log key ``OLD``); policy 1
hands it to Kemenperin (log key ``NEW``). Each custodian has three officers,
two of whom must sign; Kominfo witnesses both.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from ceir.api.server import RunningServer, ServerConfig, create_server
from ceir.audit import generate_signing_key, save_private_key
from ceir.audit.note import Signer, sign_note
from ceir.custody import (
    AbortNote,
    Cosigner,
    CustodyPolicy,
    Officer,
    Threshold,
    Witness,
    sign_abort,
    sign_policy,
)
from ceir.service.clock import ManualClock
from ceir.service.merkle_log import DEFAULT_ORIGIN
from ceir.v1 import custody_pb2 as pb

from ..helpers import Client

ORIGIN = DEFAULT_ORIGIN
YEAR = 365 * 86_400


def _signer(name: str) -> Signer:
    return Signer(name, generate_signing_key())


@dataclass
class Keys:
    """Every key of the ceremony, made afresh for one test."""

    old_key: Ed25519PrivateKey
    new_key: Ed25519PrivateKey
    telkomsel: tuple[Signer, Signer, Signer]
    kemenperin: tuple[Signer, Signer, Signer]
    kominfo: Signer
    kominfo_cosigner: Cosigner

    @classmethod
    def make(cls) -> Keys:
        return cls(
            old_key=generate_signing_key(),
            new_key=generate_signing_key(),
            telkomsel=(
                _signer("officer.telkomsel/ayu"),
                _signer("officer.telkomsel/budi"),
                _signer("officer.telkomsel/citra"),
            ),
            kemenperin=(
                _signer("officer.kemenperin/dewi"),
                _signer("officer.kemenperin/eko"),
                _signer("officer.kemenperin/fajar"),
            ),
            kominfo=_signer("witness.kominfo"),
            kominfo_cosigner=Cosigner("witness.kominfo", generate_signing_key()),
        )

    @property
    def old(self) -> Signer:
        """Telkomsel's log key (policy 0)."""
        return Signer(ORIGIN, self.old_key)

    @property
    def new(self) -> Signer:
        """Kemenperin's log key (policy 1)."""
        return Signer(ORIGIN, self.new_key)

    def witness(self) -> Witness:
        return Witness(self.kominfo.verifier, self.kominfo_cosigner.verifier)

    def policy(self, version: int, expires: int) -> CustodyPolicy:
        """Policy 0 (Telkomsel, old key) or 1 (Kemenperin, new key)."""
        custodian, log_key, officers = (
            ("telkomsel", self.old, self.telkomsel)
            if version == 0
            else ("kemenperin", self.new, self.kemenperin)
        )
        return CustodyPolicy(
            version=version,
            origin=ORIGIN,
            custodian=custodian,
            endpoint=f"ceir.{custodian}.example:8443",
            log_key=log_key.verifier,
            complaints="telkomsel",
            expires=expires,
            thresholds=(Threshold(custodian, 2),),
            officers=tuple(Officer(custodian, s.verifier) for s in officers),
            witness_quorum=1,
            witnesses=(self.witness(),),
        )

    def write_files(self, directory: Path, policy_zero: CustodyPolicy) -> tuple[Path, Path, Path]:
        """The old and new signing key files and policy 0's note."""
        old, new, zero = directory / "old.pem", directory / "new.pem", directory / "policy-0.note"
        if not old.exists():
            save_private_key(self.old_key, old)
            save_private_key(self.new_key, new)
            zero.write_text(sign_policy(policy_zero, self.telkomsel[:2]), encoding="utf-8")
        return old, new, zero

    def approvals(self) -> list[Signer]:
        """Who must sign policy 1: two of each custodian's officers and the witness."""
        return [*self.telkomsel[:2], *self.kemenperin[:2], self.kominfo]

    def abort_note(self, policy: CustodyPolicy) -> str:
        return sign_abort(AbortNote.of(policy), self.telkomsel[1:])


def now_s() -> int:
    return int(time.time())


def signed(text: str, *signers: Signer) -> str:
    return sign_note(text, signers)


def custody(client: Client) -> pb.Custody:
    return client.call(client.custody.GetCustody, pb.GetCustodyRequest()).custody


def error_info(error: grpc.RpcError) -> tuple[str, dict[str, str]]:
    """(reason, metadata) of a failed call's ErrorInfo."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason, dict(info.metadata)
    return "", {}


def retry_delay(error: grpc.RpcError) -> float | None:
    """The RetryInfo delay of a failed call, in seconds (None without one)."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            return float(info.retry_delay.ToNanoseconds()) / 1e9
    return None


def refused(call: Any, *args: Any) -> grpc.RpcError:
    """The error of a call that must fail."""
    try:
        call(*args)
    except grpc.RpcError as error:
        return error
    raise AssertionError("the call succeeded")


def start(
    db_url: str,
    directory: Path,
    clock: ManualClock,
    keys: Keys,
    zero: CustodyPolicy,
    *,
    incoming: bool = False,
    standby: Any = None,
) -> RunningServer:
    """A register under policy 0: the custodian (old key), or the incoming one (new key)."""
    old, new, note = keys.write_files(directory, zero)
    return create_server(
        ServerConfig(
            db=db_url,
            address="127.0.0.1:0",
            clock=clock,
            access_log=False,
            follow_interval=0.2,
            insecure=True,
            signing_key=new if incoming else old,
            custody_policy=note,
            custody_expiry_interval=0.2,
            # The incoming register's database is a copy whose checkpoints the
            # old key signed (the standby's replication is ceir.service.standby's).
            prove_lists=not incoming,
            standby=standby,
        )
    )
