"""The start-up proof's speed (issue: "Make the proof fast enough that it is
always on: measure it at 1,000,000 changes; target <= 2x the time the lists
take to load today").

On a SQLite register of 1,000,000 changes (1,000 for ``--quick``), written
through the register's own paths (imports of single-IMEI devices, some
revocations and stolen reports, a checkpoint signed per write), it times:

1. the lists loaded from the tables as before the proof (``load_state``);
2. the stored log verified (every leaf hash recomputed from its change row,
   tree nodes, the latest checkpoint's root and signature) in the same pass
   that replays the changes into the rows the tables must hold, as the
   server does it (two processes from 200,000 changes on a machine with two
   cores or more), and for comparison in one process;
3. the list tables compared with that replay.

The proof is 2 + 3 (it replaces 1: the server answers from the replayed
lists). Then, as the server starts once it has written a list checkpoint
(``ceir.service.list_checkpoint``), 4: the whole start-up proof from a
checkpoint at the last change (the fixed cost: the file read and its digest,
the lists built from its columns, the stored tree at its size, the row
counts; each change after it costs what a change costs in 2). Building the
database takes minutes, so it is kept between runs in
``$TMPDIR/ceir-bench-startup/`` and rebuilt when its schema or leaf hashes no
longer match the code.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from ceir.audit import (
    LEAF_VERSION,
    Frontier,
    Signer,
    encode_change,
    generate_signing_key,
    leaf_hash,
    save_private_key,
)
from ceir.domain.commands import ReportStolen, RevokeRegistration
from ceir.domain.model import Caller, OrgKind
from ceir.service.list_audit import list_differences
from ceir.service.list_checkpoint import write_checkpoint
from ceir.service.merkle_log import DEFAULT_ORIGIN, CheckpointSigner
from ceir.service.register import Committed, Register, load_state
from ceir.service.startup_proof import PARALLEL_FROM, prove_at_start, verify_and_replay
from ceir.storage import log_repository as log_repo
from ceir.storage import repository as repo
from ceir.storage.database import Database

from . import report
from .report import Figure
from .trust import KEMENPERIN, _chunk

TARGET = 2.0  # the proof's time over the lists' load time
FULL_CHANGES = 1_000_000
QUICK_CHANGES = 1_000
CHUNK = 10_000  # rows per import transaction, one signed checkpoint each
TELKOMSEL = Caller("telkomsel", OrgKind.OPERATOR, ("510-10",))
SUBSCRIBER = "510101000000001"


def run(quick: bool) -> list[Figure]:
    changes = QUICK_CHANGES if quick else FULL_CHANGES
    rounds = 1 if quick else 3
    report.heading("Start-up proof (issue: the register proves its lists on every start)")
    path, verifier = database(changes)
    report.facts(
        [
            ("database", f"SQLite file {path} ({path.stat().st_size / 1e6:,.0f} MB)"),
            (
                "changes",
                f"{changes:,} (99% WHITELIST_ADDED, 1% WHITELIST_REMOVED, stolen), "
                f"leaf version {LEAF_VERSION}",
            ),
            ("rounds", f"{rounds}, interleaved; medians"),
        ]
    )
    load: list[float] = []
    verify: list[float] = []
    compare: list[float] = []
    alone: list[float] = []
    checkpointed: list[float] = []
    lists_file = Path(tempfile.mkdtemp(prefix="ceir-bench-lists-")) / "register.lists"
    _write_checkpoint(path, verifier, lists_file)
    for number in range(rounds):
        report.progress(f"round {number + 1} of {rounds}: load, then verify and compare")
        load.append(_timed(path, _load))
        spent = _timed_proof(path, verifier, PARALLEL_FROM)
        verify.append(spent[0])
        compare.append(spent[1])
        alone.append(_timed_proof(path, verifier, changes + 1)[0])
        checkpointed.append(_timed(path, lambda db: _from_checkpoint(db, verifier, lists_file)))
    lists_file.unlink()
    lists_file.parent.rmdir()
    from_checkpoint = statistics.median(checkpointed)
    loaded, verified, compared, single = (
        statistics.median(x) for x in (load, verify, compare, alone)
    )
    proof = verified + compared
    ratio = proof / loaded
    processes = (
        "two processes" if changes >= PARALLEL_FROM and (os.cpu_count() or 1) > 1 else "one process"
    )
    return [
        Figure(
            "start-up proof / loading the lists as before",
            ratio,
            "x",
            target=f"<= {TARGET}x",
            passed=ratio <= TARGET,
            details=(
                f"lists loaded from the tables (load_state, as before): {loaded:.2f} s",
                f"log verified + changes replayed (one pass, {processes}): {verified:.2f} s",
                f"  the same in one process:                             {single:.2f} s",
                f"list tables compared with the replay:                  {compared:.2f} s",
                f"the proof (the server then answers from the replay):   {proof:.2f} s",
                f"{changes:,} changes on SQLite, medians of {rounds}",
            ),
        ),
        Figure(
            "start-up proof from a list checkpoint / loading the lists as before",
            from_checkpoint / loaded,
            "x",
            details=(
                f"the proof from a checkpoint at change {changes:,} (nothing after it): "
                f"{from_checkpoint:.2f} s",
                "each change after the checkpoint adds what one change costs in the "
                f"full proof (about {verified / changes * 1e6:,.0f} us)",
            ),
        ),
    ]


def _write_checkpoint(path: Path, signer: Signer, lists_file: Path) -> None:
    """A list checkpoint of the register at its last change (the full proof first)."""
    db = Database(str(path))
    try:
        proof = prove_at_start(db, signer.verifier, DEFAULT_ORIGIN)
        frontier = Frontier(proof.size, proof.frontier)
        checkpoint_signer = CheckpointSigner(DEFAULT_ORIGIN, signer)
        write_checkpoint(lists_file, proof.state.columns(), frontier, checkpoint_signer)
    finally:
        db.dispose()


def _from_checkpoint(db: Database, signer: Signer, lists_file: Path) -> object:
    proof = prove_at_start(db, signer.verifier, DEFAULT_ORIGIN, list_checkpoint=lists_file)
    assert proof.list_checkpoint_size == proof.size, proof.list_checkpoint_refused
    return proof


def _timed(path: Path, work: Callable[[Database], object]) -> float:
    db = Database(str(path))
    try:
        began = time.perf_counter()
        work(db)
        return time.perf_counter() - began
    finally:
        db.dispose()


def _load(db: Database) -> object:
    with db.read_snapshot() as connection:
        return load_state(connection)


def _timed_proof(path: Path, verifier: Signer, parallel_from: int) -> tuple[float, float]:
    db = Database(str(path))
    try:
        with db.read_snapshot() as connection:
            began = time.perf_counter()
            verified = verify_and_replay(
                connection, verifier.verifier, DEFAULT_ORIGIN, parallel_from=parallel_from
            )
            middle = time.perf_counter()
            differences = list(list_differences(connection, verified.replayed))
            ended = time.perf_counter()
        assert not differences, differences
        return middle - began, ended - middle
    finally:
        db.dispose()


# --- the database -------------------------------------------------------------------------


def database(changes: int) -> tuple[Path, Signer]:
    """The cached register of ``changes`` changes (built if missing or stale)
    and the key its checkpoints are signed with."""
    folder = Path(tempfile.gettempdir()) / "ceir-bench-startup"
    folder.mkdir(exist_ok=True)
    path = folder / f"register-{changes}.db"
    key_file = folder / f"register-{changes}.pem"
    if path.exists() and key_file.exists() and _current(path, changes):
        from ceir.audit import load_private_key

        report.progress(f"reusing {path}")
        return path, Signer(DEFAULT_ORIGIN, load_private_key(key_file))
    for stale in folder.glob(f"register-{changes}.*"):
        stale.unlink()
    key = generate_signing_key()
    save_private_key(key, key_file)
    signer = Signer(DEFAULT_ORIGIN, key)
    report.progress(f"building {path} with {changes:,} changes (kept for later runs)")
    began = time.perf_counter()
    _build(path, changes, signer)
    report.progress(f"built in {time.perf_counter() - began:.0f} s")
    return path, signer


def _current(path: Path, changes: int) -> bool:
    """Whether a cached database still fits the code: its schema is the newest,
    it holds ``changes`` changes, written in the current leaf version (a
    register written before it verifies too, but measures another encoder),
    and the code gives its first and last leaf hashes."""
    db = Database(str(path))
    try:
        db.migrate()  # a new migration may still leave its leaves as they were
        with db.read() as connection:
            if repo.last_sequence(connection) != changes:
                return False
            for sequence in (1, changes):
                change = repo.changes_after(connection, sequence - 1, 1)[0]
                if change.leaf_version != LEAF_VERSION:
                    return False
                stored = log_repo.leaf_hashes(connection, sequence - 1, sequence)
                if stored != [leaf_hash(encode_change(change))]:
                    return False
        return True
    except Exception:  # an unreadable or foreign file: build it again
        return False
    finally:
        db.dispose()


def _build(path: Path, changes: int, signer: Signer) -> None:
    """Imports, then 1% revocations and a few stolen reports, through the services."""
    removed = changes // 100
    stolen = min(changes // 200, 4_000) // 8 * 8
    imported = changes - removed - stolen
    db = Database(str(path))
    db.migrate()
    register = Register(db, signer=CheckpointSigner(DEFAULT_ORIGIN, signer))
    try:
        for number, start in enumerate(range(0, imported, CHUNK)):
            chunk = _chunk(number, start, min(CHUNK, imported - start))
            outcome = register.execute(KEMENPERIN, chunk)
            assert isinstance(outcome, Committed)
            assert outcome.value.rows_accepted == len(chunk.rows)
            if number % 10 == 9:
                report.progress(f"{start + len(chunk.rows):,} devices imported")
        keys = [35_000_000_000_000 + n for n in range(imported)]
        for start in range(0, removed, 1_000):
            revoked = tuple(keys[start : min(start + 1_000, removed)])
            register.execute(KEMENPERIN, RevokeRegistration(revoked, "benchmark"))
        for start in range(removed, removed + stolen, 8):
            stolen_keys = tuple(keys[start : start + 8])
            register.execute(TELKOMSEL, ReportStolen(stolen_keys, "P-1", SUBSCRIBER))
        with db.read() as connection:
            assert repo.last_sequence(connection) == changes
    finally:
        register.close()
        db.dispose()
