"""Fuzzing every RPC through a real server on SQLite.

Whatever a client sends (random and overlong strings, Arabic-Indic or
full-width digits, missing and unknown-enum fields, empty and huge repeated
fields, bad page tokens and field masks, timestamps outside the protobuf
range, random request ids), the server answers OK or a status a client can
act on, never UNKNOWN or INTERNAL; an INVALID_ARGUMENT names a real field of
the request; a failed call leaves every table of the register as it was; the
change feed stays gap-free; and the server stays SERVING.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
import pytest
import sqlalchemy
from google.protobuf.field_mask_pb2 import FieldMask
from google.protobuf.message import DecodeError, Message
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy.pool import NullPool

from ceir.v1 import complaints_pb2 as complaint_pb
from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import list_sync_pb2 as sync_pb
from ceir.v1 import (
    lookup_pb2,
    lookup_pb2_grpc,
    oversight_pb2,
    oversight_pb2_grpc,
    policy_pb2,
    registry_pb2,
    stolen_pb2,
    stolen_pb2_grpc,
    transparency_pb2,
    types_pb2,
)

from .helpers import (
    INDOSAT_IMSI,
    ROAMER_IMSI,
    TELKOMSEL_IMSI,
    Client,
    error_reason,
    imei,
    violations,
)

T = TypeVar("T")
M = TypeVar("M", bound=Message)

FUZZ = settings(
    max_examples=50,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

EXPECTED_CODES = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
}
OVERLONG = 10_000
HUGE_LIST = 2_000
WATCH_WINDOW = 0.3  # seconds a caught-up WatchChanges is given before the test stops it
ASCII_DIGITS = "0123456789"
ARABIC_INDIC = str.maketrans(ASCII_DIGITS, "٠١٢٣٤٥٦٧٨٩")
FULL_WIDTH = str.maketrans(ASCII_DIGITS, "０１２３４５６７８９")
REQUEST_ID_ALPHABET = "ABCXYZabcxyz0123456789._:-"
CALLERS = ("telkomsel", "indosat", "xl", "kemenperin", "customs", "kemlu", "kominfo")
POLICY_FIELDS = ("phase", "grace_days", "clone_threshold", "clone_window_seconds")
POLICY_LIMITS = {
    "grace_days": (0, 365),
    "clone_threshold": (1, 1_000),
    "clone_window_seconds": (60, 2_592_000),
}
# The IMSI prefixes of each operator among the callers (helpers.ORGS).
OPERATOR_PREFIXES = {"telkomsel": ("51010",), "indosat": ("51001", "51021"), "xl": ("51011",)}
SOURCE_OWNERS = {
    1: "kemenperin",
    2: "kemenperin",
    3: "customs",
    4: "telkomsel",
    5: "kemlu",
    6: "telkomsel",
}
LIST_TABLES = (
    "devices",
    "whitelist",
    "blacklist",
    "notifications",
    "exceptions",
    "idempotency",
    "complaints",
    "complaint_steps",
    "stolen_cases",
    "stolen_case_steps",
)
# Every RPC of the API; test_every_rpc_is_fuzzed keeps this in step with the protos.
FUZZED_RPCS = {
    "ceir.v1.EquipmentCheckService": {
        "CheckEquipment",
        "CheckEquipmentBatch",
        "CheckEquipmentStream",
    },
    "ceir.v1.RegistryService": {
        "RegisterDevice",
        "RevokeRegistration",
        "ReportStolen",
        "ReportRecovered",
        "AddException",
        "RemoveException",
        "ListNotifications",
        "GetImeiRecord",
        "ImportRegistrations",
        "FindRangeUploads",
    },
    "ceir.v1.ListSyncService": {"GetSnapshot", "WatchChanges"},
    "ceir.v1.PolicyService": {"GetPolicy", "UpdatePolicy"},
    "ceir.v1.TransparencyService": {"GetCheckpoint", "GetInclusionProof", "GetConsistencyProof"},
    "ceir.v1.ComplaintService": {
        "FileComplaint",
        "GetComplaint",
        "ListComplaints",
        "UpdateComplaint",
        "ResolveComplaint",
        "DiagnoseImei",
    },
    "ceir.v1.StolenCaseService": {
        "FileStolenCase",
        "UpdateStolenCase",
        "GetStolenCase",
        "ListStolenCases",
        "ListTheftAlerts",
    },
    "ceir.v1.OversightService": {
        "ListAccountAlerts",
        "ListRegistrationsBy",
        "RevokeRegistrationsBy",
    },
}
# Served without credentials on a listener of its own (test_lookup_survives_anything).
FUZZED_PUBLIC_RPCS = {"ceir.v1.PublicLookupService": {"LookupImei"}}


# --- oracles: what the documented rules say, written independently of the server ----------


def ascii_digits(value: str) -> bool:
    return value != "" and all(char in ASCII_DIGITS for char in value)


def luhn_ok(digits15: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits15)):
        digit = int(char)
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


def imei_key_of(value: str) -> int | None:
    """The 14-digit key of a well-formed IMEI, None for a malformed one."""
    if len(value) not in (14, 15, 16) or not ascii_digits(value):
        return None
    if len(value) == 15 and not luhn_ok(value):
        return None
    return int(value[:14])


def imsi_ok(value: str) -> bool:
    return ascii_digits(value) and 6 <= len(value) <= 15


def msisdn_ok(value: str) -> bool:
    digits = value.removeprefix("+")
    return ascii_digits(digits) and 8 <= len(digits) <= 15


def request_id_ok(value: str) -> bool:
    return re.fullmatch(r"[A-Za-z0-9._:\-]{0,128}", value) is not None


def has_control_chars(value: str) -> bool:
    """What the register refuses in free text: anything str.isprintable()
    refuses (control and format characters, separators other than space)."""
    return not value.isprintable()


def text_ok(value: str, limit: int, *, required: bool = False) -> bool:
    if required and not value.strip():
        return False
    return len(value) <= limit and not has_control_chars(value)


def check_is_invalid(check: check_pb.CheckEquipmentRequest) -> bool:
    """True if a check must be refused (not answered): the IMEI is empty or
    overlong, or the IMSI or MSISDN, when given, is malformed."""
    return (
        check.imei == ""
        or len(check.imei) > 64
        or (check.imsi != "" and not imsi_ok(check.imsi))
        or (check.msisdn != "" and not msisdn_ok(check.msisdn))
    )


def assert_decision_fits(check: check_pb.CheckEquipmentRequest, answer: Any) -> None:
    """A malformed IMEI is BLACKLISTED for REASON_MALFORMED_IMEI; a well-formed
    one is answered under its 14-digit key."""
    key = imei_key_of(check.imei)
    if key is None:
        assert answer.status == types_pb2.EQUIPMENT_STATUS_BLACKLISTED, (check.imei, answer)
        assert list(answer.reasons) == [types_pb2.REASON_MALFORMED_IMEI], (check.imei, answer)
        assert answer.imei_key == ""
    else:
        assert answer.imei_key == f"{key:014d}"
        assert answer.status != types_pb2.EQUIPMENT_STATUS_UNSPECIFIED
        assert types_pb2.REASON_MALFORMED_IMEI not in answer.reasons


# --- generated values ------------------------------------------------------------------


def overlong(alphabet: str = "9") -> st.SearchStrategy[str]:
    return st.sampled_from(alphabet).map(lambda char: char * OVERLONG)


def with_foreign_digits(values: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """The same values written with Arabic-Indic or full-width digits."""
    return st.one_of(
        values.map(lambda v: v.translate(ARABIC_INDIC)),
        values.map(lambda v: v.translate(FULL_WIDTH)),
        # one foreign digit hidden among ASCII ones
        values.map(lambda v: v[:-1] + v[-1].translate(ARABIC_INDIC)),
    )


def junk(max_size: int = 40) -> st.SearchStrategy[str]:
    return st.text(max_size=max_size)


VALID_IMEIS = st.builds(imei, st.integers(0, 60), st.sampled_from([35209900, 86000001])) | (
    st.builds(imei, st.integers(0, 999_999), st.integers(10_000_000, 99_999_999))
)
WELL_FORMED_IMEIS = st.one_of(
    VALID_IMEIS,
    VALID_IMEIS.map(lambda v: v[:14]),
    st.tuples(VALID_IMEIS, st.integers(0, 99)).map(lambda p: f"{p[0][:14]}{p[1]:02d}"),
)
MALFORMED_IMEIS = st.one_of(
    with_foreign_digits(VALID_IMEIS),
    VALID_IMEIS.map(lambda v: v[:14] + str((int(v[14]) + 1) % 10)),  # Luhn fails
    st.text(ASCII_DIGITS, min_size=1, max_size=30).filter(lambda v: len(v) not in (14, 15, 16)),
    st.text(min_size=1, max_size=40).filter(lambda v: imei_key_of(v) is None),
    VALID_IMEIS.map(lambda v: f" {v}"),
    VALID_IMEIS.map(lambda v: f"{v}\n"),
    overlong("9٣x"),
)
IMEIS = st.one_of(WELL_FORMED_IMEIS, MALFORMED_IMEIS, st.just(""))
IMEI_LISTS = st.one_of(
    st.lists(IMEIS, max_size=10),
    st.lists(WELL_FORMED_IMEIS, min_size=1, max_size=9),
    st.integers(0, 10**6).map(lambda start: [imei(start + n) for n in range(HUGE_LIST)]),
    st.integers(1, HUGE_LIST).map(lambda size: ["٣" * 15] * size),  # a violation each
)
VALID_IMSIS = st.one_of(
    st.sampled_from([TELKOMSEL_IMSI, INDOSAT_IMSI, ROAMER_IMSI]),
    st.text(ASCII_DIGITS, min_size=10, max_size=10).map(lambda msin: f"51010{msin}"),
)
IMSIS = st.one_of(
    st.just(""),
    VALID_IMSIS,
    with_foreign_digits(VALID_IMSIS),
    st.text(ASCII_DIGITS, max_size=20),
    junk(),
    overlong(),
)
VALID_MSISDNS = st.text(ASCII_DIGITS, min_size=7, max_size=9).map(lambda n: f"+62811{n}")
MSISDNS = st.one_of(
    st.just(""),
    VALID_MSISDNS,
    with_foreign_digits(VALID_MSISDNS),
    st.text("+0123456789", max_size=20),
    junk(),
    overlong(),
)
TEXTS = st.one_of(
    st.just(""),
    junk(),
    st.text(st.characters(categories=["Cc"]), min_size=1, max_size=5),
    st.text(min_size=1, max_size=20).map(lambda v: v * 13),  # near and over 128/256
    overlong("xé٣ "),
)
REQUEST_IDS = st.one_of(
    st.just(""),
    st.uuids().map(str),
    st.text(REQUEST_ID_ALPHABET, min_size=1, max_size=128),
    st.text(REQUEST_ID_ALPHABET, min_size=129, max_size=200),
    junk(20),
    overlong("a"),
)
ENUMS = st.one_of(st.integers(0, 8), st.integers(-(2**31), 2**31 - 1))
INT32 = st.one_of(
    st.sampled_from([0, 1, -1, 2**31 - 1, -(2**31)]), st.integers(-(2**31), 2**31 - 1)
)
UINT32 = st.one_of(st.sampled_from([0, 1, 2**32 - 1]), st.integers(0, 2**32 - 1))
UINT64 = st.one_of(st.sampled_from([0, 1, 2**63 - 1, 2**63, 2**64 - 1]), st.integers(0, 2**64 - 1))


# (good values, bad values) of one field: requests are built good and then
# spoiled in a few fields (often none), so that calls get past the first
# check and also reach the deeper paths (conflicts, replays, state checks).
Pair = tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]
GOOD_TEXTS = st.text("abcXYZ019 -/", min_size=1, max_size=20).filter(str.strip)
A_TEXT: Pair = (GOOD_TEXTS, TEXTS)
AN_IMEI: Pair = (VALID_IMEIS, IMEIS)
SOME_IMEIS: Pair = (st.lists(VALID_IMEIS, min_size=1, max_size=3, unique=True), IMEI_LISTS)
AN_IMSI: Pair = (st.sampled_from([TELKOMSEL_IMSI, "510109999999999"]), IMSIS)
# A few fixed ids, so that retries replay and reuses with other payloads are refused.
A_REQUEST_ID: Pair = (
    st.one_of(st.uuids().map(str), st.sampled_from(["r1", "r2", "r3"])),
    REQUEST_IDS,
)
SPOILED_FIELDS_AT_MOST = 3


def spoiled_fields(names: Sequence[str]) -> st.SearchStrategy[frozenset[str]]:
    return st.frozensets(st.sampled_from(sorted(names)), max_size=SPOILED_FIELDS_AT_MOST)


def pick(draw: st.DrawFn, spoiled: frozenset[str], name: str, pair: Pair) -> Any:
    return draw(pair[1] if name in spoiled else pair[0])


def a_request_id() -> st.SearchStrategy[str]:
    """A request id, good three times out of four."""
    return st.integers(0, 3).flatmap(lambda n: A_REQUEST_ID[n == 3])


def spoiled(message_type: Callable[..., M], **fields: Pair) -> st.SearchStrategy[M]:
    """Requests of ``message_type`` with good values except in a few fields."""

    def build(spoiled: frozenset[str]) -> st.SearchStrategy[M]:
        chosen = {name: pair[1] if name in spoiled else pair[0] for name, pair in fields.items()}
        return st.builds(message_type, **chosen)

    return spoiled_fields(list(fields)).flatmap(build)


DAY = 86_400
TIMESTAMP_MIN, TIMESTAMP_MAX = -62_135_596_800, 253_402_300_799  # years 1 and 9999


@st.composite
def timestamps(draw: st.DrawFn) -> Timestamp | None:
    """Unset, near now (some valid for a tourist), at the protobuf limits, or
    anything an int64 and an int32 can hold."""
    near_now = st.one_of(st.integers(-400 * DAY, 400 * DAY), st.integers(DAY, 80 * DAY)).map(
        lambda offset: int(time.time()) + offset
    )
    seconds = draw(
        st.one_of(
            near_now,
            st.sampled_from([TIMESTAMP_MIN, TIMESTAMP_MAX, TIMESTAMP_MIN - 1, TIMESTAMP_MAX + 1]),
            st.integers(-(2**63), 2**63 - 1),
        )
    )
    nanos = draw(st.one_of(st.just(0), st.integers(0, 999_999_999), INT32))
    if draw(st.booleans()):
        return None
    return Timestamp(seconds=seconds, nanos=nanos)


@st.composite
def devices(draw: st.DrawFn) -> registry_pb2.DeviceRegistration | None:
    spoiled = draw(spoiled_fields(["device", "imeis", "source", "texts", "valid_until"]))
    if "device" in spoiled and draw(st.booleans()):
        return None  # the whole message missing
    device = registry_pb2.DeviceRegistration(
        imeis=pick(draw, spoiled, "imeis", SOME_IMEIS),
        source=pick(draw, spoiled, "source", (st.integers(1, 6), ENUMS)),
        reference=pick(draw, spoiled, "texts", A_TEXT),
        brand=pick(draw, spoiled, "texts", A_TEXT),
        model=pick(draw, spoiled, "texts", A_TEXT),
    )
    fitting: st.SearchStrategy[Timestamp | None] = st.none()
    if device.source == types_pb2.REGISTRATION_SOURCE_TOURIST:
        fitting = st.integers(DAY, 80 * DAY).map(lambda d: Timestamp(seconds=int(time.time()) + d))
    valid_until = pick(draw, spoiled, "valid_until", (fitting, timestamps()))
    if valid_until is not None:
        device.valid_until.CopyFrom(valid_until)
    return device


def device_is_garbage(device: registry_pb2.DeviceRegistration) -> bool:
    """True if the documented rules refuse this device whoever sends it."""
    return (
        not 1 <= len(device.imeis) <= 8
        or any(imei_key_of(v) is None for v in device.imeis)
        or len({imei_key_of(v) for v in device.imeis}) != len(device.imeis)
        or device.source not in range(1, 7)
        or not text_ok(device.reference, 128)
        or not text_ok(device.brand, 64)
        or not text_ok(device.model, 64)
        or (device.source != types_pb2.REGISTRATION_SOURCE_TOURIST)
        == device.HasField("valid_until")
        or (device.HasField("valid_until") and not timestamp_ok(device.valid_until))
    )


def timestamp_ok(stamp: Timestamp) -> bool:
    """Within what a Timestamp may hold: years 1 to 9999, nanos within a second."""
    return TIMESTAMP_MIN <= stamp.seconds <= TIMESTAMP_MAX and 0 <= stamp.nanos <= 999_999_999


def caller_for(usual: str) -> st.SearchStrategy[str]:
    """Mostly the organisation whose validation path the call should reach,
    sometimes anyone (the permission path)."""
    return st.one_of(st.just(usual), st.just(usual), st.just(usual), st.sampled_from(CALLERS))


# --- looking at the register from the side ----------------------------------------------


@dataclass(frozen=True)
class RegisterSnapshot:
    """What a failed call must not change, read over a separate connection."""

    last_sequence: int
    changes: int
    first_change: int
    last_change: int
    rows: tuple[int, ...]
    policy: tuple[int, ...]

    def assert_gap_free(self) -> None:
        assert self.changes == self.last_change == self.last_sequence, self
        assert self.first_change == (1 if self.changes else 0), self


def read_register(engine: sqlalchemy.Engine) -> RegisterSnapshot:
    with engine.connect() as connection:
        counts = tuple(
            int(connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one())
            for table in LIST_TABLES
        )
        state = connection.exec_driver_sql(
            "SELECT last_sequence, phase, grace_days, clone_threshold, clone_window_seconds,"
            " policy_updated_at_us FROM register_state"
        ).one()
        feed = connection.exec_driver_sql(
            "SELECT count(*), coalesce(min(sequence), 0), coalesce(max(sequence), 0) FROM changes"
        ).one()
    return RegisterSnapshot(
        last_sequence=int(state[0]),
        changes=int(feed[0]),
        first_change=int(feed[1]),
        last_change=int(feed[2]),
        rows=counts,
        policy=tuple(int(v) for v in state[1:]),
    )


def keys_changed_after(engine: sqlalchemy.Engine, sequence: int) -> set[int]:
    with engine.connect() as connection:
        rows = connection.exec_driver_sql(
            "SELECT imei_key FROM changes WHERE sequence > ?", (sequence,)
        )
        return {int(row[0]) for row in rows}


_SEGMENT = re.compile(r"([a-z_][a-z0-9_]*)(?:\[(\d+)\])?")


def names_field(message: Message, path: str) -> bool:
    """True if ``path`` ("device.imeis[1]", "checks[3].imsi") is a field of
    this very request, with indexes inside the repeated fields sent."""
    current: Message | None = message
    for segment in path.split("."):
        match = _SEGMENT.fullmatch(segment)
        if current is None or match is None:
            return False
        field = current.DESCRIPTOR.fields_by_name.get(match[1])
        if field is None:
            # A oneof left empty is named by the oneof's own name ("action").
            return match[1] in current.DESCRIPTOR.oneofs_by_name and segment == path.split(".")[-1]
        value = getattr(current, match[1])
        if match[2] is not None:
            if not field.is_repeated or int(match[2]) >= len(value):
                return False
            value = value[int(match[2])]
        current = value if isinstance(value, Message) else None
    return True


def assert_actionable(error: grpc.RpcError, request: Message | None) -> None:
    """An expected code, an ErrorInfo reason, and field violations naming
    fields of the request (at least one for INVALID_ARGUMENT)."""
    code = error.code()
    assert code in EXPECTED_CODES, f"{code}: {error.details()}"
    reason = error_reason(error)
    assert re.fullmatch(r"[A-Z][A-Z0-9_]*", reason), f"ErrorInfo reason {reason!r}"
    found = violations(error)
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        assert found, f"INVALID_ARGUMENT without field violations: {error.details()}"
    if request is not None:
        for field, description in found:
            assert names_field(request, field), f"violation names {field!r}: {description}"
            assert description


def code_of(outcome: object) -> grpc.StatusCode:
    if isinstance(outcome, grpc.RpcError):
        return outcome.code()
    return grpc.StatusCode.OK


@dataclass
class Fuzzer:
    """Sends one call and checks what every call must satisfy."""

    clients: dict[str, Client]
    engine: sqlalchemy.Engine
    health: health_pb2_grpc.HealthStub

    def attempt(
        self, request: Message | None, call: Callable[[], T], *, atomic: bool = True
    ) -> T | grpc.RpcError:
        """Run ``call``; a failure must be actionable and (when ``atomic``)
        must leave the register unchanged. Returns the result or the error."""
        before = read_register(self.engine)
        outcome: T | grpc.RpcError
        try:
            outcome = call()
        except grpc.RpcError as error:
            assert_actionable(error, request)
            if atomic:
                assert read_register(self.engine) == before, "a failed call changed the register"
            outcome = error
        reason = error_reason(outcome) if isinstance(outcome, grpc.RpcError) else ""
        event(f"{code_of(outcome).name} {reason}")
        read_register(self.engine).assert_gap_free()
        answer = self.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        return outcome


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    """The fuzz runs on SQLite only; other tests cover PostgreSQL."""
    return sqlite_url


@pytest.fixture
def fuzzer(clients: dict[str, Client], channel: grpc.Channel, db_url: str) -> Iterator[Fuzzer]:
    engine = sqlalchemy.create_engine(db_url, poolclass=NullPool)
    try:
        yield Fuzzer(clients, engine, health_pb2_grpc.HealthStub(channel))
    finally:
        engine.dispose()


@pytest.fixture
def seeded(fuzzer: Fuzzer) -> Fuzzer:
    """A register holding some of the IMEIs the strategies draw: registered,
    some stolen, some paired, so revocations, recoveries and removals can
    succeed as well as fail."""
    kemenperin, telkomsel = fuzzer.clients["kemenperin"], fuzzer.clients["telkomsel"]
    for tac in (35209900, 86000001):
        for serial in range(0, 40):
            kemenperin.register(imei(serial, tac=tac))
    for serial in range(0, 20, 2):
        telkomsel.call(
            telkomsel.registry.ReportStolen,
            registry_pb2.ReportStolenRequest(
                imeis=[imei(serial)], police_report="P-1", subscriber_imsi=TELKOMSEL_IMSI
            ),
        )
        telkomsel.call(
            telkomsel.registry.AddException,
            registry_pb2.AddExceptionRequest(imei=imei(serial), imsi=TELKOMSEL_IMSI),
        )
    return fuzzer


# --- coverage of the API ------------------------------------------------------------------


def test_every_rpc_is_fuzzed() -> None:
    files = (
        check_pb,
        registry_pb2,
        sync_pb,
        policy_pb2,
        transparency_pb2,
        complaint_pb,
        stolen_pb2,
        lookup_pb2,
        oversight_pb2,
    )
    declared = {
        service.full_name: {method.name for method in service.methods}
        for module in files
        for service in module.DESCRIPTOR.services_by_name.values()
    }
    assert declared == FUZZED_RPCS | FUZZED_PUBLIC_RPCS


# --- equipment checks ---------------------------------------------------------------------

CHECKS = st.builds(check_pb.CheckEquipmentRequest, imei=IMEIS, imsi=IMSIS, msisdn=MSISDNS)
CHECKERS = st.sampled_from(["telkomsel", "telkomsel", "indosat", "kemenperin", "kominfo", "kemlu"])


@FUZZ
@given(caller=CHECKERS, check=CHECKS)
def test_check_equipment_survives_anything(
    fuzzer: Fuzzer, caller: str, check: check_pb.CheckEquipmentRequest
) -> None:
    client = fuzzer.clients[caller]
    outcome = fuzzer.attempt(check, lambda: client.call(client.check.CheckEquipment, check))
    if caller in ("customs", "kemlu"):
        assert code_of(outcome) is grpc.StatusCode.PERMISSION_DENIED
    elif check_is_invalid(check):
        assert code_of(outcome) is grpc.StatusCode.INVALID_ARGUMENT
    else:
        assert code_of(outcome) is grpc.StatusCode.OK, outcome
        assert_decision_fits(check, outcome)


@st.composite
def check_batches(draw: st.DrawFn) -> check_pb.CheckEquipmentBatchRequest:
    size = draw(st.sampled_from([None, 1_000, 1_001, HUGE_LIST]))
    if size is None:
        return check_pb.CheckEquipmentBatchRequest(checks=draw(st.lists(CHECKS, max_size=6)))
    start = draw(st.integers(0, 10**6))
    malformed = draw(st.booleans())
    imsi = draw(st.sampled_from([TELKOMSEL_IMSI, "", "51010x"]))  # the last: a violation each
    return check_pb.CheckEquipmentBatchRequest(
        checks=[
            check_pb.CheckEquipmentRequest(
                imei=imei(start + n)[:13] + "x" if malformed else imei(start + n), imsi=imsi
            )
            for n in range(size)
        ]
    )


@FUZZ
@given(caller=CHECKERS, batch=check_batches())
def test_check_equipment_batch_survives_anything(
    fuzzer: Fuzzer, caller: str, batch: check_pb.CheckEquipmentBatchRequest
) -> None:
    client = fuzzer.clients[caller]
    outcome = fuzzer.attempt(batch, lambda: client.call(client.check.CheckEquipmentBatch, batch))
    if caller in ("customs", "kemlu"):
        assert code_of(outcome) is grpc.StatusCode.PERMISSION_DENIED
    elif not 1 <= len(batch.checks) <= 1_000 or any(map(check_is_invalid, batch.checks)):
        assert code_of(outcome) is grpc.StatusCode.INVALID_ARGUMENT
    else:
        assert isinstance(outcome, check_pb.CheckEquipmentBatchResponse), outcome
        assert len(outcome.results) == len(batch.checks)
        for check, answer in zip(batch.checks, outcome.results, strict=True):
            assert_decision_fits(check, answer)


STREAM_REQUESTS = st.one_of(
    st.builds(check_pb.CheckEquipmentStreamRequest, correlation_id=UINT64, check=CHECKS),
    st.builds(check_pb.CheckEquipmentStreamRequest, correlation_id=UINT64),  # no check at all
)


@FUZZ
@given(
    caller=CHECKERS,
    requests=st.one_of(
        st.lists(STREAM_REQUESTS, max_size=6),
        st.integers(0, 10**6).map(
            lambda start: [
                check_pb.CheckEquipmentStreamRequest(
                    correlation_id=n, check=check_pb.CheckEquipmentRequest(imei=imei(start + n))
                )
                for n in range(120)
            ]
        ),
    ),
)
def test_check_equipment_stream_survives_anything(
    fuzzer: Fuzzer, caller: str, requests: list[check_pb.CheckEquipmentStreamRequest]
) -> None:
    client = fuzzer.clients[caller]

    def stream() -> list[check_pb.CheckEquipmentStreamResponse]:
        return list(client.call(client.check.CheckEquipmentStream, iter(requests)))

    outcome = fuzzer.attempt(None, stream)
    if caller in ("customs", "kemlu"):
        # Refused at the first check (an empty stream has nothing to refuse).
        assert code_of(outcome) is grpc.StatusCode.PERMISSION_DENIED or outcome == []
        return
    assert isinstance(outcome, list), outcome
    assert [a.correlation_id for a in outcome] == [r.correlation_id for r in requests]
    for request, answer in zip(requests, outcome, strict=True):
        if check_is_invalid(request.check):
            assert answer.error_message and not answer.HasField("result"), answer
        else:
            assert not answer.error_message, answer
            assert_decision_fits(request.check, answer.result)


# --- registry mutations -------------------------------------------------------------------


@st.composite
def registrations(draw: st.DrawFn) -> tuple[str, registry_pb2.RegisterDeviceRequest]:
    device = draw(devices())
    request = registry_pb2.RegisterDeviceRequest(request_id=draw(a_request_id()))
    usual = "kemenperin"
    if device is not None:
        request.device.CopyFrom(device)
        usual = SOURCE_OWNERS.get(device.source, usual)
    return draw(caller_for(usual)), request


@FUZZ
@given(case=registrations())
def test_register_device_survives_anything(
    fuzzer: Fuzzer, case: tuple[str, registry_pb2.RegisterDeviceRequest]
) -> None:
    caller, request = case
    client = fuzzer.clients[caller]
    outcome = fuzzer.attempt(request, lambda: client.call(client.registry.RegisterDevice, request))
    if (
        not request.HasField("device")
        or device_is_garbage(request.device)
        or not request_id_ok(request.request_id)
    ):
        assert isinstance(outcome, grpc.RpcError), f"accepted garbage: {request}"
    if isinstance(outcome, registry_pb2.RegisterDeviceResponse):
        keys = [f"{imei_key_of(v):014d}" for v in request.device.imeis]
        assert list(outcome.registration.imei_keys) == keys


@FUZZ
@given(
    caller=caller_for("kemenperin"),
    request=spoiled(
        registry_pb2.RevokeRegistrationRequest,
        request_id=A_REQUEST_ID,
        imeis=SOME_IMEIS,
        reason=A_TEXT,
    ),
)
def test_revoke_registration_survives_anything(
    seeded: Fuzzer, caller: str, request: registry_pb2.RevokeRegistrationRequest
) -> None:
    client = seeded.clients[caller]
    outcome = seeded.attempt(
        request, lambda: client.call(client.registry.RevokeRegistration, request)
    )
    if (
        not 1 <= len(request.imeis) <= 1_000
        or any(imei_key_of(v) is None for v in request.imeis)
        or not text_ok(request.reason, 256, required=True)
        or not request_id_ok(request.request_id)
    ):
        assert isinstance(outcome, grpc.RpcError), f"accepted garbage: {request}"


def imeis_are_garbage(values: Sequence[str], limit: int) -> bool:
    keys = [imei_key_of(v) for v in values]
    return not 1 <= len(values) <= limit or None in keys or len(set(keys)) != len(keys)


@FUZZ
@given(
    caller=caller_for("telkomsel"),
    request=spoiled(
        registry_pb2.ReportStolenRequest,
        request_id=A_REQUEST_ID,
        imeis=SOME_IMEIS,
        police_report=A_TEXT,
        subscriber_imsi=(st.sampled_from([TELKOMSEL_IMSI, INDOSAT_IMSI]), IMSIS),
    ),
)
def test_report_stolen_survives_anything(
    fuzzer: Fuzzer, caller: str, request: registry_pb2.ReportStolenRequest
) -> None:
    client = fuzzer.clients[caller]
    outcome = fuzzer.attempt(request, lambda: client.call(client.registry.ReportStolen, request))
    if (
        imeis_are_garbage(request.imeis, 8)
        or not text_ok(request.police_report, 128, required=True)
        or not imsi_ok(request.subscriber_imsi)  # required
        or not request_id_ok(request.request_id)
    ):
        assert isinstance(outcome, grpc.RpcError), f"accepted garbage: {request}"
    elif caller in OPERATOR_PREFIXES and not request.subscriber_imsi.startswith(
        OPERATOR_PREFIXES[caller]
    ):
        # An operator reports only its own subscribers' devices.
        assert code_of(outcome) is grpc.StatusCode.PERMISSION_DENIED, outcome


@FUZZ
@given(
    caller=caller_for("telkomsel"),
    request=spoiled(
        registry_pb2.ReportRecoveredRequest,
        request_id=A_REQUEST_ID,
        imeis=SOME_IMEIS,
        police_report=A_TEXT,
    ),
)
def test_report_recovered_survives_anything(
    seeded: Fuzzer, caller: str, request: registry_pb2.ReportRecoveredRequest
) -> None:
    client = seeded.clients[caller]
    outcome = seeded.attempt(request, lambda: client.call(client.registry.ReportRecovered, request))
    if (
        imeis_are_garbage(request.imeis, 8)
        or not text_ok(request.police_report, 128, required=True)
        or not request_id_ok(request.request_id)
    ):
        assert isinstance(outcome, grpc.RpcError), f"accepted garbage: {request}"


@FUZZ
@given(
    caller=caller_for("telkomsel"),
    request=spoiled(
        registry_pb2.AddExceptionRequest,
        request_id=A_REQUEST_ID,
        imei=AN_IMEI,
        imsi=AN_IMSI,
        reason=A_TEXT,
    ),
)
def test_add_exception_survives_anything(
    fuzzer: Fuzzer, caller: str, request: registry_pb2.AddExceptionRequest
) -> None:
    client = fuzzer.clients[caller]
    outcome = fuzzer.attempt(request, lambda: client.call(client.registry.AddException, request))
    if (
        imei_key_of(request.imei) is None
        or not imsi_ok(request.imsi)
        or not text_ok(request.reason, 256)
        or not request_id_ok(request.request_id)
    ):
        assert isinstance(outcome, grpc.RpcError), f"accepted garbage: {request}"


@FUZZ
@given(
    caller=caller_for("telkomsel"),
    request=spoiled(
        registry_pb2.RemoveExceptionRequest,
        request_id=A_REQUEST_ID,
        imei=AN_IMEI,
        imsi=AN_IMSI,
    ),
)
def test_remove_exception_survives_anything(
    seeded: Fuzzer, caller: str, request: registry_pb2.RemoveExceptionRequest
) -> None:
    client = seeded.clients[caller]
    outcome = seeded.attempt(request, lambda: client.call(client.registry.RemoveException, request))
    if (
        imei_key_of(request.imei) is None
        or not imsi_ok(request.imsi)
        or not request_id_ok(request.request_id)
    ):
        assert isinstance(outcome, grpc.RpcError), f"accepted garbage: {request}"


# --- bulk imports -------------------------------------------------------------------------

OVERSIZE_CHUNK = 10_001


@st.composite
def import_chunks(draw: st.DrawFn) -> registry_pb2.ImportRegistrationsRequest:
    chunk = registry_pb2.ImportRegistrationsRequest(request_id=draw(a_request_id()))
    if draw(st.integers(0, 5)) == 0:  # more rows than a message may carry
        start = draw(st.integers(0, 10**6))
        for n in range(OVERSIZE_CHUNK):
            row = chunk.rows.add(row=n)
            row.device.imeis.append(imei(start + n, tac=77000000))
            row.device.source = types_pb2.REGISTRATION_SOURCE_TPP_IMPORT
        return chunk
    for row_number in draw(st.lists(UINT64, max_size=5)):
        row = chunk.rows.add(row=row_number)
        device = draw(devices())
        if device is not None:
            row.device.CopyFrom(device)
    return chunk


def import_failing_chunk(
    caller: str, chunks: Sequence[registry_pb2.ImportRegistrationsRequest]
) -> int | None:
    """The chunk at which the documented rules stop this import, if any
    (an organisation that may not import is refused before its first chunk)."""
    if caller == "kominfo":
        return 0
    if not chunks:
        return None
    if not request_id_ok(chunks[0].request_id):
        return 0
    return next((n for n, chunk in enumerate(chunks) if len(chunk.rows) > 10_000), None)


@FUZZ
@given(caller=caller_for("kemenperin"), chunks=st.lists(import_chunks(), max_size=3))
def test_import_registrations_survives_anything(
    fuzzer: Fuzzer, caller: str, chunks: list[registry_pb2.ImportRegistrationsRequest]
) -> None:
    client = fuzzer.clients[caller]
    before = read_register(fuzzer.engine)
    failing = import_failing_chunk(caller, chunks)
    outcome = fuzzer.attempt(
        chunks[failing] if failing is not None and chunks else None,
        lambda: client.call(client.registry.ImportRegistrations, iter(chunks)),
        atomic=False,  # chunks before a failing one commit, by design
    )
    if isinstance(outcome, grpc.RpcError):
        if failing is None:
            # Only a request id reused with other rows (an earlier example's) may stop it.
            assert error_reason(outcome) == "REQUEST_ID_REUSED", outcome
            failing = len(chunks)
        # Nothing of the failing chunk or after it was written.
        allowed = {
            key
            for chunk in chunks[:failing]
            for row in chunk.rows
            for key in map(imei_key_of, row.device.imeis)
            if key is not None
        }
        written = keys_changed_after(fuzzer.engine, before.last_sequence)
        assert written <= allowed, f"failed import wrote {sorted(written - allowed)[:5]}"
        if failing == 0:
            assert read_register(fuzzer.engine) == before
        return
    assert failing is None, f"import should have stopped at chunk {failing}"
    rows = [row for chunk in chunks for row in chunk.rows]
    assert outcome.rows_received == len(rows)
    assert outcome.rows_accepted + outcome.rows_rejected == len(rows)
    assert len(outcome.rejections) == outcome.rows_rejected
    rejected = {r.row for r in outcome.rejections}
    by_number: dict[int, list[registry_pb2.ImportRow]] = {}
    for row in rows:
        by_number.setdefault(row.row, []).append(row)  # callers may repeat a number
    for rejection in outcome.rejections:
        assert rejection.row in by_number, rejection
        assert any(names_field(row, rejection.field) for row in by_number[rejection.row])
        assert rejection.description
    for row in rows:
        if device_is_garbage(row.device):
            assert row.row in rejected, f"row {row.row} accepted: {row}"


# --- reads --------------------------------------------------------------------------------

PAGE_TOKENS = st.one_of(
    st.just(""),
    junk(),
    st.binary(max_size=40).map(lambda b: base64.urlsafe_b64encode(b).decode()),
    st.tuples(st.text(max_size=20), st.text(max_size=20), st.text(max_size=20)).map(
        lambda t: base64.urlsafe_b64encode(":".join(t).encode()).decode()
    ),
    # well-formed tokens with keys and IMSIs no server would give (a key past
    # 2**63 overflows the database's BIGINT)
    st.tuples(
        st.one_of(st.integers(-(10**30), 10**30), st.integers(2**63 - 2, 2**64)),
        st.one_of(st.just(""), VALID_IMSIS, IMSIS),
    ).map(lambda t: base64.urlsafe_b64encode(f"v1:{t[0]}:{t[1]}".encode()).decode()),
    overlong("A="),
)
# History tokens of GetImeiRecord: "h1:<key>:<sequence>", also for other IMEIs,
# negative, overlong and BIGINT-overflowing sequences.
HISTORY_TOKENS = st.one_of(
    PAGE_TOKENS,
    st.tuples(
        st.one_of(WELL_FORMED_IMEIS.map(lambda v: v[:14]), st.integers(-(10**20), 10**20)),
        st.one_of(st.integers(-5, 50), st.integers(2**63 - 2, 2**64), st.text(max_size=5)),
    ).map(lambda t: base64.urlsafe_b64encode(f"h1:{t[0]}:{t[1]}".encode()).decode()),
)


@FUZZ
@given(
    caller=caller_for("telkomsel"),
    request=st.builds(
        registry_pb2.ListNotificationsRequest,
        page_size=st.one_of(st.integers(1, 5), INT32),
        page_token=PAGE_TOKENS,
    ),
)
def test_list_notifications_survives_anything(
    fuzzer: Fuzzer, caller: str, request: registry_pb2.ListNotificationsRequest
) -> None:
    client = fuzzer.clients[caller]
    # Some notifications to page through (checks of unregistered devices).
    for operator, imsi in (("telkomsel", TELKOMSEL_IMSI), ("indosat", INDOSAT_IMSI)):
        checker = fuzzer.clients[operator]
        batch = check_pb.CheckEquipmentBatchRequest(
            checks=[
                check_pb.CheckEquipmentRequest(imei=imei(n, tac=12345678), imsi=imsi)
                for n in range(12)
            ]
        )
        checker.call(checker.check.CheckEquipmentBatch, batch)
    outcome = fuzzer.attempt(
        request, lambda: client.call(client.registry.ListNotifications, request)
    )
    if request.page_size < 0:
        assert isinstance(outcome, grpc.RpcError)
    own = {"telkomsel": {"510-10"}, "indosat": {"510-01", "510-21"}, "xl": {"510-11"}}
    while isinstance(outcome, registry_pb2.ListNotificationsResponse):
        assert len(outcome.notifications) <= min(request.page_size or 100, 1_000)
        if caller in own:
            assert {n.operator_mcc_mnc for n in outcome.notifications} <= own[caller]
        if not outcome.next_page_token:
            break
        # The server's own token always works.
        request = registry_pb2.ListNotificationsRequest(
            page_size=request.page_size, page_token=outcome.next_page_token
        )
        outcome = client.call(client.registry.ListNotifications, request)


@FUZZ
@given(
    caller=caller_for("kemenperin"),
    request=st.builds(
        registry_pb2.FindRangeUploadsRequest,
        min_run=st.one_of(st.just(0), st.integers(1, 5), st.integers(0, 2**32 - 1)),
        page_size=st.one_of(st.just(0), st.integers(1, 5), INT32),
        page_token=st.one_of(st.just(""), st.text(max_size=40), PAGE_TOKENS),
    ),
)
def test_find_range_uploads_survives_anything(
    seeded: Fuzzer, caller: str, request: registry_pb2.FindRangeUploadsRequest
) -> None:
    client = seeded.clients[caller]
    outcome = seeded.attempt(
        request, lambda: client.call(client.registry.FindRangeUploads, request)
    )
    if caller not in ("kemenperin", "kominfo"):  # a regulator's tool only
        assert code_of(outcome) is grpc.StatusCode.PERMISSION_DENIED
        return
    if request.page_size < 0:
        assert code_of(outcome) is grpc.StatusCode.INVALID_ARGUMENT
    elif not request.page_token:
        assert isinstance(outcome, registry_pb2.FindRangeUploadsResponse), outcome
    elif isinstance(outcome, grpc.RpcError):  # a token is the server's, or refused
        assert code_of(outcome) is grpc.StatusCode.INVALID_ARGUMENT
    while isinstance(outcome, registry_pb2.FindRangeUploadsResponse):
        assert len(outcome.ranges) <= min(request.page_size or 100, 1_000)
        if not outcome.next_page_token:
            break
        # The server's own token always works.
        request = registry_pb2.FindRangeUploadsRequest(
            min_run=request.min_run,
            page_size=request.page_size,
            page_token=outcome.next_page_token,
        )
        outcome = client.call(client.registry.FindRangeUploads, request)


# --- an abused account (OversightService) --------------------------------------------------

REGULATORS = ("kemenperin", "kominfo")
ORGANISATIONS = st.one_of(
    st.sampled_from(["kemenperin", "telkomsel", "customs", "nobody", ""]), junk(), overlong("k")
)
OVERSIGHT_TOKENS = st.one_of(
    PAGE_TOKENS,
    st.tuples(
        st.sampled_from(["l1", "v1", "a1", "x1"]),
        st.one_of(st.integers(0, 50), st.integers(2**62, 2**64), st.text(max_size=4)),
        st.one_of(st.integers(0, 50), st.integers(2**62, 2**64)),
        st.one_of(st.text("0123456789abcdef", min_size=16, max_size=16), junk(5)),
    ).map(lambda t: base64.urlsafe_b64encode(":".join(map(str, t)).encode()).decode()),
)


def _oversight(client: Client) -> oversight_pb2_grpc.OversightServiceStub:
    return oversight_pb2_grpc.OversightServiceStub(client.channel)


@st.composite
def windows(draw: st.DrawFn) -> dict[str, Any]:
    """An organisation and a window: mostly sound, sometimes anything."""
    fields: dict[str, Any] = {"organisation": draw(ORGANISATIONS)}
    for name in ("start_time", "end_time"):
        stamp = draw(timestamps())
        if stamp is not None:
            fields[name] = stamp
    return fields


def _window_is_garbage(request: Any) -> bool:
    """True if the documented rules refuse this window whoever sends it."""
    start, end = request.start_time, request.end_time
    return (
        not request.organisation.strip()
        or len(request.organisation) > 64
        or not request.organisation.isprintable()
        or not request.HasField("start_time")
        or not timestamp_ok(start)
        or (request.HasField("end_time") and not timestamp_ok(end))
        or (
            request.HasField("end_time")
            and timestamp_ok(end)
            and timestamp_ok(start)
            and (end.seconds, end.nanos // 1_000) < (start.seconds, start.nanos // 1_000)
        )
        or request.page_size < 0
    )


@FUZZ
@given(
    caller=st.sampled_from(CALLERS),
    request=st.builds(
        oversight_pb2.ListAccountAlertsRequest,
        page_size=st.one_of(st.just(0), st.integers(1, 5), INT32),
        page_token=st.one_of(st.just(""), OVERSIGHT_TOKENS),
    ),
)
def test_list_account_alerts_survives_anything(
    seeded: Fuzzer, caller: str, request: oversight_pb2.ListAccountAlertsRequest
) -> None:
    client = seeded.clients[caller]
    stub = _oversight(client)
    outcome = seeded.attempt(request, lambda: client.call(stub.ListAccountAlerts, request))
    if caller not in REGULATORS:
        assert code_of(outcome) is grpc.StatusCode.PERMISSION_DENIED
    elif request.page_size < 0:
        assert code_of(outcome) is grpc.StatusCode.INVALID_ARGUMENT
    elif not request.page_token:
        assert isinstance(outcome, oversight_pb2.ListAccountAlertsResponse), outcome


@FUZZ
@given(
    caller=caller_for("kominfo"),
    window=windows(),
    page_size=st.one_of(st.just(0), st.integers(1, 5), INT32),
    page_token=st.one_of(st.just(""), st.just(""), OVERSIGHT_TOKENS),
)
def test_list_registrations_by_survives_anything(
    seeded: Fuzzer, caller: str, window: dict[str, Any], page_size: int, page_token: str
) -> None:
    request = oversight_pb2.ListRegistrationsByRequest(
        page_size=page_size, page_token=page_token, **window
    )
    client = seeded.clients[caller]
    stub = _oversight(client)
    outcome = seeded.attempt(request, lambda: client.call(stub.ListRegistrationsBy, request))
    if caller not in REGULATORS:
        assert code_of(outcome) is grpc.StatusCode.PERMISSION_DENIED
        return
    if _window_is_garbage(request):
        assert code_of(outcome) is grpc.StatusCode.INVALID_ARGUMENT
    while isinstance(outcome, oversight_pb2.ListRegistrationsByResponse):
        assert len(outcome.registrations) <= min(page_size or 1_000, 10_000)
        if not outcome.next_page_token:
            break
        # The server's own token always works, for the same window.
        request = oversight_pb2.ListRegistrationsByRequest(
            page_size=page_size, page_token=outcome.next_page_token, **window
        )
        outcome = client.call(stub.ListRegistrationsBy, request)


@FUZZ
@given(
    caller=caller_for("kemenperin"),
    request_id=a_request_id(),
    window=windows(),
    reason=st.one_of(GOOD_TEXTS, TEXTS),
    page_size=st.one_of(st.just(0), st.integers(1, 5), INT32),
    page_token=st.one_of(st.just(""), st.just(""), OVERSIGHT_TOKENS),
)
def test_revoke_registrations_by_survives_anything(
    seeded: Fuzzer,
    caller: str,
    request_id: str,
    window: dict[str, Any],
    reason: str,
    page_size: int,
    page_token: str,
) -> None:
    fields: dict[str, Any] = {
        "request_id": request_id,
        "reason": reason,
        "page_size": page_size,
        **window,
    }
    request = oversight_pb2.RevokeRegistrationsByRequest(page_token=page_token, **fields)
    client = seeded.clients[caller]
    stub = _oversight(client)
    outcome = seeded.attempt(request, lambda: client.call(stub.RevokeRegistrationsBy, request))
    if caller != "kemenperin":  # Kemenperin alone revokes any registration
        assert code_of(outcome) is grpc.StatusCode.PERMISSION_DENIED
        return
    if (
        _window_is_garbage(request)
        or not request_id
        or not request_id_ok(request_id)
        or not text_ok(reason, 256, required=True)
    ):
        assert code_of(outcome) is grpc.StatusCode.INVALID_ARGUMENT
    while isinstance(outcome, oversight_pb2.RevokeRegistrationsByResponse):
        assert len(outcome.rows) <= min(page_size or 1_000, 10_000)
        assert outcome.revoked == sum(
            row.outcome == oversight_pb2.REVOCATION_OUTCOME_REVOKED for row in outcome.rows
        )
        if not outcome.next_page_token:
            break
        request = oversight_pb2.RevokeRegistrationsByRequest(
            page_token=outcome.next_page_token, **fields
        )
        outcome = client.call(stub.RevokeRegistrationsBy, request)


@FUZZ
@given(
    caller=caller_for("telkomsel"),
    request=st.builds(
        registry_pb2.GetImeiRecordRequest,
        imei=IMEIS,
        page_size=st.one_of(st.just(0), st.integers(1, 5), INT32),
        page_token=st.one_of(st.just(""), st.just(""), HISTORY_TOKENS),
    ),
)
def test_get_imei_record_survives_anything(
    seeded: Fuzzer, caller: str, request: registry_pb2.GetImeiRecordRequest
) -> None:
    client = seeded.clients[caller]
    outcome = seeded.attempt(request, lambda: client.call(client.registry.GetImeiRecord, request))
    key = imei_key_of(request.imei)
    if caller in ("customs", "kemlu"):
        assert code_of(outcome) is grpc.StatusCode.PERMISSION_DENIED
    elif key is None:
        assert code_of(outcome) is grpc.StatusCode.INVALID_ARGUMENT
        assert isinstance(outcome, grpc.RpcError)
        assert "imei" in [field for field, _ in violations(outcome)]
    elif request.page_size < 0 or request.page_token:
        # A token is the server's for this very IMEI, or refused.
        if isinstance(outcome, grpc.RpcError):
            assert code_of(outcome) is grpc.StatusCode.INVALID_ARGUMENT
    else:
        assert isinstance(outcome, registry_pb2.GetImeiRecordResponse), outcome
    while isinstance(outcome, registry_pb2.GetImeiRecordResponse):
        assert key is not None and outcome.imei_key == f"{key:014d}"
        assert len(outcome.history) <= min(request.page_size or 100, 1_000)
        assert len(outcome.notifications) <= 100 and len(outcome.exceptions) <= 100
        if caller in OPERATOR_PREFIXES:  # only its own subscribers' IMSIs
            imsis = {e.imsi for e in outcome.exceptions} | {n.imsi for n in outcome.notifications}
            imsis |= {c.imsi for c in outcome.history} | {outcome.blacklist.subscriber_imsi}
            assert all(imsi.startswith(OPERATOR_PREFIXES[caller]) for imsi in imsis - {""})
        if not outcome.next_page_token:
            break
        # The server's own token always works.
        request = registry_pb2.GetImeiRecordRequest(
            imei=request.imei, page_size=request.page_size, page_token=outcome.next_page_token
        )
        outcome = client.call(client.registry.GetImeiRecord, request)


@FUZZ
@given(
    caller=caller_for("telkomsel"),
    request=st.builds(
        sync_pb.GetSnapshotRequest,
        chunk_size=st.one_of(INT32, st.integers(1, 3), st.sampled_from([262_144, 262_145])),
    ),
)
def test_get_snapshot_survives_anything(
    fuzzer: Fuzzer, caller: str, request: sync_pb.GetSnapshotRequest
) -> None:
    client = fuzzer.clients[caller]
    if caller == "telkomsel":  # something on the lists
        client.check_imei(imei(7, tac=12345678))

    def snapshot() -> list[sync_pb.GetSnapshotResponse]:
        return list(client.call(client.sync.GetSnapshot, request))

    outcome = fuzzer.attempt(request, snapshot)
    if not 0 <= request.chunk_size <= 262_144:
        assert code_of(outcome) is not grpc.StatusCode.OK
    if isinstance(outcome, list):
        assert outcome, "a snapshot has at least one chunk"
        assert [chunk.last for chunk in outcome] == [False] * (len(outcome) - 1) + [True]
        assert len({chunk.sequence for chunk in outcome}) == 1


def watch(client: Client, after: int, head: int) -> list[types_pb2.ListChange]:
    """Read the feed after ``after`` up to ``head``; a feed with nothing
    newer is stopped after a short window (it is live: it never ends)."""
    window = WATCH_WINDOW if after >= head else 30
    call: Any = client.sync.WatchChanges(
        sync_pb.WatchChangesRequest(after_sequence=after),
        metadata=tuple(client.metadata),
        timeout=window,
    )
    received: list[types_pb2.ListChange] = []
    try:
        for message in call:
            received.extend(message.changes)
            if received and received[-1].sequence >= head:
                break
    except grpc.RpcError as error:
        if not (error.code() is grpc.StatusCode.DEADLINE_EXCEEDED and after >= head):
            raise
    finally:
        call.cancel()
    return received


@FUZZ
@given(caller=caller_for("telkomsel"), after=st.one_of(UINT64, st.integers(0, 5)))
def test_watch_changes_survives_anything(fuzzer: Fuzzer, caller: str, after: int) -> None:
    client = fuzzer.clients[caller]
    fuzzer.clients["telkomsel"].check_imei(imei(after % 1_000, tac=12345678))
    head = read_register(fuzzer.engine).last_sequence
    request = sync_pb.WatchChangesRequest(after_sequence=after)
    outcome = fuzzer.attempt(request, lambda: watch(client, after, head))
    if head < after < 2**63 and caller in ("telkomsel", "kemenperin", "kominfo"):
        # Ahead of the register: told so, with the head, instead of silence.
        assert code_of(outcome) is grpc.StatusCode.OUT_OF_RANGE
        assert isinstance(outcome, grpc.RpcError)
        assert error_reason(outcome) == "SEQUENCE_AHEAD"
        assert f"head {head}" in str(outcome.details())
    if isinstance(outcome, list) and after < head:
        sequences = [change.sequence for change in outcome]
        assert sequences == list(range(after + 1, after + 1 + len(sequences)))
        assert sequences[-1] >= head


# --- policy -------------------------------------------------------------------------------

MASK_PATHS = st.one_of(
    st.sampled_from([*POLICY_FIELDS, "", "*", "policy.phase", "update_time", "updated_by"]),
    junk(20),
    overlong("p"),
)


@st.composite
def policy_updates(draw: st.DrawFn) -> policy_pb2.UpdatePolicyRequest:
    fields = ["request_id", "policy", "update_mask", *POLICY_FIELDS, "output_only"]
    spoiled = draw(spoiled_fields(fields))
    policy = types_pb2.Policy(
        phase=pick(draw, spoiled, "phase", (st.sampled_from([1, 2]), ENUMS)),
        grace_days=pick(draw, spoiled, "grace_days", (st.integers(0, 365), UINT32)),
        clone_threshold=pick(draw, spoiled, "clone_threshold", (st.integers(1, 1_000), UINT32)),
        clone_window_seconds=pick(
            draw, spoiled, "clone_window_seconds", (st.integers(60, 2_592_000), UINT32)
        ),
    )
    if "output_only" in spoiled:  # fields a client cannot set
        policy.updated_by = draw(TEXTS)
        stamp = draw(timestamps())
        if stamp is not None:
            policy.update_time.CopyFrom(stamp)
    request = policy_pb2.UpdatePolicyRequest(
        request_id=pick(draw, spoiled, "request_id", A_REQUEST_ID)
    )
    if "policy" not in spoiled:
        request.policy.CopyFrom(policy)
    if "update_mask" not in spoiled or draw(st.booleans()):
        good = st.lists(st.sampled_from(POLICY_FIELDS), min_size=1, max_size=2, unique=True)
        paths = pick(draw, spoiled, "update_mask", (good, st.lists(MASK_PATHS, max_size=5)))
        request.update_mask.CopyFrom(FieldMask(paths=paths))
    return request


def policy_update_is_garbage(request: policy_pb2.UpdatePolicyRequest) -> bool:
    paths = list(request.update_mask.paths)
    if not paths or any(path not in POLICY_FIELDS for path in paths):
        return True
    policy = request.policy
    if "phase" in paths and policy.phase not in (1, 2):
        return True
    return any(
        not low <= getattr(policy, name) <= high
        for name, (low, high) in POLICY_LIMITS.items()
        if name in paths
    )


@FUZZ
@given(caller=caller_for("kominfo"), request=policy_updates())
def test_update_policy_survives_anything(
    fuzzer: Fuzzer, caller: str, request: policy_pb2.UpdatePolicyRequest
) -> None:
    client = fuzzer.clients[caller]
    outcome = fuzzer.attempt(request, lambda: client.call(client.policy.UpdatePolicy, request))
    if policy_update_is_garbage(request) or not request_id_ok(request.request_id):
        assert isinstance(outcome, grpc.RpcError), f"accepted garbage: {request}"
    if isinstance(outcome, policy_pb2.UpdatePolicyResponse):
        for path in request.update_mask.paths:
            assert getattr(outcome.policy, path) == getattr(request.policy, path)


@FUZZ
@given(caller=st.sampled_from(CALLERS), unknown=st.binary(max_size=30))
def test_get_policy_survives_anything(fuzzer: Fuzzer, caller: str, unknown: bytes) -> None:
    client = fuzzer.clients[caller]
    # Unknown fields (a newer client's request) are ignored, not fatal.
    request = policy_pb2.GetPolicyRequest()
    try:
        request.MergeFromString(unknown)
    except DecodeError:  # not a valid encoding: send the empty request
        request = policy_pb2.GetPolicyRequest()
    outcome = fuzzer.attempt(request, lambda: client.call(client.policy.GetPolicy, request))
    assert isinstance(outcome, policy_pb2.GetPolicyResponse), outcome
    assert outcome.policy.phase in (types_pb2.PHASE_NOTIFY, types_pb2.PHASE_ENFORCE)


# --- the transparency log -----------------------------------------------------------------

LOG_READERS = ("telkomsel", "indosat", "xl", "kemenperin", "kominfo")


def log_size(fuzzer: Fuzzer) -> int:
    """Some changes on the log, and its size."""
    fuzzer.clients["telkomsel"].check_imei(imei(3, tac=12345678))
    return read_register(fuzzer.engine).last_sequence


@FUZZ
@given(caller=st.sampled_from(CALLERS), unknown=st.binary(max_size=30))
def test_get_checkpoint_survives_anything(fuzzer: Fuzzer, caller: str, unknown: bytes) -> None:
    client = fuzzer.clients[caller]
    size = log_size(fuzzer)
    request = transparency_pb2.GetCheckpointRequest()
    try:
        request.MergeFromString(unknown)
    except DecodeError:
        request = transparency_pb2.GetCheckpointRequest()
    outcome = fuzzer.attempt(request, lambda: client.call(client.log.GetCheckpoint, request))
    if caller not in LOG_READERS:
        assert code_of(outcome) is grpc.StatusCode.PERMISSION_DENIED
    else:
        assert isinstance(outcome, transparency_pb2.GetCheckpointResponse), outcome
        assert outcome.tree_size >= size
        assert outcome.checkpoint.split("\n")[1] == str(outcome.tree_size)


@FUZZ
@given(
    caller=caller_for("kominfo"),
    sequence=st.one_of(UINT64, st.integers(0, 6)),
    tree_size=st.one_of(UINT64, st.integers(0, 6)),
)
def test_get_inclusion_proof_survives_anything(
    fuzzer: Fuzzer, caller: str, sequence: int, tree_size: int
) -> None:
    client = fuzzer.clients[caller]
    size = log_size(fuzzer)
    request = transparency_pb2.GetInclusionProofRequest(sequence=sequence, tree_size=tree_size)
    outcome = fuzzer.attempt(request, lambda: client.call(client.log.GetInclusionProof, request))
    if caller in LOG_READERS:
        wanted = tree_size or size
        if tree_size <= size and 1 <= sequence <= wanted:
            assert isinstance(outcome, transparency_pb2.GetInclusionProofResponse), outcome
            assert outcome.leaf_index == sequence - 1
            assert all(len(digest) == 32 for digest in outcome.hashes)
        else:
            assert code_of(outcome) is grpc.StatusCode.INVALID_ARGUMENT


@FUZZ
@given(
    caller=caller_for("telkomsel"),
    first=st.one_of(UINT64, st.integers(0, 6)),
    second=st.one_of(UINT64, st.integers(0, 6)),
)
def test_get_consistency_proof_survives_anything(
    fuzzer: Fuzzer, caller: str, first: int, second: int
) -> None:
    client = fuzzer.clients[caller]
    size = log_size(fuzzer)
    request = transparency_pb2.GetConsistencyProofRequest(first_size=first, second_size=second)
    outcome = fuzzer.attempt(request, lambda: client.call(client.log.GetConsistencyProof, request))
    if caller in LOG_READERS and second <= size and first <= (second or size):
        assert isinstance(outcome, transparency_pb2.GetConsistencyProofResponse), outcome
        assert all(len(digest) == 32 for digest in outcome.hashes)
    elif caller in LOG_READERS:
        assert code_of(outcome) is grpc.StatusCode.INVALID_ARGUMENT


# --- authentication -----------------------------------------------------------------------

BAD_AUTHORIZATIONS: list[list[tuple[str, str]]] = [
    [],
    [("authorization", "Bearer ceir_not-a-token-anyone-was-given")],
    [("authorization", "Basic xyz")],
    [("authorization", "Bearer ")],
    [("authorization", "bearer")],
]


def valid_calls(client: Client) -> dict[str, Callable[[list[tuple[str, str]]], object]]:
    """One well-formed request per RPC, sent with the given metadata."""
    device = registry_pb2.DeviceRegistration(
        imeis=[imei(900)], source=types_pb2.REGISTRATION_SOURCE_TPP_IMPORT
    )
    check = check_pb.CheckEquipmentRequest(imei=imei(901), imsi=TELKOMSEL_IMSI)
    r = client.registry
    cases = stolen_pb2_grpc.StolenCaseServiceStub(client.channel)
    o = oversight_pb2_grpc.OversightServiceStub(client.channel)
    window: dict[str, Any] = {"organisation": "kemenperin", "start_time": Timestamp(seconds=0)}

    def unary(method: Any, request: Message) -> Callable[[list[tuple[str, str]]], object]:
        return lambda metadata: method(request, metadata=metadata, timeout=10)

    def listed(method: Any, request: object) -> Callable[[list[tuple[str, str]]], object]:
        return lambda metadata: list(method(request, metadata=metadata, timeout=10))

    return {
        "CheckEquipment": unary(client.check.CheckEquipment, check),
        "CheckEquipmentBatch": unary(
            client.check.CheckEquipmentBatch, check_pb.CheckEquipmentBatchRequest(checks=[check])
        ),
        "CheckEquipmentStream": listed(
            client.check.CheckEquipmentStream,
            iter([check_pb.CheckEquipmentStreamRequest(correlation_id=1, check=check)]),
        ),
        "RegisterDevice": unary(
            r.RegisterDevice, registry_pb2.RegisterDeviceRequest(request_id="a1", device=device)
        ),
        "RevokeRegistration": unary(
            r.RevokeRegistration,
            registry_pb2.RevokeRegistrationRequest(imeis=[imei(902)], reason="test"),
        ),
        "ReportStolen": unary(
            r.ReportStolen, registry_pb2.ReportStolenRequest(imeis=[imei(903)], police_report="P")
        ),
        "ReportRecovered": unary(
            r.ReportRecovered,
            registry_pb2.ReportRecoveredRequest(imeis=[imei(903)], police_report="P"),
        ),
        "AddException": unary(
            r.AddException, registry_pb2.AddExceptionRequest(imei=imei(904), imsi=TELKOMSEL_IMSI)
        ),
        "RemoveException": unary(
            r.RemoveException,
            registry_pb2.RemoveExceptionRequest(imei=imei(904), imsi=TELKOMSEL_IMSI),
        ),
        "ListNotifications": unary(r.ListNotifications, registry_pb2.ListNotificationsRequest()),
        "GetImeiRecord": unary(r.GetImeiRecord, registry_pb2.GetImeiRecordRequest(imei=imei(1))),
        "FindRangeUploads": unary(r.FindRangeUploads, registry_pb2.FindRangeUploadsRequest()),
        "ImportRegistrations": unary(
            r.ImportRegistrations,
            iter([registry_pb2.ImportRegistrationsRequest(rows=[registry_pb2.ImportRow(row=1)])]),  # type: ignore[arg-type]
        ),
        "GetSnapshot": listed(client.sync.GetSnapshot, sync_pb.GetSnapshotRequest()),
        "WatchChanges": listed(client.sync.WatchChanges, sync_pb.WatchChangesRequest()),
        "GetPolicy": unary(client.policy.GetPolicy, policy_pb2.GetPolicyRequest()),
        "GetCheckpoint": unary(client.log.GetCheckpoint, transparency_pb2.GetCheckpointRequest()),
        "GetInclusionProof": unary(
            client.log.GetInclusionProof, transparency_pb2.GetInclusionProofRequest(sequence=1)
        ),
        "GetConsistencyProof": unary(
            client.log.GetConsistencyProof, transparency_pb2.GetConsistencyProofRequest()
        ),
        "ListAccountAlerts": unary(o.ListAccountAlerts, oversight_pb2.ListAccountAlertsRequest()),
        "ListRegistrationsBy": unary(
            o.ListRegistrationsBy, oversight_pb2.ListRegistrationsByRequest(**window)
        ),
        "RevokeRegistrationsBy": unary(
            o.RevokeRegistrationsBy,
            oversight_pb2.RevokeRegistrationsByRequest(request_id="o1", reason="x", **window),
        ),
        "UpdatePolicy": unary(
            client.policy.UpdatePolicy,
            policy_pb2.UpdatePolicyRequest(
                policy=types_pb2.Policy(grace_days=7), update_mask=FieldMask(paths=["grace_days"])
            ),
        ),
        "FileComplaint": unary(
            client.complaints.FileComplaint,
            complaint_pb.FileComplaintRequest(
                imeis=[imei(905)], category=complaint_pb.COMPLAINT_CATEGORY_OTHER
            ),
        ),
        "GetComplaint": unary(
            client.complaints.GetComplaint, complaint_pb.GetComplaintRequest(tracking_id="C-000001")
        ),
        "ListComplaints": unary(
            client.complaints.ListComplaints, complaint_pb.ListComplaintsRequest()
        ),
        "UpdateComplaint": unary(
            client.complaints.UpdateComplaint,
            complaint_pb.UpdateComplaintRequest(
                tracking_id="C-000001", state=complaint_pb.COMPLAINT_STATE_INVESTIGATING
            ),
        ),
        "ResolveComplaint": unary(
            client.complaints.ResolveComplaint,
            complaint_pb.ResolveComplaintRequest(
                tracking_id="C-000001", note="n", no_action=complaint_pb.NoAction()
            ),
        ),
        "DiagnoseImei": unary(
            client.complaints.DiagnoseImei, complaint_pb.DiagnoseImeiRequest(imei=imei(1))
        ),
        "FileStolenCase": unary(
            cases.FileStolenCase,
            stolen_pb2.FileStolenCaseRequest(
                imeis=[imei(905)], imsi=TELKOMSEL_IMSI, police_report="P"
            ),
        ),
        "UpdateStolenCase": unary(
            cases.UpdateStolenCase,
            stolen_pb2.UpdateStolenCaseRequest(
                case_id="SC-1", state=stolen_pb2.STOLEN_CASE_STATE_BLOCKED
            ),
        ),
        "GetStolenCase": unary(cases.GetStolenCase, stolen_pb2.GetStolenCaseRequest(case_id="x")),
        "ListStolenCases": unary(cases.ListStolenCases, stolen_pb2.ListStolenCasesRequest()),
        "ListTheftAlerts": unary(cases.ListTheftAlerts, stolen_pb2.ListTheftAlertsRequest()),
    }


@pytest.mark.parametrize("metadata", BAD_AUTHORIZATIONS, ids=repr)
def test_every_rpc_refuses_a_missing_or_bad_token(
    fuzzer: Fuzzer, metadata: list[tuple[str, str]]
) -> None:
    calls = valid_calls(fuzzer.clients["kominfo"])
    assert set(calls) == set().union(*FUZZED_RPCS.values())
    before = read_register(fuzzer.engine)
    for name, call in calls.items():
        with pytest.raises(grpc.RpcError) as caught:
            call(metadata)
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED, name
        assert error_reason(caught.value) in {"MISSING_TOKEN", "BAD_AUTHORIZATION", "INVALID_TOKEN"}
    assert read_register(fuzzer.engine) == before


# --- the complaints desk --------------------------------------------------------------------

TRACKING_IDS = st.one_of(
    st.sampled_from(["C-000001", "C-000002", "C-000003", "C-999999"]),
    junk(),
    st.text("C-0123456789", max_size=25),
    overlong("C0"),
)


@FUZZ
@given(
    caller=caller_for("telkomsel"),
    request=st.builds(
        complaint_pb.FileComplaintRequest,
        request_id=REQUEST_IDS,
        imeis=st.one_of(SOME_IMEIS[0], IMEI_LISTS),
        imsi=st.one_of(st.just(""), IMSIS),
        msisdn=MSISDNS,
        category=ENUMS,
        description=TEXTS,
    ),
)
def test_file_complaint_survives_anything(
    seeded: Fuzzer, caller: str, request: complaint_pb.FileComplaintRequest
) -> None:
    client = seeded.clients[caller]
    outcome = seeded.attempt(request, lambda: client.call(client.complaints.FileComplaint, request))
    if caller in ("customs", "kemlu", "kominfo"):
        assert code_of(outcome) is grpc.StatusCode.PERMISSION_DENIED
    elif isinstance(outcome, complaint_pb.FileComplaintResponse):
        assert re.fullmatch(r"C-[0-9]{6,}", outcome.complaint.tracking_id)
        assert 1 <= request.category <= 6


def _actions(draw: st.DrawFn) -> dict[str, Any]:
    which = draw(st.sampled_from(["none", "sibling", "pair", "unblock", "register", "nothing"]))
    if which == "sibling":
        return {
            "whitelist_sibling": complaint_pb.WhitelistSibling(
                imei=draw(IMEIS), registered_imei=draw(IMEIS), box_reference=draw(TEXTS)
            )
        }
    if which == "pair":
        return {"pair_sim": complaint_pb.PairSim(imei=draw(IMEIS), imsi=draw(IMSIS))}
    if which == "unblock":
        return {"unblock": complaint_pb.Unblock(imei=draw(IMEIS))}
    if which == "register":
        device = draw(devices())
        wrapper = complaint_pb.RegisterDeviceAction()
        if device is not None:
            wrapper.device.CopyFrom(device)
        return {"register_device": wrapper}
    if which == "nothing":
        return {"no_action": complaint_pb.NoAction()}
    return {}


@st.composite
def resolutions(draw: st.DrawFn) -> complaint_pb.ResolveComplaintRequest:
    return complaint_pb.ResolveComplaintRequest(
        request_id=draw(REQUEST_IDS),
        tracking_id=draw(TRACKING_IDS),
        note=draw(TEXTS),
        **_actions(draw),
    )


@FUZZ
@given(caller=caller_for("telkomsel"), request=resolutions())
def test_resolve_complaint_survives_anything(
    seeded: Fuzzer, caller: str, request: complaint_pb.ResolveComplaintRequest
) -> None:
    client = seeded.clients[caller]
    outcome = seeded.attempt(
        request, lambda: client.call(client.complaints.ResolveComplaint, request)
    )
    if caller in ("customs", "kemlu", "kominfo"):
        assert code_of(outcome) is grpc.StatusCode.PERMISSION_DENIED


@FUZZ
@given(
    caller=caller_for("telkomsel"),
    request=st.builds(
        complaint_pb.UpdateComplaintRequest,
        request_id=REQUEST_IDS,
        tracking_id=TRACKING_IDS,
        state=ENUMS,
        note=TEXTS,
    ),
)
def test_update_complaint_survives_anything(
    seeded: Fuzzer, caller: str, request: complaint_pb.UpdateComplaintRequest
) -> None:
    client = seeded.clients[caller]
    outcome = seeded.attempt(
        request, lambda: client.call(client.complaints.UpdateComplaint, request)
    )
    if caller in ("customs", "kemlu", "kominfo"):
        assert code_of(outcome) is grpc.StatusCode.PERMISSION_DENIED


@FUZZ
@given(
    caller=caller_for("telkomsel"),
    imei_value=IMEIS,
    imsi=IMSIS,
    page_size=st.one_of(st.just(0), INT32),
    page_token=st.one_of(st.just(""), PAGE_TOKENS),
    tracking_id=TRACKING_IDS,
    state=ENUMS,
    include_digest=st.booleans(),
)
def test_complaint_reads_and_diagnosis_survive_anything(
    seeded: Fuzzer,
    caller: str,
    imei_value: str,
    imsi: str,
    page_size: int,
    page_token: str,
    tracking_id: str,
    state: int,
    include_digest: bool,
) -> None:
    client = seeded.clients[caller]
    diagnose = complaint_pb.DiagnoseImeiRequest(
        imei=imei_value, imsi=imsi, page_size=page_size, page_token=page_token
    )
    outcome = seeded.attempt(
        diagnose, lambda: client.call(client.complaints.DiagnoseImei, diagnose)
    )
    if isinstance(outcome, complaint_pb.DiagnoseImeiResponse):
        assert len(outcome.rules) == 6
        assert sum(r.outcome == complaint_pb.RULE_OUTCOME_DECIDED for r in outcome.rules) == 1
    listing = complaint_pb.ListComplaintsRequest(
        state=state,  # type: ignore[arg-type]
        page_size=page_size,
        page_token=page_token,
        include_digest=include_digest,
    )
    seeded.attempt(listing, lambda: client.call(client.complaints.ListComplaints, listing))
    one = complaint_pb.GetComplaintRequest(tracking_id=tracking_id)
    seeded.attempt(one, lambda: client.call(client.complaints.GetComplaint, one))


# --- stolen-phone cases, theft alerts and the public lookup ---------------------------------

STATES = st.one_of(st.sampled_from([1, 2, 3]), ENUMS)


def stolen_cases(client: Client) -> stolen_pb2_grpc.StolenCaseServiceStub:
    return stolen_pb2_grpc.StolenCaseServiceStub(client.channel)


@FUZZ
@given(
    caller=caller_for("telkomsel"),
    request=spoiled(
        stolen_pb2.FileStolenCaseRequest,
        request_id=A_REQUEST_ID,
        imeis=SOME_IMEIS,
        imsi=(st.sampled_from([TELKOMSEL_IMSI, INDOSAT_IMSI]), IMSIS),
        msisdn=(st.one_of(st.just(""), VALID_MSISDNS), MSISDNS),
        police_report=A_TEXT,
    ),
)
def test_file_stolen_case_survives_anything(
    fuzzer: Fuzzer, caller: str, request: stolen_pb2.FileStolenCaseRequest
) -> None:
    client = fuzzer.clients[caller]
    outcome = fuzzer.attempt(
        request, lambda: client.call(stolen_cases(client).FileStolenCase, request)
    )
    if (
        imeis_are_garbage(request.imeis, 8)
        or not text_ok(request.police_report, 128, required=True)
        or not imsi_ok(request.imsi)  # required
        or (request.msisdn != "" and not msisdn_ok(request.msisdn))
        or not request_id_ok(request.request_id)
    ):
        assert isinstance(outcome, grpc.RpcError), f"accepted garbage: {request}"
    elif caller in OPERATOR_PREFIXES and not request.imsi.startswith(OPERATOR_PREFIXES[caller]):
        assert code_of(outcome) is grpc.StatusCode.PERMISSION_DENIED, outcome
    if isinstance(outcome, stolen_pb2.FileStolenCaseResponse):
        assert outcome.stolen_case.state == stolen_pb2.STOLEN_CASE_STATE_PENDING


@pytest.fixture
def with_cases(fuzzer: Fuzzer) -> tuple[Fuzzer, list[str]]:
    """A register with a few cases of Telkomsel's, one per IMEI."""
    telkomsel = fuzzer.clients["telkomsel"]
    ids = [
        telkomsel.call(
            stolen_cases(telkomsel).FileStolenCase,
            stolen_pb2.FileStolenCaseRequest(
                imeis=[imei(700 + n)], imsi=TELKOMSEL_IMSI, police_report=f"LP/{n}"
            ),
        ).stolen_case.case_id
        for n in range(4)
    ]
    return fuzzer, ids


@FUZZ
@given(
    caller=caller_for("telkomsel"),
    pick_case=st.one_of(st.integers(0, 3), junk(), overlong("S")),
    state=STATES,
    note=st.one_of(GOOD_TEXTS, TEXTS),
    request_id=a_request_id(),
)
def test_update_stolen_case_survives_anything(
    with_cases: tuple[Fuzzer, list[str]],
    caller: str,
    pick_case: int | str,
    state: int,
    note: str,
    request_id: str,
) -> None:
    fuzzer, ids = with_cases
    case_id = ids[pick_case] if isinstance(pick_case, int) else pick_case
    request = stolen_pb2.UpdateStolenCaseRequest(
        request_id=request_id,
        case_id=case_id,
        state=stolen_pb2.StolenCaseState.ValueType(state),  # unknown numbers too
        note=note,
    )
    client = fuzzer.clients[caller]
    outcome = fuzzer.attempt(
        request, lambda: client.call(stolen_cases(client).UpdateStolenCase, request)
    )
    if state not in (1, 2, 3) or not text_ok(note, 256) or not request_id_ok(request_id):
        assert isinstance(outcome, grpc.RpcError), f"accepted garbage: {request}"
    if isinstance(outcome, stolen_pb2.UpdateStolenCaseResponse):
        assert caller in ("telkomsel", "kominfo")
        assert outcome.stolen_case.state == state


@FUZZ
@given(
    caller=st.sampled_from(CALLERS),
    pick_case=st.one_of(st.integers(0, 3), junk(), overlong("S")),
)
def test_get_stolen_case_survives_anything(
    with_cases: tuple[Fuzzer, list[str]], caller: str, pick_case: int | str
) -> None:
    fuzzer, ids = with_cases
    case_id = ids[pick_case] if isinstance(pick_case, int) else pick_case
    request = stolen_pb2.GetStolenCaseRequest(case_id=case_id)
    client = fuzzer.clients[caller]
    outcome = fuzzer.attempt(
        request, lambda: client.call(stolen_cases(client).GetStolenCase, request)
    )
    if isinstance(outcome, stolen_pb2.GetStolenCaseResponse):
        assert caller in ("telkomsel", "kemenperin", "kominfo")


@FUZZ
@given(
    caller=st.sampled_from(CALLERS),
    page_size=st.one_of(st.integers(1, 3), INT32),
    page_token=PAGE_TOKENS,
    alerts=st.booleans(),
)
def test_list_stolen_cases_and_alerts_survive_anything(
    with_cases: tuple[Fuzzer, list[str]],
    caller: str,
    page_size: int,
    page_token: str,
    alerts: bool,
) -> None:
    fuzzer, ids = with_cases
    client = fuzzer.clients[caller]
    stub = stolen_cases(client)
    request: stolen_pb2.ListStolenCasesRequest | stolen_pb2.ListTheftAlertsRequest
    if alerts:
        request = stolen_pb2.ListTheftAlertsRequest(page_size=page_size, page_token=page_token)
        method: Any = stub.ListTheftAlerts
    else:
        request = stolen_pb2.ListStolenCasesRequest(page_size=page_size, page_token=page_token)
        method = stub.ListStolenCases
    outcome = fuzzer.attempt(request, lambda: client.call(method, request))
    if page_size < 0:
        assert isinstance(outcome, grpc.RpcError)
    if isinstance(outcome, stolen_pb2.ListStolenCasesResponse):
        assert caller in ("telkomsel", "kemenperin", "kominfo") or not outcome.stolen_cases
        assert {c.case_id for c in outcome.stolen_cases} <= set(ids)


@pytest.fixture
def public_lookup(sqlite_url: str) -> Iterator[lookup_pb2_grpc.PublicLookupServiceStub]:
    from ceir.api.server import ServerConfig, create_server

    running = create_server(
        ServerConfig(
            db=sqlite_url,
            address="127.0.0.1:0",
            access_log=False,
            insecure=True,
            lookup_address="127.0.0.1:0",
            lookup_rate=1e9,  # the rate limit has its own test (test_public_lookup.py)
            lookup_burst=10**9,
        )
    )
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.lookup_port}") as channel:
            yield lookup_pb2_grpc.PublicLookupServiceStub(channel)
    finally:
        running.stop(grace=1)


@FUZZ
@given(value=IMEIS)
def test_lookup_survives_anything(
    public_lookup: lookup_pb2_grpc.PublicLookupServiceStub, value: str
) -> None:
    request = lookup_pb2.LookupImeiRequest(imei=value)
    try:
        answer = public_lookup.LookupImei(request, timeout=10)
    except grpc.RpcError as error:
        assert_actionable(error, request)
        assert imei_key_of(value) is None, value
        assert [field for field, _ in violations(error)] == ["imei"]
        return
    key = imei_key_of(value)
    assert key is not None and answer.imei_key == f"{key:014d}"
    assert not answer.registered and answer.brand == answer.model == ""
