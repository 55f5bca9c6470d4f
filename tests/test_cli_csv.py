"""The CSV format of ``ceir import``: header, line numbers, sources, dates."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ceir.cli._output import CliError
from ceir.cli.csvformat import HEADER, SOURCES, Rejection, Row, parse_valid_until, read_rows
from ceir.cli.importer import default_request_id, import_row
from ceir.v1 import types_pb2


def parse(text: str) -> list[Row | list[Rejection]]:
    return list(read_rows(io.StringIO(text, newline="")))


def test_rows_carry_the_line_their_record_starts_on() -> None:
    text = (
        "imeis,source,reference,valid_until,brand,model\n"
        "\n"
        "35209900000001,tpp_import,A,,,\n"
        '35209900000002,tpp_import,"two\nlines",,,\n'
        "35209900000003,tpp_import,C,,,\n"
    )
    assert [row.line for row in parse(text) if isinstance(row, Row)] == [3, 4, 6]


def test_columns_may_come_in_any_order_and_any_case() -> None:
    text = "Model,brand,VALID_UNTIL,reference,source,imeis\nA10,Samsung,,TPP-1,TPP_Import,1;2\n"
    (row,) = parse(text)
    assert row == Row(2, ["1", "2"], types_pb2.REGISTRATION_SOURCE_TPP_IMPORT, "TPP-1", None,
                      "Samsung", "A10")  # fmt: skip


def test_imeis_are_split_on_semicolons_and_trimmed() -> None:
    (row,) = parse(",".join(HEADER) + "\n 1 ; 2;;3; ,customs,,,,\n")
    assert isinstance(row, Row) and row.imeis == ["1", "2", "3"]


@pytest.mark.parametrize(
    "header", ["", "imeis,source\n", "imeis,source,reference,valid_until,brand,model,colour\n"]
)
def test_a_wrong_header_is_an_error(header: str) -> None:
    with pytest.raises(CliError, match="header"):
        parse(header + "1,tpp_import,,,,\n")


def test_every_problem_of_a_row_is_reported() -> None:
    (problems,) = parse(",".join(HEADER) + "\n1,stolen,,yesterday,,\n")
    assert isinstance(problems, list)
    assert [(p.line, p.field) for p in problems] == [(2, "source"), (2, "valid_until")]


def test_a_row_with_too_few_or_too_many_columns_is_rejected() -> None:
    rows = parse(",".join(HEADER) + "\n1,tpp_import\n1,tpp_import,,,,,extra\n")
    assert rows == [
        [Rejection(2, "row", f"expected 6 columns ({','.join(HEADER)}), got 2")],
        [Rejection(3, "row", f"expected 6 columns ({','.join(HEADER)}), got 7")],
    ]


def test_every_registration_source_has_a_name() -> None:
    assert set(SOURCES) == {
        "tpp_import", "tpp_production", "customs", "tourist", "diplomat", "grandfathered"
    }  # fmt: skip
    assert sorted(SOURCES.values()) == list(range(1, 7))


def test_a_date_alone_is_midnight_utc() -> None:
    assert parse_valid_until("2020-07-01") == datetime(2020, 7, 1, tzinfo=UTC)


def test_a_datetime_without_offset_is_utc_and_offsets_are_kept() -> None:
    assert parse_valid_until("2020-07-01T12:30:00") == datetime(2020, 7, 1, 12, 30, tzinfo=UTC)
    jakarta = parse_valid_until("2020-07-01T07:00:00+07:00")
    assert jakarta == datetime(2020, 7, 1, 0, 0, tzinfo=UTC)
    assert parse_valid_until("2020-07-01T00:00:00Z") == jakarta


@given(st.datetimes(timezones=st.just(timezone(timedelta(hours=7)))))
def test_any_iso_datetime_reads_back_as_the_same_instant(value: datetime) -> None:
    assert parse_valid_until(value.isoformat()) == value


@pytest.mark.parametrize("text", ["tomorrow", "2020-13-01", "01/07/2020", "2020-07-01T25:00"])
def test_a_bad_date_says_what_was_expected(text: str) -> None:
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_valid_until(text)


def test_a_row_becomes_an_import_row_with_its_line_number() -> None:
    row = Row(7, ["1"], types_pb2.REGISTRATION_SOURCE_TOURIST, "P-1",
              datetime(2020, 7, 1, tzinfo=UTC), "B", "M")  # fmt: skip
    message = import_row(row)
    assert message.row == 7 and list(message.device.imeis) == ["1"]
    assert message.device.valid_until.ToDatetime(tzinfo=UTC) == datetime(2020, 7, 1, tzinfo=UTC)
    assert not import_row(Row(7, ["1"], 1, "", None, "", "")).device.HasField("valid_until")


def test_the_example_of_the_documentation_parses() -> None:
    page = (Path(__file__).parent.parent / "docs" / "cli.md").read_text(encoding="utf-8")
    example = page.split("```csv\n", 1)[1].split("```", 1)[0]
    rows = parse(example)
    assert rows and all(isinstance(row, Row) for row in rows)
    assert [len(row.imeis) for row in rows if isinstance(row, Row)] == [2, 1, 1, 1]


def test_the_default_request_id_depends_on_the_file_and_the_chunking() -> None:
    one = default_request_id("a" * 64, 5000)
    assert one == default_request_id("a" * 64, 5000)
    assert one != default_request_id("b" * 64, 5000)
    assert one != default_request_id("a" * 64, 100)
