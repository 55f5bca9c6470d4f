"""The ``ceir`` command line against a real server on a free port."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from typer.testing import CliRunner, Result

from ceir.api.server import RunningServer, ServerConfig, create_server
from ceir.cli import app
from ceir.service.orgs import add_organisation
from ceir.v1 import registry_pb2, registry_pb2_grpc, types_pb2

from .helpers import imei

# No CEIR_* variable of the developer's shell may leak into a test; wide
# columns keep rich tables on one line per row.
CLEAN_ENV: dict[str, str | None] = {
    "CEIR_ADDRESS": None,
    "CEIR_TOKEN": None,
    "CEIR_DB": None,
    "CEIR_CA_CERT": None,
    "CEIR_DEBUG": None,
    "COLUMNS": "250",
}
ORGS = {
    "kemenperin": ("kemenperin", []),
    "telkomsel": ("operator", ["510-10"]),
    "kominfo": ("kominfo", []),
}
HEADER = "imeis,source,reference,valid_until,brand,model\n"


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner(env={**CLEAN_ENV, **(env or {})}).invoke(app, list(args))


@pytest.fixture
def db_path(tmp_path: Path) -> str:
    return str(tmp_path / "c.db")


@pytest.fixture
def running(db_path: str) -> Iterator[RunningServer]:
    server = create_server(
        ServerConfig(db=db_path, address="127.0.0.1:0", access_log=False, insecure=True)
    )
    yield server
    server.stop(grace=1)


@pytest.fixture
def org_tokens(running: RunningServer) -> dict[str, str]:
    return {
        name: add_organisation(running.register.db, name, kind, codes)
        for name, (kind, codes) in ORGS.items()
    }


@pytest.fixture
def remote(running: RunningServer) -> list[str]:
    return ["--ceir", f"127.0.0.1:{running.port}"]


def as_org(remote: list[str], token: str) -> list[str]:
    return [*remote, "--token", token]


def check_json(remote: list[str], token: str, value: str) -> dict[str, object]:
    result = run("check", value, "--json", *as_org(remote, token))
    assert result.exit_code == 0, result.output
    answer: dict[str, object] = json.loads(result.stdout)
    return answer


def assert_one_line_error(result: Result, *fragments: str) -> None:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


# --- help -----------------------------------------------------------------------------


COMMANDS = [["serve"], ["org", "add"], ["org", "list"], ["org", "revoke"], ["import"], ["check"]]


@pytest.mark.parametrize("command", [[], *COMMANDS, ["policy", "show"], ["policy", "set"]])
def test_every_command_has_help(command: list[str]) -> None:
    result = run(*command, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage" in result.stdout


# --- organisations --------------------------------------------------------------------


def test_org_add_prints_a_token_that_works(running: RunningServer, remote: list[str]) -> None:
    db = running.register.db.url
    quiet = run("org", "add", "xl", "--kind", "operator", "--mcc-mnc", "510-11", "--db", db, "-q")
    assert quiet.exit_code == 0, quiet.output
    token = quiet.stdout.strip()
    assert token.startswith("ceir_") and "\n" not in token
    assert run("policy", "show", *as_org(remote, token)).exit_code == 0

    loud = run("org", "add", "isat", "--kind", "OPERATOR", "--mcc-mnc", "510-01,510-21", "--db", db)
    assert loud.exit_code == 0, loud.output
    assert "shown only this once" in loud.stderr
    assert "510-01, 510-21" in loud.stderr
    assert run("policy", "show", *as_org(remote, loud.stdout.strip())).exit_code == 0


def test_org_add_reports_a_bad_request_in_one_line(db_path: str) -> None:
    result = run("org", "add", "xl", "--kind", "operator", "--db", db_path)
    assert_one_line_error(result, "mcc_mnc", "at least one MCC-MNC")


def test_org_add_of_an_existing_name_fails(db_path: str) -> None:
    assert run("org", "add", "bc", "--kind", "customs", "--db", db_path).exit_code == 0
    assert_one_line_error(run("org", "add", "bc", "--kind", "customs", "--db", db_path), "exists")


def test_org_db_comes_from_ceir_db(db_path: str) -> None:
    assert run("org", "add", "bc", "--kind", "customs", env={"CEIR_DB": db_path}).exit_code == 0
    listed = run("org", "list", env={"CEIR_DB": db_path})
    assert listed.exit_code == 0 and "customs" in listed.stdout


def test_org_commands_need_a_database(tmp_path: Path) -> None:
    assert_one_line_error(run("org", "list"), "--db", "CEIR_DB")
    missing = str(tmp_path / "nowhere.db")
    assert_one_line_error(run("org", "list", "--db", missing), "no database")
    assert not Path(missing).exists()


def test_org_list_and_revoke(
    running: RunningServer, org_tokens: dict[str, str], remote: list[str]
) -> None:
    db = running.register.db.url
    # A token never used yet, so that no server-side cache remembers it.
    token = add_organisation(running.register.db, "kemlu", "kemlu", [])
    listed = run("org", "list", "--db", db)
    assert listed.exit_code == 0, listed.output
    rows = {line.split()[1]: line for line in listed.stdout.splitlines() if "│" in line}
    assert "510-10" in rows["telkomsel"] and "active" in rows["kemlu"]

    assert run("org", "revoke", "kemlu", "--db", db).exit_code == 0
    assert "revoked" in run("org", "list", "--db", db).stdout
    refused = run("policy", "show", *as_org(remote, token))
    assert_one_line_error(refused, "UNAUTHENTICATED", "INVALID_TOKEN")
    assert_one_line_error(run("org", "revoke", "kemlu", "--db", db), "no active organisation")


# --- import ---------------------------------------------------------------------------


def import_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "devices.csv"
    path.write_text(text, encoding="utf-8")
    return path


def mixed_csv() -> tuple[str, dict[str, list[str]]]:
    """A file with good and bad rows; returns it and the IMEIs by fate."""
    tourist_until = (datetime.now(UTC) + timedelta(days=30)).date().isoformat()
    good = [imei(1), imei(2), imei(3), imei(4)]
    rejected = [imei(10), imei(11), imei(12)]
    unsent = [imei(20), imei(21), imei(22)]
    text = (
        HEADER
        + "\n".join(
            [
                f"{good[0]};{good[1]},tpp_import,TPP-1,,Samsung,Galaxy A10",  # 2
                f"{good[2][:14]},TPP_Production,TPP-2,,Polytron,Zap 5",  # 3
                "3520990017614,tpp_import,TPP-3,,,",  # 4: malformed IMEI (13 digits)
                f"{rejected[0]},tourist,PASSPORT-1,,,",  # 5: tourist without valid_until
                f"{unsent[0]},smuggled,X,,,",  # 6: unknown source
                f"{unsent[1]},tpp_import,TPP-4",  # 7: wrong column count
                f"{rejected[1]},customs,BC-1,,,",  # 8: kemenperin may not register customs
                f"{unsent[2]},tpp_import,TPP-5,next tuesday,,",  # 9: bad date
                "",  # 10: blank lines are skipped
                f'"{good[3]}",tpp_import,"TPP-6, with a comma",,"Brand","Model"',  # 11
                f"{rejected[2]},tourist,PASSPORT-2,{tourist_until},,",  # 12: operators only
            ]
        )
    )
    return text + "\n", {"good": good, "rejected": rejected, "unsent": unsent}


def rejection_rows(stdout: str) -> dict[int, str]:
    """The rejected-rows table: line number -> the rest of its row."""
    rows: dict[int, str] = {}
    for line in stdout.splitlines():
        cells = [cell.strip() for cell in line.split("│") if cell.strip()]
        if cells and cells[0].isdigit():
            rows[int(cells[0])] = " | ".join(cells[1:])
    return rows


def test_import_registers_good_rows_and_reports_each_bad_row_by_line(
    tmp_path: Path, org_tokens: dict[str, str], remote: list[str]
) -> None:
    text, imeis = mixed_csv()
    path = import_file(tmp_path, text)
    result = run("import", str(path), *as_org(remote, org_tokens["kemenperin"]))
    assert result.exit_code == 3, result.output
    assert "Traceback" not in result.output
    rows = rejection_rows(result.stdout)
    assert sorted(rows) == [4, 5, 6, 7, 8, 9, 12]
    assert "device.imeis[0]" in rows[4] and "14, 15 or 16 digits" in rows[4]
    assert "device.valid_until" in rows[5] and "required for tourists" in rows[5]
    assert rows[6].startswith("source") and "unknown source 'smuggled'" in rows[6]
    assert rows[7].startswith("row") and "got 3" in rows[7]
    assert "device.source" in rows[8] and "may not register CUSTOMS" in rows[8]
    assert rows[9].startswith("valid_until") and "'next tuesday'" in rows[9]
    assert "device.source" in rows[12]
    summary = dict(
        line.rsplit(maxsplit=1) for line in result.stdout.splitlines()[:7] if line.strip()
    )
    assert summary["accepted"] == "3"
    assert summary["received by the CEIR"] == "7"
    assert summary["rejected by the CEIR"] == "4"
    assert summary["not sent (unreadable rows)"] == "3"

    token = org_tokens["kemenperin"]
    for value in imeis["good"]:
        assert check_json(remote, token, value)["status"] == "WHITELISTED", value
    for value in imeis["rejected"] + imeis["unsent"]:
        assert check_json(remote, token, value)["status"] != "WHITELISTED", value


def test_importing_the_same_file_again_changes_nothing(
    tmp_path: Path, org_tokens: dict[str, str], remote: list[str]
) -> None:
    text, imeis = mixed_csv()
    path = import_file(tmp_path, text)
    args = ["import", str(path), "--chunk-rows", "2", *as_org(remote, org_tokens["kemenperin"])]
    first = run(*args)
    assert first.exit_code == 3, first.output
    before = check_json(remote, org_tokens["kemenperin"], imeis["good"][0])["sequence"]

    again = run(*args)
    assert again.exit_code == 3, again.output
    # The stored answers are replayed: same counts, no "already registered".
    assert again.stdout == first.stdout
    assert "already registered" not in again.stdout
    after = check_json(remote, org_tokens["kemenperin"], imeis["good"][0])["sequence"]
    assert after == before


def test_import_of_only_good_rows_exits_0(
    tmp_path: Path, org_tokens: dict[str, str], remote: list[str]
) -> None:
    rows = [f"{imei(n)},grandfathered,DUMP-1,,," for n in range(30, 35)]
    path = import_file(tmp_path, HEADER + "\n".join(rows) + "\n")
    result = run("import", str(path), "--chunk-rows", "2", *as_org(remote, org_tokens["telkomsel"]))
    assert result.exit_code == 0, result.output
    assert "Rejected rows" not in result.stdout
    assert check_json(remote, org_tokens["telkomsel"], imei(34))["status"] == "WHITELISTED"


def test_more_than_50_rejections_are_written_to_a_file(
    tmp_path: Path, org_tokens: dict[str, str], remote: list[str]
) -> None:
    rows = [f"{imei(n)},smuggled,X,,," for n in range(60)]
    path = import_file(tmp_path, HEADER + "\n".join(rows) + "\n")
    who = as_org(remote, org_tokens["kemenperin"])
    shown = run("import", str(path), *who)
    assert shown.exit_code == 3, shown.output
    assert len(rejection_rows(shown.stdout)) == 50
    assert "10 more not shown; pass --rejections-out FILE" in shown.stdout

    out = tmp_path / "rejected.csv"
    written = run("import", str(path), "--rejections-out", str(out), *who)
    assert written.exit_code == 3, written.output
    with out.open(newline="", encoding="utf-8") as file:
        records = list(csv.DictReader(file))
    assert [int(r["line"]) for r in records] == list(range(2, 62))
    assert {r["field"] for r in records} == {"source"}


def test_import_with_a_wrong_header_fails(
    tmp_path: Path, org_tokens: dict[str, str], remote: list[str]
) -> None:
    path = import_file(tmp_path, f"imei,source\n{imei(1)},tpp_import\n")
    result = run("import", str(path), *as_org(remote, org_tokens["kemenperin"]))
    assert_one_line_error(result, "header", "imeis,source,reference,valid_until,brand,model")


def test_import_of_a_file_that_is_not_utf8_fails(
    tmp_path: Path, org_tokens: dict[str, str], remote: list[str]
) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(f"{HEADER}{imei(1)},tpp_import,TPP-1,,Motorola,Moto G\xe9\n".encode("latin-1"))
    result = run("import", str(path), *as_org(remote, org_tokens["kemenperin"]))
    assert_one_line_error(result, "not UTF-8", "line 2")


def test_a_request_id_reused_for_another_file_is_refused(
    tmp_path: Path, org_tokens: dict[str, str], remote: list[str]
) -> None:
    who = [*as_org(remote, org_tokens["kemenperin"]), "--request-id", "batch-2020-04"]
    first = import_file(tmp_path, f"{HEADER}{imei(1)},tpp_import,TPP-1,,,\n")
    assert run("import", str(first), *who).exit_code == 0
    other = import_file(tmp_path, f"{HEADER}{imei(2)},tpp_import,TPP-2,,,\n")
    result = run("import", str(other), *who)
    assert_one_line_error(result, "INVALID_ARGUMENT", "request_id", "REQUEST_ID_REUSED")
    assert check_json(remote, org_tokens["kemenperin"], imei(2))["status"] != "WHITELISTED"


def test_import_by_an_organisation_that_may_not_register_fails(
    tmp_path: Path, org_tokens: dict[str, str], remote: list[str]
) -> None:
    path = import_file(tmp_path, f"{HEADER}{imei(1)},tpp_import,TPP-1,,,\n")
    result = run("import", str(path), *as_org(remote, org_tokens["kominfo"]))
    assert_one_line_error(result, "PERMISSION_DENIED", "may not register devices")


# --- check ----------------------------------------------------------------------------


def test_check_whitelists_a_registered_imei_in_all_its_forms(
    running: RunningServer, org_tokens: dict[str, str], remote: list[str]
) -> None:
    value = imei(77)
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        registry_pb2_grpc.RegistryServiceStub(channel).RegisterDevice(
            registry_pb2.RegisterDeviceRequest(
                device=registry_pb2.DeviceRegistration(
                    imeis=[value], source=types_pb2.REGISTRATION_SOURCE_TPP_IMPORT
                )
            ),
            metadata=(("authorization", f"Bearer {org_tokens['kemenperin']}"),),
            timeout=30,
        )
    token = org_tokens["telkomsel"]
    for form in (value[:14], value, value[:14] + "07"):
        result = run("check", form, "--imsi", "510101234567890", *as_org(remote, token))
        assert result.exit_code == 0, result.output
        assert "WHITELISTED" in result.stdout and "REGISTERED" in result.stdout
        assert value[:14] in result.stdout
    answer = check_json(remote, token, value)
    assert answer["status"] == "WHITELISTED" and answer["reasons"] == ["REGISTERED"]
    assert answer["imei_key"] == value[:14] and answer["block_date"] is None


def test_check_of_an_unregistered_device_shows_its_block_date(
    org_tokens: dict[str, str], remote: list[str]
) -> None:
    result = run(
        "check", imei(5), "--imsi", "510101234567890", "--json",
        *as_org(remote, org_tokens["telkomsel"]),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)
    assert answer["status"] == "GREYLISTED"
    assert "NOTIFICATION_PENDING" in answer["reasons"]
    assert datetime.fromisoformat(answer["block_date"]) > datetime.now(UTC)


def test_check_of_a_malformed_imei_is_blacklisted(
    org_tokens: dict[str, str], remote: list[str]
) -> None:
    answer = check_json(remote, org_tokens["telkomsel"], "12345")
    assert answer["status"] == "BLACKLISTED" and answer["reasons"] == ["MALFORMED_IMEI"]


# --- policy ---------------------------------------------------------------------------


def test_policy_set_by_kominfo_changes_only_the_given_fields(
    org_tokens: dict[str, str], remote: list[str]
) -> None:
    kominfo = as_org(remote, org_tokens["kominfo"])
    before = json.loads(run("policy", "show", "--json", *kominfo).stdout)
    result = run("policy", "set", "--phase", "enforce", "--grace-days", "7", "--json", *kominfo)
    assert result.exit_code == 0, result.output
    after = json.loads(result.stdout)
    assert after["phase"] == "enforce" and after["grace_days"] == 7
    assert after["clone_threshold"] == before["clone_threshold"]
    assert after["clone_window_seconds"] == before["clone_window_seconds"]
    assert after["updated_by"] == "kominfo"
    shown = run("policy", "show", *as_org(remote, org_tokens["telkomsel"]))
    assert shown.exit_code == 0 and "enforce" in shown.stdout


def test_policy_set_by_an_operator_is_denied(org_tokens: dict[str, str], remote: list[str]) -> None:
    result = run("policy", "set", "--grace-days", "7", *as_org(remote, org_tokens["telkomsel"]))
    assert_one_line_error(result, "PERMISSION_DENIED", "may not change the policy")


def test_policy_set_shows_the_field_violations(
    org_tokens: dict[str, str], remote: list[str]
) -> None:
    result = run("policy", "set", "--grace-days", "400", *as_org(remote, org_tokens["kominfo"]))
    assert_one_line_error(result, "INVALID_ARGUMENT", "policy.grace_days", "0 to 365")


def test_policy_set_refuses_negative_numbers(org_tokens: dict[str, str], remote: list[str]) -> None:
    result = run("policy", "set", "--grace-days", "-1", *as_org(remote, org_tokens["kominfo"]))
    assert_one_line_error(result, "--grace-days", "got -1")


def test_policy_set_without_a_field_fails(org_tokens: dict[str, str], remote: list[str]) -> None:
    result = run("policy", "set", *as_org(remote, org_tokens["kominfo"]))
    assert_one_line_error(result, "nothing to change")


# --- connection errors ----------------------------------------------------------------


@pytest.mark.parametrize("address", ["127.0.0.1:1", "::nonsense"])
def test_an_unreachable_ceir_is_one_clear_line(address: str) -> None:
    result = run("check", imei(1), "--ceir", address, "--token", "ceir_x", "--timeout", "10")
    assert_one_line_error(result, "cannot reach the CEIR at", address)


def test_a_missing_token_is_one_clear_line(remote: list[str]) -> None:
    assert_one_line_error(run("policy", "show", *remote), "--token", "CEIR_TOKEN")


def test_the_address_and_token_come_from_the_environment(
    running: RunningServer, org_tokens: dict[str, str]
) -> None:
    env = {"CEIR_ADDRESS": f"127.0.0.1:{running.port}", "CEIR_TOKEN": org_tokens["kominfo"]}
    assert run("policy", "show", env=env).exit_code == 0


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_ca_cert_connects_with_tls(tmp_path: Path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    server = create_server(
        ServerConfig(
            db=str(tmp_path / "t.db"),
            address="127.0.0.1:0",
            tls_key=key,
            tls_cert=cert,
            access_log=False,
        )
    )
    try:
        token = add_organisation(server.register.db, "kominfo", "kominfo", [])
        who = ["--ceir", f"127.0.0.1:{server.port}", "--token", token]
        assert run("policy", "show", "--ca-cert", str(cert), *who).exit_code == 0
        assert_one_line_error(run("policy", "show", "--timeout", "10", *who), "cannot reach")
    finally:
        server.stop(grace=1)


# --- serve ----------------------------------------------------------------------------


def test_serve_needs_a_database() -> None:
    assert_one_line_error(run("serve"), "--db", "CEIR_DB")


def test_serve_answers_health_checks_and_stops_on_sigterm(tmp_path: Path) -> None:
    ceir = Path(sys.executable).parent / "ceir"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CEIR_")}
    command = [str(ceir), "serve", "--listen", "127.0.0.1:0", "--db", str(tmp_path / "s.db")]
    command.append("--insecure")
    with subprocess.Popen(
        [*command, "--no-access-log"], stderr=subprocess.PIPE, text=True, env=env
    ) as process:
        assert process.stderr is not None
        port = None
        try:
            for line in process.stderr:
                # gRPC's C core may write plain-text lines of its own.
                entry = json.loads(line) if line.startswith("{") else {}
                if entry.get("msg") == "serving":
                    port = entry["port"]
                    break
            assert port, "the server never logged 'serving'"
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                answer = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=30
                )
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=60) == 0
            rest = [json.loads(line) for line in process.stderr if line.startswith("{")]
            assert [entry["msg"] for entry in rest][-1] == "stopped"
        finally:
            if process.poll() is None:
                process.kill()
