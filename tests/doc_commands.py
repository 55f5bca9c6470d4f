"""Run the shell examples of README.md and docs/*.md as a reader would.

The convention the docs follow (docs/architecture.md, "Docs that run"):

- Every ```sh block of a page runs, in page order, in one bash shell per
  page (so ``cd``, ``export`` and variables carry from block to block), in a
  scratch directory holding a ``.venv`` link to this checkout's environment,
  with that environment's ``bin`` first on ``PATH``.
- A block with lines starting with ``$ `` is a transcript: those lines
  (with their ``\\`` continuations and here-document bodies) are commands,
  and the lines after a command are what it prints (stdout and stderr
  together). A block without ``$ `` lines is a script: every line is a
  command and must exit 0; what it prints is not compared.
- ``<!-- not-run: REASON -->`` on the line before a block skips it; the
  reason is required. ``<!-- output: abridged -->`` says the outputs shown
  leave fields out: every JSON field shown must be printed with that value,
  and every array shown must have exactly its elements.
- A ``ceir serve`` command runs in the background (a reader runs it in a
  second terminal); the next command waits until it logs ``serving``. A
  later ``ceir serve`` stops the one before.
- The test gives each page free ports and uses them wherever the page says
  50051 or 50052.
- Outputs are compared after these replacements, in the page and in what
  was printed alike: RFC 3339 times (also with a space for the ``T``, as
  tables print them) -> ``<time>``, Unix times in seconds or
  microseconds (``time 1795814654444208``, ``"1798406626"``) -> ``<unix>``,
  32-byte base64 hashes -> ``<hash>``, 16-byte ones (salts) -> ``<salt>``,
  the signature of a signed-note line -> ``<signature>``, verifier keys ->
  ``ORIGIN+<key>``, tokens -> ``<token>``. Printed JSON is compared as JSON,
  so a page may print arrays on one line.

``python -m tests.doc_commands --update PAGE`` runs PAGE (after the pages
it continues) and writes what each transcript command printed into the
page, except in abridged blocks: review the diff.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import select
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv"

# Which pages run, and the pages each continues from (run first, in the same
# shell and directory, so the register holds what their examples wrote).
PAGES: dict[str, tuple[str, ...]] = {
    "README.md": (),
    "docs/integration-teams.md": (),
    "docs/regulators.md": ("docs/integration-teams.md",),
    "docs/cli.md": (),
    "docs/simulation.md": (),
    "docs/desk-agents.md": (),
}
DOC_PORTS = ("50051", "50052")
COMMAND_TIMEOUT = 120.0
SERVE_TIMEOUT = 60.0
NOT_RUN = re.compile(r"<!--\s*not-run:\s*(\S.*?)\s*-->")
ABRIDGED = re.compile(r"<!--\s*output:\s*abridged\s*-->")
FENCE = re.compile(r"^```(\w*)\s*$")
HEREDOC = re.compile(r"<<-?\s*'?(\w+)'?")
SERVE = re.compile(r"^(?:\w+=\S*\s+)*(?:\S*/)?ceir serve\b")  # VAR=x .venv/bin/ceir serve
TRAILING = re.compile(r"\s*&?\s*(?:#[^'\"]*)?$")  # " &   # a comment" at the end of a command


# --- reading a page -----------------------------------------------------------------------


@dataclass
class Command:
    text: str  # what bash runs (continuations and here-document included)
    line: int  # 1-based line of the page where it starts
    expected: list[str] | None  # None: a script command, output not compared
    output_lines: tuple[int, int] = (0, 0)  # the page's lines [start, end) of the output


@dataclass
class Block:
    line: int  # the fence's line, 1-based
    commands: list[Command]
    not_run: str | None = None
    abridged: bool = False


@dataclass
class Page:
    path: Path
    blocks: list[Block] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.path.relative_to(ROOT))


def read_page(path: Path) -> Page:
    lines = path.read_text(encoding="utf-8").splitlines()
    page = Page(path)
    index = 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if fence is None:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        if fence.group(1) == "sh":
            marker = _previous_text_line(lines, index)
            not_run = NOT_RUN.search(marker)
            block = Block(
                index + 1,
                _commands(lines, index + 1, end),
                not_run.group(1) if not_run else None,
                ABRIDGED.search(marker) is not None,
            )
            page.blocks.append(block)
        index = end + 1
    return page


def _previous_text_line(lines: list[str], index: int) -> str:
    for line in reversed(lines[:index]):
        if line.strip():
            return line
    return ""


def _commands(lines: list[str], start: int, end: int) -> list[Command]:
    """The commands of the block whose body is lines[start:end]."""
    transcript = any(line.startswith("$ ") for line in lines[start:end])
    commands: list[Command] = []
    index = start
    while index < end:
        line = lines[index]
        if transcript and not line.startswith("$ "):
            index += 1  # output before any command: not expected in a transcript
            continue
        if not transcript and (not line.strip() or line.lstrip().startswith("#")):
            index += 1
            continue
        first = index
        text = [line[2:] if transcript else line]
        while text[-1].endswith("\\") and index + 1 < end:
            index += 1
            text.append(lines[index].removeprefix("  ") if transcript else lines[index])
        heredoc = HEREDOC.search(" ".join(text))
        if heredoc is not None:
            while index + 1 < end and lines[index + 1] != heredoc.group(1):
                index += 1
                text.append(lines[index])
            index += 1
            text.append(heredoc.group(1))
        index += 1
        command = Command("\n".join(text), first + 1, None)
        if transcript:
            output_start = index
            while index < end and not lines[index].startswith("$ "):
                index += 1
            output_end = index
            while output_end > output_start and not lines[output_end - 1].strip():
                output_end -= 1
            command.expected = lines[output_start:output_end]
            command.output_lines = (output_start, output_end)
        commands.append(command)
    return commands


# --- comparing outputs --------------------------------------------------------------------

REPLACEMENTS = [
    (re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?"), "<time>"),
    (re.compile(r"(?<=^time )\d+$", re.MULTILINE), "<unix>"),
    (re.compile(r"\b1[6-9]\d{8}(?:\d{6})?\b"), "<unix>"),
    (re.compile(r"(— \S+) [A-Za-z0-9+/]+={0,2}…?"), r"\1 <signature>"),
    (re.compile(r"(\S+)\+[0-9a-f]{8}\+\S+"), r"\1+<key>"),
    (re.compile(r"[A-Za-z0-9+/]{43}="), "<hash>"),
    (re.compile(r"(?<![A-Za-z0-9+/])[A-Za-z0-9+/]{22}=="), "<salt>"),
    (re.compile(r"ceir_[A-Za-z0-9_-]{43}"), "<token>"),
    # grpcurl -max-time sends its deadline to the server: whether the server's
    # DEADLINE_EXCEEDED or grpcurl's own context ends the stream first is a race.
    (re.compile(r"(?<=Message: )Deadline Exceeded$", re.MULTILINE), "context deadline exceeded"),
]


def normalise(text: str) -> str:
    for pattern, replacement in REPLACEMENTS:
        text = pattern.sub(replacement, text)
    return text


def _json_values(text: str) -> list[Any] | None:
    """The JSON values ``text`` consists of, or None if it is not only JSON."""
    decoder = json.JSONDecoder()
    values: list[Any] = []
    position = 0
    while True:
        while position < len(text) and text[position].isspace():
            position += 1
        if position == len(text):
            return values or None
        try:
            value, position = decoder.raw_decode(text, position)
        except json.JSONDecodeError:
            return None
        values.append(value)


def _normalised_json(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _normalised_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_normalised_json(item) for item in value]
    if isinstance(value, str):
        return normalise(value)
    return value


def _json_differences(expected: Any, actual: Any, where: str, abridged: bool) -> Iterator[str]:
    if isinstance(expected, dict) and isinstance(actual, dict):
        keys = expected.keys() if abridged else expected.keys() | actual.keys()
        for key in sorted(keys):
            if key not in actual:
                yield f"{where}.{key}: shown, not printed"
            elif key not in expected:
                yield f"{where}.{key}: printed ({json.dumps(actual[key])[:80]}), not shown"
            else:
                yield from _json_differences(expected[key], actual[key], f"{where}.{key}", abridged)
    elif isinstance(expected, list) and isinstance(actual, list):
        if len(expected) != len(actual):
            yield f"{where}: {len(expected)} elements shown, {len(actual)} printed"
        for index, (one, other) in enumerate(zip(expected, actual, strict=False)):
            yield from _json_differences(one, other, f"{where}[{index}]", abridged)
    elif expected != actual:
        yield f"{where}: shown {json.dumps(expected)}, printed {json.dumps(actual)}"


def differences(expected: str, actual: str, abridged: bool) -> list[str]:
    """How ``actual`` differs from ``expected`` after normalising both."""
    shown, printed = _json_values(expected), _json_values(actual)
    if shown is not None and printed is not None:
        if len(shown) != len(printed):
            return [f"{len(shown)} JSON values shown, {len(printed)} printed"]
        found: list[str] = []
        for index, (one, other) in enumerate(zip(shown, printed, strict=True)):
            found.extend(
                _json_differences(
                    _normalised_json(one), _normalised_json(other), f"value {index}", abridged
                )
            )
        return found
    shown_lines = [line.rstrip() for line in normalise(expected).strip("\n").splitlines()]
    printed_lines = [line.rstrip() for line in normalise(actual).strip("\n").splitlines()]
    if shown_lines == printed_lines:
        return []
    return ["shown:", *shown_lines, "printed:", *printed_lines]


# --- running a page -----------------------------------------------------------------------


@dataclass
class Result:
    page: str
    command: Command
    output: str
    status: int


class PageRun:
    """One bash shell in a scratch directory, running a page's commands."""

    def __init__(self, directory: Path) -> None:
        self.work = directory / "work"  # the reader's directory
        self.files = directory / "harness"  # the commands, their outputs, server logs
        self.work.mkdir(parents=True)
        self.files.mkdir(parents=True)
        (self.work / ".venv").symlink_to(VENV)
        self.ports = {port: str(_free_port()) for port in DOC_PORTS}
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("CEIR_", "VIRTUAL_ENV", "PYTEST_"))
        }
        env["PATH"] = f"{VENV / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}"
        env["HOME"] = str(self.work)
        # The client commands' default address is 127.0.0.1:50051.
        env["CEIR_ADDRESS"] = f"127.0.0.1:{self.ports[DOC_PORTS[0]]}"
        self.shell = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=self.work,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.count = 0
        self.timings: list[tuple[int, float]] = []
        self.server_pid: int | None = None

    def run(self, command: Command) -> tuple[str, int]:
        self.count += 1
        text = command.text
        for doc_port, port in self.ports.items():
            text = text.replace(f":{doc_port}", f":{port}")
        serve_log = None
        if SERVE.match(text):
            self.stop_server()
            serve_log = self.files / f"serve-{self.count}.log"
            # A simple command run in the background: $! is the server's own pid.
            text = TRAILING.sub("", text)
            if "--listen" not in text:  # the default, 127.0.0.1:50051
                text += f" --listen 127.0.0.1:{self.ports[DOC_PORTS[0]]}"
            text = f"{text} > {shlex.quote(str(serve_log))} 2>&1 &"
            text += f"\necho $! > {shlex.quote(str(self.files / 'serve.pid'))}"
        script = self.files / f"command-{self.count}.sh"
        script.write_text(text + "\n", encoding="utf-8")
        output = self.files / f"output-{self.count}"
        self._send(
            f"source {shlex.quote(str(script))} > {shlex.quote(str(output))} 2>&1 < /dev/null;"
            ' echo "::$?"\n'
        )
        started = time.monotonic()
        status = self._wait_for_status(COMMAND_TIMEOUT, command)
        self.timings.append((command.line, time.monotonic() - started))
        if serve_log is not None:
            self.server_pid = int((self.files / "serve.pid").read_text())
            self._wait_until_serving(serve_log)
        printed = output.read_text(encoding="utf-8", errors="replace")
        for doc_port, port in self.ports.items():
            printed = printed.replace(f":{port}", f":{doc_port}")
        return printed, status

    def _send(self, text: str) -> None:
        assert self.shell.stdin is not None
        self.shell.stdin.write(text.encode())
        self.shell.stdin.flush()

    def _wait_for_status(self, timeout: float, command: Command) -> int:
        assert self.shell.stdout is not None
        deadline = time.monotonic() + timeout
        received = b""
        while True:
            match = re.search(rb"::(\d+)\n", received)
            if match:
                return int(match.group(1))
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"line {command.line}: still running after {timeout:.0f} s")
            ready, _, _ = select.select([self.shell.stdout], [], [], left)
            if ready:
                chunk = os.read(self.shell.stdout.fileno(), 65536)
                if not chunk:
                    raise AssertionError(f"line {command.line}: the shell exited")
                received += chunk

    def _wait_until_serving(self, log: Path) -> None:
        deadline = time.monotonic() + SERVE_TIMEOUT
        while time.monotonic() < deadline:
            text = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
            if '"serving"' in text:
                return
            if self.server_pid is not None and not _alive(self.server_pid):
                raise AssertionError(f"ceir serve exited before serving:\n{text[-3000:]}")
            time.sleep(0.1)
        raise AssertionError(f"ceir serve did not log 'serving' within {SERVE_TIMEOUT:.0f} s")

    def stop_server(self) -> None:
        if self.server_pid is None:
            return
        pid, self.server_pid = self.server_pid, None
        if _alive(pid):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)

    def close(self) -> None:
        self.stop_server()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.shell.pid, signal.SIGTERM)
        try:
            self.shell.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.shell.pid, signal.SIGKILL)
            self.shell.wait()
        for pipe in (self.shell.stdin, self.shell.stdout):
            if pipe is not None:
                pipe.close()


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass  # not our child (bash's): ask the kernel
    else:
        if waited == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill 0; its state says it is gone.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_page(name: str, directory: Path) -> Iterator[tuple[Block, Result]]:
    """Run the pages ``name`` continues, then ``name``: every block not marked
    not-run, command by command, yielding ``name``'s results."""
    run = PageRun(directory)
    try:
        for page_name in (*PAGES[name], name):
            page = read_page(ROOT / page_name)
            for block in page.blocks:
                if block.not_run is not None:
                    continue
                for command in block.commands:
                    output, status = run.run(command)
                    if page_name == name:
                        yield block, Result(page_name, command, output, status)
                    elif command.expected is None and status != 0:
                        raise AssertionError(
                            f"{page_name}:{command.line}: exit {status}\n{output[-2000:]}"
                        )
    finally:
        run.close()
        if os.environ.get("DOC_TIMINGS"):
            for line, seconds in run.timings:
                print(f"{name}: line {line}: {seconds:.2f} s", file=sys.stderr)


def problems(block: Block, result: Result) -> list[str]:
    """What is wrong with one command's run, as lines of a report."""
    command = result.command
    where = f"{result.page}:{command.line}: {command.text.splitlines()[0][:100]}"
    if command.expected is None:
        if result.status != 0:
            return [f"{where}: exit {result.status}", result.output[-3000:]]
        return []
    found = differences("\n".join(command.expected), result.output, block.abridged)
    return [where, *found] if found else []


# --- rewriting a page's outputs -----------------------------------------------------------


def update(name: str) -> int:
    """Write what each transcript command of page ``name`` printed into it."""
    path = ROOT / name
    lines = path.read_text(encoding="utf-8").splitlines()
    replacements: list[tuple[tuple[int, int], list[str]]] = []
    left: list[str] = []
    with tempfile.TemporaryDirectory(prefix="doc-commands-") as directory:
        for block, result in run_page(name, Path(directory)):
            found = problems(block, result)
            if result.command.expected is None or not found:
                continue
            if block.abridged:
                left.extend(found)
                continue
            new = [line.rstrip() for line in result.output.strip("\n").splitlines()]
            replacements.append((result.command.output_lines, new))
    for (start, end), new in sorted(replacements, reverse=True):
        lines[start:end] = new
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"{name}: {len(replacements)} outputs rewritten")
    if left:
        print("abridged blocks to fix by hand:\n" + "\n".join(left))
    return 1 if left else 0


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--update" or sys.argv[2] not in PAGES:
        print(f"usage: python -m tests.doc_commands --update {{{','.join(PAGES)}}}")
        raise SystemExit(2)
    raise SystemExit(update(sys.argv[2]))
