"""The regulator's cure, with the commands a regulator would run:
``ceir ranges find`` (Kominfo) and ``ceir ranges revoke`` (Kemenperin, which
may revoke any registration), each a process of its own over mutual TLS
with the organisation's client certificate, its output kept in ``logs/``."""

from __future__ import annotations

import csv
import json
import subprocess
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..drill.processes import ceir_command
from .register import DrillRegister

__all__ = ["Cure", "find_ranges", "revoke_ranges"]

REASON = "range upload: IMEIs of a whole allocation, never seen on a network"


@dataclass(frozen=True)
class Cure:
    found: dict[str, Any]  # ``ceir ranges find --json``
    outcomes: dict[str, int]  # revoke outcome -> IMEIs
    revoked_keys: list[int]


def _run(command: list[str], log: Path) -> str:
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=3_600)
    with log.open("a", encoding="utf-8") as handle:
        handle.write(f"$ {' '.join(command)}\n{done.stderr}\n")
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} failed ({done.returncode}): {done.stderr}")
    return done.stdout


def find_ranges(register: DrillRegister, logs: Path, min_run: int) -> dict[str, Any]:
    command = [
        *ceir_command(),
        "ranges",
        "find",
        "--json",
        "--min-run",
        str(min_run),
        *register.cli_credentials("kominfo"),
    ]
    found: dict[str, Any] = json.loads(_run(command, logs / "cure.log"))
    return found


def revoke_ranges(register: DrillRegister, logs: Path, report: Path, min_run: int) -> Cure:
    found = find_ranges(register, logs, min_run)
    command = [
        *ceir_command(),
        "ranges",
        "revoke",
        "--reason",
        REASON,
        "--min-run",
        str(min_run),
        "--report",
        str(report),
        *register.cli_credentials("kemenperin"),
    ]
    _run(command, logs / "cure.log")
    with report.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    outcomes = Counter(row["outcome"] for row in rows)
    revoked = [int(row["imei_key"]) for row in rows if row["outcome"] == "revoked"]
    return Cure(found, dict(outcomes), revoked)
