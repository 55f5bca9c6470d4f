"""The CSV format of ``ceir import``, parsed into rows or rejections.

::

    imeis,source,reference,valid_until,brand,model
    352099001761481;352099001761499,tpp_import,TPP-2020-0001,,Samsung,Galaxy A10
    490154203237518,tourist,PASSPORT-X123,2020-07-01T00:00:00+07:00,Apple,iPhone 8

- The first line is the header: these six column names, in any order.
- ``imeis``: the device's 1 to 8 IMEIs (one per SIM slot), separated by ``;``.
- ``source``: tpp_import, tpp_production, customs, tourist, diplomat or
  grandfathered (any case).
- ``valid_until``: an ISO-8601 date or date-time; UTC when it has no offset,
  midnight (start of the day) for a date alone. Empty for every source but
  tourist.
- Blank lines are skipped. Row numbers are the line on which a record starts.

This module checks only what it needs to build a request (column count,
source name, date syntax); the server validates IMEIs, lengths and who may
register what, so that the rules live in one place.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from ceir.v1 import types_pb2

from ._output import CliError

HEADER = ("imeis", "source", "reference", "valid_until", "brand", "model")
_SOURCE_PREFIX = "REGISTRATION_SOURCE_"
SOURCES: dict[str, int] = {
    name.removeprefix(_SOURCE_PREFIX).lower(): number
    for name, number in types_pb2.RegistrationSource.items()
    if number != types_pb2.REGISTRATION_SOURCE_UNSPECIFIED
}


@dataclass(frozen=True)
class Row:
    """One device, ready to send; ``line`` is where its record starts."""

    line: int
    imeis: list[str]
    source: int
    reference: str
    valid_until: datetime | None
    brand: str
    model: str


@dataclass(frozen=True)
class Rejection:
    """Why one row was not imported: by the CLI (column names) or by the server
    (request field paths such as ``device.imeis[0]``)."""

    line: int
    field: str
    reason: str


def parse_valid_until(text: str) -> datetime:
    """An ISO-8601 date or date-time; naive values are UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            "expected an ISO-8601 date or date-time such as 2020-07-01 or "
            f"2020-07-01T12:00:00+07:00, got {text[:40]!r}"
        ) from None
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def read_rows(lines: Iterable[str]) -> Iterator[Row | list[Rejection]]:
    """The rows of a CSV file (opened with ``newline=""``), in file order.

    A row the CLI cannot turn into a request comes out as its rejections,
    all of them, so that it can be fixed in one go. Raises CliError if the
    header is wrong.
    """
    reader = csv.reader(lines)
    columns = _header(reader)
    last_line = reader.line_num
    for record in reader:
        line, last_line = last_line + 1, reader.line_num
        if not record or (len(record) == 1 and not record[0].strip()):
            continue
        yield _row(line, record, columns)


def check_header(lines: Iterable[str]) -> None:
    """Raise CliError unless the file starts with the expected header."""
    _header(csv.reader(lines))


def _header(reader: Iterator[list[str]]) -> dict[str, int]:
    """Column positions from the header line (skipping blank lines before it)."""
    for record in reader:
        if not record:
            continue
        names = [name.strip().lower() for name in record]
        if sorted(names) != sorted(HEADER):
            raise CliError(
                f"the header must name the columns {','.join(HEADER)} (in any order), "
                f"got {','.join(record)[:200]!r}"
            )
        return {name: index for index, name in enumerate(names)}
    raise CliError(f"the file is empty; it needs the header {','.join(HEADER)}")


def _row(line: int, record: list[str], columns: dict[str, int]) -> Row | list[Rejection]:
    if len(record) != len(HEADER):
        return [
            Rejection(
                line,
                "row",
                f"expected {len(HEADER)} columns ({','.join(HEADER)}), got {len(record)}",
            )
        ]
    value = {name: record[index].strip() for name, index in columns.items()}
    problems: list[Rejection] = []
    source = SOURCES.get(value["source"].lower())
    if source is None:
        shown = f"unknown source {value['source']!r}" if value["source"] else "source is required"
        problems.append(Rejection(line, "source", f"{shown}; expected one of {', '.join(SOURCES)}"))
    valid_until = None
    if value["valid_until"]:
        try:
            valid_until = parse_valid_until(value["valid_until"])
        except ValueError as error:
            problems.append(Rejection(line, "valid_until", str(error)))
    if problems or source is None:
        return problems
    return Row(
        line=line,
        imeis=[imei.strip() for imei in value["imeis"].split(";") if imei.strip()],
        source=source,
        reference=value["reference"],
        valid_until=valid_until,
        brand=value["brand"],
        model=value["model"],
    )
