"""Phones on the network, checked through the register's public API, and the
register's fill, sampled as the drill runs.

Telkomsel's EIR asks the CEIR about every attach (authorize mode,
``CheckEquipmentBatch``), so the register sees each whitelisted phone that
is in use: that is what lets the range finder tell a range upload from
phones people carry. Every half second each active phone attaches once;
each answer is kept (when, which group, which IMEI, allowed or not), and the
whitelist's fill is read from ``GetImeiRecord``'s capacity.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import grpc
import numpy as np

from ceir.v1 import equipment_check_pb2 as check_pb
from ceir.v1 import equipment_check_pb2_grpc as check_grpc
from ceir.v1 import registry_pb2 as registry_pb
from ceir.v1 import registry_pb2_grpc as registry_grpc
from ceir.v1 import types_pb2 as pb

from ..codec import full_imei
from .register import DrillRegister

__all__ = ["Answer", "Fill", "Phones"]

CYCLE = 0.5  # seconds between two attaches of one phone
BATCH = 1_000
LEGIT_SAMPLE = 200  # registered phones attaching each cycle
ALLOWED = (pb.EQUIPMENT_STATUS_WHITELISTED, pb.EQUIPMENT_STATUS_GREYLISTED)


@dataclass(frozen=True)
class Answer:
    at: float
    group: str
    key: int
    allowed: bool


@dataclass(frozen=True)
class Fill:
    at: float
    used: int
    limit: int


@dataclass
class Phones:
    """Attaches of the active groups' phones, from a thread of its own."""

    register: DrillRegister
    started: float  # time.perf_counter() the drill counts from
    seed: int = 1
    answers: list[Answer] = field(default_factory=list)
    fills: list[Fill] = field(default_factory=list)
    unanswered: list[float] = field(default_factory=list)  # the register could not be reached

    def __post_init__(self) -> None:
        self._groups: dict[str, np.ndarray] = {}
        self._sampled: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="phones", daemon=True)
        self._rng = np.random.default_rng(self.seed)

    def now(self) -> float:
        return time.perf_counter() - self.started

    def activate(self, group: str, keys: np.ndarray, sample: bool = False) -> None:
        """Phones of ``group`` start attaching (``sample``: a few of them each cycle)."""
        with self._lock:
            self._groups[group] = np.asarray(keys, dtype=np.uint64)
            if sample:
                self._sampled.add(group)

    def add(self, group: str, key: int) -> None:
        """One more phone of ``group`` attaches from now on."""
        with self._lock:
            old = self._groups.get(group, np.zeros(0, dtype=np.uint64))
            self._groups[group] = np.append(old, np.uint64(key))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _cycle_keys(self) -> list[tuple[str, int]]:
        with self._lock:
            groups = dict(self._groups)
            sampled = set(self._sampled)
        keys: list[tuple[str, int]] = []
        for group, values in groups.items():
            if group in sampled and values.size > LEGIT_SAMPLE:
                values = self._rng.choice(values, LEGIT_SAMPLE, replace=False)
            keys.extend((group, int(k)) for k in values.tolist())
        return keys

    def _run(self) -> None:
        check = check_grpc.EquipmentCheckServiceStub(self.register.channel("telkomsel"))
        records = registry_grpc.RegistryServiceStub(self.register.channel("kominfo"))
        telkomsel = self.register.credentials["telkomsel"].metadata
        kominfo = self.register.credentials["kominfo"].metadata
        while not self._stop.is_set():
            began = time.perf_counter()
            keys = self._cycle_keys()
            for start in range(0, len(keys), BATCH):
                part = keys[start : start + BATCH]
                request = check_pb.CheckEquipmentBatchRequest(
                    checks=[
                        check_pb.CheckEquipmentRequest(
                            imei=full_imei(key), imsi=f"51010{key % 10**10:010d}"
                        )
                        for _, key in part
                    ]
                )
                try:
                    answer = check.CheckEquipmentBatch(request, metadata=telkomsel, timeout=10)
                except grpc.RpcError:
                    self.unanswered.append(self.now())
                    continue
                at = self.now()
                self.answers.extend(
                    Answer(at, group, key, result.status in ALLOWED)
                    for (group, key), result in zip(part, answer.results, strict=True)
                )
            try:
                record = records.GetImeiRecord(
                    registry_pb.GetImeiRecordRequest(imei=full_imei(keys[0][1]) if keys else ""),
                    metadata=kominfo,
                    timeout=10,
                )
                self.fills.append(Fill(self.now(), record.capacity.used, record.capacity.limit))
            except (grpc.RpcError, IndexError):
                pass
            self._stop.wait(max(0.0, CYCLE - (time.perf_counter() - began)))
