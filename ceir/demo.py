"""``make demo``: a CEIR on SQLite, a sample register loaded through the
public API, and a scripted series of checks that exercises every decision
rule, printed as a table.

The server runs in this process so that the demo can move its clock
forward (tourist expiry, the end of a grace period) without waiting days.
It serves mutual TLS: ``ceir pki init`` makes a demo CA and certificates in
demo-data/pki, and each organisation connects with its own certificate.
"""

from __future__ import annotations

import logging
import shutil
import sys
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import grpc
from google.protobuf.field_mask_pb2 import FieldMask
from rich.console import Console
from rich.table import Table

from ceir.api.observability import JsonFormatter
from ceir.api.server import ServerConfig, create_server
from ceir.audit import generate_signing_key, load_private_key, save_private_key, save_public_key
from ceir.domain.identifiers import full_imei
from ceir.organisations import BRIEF_ORGANISATIONS
from ceir.pki import PkiFiles, init_pki
from ceir.service.clock import ManualClock
from ceir.service.orgs import add_organisation
from ceir.storage.database import Database
from ceir.v1 import (
    complaints_pb2,
    complaints_pb2_grpc,
    equipment_check_pb2,
    equipment_check_pb2_grpc,
    list_sync_pb2,
    list_sync_pb2_grpc,
    policy_pb2,
    policy_pb2_grpc,
    registry_pb2,
    registry_pb2_grpc,
    types_pb2,
)

DATA = Path("demo-data")
DAY = 86_400
SUBSCRIBER = {"telkomsel": "510101000000001", "indosat": "510011000000002", "xl": "510111000000003"}
ROAMER = "525011000000009"  # a Singapore SIM


def imei(serial: int, tac: int = 35332811) -> str:
    return full_imei(tac * 1_000_000 + serial)


@dataclass
class Org:
    """The stubs of one organisation."""

    name: str
    metadata: tuple[tuple[str, str], ...]
    check: equipment_check_pb2_grpc.EquipmentCheckServiceStub
    registry: registry_pb2_grpc.RegistryServiceStub
    policy: policy_pb2_grpc.PolicyServiceStub


class Demo:
    def __init__(self, channels: dict[str, grpc.Channel], clock: ManualClock) -> None:
        """``channels``: one mutual-TLS channel per organisation, with its certificate
        (which names it, so no token is sent)."""
        self.console = _console()
        self.clock = clock
        self.orgs = {
            name: Org(
                name,
                (),
                equipment_check_pb2_grpc.EquipmentCheckServiceStub(channel),
                registry_pb2_grpc.RegistryServiceStub(channel),
                policy_pb2_grpc.PolicyServiceStub(channel),
            )
            for name, channel in channels.items()
        }
        self.sync = list_sync_pb2_grpc.ListSyncServiceStub(channels["kominfo"])
        self.desks = {
            name: complaints_pb2_grpc.ComplaintServiceStub(channel)
            for name, channel in channels.items()
        }
        self.table = Table(title="Checks through EquipmentCheckService", show_lines=False)
        for column in ("rule", "case", "IMEI", "IMSI", "status", "reasons", "block date"):
            self.table.add_column(column, overflow="fold")

    def register(
        self,
        org: str,
        imeis: list[str],
        source: types_pb2.RegistrationSource.ValueType,
        reference: str,
        brand: str,
        model: str,
        valid_days: float | None = None,
    ) -> None:
        device = registry_pb2.DeviceRegistration(
            imeis=imeis,
            source=source,
            reference=reference,
            brand=brand,
            model=model,
        )
        if valid_days is not None:
            device.valid_until.FromMicroseconds(self.clock.now_us() + int(valid_days * DAY * 1e6))
        stub = self.orgs[org]
        answer = stub.registry.RegisterDevice(
            registry_pb2.RegisterDeviceRequest(request_id=f"demo-{reference}", device=device),
            metadata=stub.metadata,
        )
        name = types_pb2.RegistrationSource.Name(source).removeprefix("REGISTRATION_SOURCE_")
        self.console.print(
            f"  {org:<11} registered {name:<14} {', '.join(imeis)}  "
            f"device {answer.registration.device_id}, sequence {answer.sequence}"
        )

    def check(
        self, rule: str, case: str, value: str, imsi: str, org: str = "telkomsel", msisdn: str = ""
    ) -> None:
        stub = self.orgs[org]
        answer = stub.check.CheckEquipment(
            equipment_check_pb2.CheckEquipmentRequest(imei=value, imsi=imsi, msisdn=msisdn),
            metadata=stub.metadata,
        )
        status = types_pb2.EquipmentStatus.Name(answer.status).removeprefix("EQUIPMENT_STATUS_")
        colour = {"WHITELISTED": "green", "BLACKLISTED": "red", "GREYLISTED": "yellow"}[status]
        reasons = ", ".join(
            types_pb2.Reason.Name(r).removeprefix("REASON_") for r in answer.reasons
        )
        block = (
            answer.block_date.ToDatetime().date().isoformat()
            if answer.HasField("block_date")
            else ""
        )
        self.table.add_row(rule, case, value, imsi, f"[{colour}]{status}[/]", reasons, block)

    def load(self) -> None:
        self.console.rule("Loading a sample register through the public API")
        tpp, prod = (
            types_pb2.REGISTRATION_SOURCE_TPP_IMPORT,
            types_pb2.REGISTRATION_SOURCE_TPP_PRODUCTION,
        )
        self.register("kemenperin", [imei(1)], tpp, "TPP-IMP-2020-0001", "Samsung", "Galaxy A51")
        self.register(
            "kemenperin",
            [imei(2), imei(3)],
            prod,
            "TPP-PRD-2020-0002",
            "Oppo",
            "A5 2020 (dual SIM)",
        )
        self.register(
            "bea-cukai",
            [imei(4)],
            types_pb2.REGISTRATION_SOURCE_CUSTOMS,
            "BC-CD-2020-8812",
            "Apple",
            "iPhone 11",
        )
        self.register(
            "telkomsel",
            [imei(5)],
            types_pb2.REGISTRATION_SOURCE_TOURIST,
            "PASSPORT-X1234567",
            "Google",
            "Pixel 4",
            valid_days=2,
        )
        self.register(
            "kemlu",
            [imei(6)],
            types_pb2.REGISTRATION_SOURCE_DIPLOMAT,
            "KEMLU-CD-77",
            "Huawei",
            "P40",
        )
        # Grandfathering saw only the slot that was on the network: the second
        # slot of this dual-SIM phone is not registered (a classic complaint).
        self.register(
            "xl",
            [imei(7)],
            types_pb2.REGISTRATION_SOURCE_GRANDFATHERED,
            "XL-DUMP-2020-09",
            "Xiaomi",
            "Redmi Note 8 (slot 1)",
        )
        self.register("kemenperin", [imei(9)], tpp, "TPP-IMP-2020-0009", "Vivo", "Y12")
        telkomsel = self.orgs["telkomsel"]
        telkomsel.registry.ReportStolen(
            registry_pb2.ReportStolenRequest(
                request_id="demo-stolen-1",
                imeis=[imei(9)],
                police_report="LP/123/IX/2020/Polda",
                subscriber_imsi=SUBSCRIBER["telkomsel"],
            ),
            metadata=telkomsel.metadata,
        )
        self.console.print(
            f"  telkomsel   reported stolen {imei(9)} for its subscriber "
            f"{SUBSCRIBER['telkomsel']} (police report LP/123/IX/2020)"
        )
        telkomsel.registry.AddException(
            registry_pb2.AddExceptionRequest(
                request_id="demo-pair-1",
                imei=imei(10),
                imsi=SUBSCRIBER["telkomsel"],
                reason="complaint ADU-2020-55: engineering sample",
            ),
            metadata=telkomsel.metadata,
        )
        self.console.print(f"  telkomsel   paired {imei(10)} with IMSI {SUBSCRIBER['telkomsel']}")

    def run_checks(self) -> None:
        tsel = SUBSCRIBER["telkomsel"]
        self.check("1", "malformed: a letter", "35332811000001X", tsel)
        self.check("1", "malformed: bad Luhn digit", imei(1)[:14] + "0", tsel)
        self.check("2", "inbound roamer, even a stolen phone", imei(9), ROAMER)
        self.check("3", "exception pair", imei(10), tsel)
        self.check("4", "stolen", imei(9), tsel)
        self.check("5", "TPP import, 15 digits", imei(1), tsel)
        self.check("5", "same device, 14-digit key", imei(1)[:14], tsel)
        self.check("5", "same device, IMEISV", imei(1)[:14] + "03", tsel)
        self.check("5", "dual SIM, second slot", imei(3), SUBSCRIBER["indosat"], "indosat")
        self.check("5", "customs personal import", imei(4), tsel)
        self.check("5", "tourist, still valid", imei(5), tsel)
        self.check("5", "diplomat", imei(6), SUBSCRIBER["xl"], "xl")
        self.check("5", "grandfathered slot 1", imei(7), SUBSCRIBER["xl"], "xl")
        for n in range(4):
            self.check("5", f"clone: same IMEI, SIM {n + 1}", imei(1), f"51010200000000{n}")
        self.check(
            "6",
            "grandfathered slot 2 (not seen)",
            imei(8),
            SUBSCRIBER["xl"],
            "xl",
            msisdn="+6281700000003",
        )
        self.check("6", "black-market phone", imei(11), tsel, msisdn="+6281100000001")
        self.clock.advance(3 * DAY)
        self.table.add_row("", "[dim]... 3 days later[/]", "", "", "", "", "")
        self.check("5→6", "tourist, expired", imei(5), tsel)
        self.clock.advance(30 * DAY)
        self.table.add_row("", "[dim]... 30 more days: grace over[/]", "", "", "", "", "")
        self.check("6", "black-market phone", imei(11), tsel)
        kominfo = self.orgs["kominfo"]
        kominfo.policy.UpdatePolicy(
            policy_pb2.UpdatePolicyRequest(
                request_id="demo-enforce",
                policy=types_pb2.Policy(phase=types_pb2.PHASE_ENFORCE),
                update_mask=FieldMask(paths=["phase"]),
            ),
            metadata=kominfo.metadata,
        )
        self.table.add_row("", "[dim]Kominfo sets the ENFORCE phase[/]", "", "", "", "", "")
        self.check("6", "new black-market phone", imei(12), tsel)
        self.check("5", "TPP import still fine", imei(1), SUBSCRIBER["telkomsel"])
        self.console.print(self.table)

    def show_feed(self) -> None:
        kominfo = self.orgs["kominfo"]
        snapshot = list(
            self.sync.GetSnapshot(list_sync_pb2.GetSnapshotRequest(), metadata=kominfo.metadata)
        )
        xl = self.orgs["xl"]
        notifications = xl.registry.ListNotifications(
            registry_pb2.ListNotificationsRequest(), metadata=xl.metadata
        )
        self.console.print(
            f"Register at sequence {snapshot[0].sequence}: snapshot of "
            f"{snapshot[0].total_entries} list entries in {len(snapshot)} chunk(s); "
            f"XL's notification list: "
            + ", ".join(
                f"{n.imei_key} on {n.imsi} (SMS to {n.msisdn or '-'}, block "
                f"{n.block_date.ToDatetime().date()})"
                for n in notifications.notifications
            )
        )

    def complaint(self) -> None:
        """XL's desk: a subscriber's second slot is dead. Diagnose, resolve by
        whitelisting the sibling slot, show the complaint with its change."""
        desk, subscriber = self.desks["xl"], SUBSCRIBER["xl"]
        filed = desk.FileComplaint(
            complaints_pb2.FileComplaintRequest(
                request_id="demo-complaint-1",
                imeis=[imei(7), imei(8)],
                imsi=subscriber,
                category=complaints_pb2.COMPLAINT_CATEGORY_SECOND_SLOT_DEAD,
                description="SIM 2 has no signal since 15 September",
            )
        ).complaint
        tracking = filed.tracking_id
        self.console.print(
            f"\nComplaint {tracking} (second SIM slot dead) filed at XL's desk, owned by "
            f"{filed.owner}, due {filed.deadline.ToDatetime().isoformat(timespec='minutes')}Z"
        )
        diagnosis = desk.DiagnoseImei(
            complaints_pb2.DiagnoseImeiRequest(imei=imei(8), imsi=subscriber)
        )
        decided = next(
            r for r in diagnosis.rules if r.outcome == complaints_pb2.RULE_OUTCOME_DECIDED
        )
        status = types_pb2.EquipmentStatus.Name(diagnosis.status).removeprefix("EQUIPMENT_STATUS_")
        self.console.print(
            f"  diagnose {imei(8)}: {status}, decided by rule {decided.number} "
            f"({decided.rule}): {decided.detail}"
        )
        desk.UpdateComplaint(
            complaints_pb2.UpdateComplaintRequest(
                request_id="demo-complaint-2",
                tracking_id=tracking,
                state=complaints_pb2.COMPLAINT_STATE_INVESTIGATING,
                note="the box lists both IMEIs",
            )
        )
        done = desk.ResolveComplaint(
            complaints_pb2.ResolveComplaintRequest(
                request_id="demo-complaint-3",
                tracking_id=tracking,
                note="slot 2 whitelisted from the box",
                whitelist_sibling=complaints_pb2.WhitelistSibling(
                    imei=imei(8), registered_imei=imei(7), box_reference="box photo"
                ),
            )
        )
        for step in done.complaint.history:
            state = complaints_pb2.ComplaintState.Name(step.to_state).removeprefix(
                "COMPLAINT_STATE_"
            )
            changes = ", ".join(str(s) for s in step.change_sequences)
            self.console.print(
                f"  {step.number}. {step.actor:<9} -> {state:<13} {step.note}"
                + (f" (list changes {changes})" if changes else "")
            )
        answer = self.orgs["xl"].check.CheckEquipment(
            equipment_check_pb2.CheckEquipmentRequest(imei=imei(8), imsi=subscriber)
        )
        status = types_pb2.EquipmentStatus.Name(answer.status).removeprefix("EQUIPMENT_STATUS_")
        self.console.print(f"  check {imei(8)} on XL now: {status}")


def _console() -> Console:
    """A console wide enough for the table even when output is piped."""
    console = Console()
    return console if console.is_terminal else Console(width=160)


def mtls_channel(address: str, pki: PkiFiles, org: str) -> grpc.Channel:
    """A channel to the CEIR that presents ``org``'s client certificate."""
    certificate = pki.clients[org]
    credentials = grpc.ssl_channel_credentials(
        root_certificates=pki.ca.read_bytes(),
        private_key=pki.key(certificate).read_bytes(),
        certificate_chain=certificate.read_bytes(),
    )
    return grpc.secure_channel(address, credentials)


def main() -> int:
    if DATA.exists():
        shutil.rmtree(DATA)
    DATA.mkdir()
    handler = logging.FileHandler(DATA / "ceir.log")
    handler.setFormatter(JsonFormatter())
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    db_path = DATA / "ceir.db"
    db = Database(str(db_path))
    db.migrate()
    for org in BRIEF_ORGANISATIONS:  # the demo needs no tokens: certificates
        add_organisation(db, org.name, org.kind, list(org.mcc_mncs))
    db.dispose()
    pki = init_pki(DATA / "pki")
    signing_key = DATA / "custodian.pem"  # the custodian's key: signs the change log
    save_private_key(generate_signing_key(), signing_key)
    save_public_key(load_private_key(signing_key).public_key(), DATA / "custodian.pub.pem")
    clock = ManualClock()
    running = create_server(
        ServerConfig(
            db=str(db_path),
            address="127.0.0.1:0",
            clock=clock,
            tls_key=pki.key(pki.server),
            tls_cert=pki.server,
            client_ca=pki.ca,
            signing_key=signing_key,
        )
    )
    console = _console()
    console.print(
        f"CEIR serving mutual TLS on localhost:{running.port} (certificates in {pki.directory}), "
        f"database {db_path}, log {DATA / 'ceir.log'}"
    )
    try:
        with ExitStack() as stack:
            address = f"localhost:{running.port}"
            channels = {
                org.name: stack.enter_context(mtls_channel(address, pki, org.name))
                for org in BRIEF_ORGANISATIONS
            }
            demo = Demo(channels, clock)
            demo.load()
            demo.run_checks()
            demo.show_feed()
            demo.complaint()
    finally:
        running.stop()
        console.print("CEIR stopped cleanly.")
    console.print(
        f"Audit the signed change log: ceir audit verify --db {db_path} "
        f"--public-key {DATA / 'custodian.pub.pem'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
