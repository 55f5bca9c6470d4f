"""The whitelist with each IMEI's uploader, for the range finder.

Streams every whitelist row, ordered by key, with the organisation that
registered its device and the reference it was registered under (from its
device row, or from its change when it has none); the
uploader of each row is a small integer code into ``owners``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, and_, func, select

from ceir.domain.model import ChangeKind

from . import schema

__all__ = ["whitelist_uploaders"]

BATCH = 50_000


def whitelist_uploaders(
    connection: Connection,
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64], list[tuple[str, str]]]:
    """Keys (sorted), the uploader code of each, and the uploaders
    (registered_by, reference) the codes index."""
    tables = schema.Base.metadata.tables
    whitelist, devices, changes = tables["whitelist"], tables["devices"], tables["changes"]
    # A device without a row (whitelist device id '', migration 0007) is held
    # by the key's latest registration: the organisation that made it, its reference.
    added = changes.alias("added")
    latest = (
        select(func.max(added.c.sequence))
        .where(
            added.c.imei_key == whitelist.c.imei_key,
            added.c.kind == int(ChangeKind.WHITELIST_ADDED),
        )
        .correlate(whitelist)
        .scalar_subquery()
    )
    statement = (
        select(
            whitelist.c.imei_key,
            func.coalesce(devices.c.registered_by, changes.c.actor),
            func.coalesce(devices.c.reference, changes.c.reference),
        )
        .outerjoin(devices, devices.c.id == whitelist.c.device_id)
        .outerjoin(
            changes,
            and_(devices.c.id.is_(None), whitelist.c.device_id == "", changes.c.sequence == latest),
        )
        .order_by(whitelist.c.imei_key)
    )
    result = connection.execution_options(stream_results=True, yield_per=BATCH).execute(statement)
    codes: dict[tuple[str, str], int] = {}
    key_parts: list[npt.NDArray[np.uint64]] = []
    code_parts: list[npt.NDArray[np.int64]] = []
    for part in result.partitions(BATCH):
        key_parts.append(np.fromiter((row[0] for row in part), dtype=np.uint64, count=len(part)))
        code_parts.append(
            np.fromiter(
                (codes.setdefault((row[1], row[2]), len(codes)) for row in part),
                dtype=np.int64,
                count=len(part),
            )
        )
    keys = np.concatenate(key_parts) if key_parts else np.zeros(0, dtype=np.uint64)
    owner = np.concatenate(code_parts) if code_parts else np.zeros(0, dtype=np.int64)
    return keys, owner, list(codes)
