"""What the figures were measured on: hardware, OS, Python and the gRPC stack."""

from __future__ import annotations

import os
import platform
import sqlite3
import time

import google.protobuf
import grpc
from google.protobuf.internal import api_implementation

from . import report

EXPECTED_BACKEND = "upb"
BUSY_WARNING = 0.15  # cores busy elsewhere before a warning


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cores() -> str:
    total = os.cpu_count() or 0
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = total
    return f"{total}" if usable == total else f"{total} ({usable} usable by this process)"


def memory() -> str:
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return "unknown"
    return f"{total / 2**30:.1f} GiB"


def operating_system() -> str:
    try:
        name = platform.freedesktop_os_release().get("PRETTY_NAME", "")
    except OSError:
        name = ""
    kernel = f"{platform.system()} {platform.release()} {platform.machine()}"
    return f"{name} ({kernel})" if name else kernel


def cpu_busy_seconds() -> float:
    """CPU seconds every process on the machine has used since boot, counting
    time the hypervisor took away (Linux; 0.0 elsewhere)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = stat.readline().split()
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def background_cores(seconds: float = 1.0) -> float:
    """How many cores other processes keep busy, sampled while this one sleeps."""
    before = cpu_busy_seconds()
    time.sleep(seconds)
    return (cpu_busy_seconds() - before) / seconds


def settle(limit: float) -> float:
    """Wait up to ``limit`` seconds for other processes to leave the CPUs
    (nearly) idle, so that a measurement does not share them; returns the
    background load last seen (0.0 at once when ``limit`` is 0)."""
    if limit <= 0:
        return 0.0
    deadline = time.monotonic() + limit
    while True:
        busy = background_cores(0.5)
        if busy <= BUSY_WARNING or time.monotonic() >= deadline:
            return busy


def protobuf_backend() -> str:
    return str(api_implementation.Type())


def describe() -> list[tuple[str, str]]:
    return [
        ("CPU", cpu_model()),
        ("cores", cores()),
        ("memory", memory()),
        ("OS", operating_system()),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("grpcio", grpc.__version__),
        ("protobuf", google.protobuf.__version__),
        ("protobuf backend", protobuf_backend()),
        ("SQLite", sqlite3.sqlite_version),
    ]


def run() -> None:
    """Print the machine; warn when protobuf is not on its fast backend."""
    report.heading("Machine")
    report.facts(describe())
    busy = background_cores()
    print(f"  background load  {busy:.2f} of {os.cpu_count()} cores busy", flush=True)
    if busy > BUSY_WARNING:
        print(
            "  WARNING: other processes are using the CPUs: every figure below is lower "
            "than this machine gives when idle (each figure prints the load it ran beside)",
            flush=True,
        )
    backend = protobuf_backend()
    if backend != EXPECTED_BACKEND:
        print(
            f"  WARNING: protobuf backend is {backend!r}, not {EXPECTED_BACKEND!r}: "
            "message parsing and building are many times slower and the figures "
            "below do not describe the register",
            flush=True,
        )
