"""Bulk registration imports, one transaction per streamed chunk.

A row is either registered whole or rejected with its row number and reason;
a bad row never stops the others. Each chunk is idempotent on
``request_id#chunk``, so a client that lost its connection can send the same
import again and only the chunks that did not commit are applied.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ceir.domain.errors import FieldViolation, InvalidArgument, PermissionDenied
from ceir.domain.model import (
    Caller,
    DeviceRegistration,
    ImportRejection,
    ImportResult,
)
from ceir.domain.permissions import Action, require, require_source
from ceir.domain.validation import device_registration

from .register import Committed, Register, Replayed, WriteUnit
from .registry import add_devices, registered_validly

MAX_CHUNK_ROWS = 10_000


@dataclass(frozen=True)
class ImportRow:
    row: int
    imeis: list[str]
    source: int
    reference: str
    valid_until_us: int | None
    brand: str
    model: str
    # What converting the row found wrong (a timestamp out of range).
    found: tuple[FieldViolation, ...] = ()


class ImportService:
    def __init__(self, register: Register) -> None:
        self.register = register

    def authorize(self, caller: Caller) -> None:
        """Refuse a caller that may not import at all (before its first chunk)."""
        require(caller, Action.REGISTER)

    def import_chunk(
        self,
        caller: Caller,
        request_id: str,
        chunk_number: int,
        fingerprint: str,
        rows: Sequence[ImportRow],
        render: Callable[[Committed[ImportResult]], bytes],
    ) -> Committed[ImportResult] | Replayed:
        """Register the valid rows of one chunk; report the others."""
        require(caller, Action.REGISTER)
        now_us = self.register.clock.now_us()
        result = ImportResult(rows_received=len(rows))
        candidates: list[tuple[int, DeviceRegistration]] = []
        for row in rows:
            rejection = _validate(caller, row, now_us)
            if isinstance(rejection, ImportRejection):
                result.rejections.append(rejection)
            else:
                candidates.append((row.row, rejection))

        def work(unit: WriteUnit) -> ImportResult:
            accepted: list[DeviceRegistration] = []
            claimed: set[int] = set()
            for row_number, device in candidates:
                conflict = None
                for key in device.imei_keys:
                    if key in claimed or registered_validly(unit, key):
                        conflict = key
                        break
                if conflict is not None:
                    index = device.imei_keys.index(conflict)
                    result.rejections.append(
                        ImportRejection(
                            row_number,
                            f"device.imeis[{index}]",
                            f"IMEI {conflict:014d} is already registered",
                        )
                    )
                    continue
                claimed.update(device.imei_keys)
                accepted.append(device)
            add_devices(unit, accepted)
            result.rows_accepted = len(accepted)
            result.rows_rejected = len(result.rejections)
            result.rejections.sort(key=lambda r: r.row)
            result.sequence = unit.sequence
            return result

        return self.register.mutate(
            caller,
            "ImportRegistrations",
            request_id,
            fingerprint,
            work,
            render,
            part=chunk_number,
        )


def _validate(caller: Caller, row: ImportRow, now_us: int) -> DeviceRegistration | ImportRejection:
    try:
        device = device_registration(
            imeis=row.imeis,
            source=row.source,
            reference=row.reference,
            valid_until_us=row.valid_until_us,
            brand=row.brand,
            model=row.model,
            now_us=now_us,
            found=row.found,
        )
    except InvalidArgument as error:
        first = error.violations[0]
        return ImportRejection(row.row, first.field, first.description)
    try:
        require_source(caller, device.source)  # the same rule and words as RegisterDevice
    except PermissionDenied as error:
        return ImportRejection(row.row, "device.source", error.message)
    return device
