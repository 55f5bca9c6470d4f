"""``ceir import``: stream a CSV file of registrations to the CEIR.

The file is read twice and never held in memory: once to hash it (the
default request id), check that it is UTF-8 and count its lines (the
progress bar's total), then again while streaming chunks of rows through
``RegistryService.ImportRegistrations``.

Idempotency: the server makes each streamed chunk idempotent on the import's
request id and the chunk's number, so the same rows must be cut into the
same chunks. The default request id therefore hashes the file *and* the
chunk size: re-running the same command replays the stored answers and
changes nothing.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import grpc
import typer
from google.protobuf.timestamp_pb2 import Timestamp
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ceir.v1 import registry_pb2, registry_pb2_grpc

from ._output import EXIT_OK, EXIT_REJECTED, CliError, err, out, reporting_errors
from ._remote import (
    DEFAULT_ADDRESS,
    AddressOption,
    CaCertOption,
    ClientCertOption,
    ClientKeyOption,
    Remote,
    ServerNameOption,
    TokenOption,
)
from ._writes import DEFAULT_RETRY_FOR, RetryForOption, send_write
from .csvformat import Rejection, Row, check_header, read_rows

MAX_CHUNK_ROWS = 10_000  # the server's limit per message
SHOWN_REJECTIONS = 50
_BLOCK = 1 << 20


@dataclass
class Survey:
    """What the first pass learns about the file."""

    sha256: str
    lines: int


@dataclass
class Outcome:
    """What the CLI itself rejected while streaming, and any read failure."""

    local: list[Rejection] = field(default_factory=list)
    read_error: Exception | None = None


def survey(path: Path) -> Survey:
    """Hash the file, check it decodes as UTF-8 and its header, count its lines."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines = 0
    with path.open("rb") as file:
        while block := file.read(_BLOCK):
            digest.update(block)
            try:
                decoder.decode(block)
            except UnicodeDecodeError as error:
                line = lines + block[: error.start].count(b"\n") + 1
                raise CliError(f"{path} is not UTF-8 text (see line {line})") from None
            lines += block.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        raise CliError(f"{path} ends in the middle of a UTF-8 character") from None
    with path.open(encoding="utf-8-sig", newline="") as file:
        check_header(file)
    return Survey(digest.hexdigest(), lines)


def default_request_id(file_sha256: str, chunk_rows: int) -> str:
    """The same file, chunked the same way, always gets the same id."""
    material = f"{file_sha256}:{chunk_rows}".encode()
    return "import-" + hashlib.sha256(material).hexdigest()[:40]


def import_row(row: Row) -> registry_pb2.ImportRow:
    """The API message for one parsed row."""
    device = registry_pb2.DeviceRegistration(
        imeis=row.imeis,
        source=row.source,  # type: ignore[arg-type]  # a RegistrationSource number
        reference=row.reference,
        brand=row.brand,
        model=row.model,
    )
    if row.valid_until is not None:
        stamp = Timestamp()
        stamp.FromDatetime(row.valid_until)
        device.valid_until.CopyFrom(stamp)
    return registry_pb2.ImportRow(row=row.line, device=device)


def requests(
    path: Path,
    request_id: str,
    chunk_rows: int,
    outcome: Outcome,
    progress: Callable[[int], None],
) -> Iterator[registry_pb2.ImportRegistrationsRequest]:
    """The import's messages: the request id on the first, then rows in chunks.

    ``progress`` is told how many rows were read (sent or not) as chunks go.
    gRPC consumes this on a thread of its own, where an exception would
    cancel the call with a logged traceback; a read failure is kept in
    ``outcome`` instead, and ends the stream.
    """
    chunk: list[registry_pb2.ImportRow] = []
    request_id_once = request_id
    read = 0  # rows read since the progress bar last moved
    try:
        with path.open(encoding="utf-8-sig", newline="") as file:
            for parsed in read_rows(file):
                read += 1
                if isinstance(parsed, Row):
                    chunk.append(import_row(parsed))
                else:
                    outcome.local.extend(parsed)
                if len(chunk) == chunk_rows:
                    yield registry_pb2.ImportRegistrationsRequest(
                        request_id=request_id_once, rows=chunk
                    )
                    progress(read)
                    request_id_once, chunk, read = "", [], 0
        if chunk:
            yield registry_pb2.ImportRegistrationsRequest(request_id=request_id_once, rows=chunk)
        progress(read)
    except Exception as error:  # reported by the command once the call ends
        outcome.read_error = error


def import_command(
    file: Annotated[
        Path,
        typer.Argument(
            exists=True, dir_okay=False, readable=True, help="CSV file of registrations."
        ),
    ],
    ceir: AddressOption = DEFAULT_ADDRESS,
    token: TokenOption = None,
    ca_cert: CaCertOption = None,
    client_cert: ClientCertOption = None,
    client_key: ClientKeyOption = None,
    server_name: ServerNameOption = None,
    request_id: Annotated[
        str | None,
        typer.Option(
            show_default=False,
            help="Idempotency key of the import; defaults to a hash of the file and "
            "--chunk-rows, so that running the same import again changes nothing.",
        ),
    ] = None,
    retry_for: RetryForOption = DEFAULT_RETRY_FOR,
    chunk_rows: Annotated[
        int, typer.Option(min=1, max=MAX_CHUNK_ROWS, help="Rows per streamed message.")
    ] = 5_000,
    rejections_out: Annotated[
        Path | None,
        typer.Option(
            dir_okay=False,
            metavar="FILE",
            help="Write every rejected row to this CSV file (line,field,reason).",
        ),
    ] = None,
) -> None:
    """Import registrations from a CSV file (format: docs/cli.md).

    Exit code 0 if every row was registered, 3 if some rows were rejected,
    1 if the import could not run. A register frozen for a custody handover
    gets the import again (same request id) until --retry-for runs out; a
    register handed over passes it to its successor's endpoint.
    """
    remote = Remote(
        ceir,
        token,
        ca_cert,
        client_cert=client_cert,
        client_key=client_key,
        server_name=server_name,
    )
    outcome = Outcome()
    with reporting_errors(ceir):
        metadata = remote.metadata
        found = survey(file)
        key = request_id or default_request_id(found.sha256, chunk_rows)
        with _progress() as progress:
            task = progress.add_task("rows streamed", total=max(found.lines - 1, 0))

            def send(channel: grpc.Channel, to: Remote) -> registry_pb2.ImportRegistrationsResponse:
                # Sent again whole, with the same request id: the chunks the
                # register took before are answered from its stored answers.
                outcome.local.clear()
                outcome.read_error = None
                progress.reset(task)
                stub = registry_pb2_grpc.RegistryServiceStub(channel)
                lines = _ProgressLines(max(found.lines - 1, 0))
                return stub.ImportRegistrations(
                    requests(
                        file, key, chunk_rows, outcome, lambda n: _advance(progress, task, n, lines)
                    ),
                    metadata=metadata,
                )

            response = send_write(remote, send, retry_for)
        if outcome.read_error is not None:
            raise CliError(
                f"reading {file} failed: {outcome.read_error}; the rows sent before it "
                f"were imported (request id {key})"
            )
        rejections = sorted(
            [
                *outcome.local,
                *(Rejection(r.row, r.field, r.description) for r in response.rejections),
            ],
            key=lambda r: r.line,
        )
        not_sent = len({r.line for r in outcome.local})
        _print_summary(file, key, not_sent, response)
        _print_rejections(rejections, not_sent + response.rows_rejected, rejections_out)
    raise typer.Exit(EXIT_REJECTED if rejections or response.rows_rejected else EXIT_OK)


PROGRESS_LINE_SECONDS = 10.0  # without a terminal: a progress line this often


class _ProgressLines:
    """Progress as plain lines on stderr, for a log file or a pipe (rich's
    bar shows only on a terminal): one every ``PROGRESS_LINE_SECONDS``."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.began = self.last = time.monotonic()

    def advance(self, rows: int) -> None:
        self.done += rows
        now = time.monotonic()
        if now - self.last < PROGRESS_LINE_SECONDS:
            return
        self.last = now
        rate = self.done / max(now - self.began, 1e-9)
        err().print(
            f"rows streamed: {self.done:,} of {self.total:,} "
            f"({self.done / max(self.total, 1):.0%}, {rate:,.0f} rows/s)",
            highlight=False,
        )


def _advance(progress: Progress, task: TaskID, rows: int, lines: _ProgressLines) -> None:
    progress.advance(task, rows)
    if not progress.console.is_terminal:
        lines.advance(rows)


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err(),
        transient=True,
    )


def _print_summary(
    file: Path, request_id: str, not_sent: int, response: registry_pb2.ImportRegistrationsResponse
) -> None:
    table = Table.grid(padding=(0, 2))
    table.add_row("file", str(file))
    table.add_row("request id", request_id)
    table.add_row("not sent (unreadable rows)", str(not_sent))
    table.add_row("received by the CEIR", str(response.rows_received))
    table.add_row("accepted", str(response.rows_accepted))
    table.add_row("rejected by the CEIR", str(response.rows_rejected))
    table.add_row("register sequence", str(response.sequence))
    out().print(table)


def _print_rejections(rejections: list[Rejection], total: int, path: Path | None) -> None:
    """The first rejections as a table; all of them to ``path`` if given."""
    if not rejections:
        return
    table = Table("line", "field", "reason", title=f"Rejected rows ({total})", title_justify="left")
    for rejection in rejections[:SHOWN_REJECTIONS]:
        table.add_row(str(rejection.line), rejection.field, rejection.reason)
    out().print(table)
    listed = len({r.line for r in rejections})
    if total > listed:
        # The server lists only the first 10,000 rejections of an import.
        out().print(f"Only {listed} of the {total} rejected rows were listed by the CEIR.")
    if path is not None:
        with path.open("w", encoding="utf-8", newline="") as file:
            writer = csv.writer(file)
            writer.writerow(("line", "field", "reason"))
            writer.writerows((r.line, r.field, r.reason) for r in rejections)
        out().print(f"All {len(rejections)} listed rejections written to {path}.")
    elif len(rejections) > SHOWN_REJECTIONS:
        out().print(
            f"{len(rejections) - SHOWN_REJECTIONS} more not shown; "
            "pass --rejections-out FILE to get them all."
        )
