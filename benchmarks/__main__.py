"""``python -m benchmarks``: print the machine, then run every section.

``--quick`` runs a small version of everything (a smoke test of the
benchmarks, not figures to quote).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from . import (
    bulk,
    custody,
    hostile,
    machine,
    memory,
    multiserver,
    register,
    report,
    scale,
    sim,
    startup,
    trust,
)


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, a short run")
    parser.add_argument("--devices", type=int, help="devices imported, then checked")
    parser.add_argument(
        "--chunk-rows", type=int, help="rows per import message populating the register"
    )
    parser.add_argument("--seconds", type=float, help="length of each measured run")
    parser.add_argument("--rounds", type=int, help="interleaved rounds of the unary figure")
    parser.add_argument("--unary-in-flight", type=int, help="calls in flight, unary load")
    parser.add_argument("--batch-in-flight", type=int, help="calls in flight, batch load")
    parser.add_argument(
        "--settle", type=float, help="seconds to wait for other load to end before each run"
    )
    parser.add_argument("--workdir", type=Path, help="parent of the temporary SQLite files")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--only",
        action="append",
        choices=(
            "register",
            "sim",
            "trust",
            "hostile",
            "startup",
            "custody",
            "bulk",
            "memory",
            "multiserver",
            "scale",
        ),
        help="run only this section (repeatable): the register, the operator side, the log, "
        "check latency under hostile connections, the start-up proof at 1,000,000 changes, "
        "the custody handover's write freeze at 1,000,000 changes, the bulk import against "
        "raw executemany and COPY at 10,000,000 rows, memory per IMEI and "
        "under hostile traffic, two servers on one PostgreSQL database, a register of "
        "--scale-imeis IMEIs (not run unless named: tens of minutes)",
    )
    parser.add_argument(
        "--scale-imeis",
        type=int,
        help=f"IMEIs the scale section loads (default {scale.FULL_IMEIS:,}; "
        f"{scale.QUICK_IMEIS:,} with --quick)",
    )
    return parser.parse_args(argv)


def sizes(options: argparse.Namespace) -> register.Sizes:
    chosen = register.QUICK if options.quick else register.FULL
    overrides = {
        name: getattr(options, name)
        for name in (
            "devices",
            "chunk_rows",
            "seconds",
            "rounds",
            "settle",
            "unary_in_flight",
            "batch_in_flight",
        )
        if getattr(options, name) is not None
    }
    return dataclasses.replace(chosen, **overrides)


def main(argv: Sequence[str] | None = None) -> int:
    options = parse(argv)
    began = time.perf_counter()
    machine.run()
    sections = (
        "register",
        "sim",
        "trust",
        "hostile",
        "startup",
        "custody",
        "bulk",
        "memory",
        "multiserver",
    )
    chosen = options.only or sections
    results: list[report.Figure] = []
    with tempfile.TemporaryDirectory(prefix="ceir-bench-", dir=options.workdir) as workdir:
        if "register" in chosen:
            results += register.run(sizes(options), Path(workdir))
        if "sim" in chosen:
            results += sim.run(options.quick)
        if "trust" in chosen:
            results += trust.run(options.quick, Path(workdir))
        if "hostile" in chosen:
            results += hostile.run(hostile.QUICK if options.quick else hostile.FULL, Path(workdir))
        if "startup" in chosen:
            results += startup.run(options.quick)
        if "custody" in chosen:
            results += custody.run(options.quick)
        if "memory" in chosen:
            results += memory.run(options.quick)
        if "scale" in chosen:
            imeis = options.scale_imeis or (
                scale.QUICK_IMEIS if options.quick else scale.FULL_IMEIS
            )
            results += scale.run(imeis, Path(workdir))
        if "multiserver" in chosen:
            results += multiserver.run(options.quick)
        if "bulk" in chosen:
            results += bulk.run(bulk.QUICK if options.quick else bulk.FULL, Path(workdir))
    report.heading("Figures")
    report.figures(results)
    report.summary(results)
    print(f"  ({time.perf_counter() - began:.0f} s in all)")
    missed = any(result.passed is False for result in results)
    return 1 if missed and options.strict else 0


if __name__ == "__main__":
    sys.exit(main())
