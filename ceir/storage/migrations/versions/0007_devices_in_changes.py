"""no device row for a registration whose change holds it; no own device id

Revision ID: 0007
Revises: 0006

Measured on SQLite with ``dbstat`` after an import of single-IMEI devices,
a registration cost 255 bytes, of which the ``devices`` row was 89: every
column of it repeats the WHITELIST_ADDED change that wrote it (source,
reference, valid until, brand, model, registered by = actor, registered at
= commit time, slots = the change's own IMEI). A version 2 registration of
a one-slot device with the id ``D<its sequence>`` now has no device row;
its whitelist row's device id is ``''``: the device is the one the key's
latest WHITELIST_ADDED change registered, which readers read instead
(``projection.in_its_change``, ``repository.registration_of``).

And a registration's ``changes.device_id`` is stored as ``''`` when it is
``D<its own sequence>`` (the first slot of every device), ``'-'`` when it
is empty (only hand-made changes), and read back as it was
(``repository.change_from_row``), so every leaf hashes as before.

Nothing is lost: only device rows equal, column for column, to what their
change says are deleted, and only their whitelist rows change (any other
row stays as it is, and the audit names it), and the downgrade writes them
back from the changes.
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A version 2 registration (kind 1), and its device id being D<sequence>.
_V2_REGISTRATION = "kind = 1 AND leaf_version >= 2"
_OWN_ID = "device_id = 'D' || CAST(sequence AS TEXT)"
# One of a device whose only slot is the change's own IMEI ('' since 0006)
# and whose id is D<sequence> (before the ids are stored as '').
_IN_ITS_CHANGE = (
    "c.kind = 1 AND c.leaf_version >= 2 AND c.device_imei_keys = '' "
    "AND c.imei_key IS NOT NULL AND c.device_id = 'D' || CAST(c.sequence AS TEXT)"
)


def _same(column: str, other: str) -> str:
    return f"({column} = {other} OR ({column} IS NULL AND {other} IS NULL))"


def upgrade() -> None:
    """Upgrade schema: delete the device rows their changes repeat, point
    their whitelist rows at the key's latest registration (''), store the
    changes' own device ids as ''."""
    equal = " AND ".join(
        (
            _same("d.source", "c.source"),
            "d.reference = c.reference",
            _same("d.valid_until_us", "c.valid_until_us"),
            "d.brand = c.brand",
            "d.model = c.model",
            "d.registered_by = c.actor",
            "d.registered_at_us = c.committed_at_us",
            "d.imei_keys = CAST(c.imei_key AS TEXT)",
        )
    )
    op.execute(
        "DELETE FROM devices WHERE id IN ("
        "SELECT d.id FROM changes c JOIN devices d ON d.id = c.device_id "
        f"WHERE {_IN_ITS_CHANGE} AND {equal})"
    )
    op.execute(
        "UPDATE whitelist SET device_id = '' "
        "WHERE NOT EXISTS (SELECT 1 FROM devices d WHERE d.id = whitelist.device_id) "
        "AND EXISTS (SELECT 1 FROM changes c "
        f"WHERE c.imei_key = whitelist.imei_key AND {_IN_ITS_CHANGE} "
        "AND c.device_id = whitelist.device_id AND c.sequence = (SELECT max(l.sequence) "
        "FROM changes l WHERE l.imei_key = whitelist.imei_key AND l.kind = 1))"
    )
    # Before the own ids become '': an empty one is '-'.
    op.execute(f"UPDATE changes SET device_id = '-' WHERE {_V2_REGISTRATION} AND device_id = ''")
    op.execute(f"UPDATE changes SET device_id = '' WHERE {_V2_REGISTRATION} AND {_OWN_ID}")


def downgrade() -> None:
    """Downgrade schema: the device ids spelled out again, and every such
    registration's device row written back."""
    op.execute(
        "UPDATE whitelist SET device_id = (SELECT 'D' || CAST(max(c.sequence) AS TEXT) "
        "FROM changes c WHERE c.imei_key = whitelist.imei_key AND c.kind = 1) "
        "WHERE device_id = '' AND NOT EXISTS (SELECT 1 FROM devices WHERE id = '')"
    )
    op.execute(
        "UPDATE changes SET device_id = 'D' || CAST(sequence AS TEXT) "
        f"WHERE {_V2_REGISTRATION} AND device_id = ''"
    )
    op.execute(f"UPDATE changes SET device_id = '' WHERE {_V2_REGISTRATION} AND device_id = '-'")
    op.execute(
        "INSERT INTO devices (id, source, reference, valid_until_us, brand, model, "
        "registered_by, registered_at_us, imei_keys) "
        "SELECT c.device_id, c.source, c.reference, c.valid_until_us, c.brand, c.model, "
        "c.actor, c.committed_at_us, CAST(c.imei_key AS TEXT) FROM changes c "
        f"WHERE {_IN_ITS_CHANGE} "
        "AND NOT EXISTS (SELECT 1 FROM devices d WHERE d.id = c.device_id) "
        "ORDER BY c.device_id"
    )
