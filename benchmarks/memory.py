"""Memory at country scale and under hostile traffic (issue 10).

1. A real ``ceir serve`` process on a SQLite register of single-IMEI
   registrations (the start-up bench's cached database: 1,000,000 changes,
   100,000 for ``--quick``): its RSS once serving, minus the RSS of a server
   on an empty register, per whitelisted IMEI (target <= 16 B); and the
   marginal cost, against a register a tenth the size;
2. ``ListState.nbytes`` per whitelisted IMEI, the lists loaded in-process;
3. the clone tracker after 1,000,000 random IMSIs on one IMEI and after
   1,000,000 random IMEIs (100,000 each for ``--quick``): bounded, in bytes;
4. the token cache after 100,000 random invalid tokens (10,000 for
   ``--quick``) against a real database: one lookup each, the valid caller
   still cached.
"""

from __future__ import annotations

import contextlib
import random
import tempfile
import time
from pathlib import Path

from ceir.domain.clones import DEFAULT_MAX_IMEIS, CloneTracker
from ceir.domain.errors import Unauthenticated
from ceir.domain.model import Policy
from ceir.service.orgs import Authenticator, add_organisation
from ceir.service.register import load_state
from ceir.storage.database import Database

from . import report, startup
from .report import Figure
from .servers import CeirServe

TARGET_BYTES_PER_IMEI = 16
FULL = 1_000_000
QUICK = 100_000


def run(quick: bool) -> list[Figure]:
    changes = QUICK if quick else FULL
    sightings = QUICK if quick else FULL
    tokens = 10_000 if quick else 100_000
    report.heading("Memory (issue 10: compact lists, bounded memory under hostile traffic)")
    path, _ = startup.database(changes)
    smaller, _ = startup.database(changes // 10)  # for the cost of one more IMEI
    results = _server_rss(path, smaller)
    results.append(_list_state(path))
    results += _clone_tracker(sightings)
    results.append(_token_cache(tokens))
    return results


# --- the server process ---------------------------------------------------------------------


def _server_rss(path: Path, smaller: Path) -> list[Figure]:
    with tempfile.TemporaryDirectory(prefix="ceir-bench-memory-") as folder:
        empty = Path(folder) / "empty.db"
        Database(str(empty)).migrate()
        report.progress("starting ceir serve on an empty register")
        baseline, _ = _serving_rss(empty)
    report.progress(f"starting ceir serve on {smaller}")
    small, _ = _serving_rss(smaller)
    report.progress(f"starting ceir serve on {path}")
    loaded, seconds = _serving_rss(path)
    whitelisted, fewer = _whitelisted(path), _whitelisted(smaller)
    per_imei = (loaded - baseline) / whitelisted
    marginal = (loaded - small) / (whitelisted - fewer)
    return [
        Figure(
            "server memory per whitelisted IMEI (RSS serving minus empty server)",
            per_imei,
            "B",
            target=f"<= {TARGET_BYTES_PER_IMEI} B",
            passed=per_imei <= TARGET_BYTES_PER_IMEI,
            details=(
                f"{whitelisted:,} whitelisted IMEIs (single-IMEI registrations), SQLite",
                f"RSS {loaded / 2**20:,.1f} MiB serving, {baseline / 2**20:,.1f} MiB empty, "
                f"{small / 2**20:,.1f} MiB with {fewer:,} IMEIs",
                f"one more IMEI costs {marginal:,.1f} B (between {fewer:,} and "
                f"{whitelisted:,}: what 1.2 billion would cost each, without the fixed costs "
                "a loaded register has and an empty one not: SQLite's page cache, ...)",
                f"restart to serving: {seconds:.1f} s (start-up proof included)",
                f"at 1.2 billion IMEIs: {per_imei * 1.2e9 / 2**30:,.1f} GiB "
                f"({marginal * 1.2e9 / 2**30:,.1f} GiB at the marginal cost)",
            ),
        )
    ]


def _serving_rss(db: Path) -> tuple[int, float]:
    """RSS in bytes of ``ceir serve`` once it serves, and how long it took."""
    began = time.perf_counter()
    with CeirServe(db, timeout=3_600) as server:
        seconds = time.perf_counter() - began
        time.sleep(1.0)  # let start-up threads finish what they hold
        return server.rss(), seconds


def _whitelisted(path: Path) -> int:
    from sqlalchemy import text

    db = Database(str(path))
    try:
        with db.read() as connection:
            return int(connection.execute(text("select count(*) from whitelist")).scalar_one())
    finally:
        db.dispose()


# --- in process -----------------------------------------------------------------------------


def _list_state(path: Path) -> Figure:
    db = Database(str(path))
    try:
        began = time.perf_counter()
        with db.read_snapshot() as connection:
            state = load_state(connection)
        seconds = time.perf_counter() - began
    finally:
        db.dispose()
    whitelisted = state.sizes()["whitelist"]
    per_imei = state.nbytes() / whitelisted
    return Figure(
        "ListState.nbytes per whitelisted IMEI",
        per_imei,
        "B",
        target=f"<= {TARGET_BYTES_PER_IMEI} B",
        passed=per_imei <= TARGET_BYTES_PER_IMEI,
        details=(
            f"{state.nbytes():,} B for {whitelisted:,} whitelisted, "
            f"{state.sizes()['blacklist']:,} blacklisted; load_state {seconds:.2f} s",
        ),
    )


def _clone_tracker(sightings: int) -> list[Figure]:
    policy = Policy()
    threshold, window = policy.clone_threshold, policy.clone_window_seconds
    rng = random.Random(10)
    now = time.time_ns() // 1_000
    one = CloneTracker()
    for n in range(sightings):
        imsi = str(510_100_000_000_000 + rng.randrange(10**12))
        one.observe(35_209_900_176_148, imsi, now + n, threshold, window)
    many = CloneTracker()
    for n in range(sightings):
        key = rng.randrange(10**14)
        many.observe(key, "510100000000001", now + n, threshold, window)
    per_imei = many.nbytes() / max(len(many), 1)
    bound = DEFAULT_MAX_IMEIS * per_imei
    return [
        Figure(
            f"clone tracker after {sightings:,} random IMSIs on one IMEI",
            one.nbytes(),
            "B",
            target=f"bounded: {threshold + 1} IMSIs kept",
            passed=one.sightings() <= threshold + 1,
            details=(f"{one.sightings()} sightings kept (threshold {threshold})",),
        ),
        Figure(
            f"clone tracker after {sightings:,} random IMEIs",
            many.nbytes(),
            "B",
            target=f"<= {DEFAULT_MAX_IMEIS:,} IMEIs, about {bound / 2**20:,.0f} MiB",
            passed=len(many) <= DEFAULT_MAX_IMEIS,
            details=(
                f"{len(many):,} IMEIs tracked, {many.evicted:,} evicted, {per_imei:,.0f} B an IMEI",
            ),
        ),
    ]


def _token_cache(tokens: int) -> Figure:
    with tempfile.TemporaryDirectory(prefix="ceir-bench-tokens-") as folder:
        db = Database(str(Path(folder) / "tokens.db"))
        db.migrate()
        try:
            valid = f"Bearer {add_organisation(db, 'telkomsel', 'operator', ['510-10'])}"
            authenticator = Authenticator(db)
            authenticator.caller_for(valid)
            cache = authenticator.cache
            began = time.perf_counter()
            rng = random.Random(11)
            for _ in range(tokens):
                with contextlib.suppress(Unauthenticated):  # what a made-up token gets
                    authenticator.caller_for(f"Bearer ceir_{rng.getrandbits(192):048x}")
            seconds = time.perf_counter() - began
            still = cache.holds(valid)  # not evicted (its entry may be stale by now)
        finally:
            db.dispose()
    lookups = cache.lookups - 1
    return Figure(
        f"token cache after {tokens:,} random invalid tokens: database lookups each",
        lookups / tokens,
        "lookups",
        target="<= 1, the valid caller still cached",
        passed=lookups <= tokens and still,
        details=(
            f"valid caller still cached: {'yes' if still else 'NO'}; "
            f"{len(cache):,} entries held; {tokens / seconds:,.0f} invalid tokens/s",
        ),
    )
