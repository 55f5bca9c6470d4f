"""smaller rows: no key stored twice, a device's only slot not spelled out again

Revision ID: 0006
Revises: 0005

Measured on SQLite with ``dbstat`` after an import of single-IMEI devices,
a registration cost 317 bytes, of which 47 were a second copy of a key:

- ``changes.sequence`` was a BIGINT primary key, so SQLite kept the rowid
  *and* an index from sequence to rowid; as ``INTEGER PRIMARY KEY`` it is
  the rowid itself (SQLite only; PostgreSQL has no rowid);
- ``whitelist`` and ``devices`` were rowid tables with an index on their
  key; ``WITHOUT ROWID`` they are that index (SQLite only);
- ``changes.device_imei_keys`` repeated ``imei_key`` for a device of one
  slot (nearly every device). It is now stored as ``''`` for a version 2
  registration whose slots are exactly its own IMEI, ``'-'`` for one with
  no slots at all (only hand-made changes), and read back as they were
  (``repository.change_from_row``), so every leaf hashes as before.

Nothing is lost: the rows are copied as they are, keys in the same order.
"""

from collections.abc import Sequence

from alembic import op

# revision identifiers, used by Alembic.
revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# A version 2 registration (kind 1) whose slots are its own key, and one with none.
_OWN_SLOT = "kind = 1 AND leaf_version >= 2 AND device_imei_keys = CAST(imei_key AS TEXT)"
_NO_SLOT = "kind = 1 AND leaf_version >= 2 AND device_imei_keys = ''"

_CHANGES_COLUMNS = """
    kind INTEGER NOT NULL,
    imei_key BIGINT,
    imsi VARCHAR(15) NOT NULL,
    msisdn VARCHAR(16) NOT NULL,
    source INTEGER,
    valid_until_us BIGINT,
    device_id VARCHAR(32) NOT NULL,
    blacklist_cause INTEGER,
    block_date_us BIGINT,
    operator_mcc_mnc VARCHAR(8) NOT NULL,
    policy_json TEXT NOT NULL,
    committed_at_us BIGINT NOT NULL,
    actor VARCHAR(64) NOT NULL,
    leaf_hash BLOB,
    leaf_version INTEGER DEFAULT '1' NOT NULL,
    reference VARCHAR(128) DEFAULT '' NOT NULL,
    brand VARCHAR(64) DEFAULT '' NOT NULL,
    model VARCHAR(64) DEFAULT '' NOT NULL,
    device_imei_keys TEXT DEFAULT '' NOT NULL,
    police_report VARCHAR(128) DEFAULT '' NOT NULL,
    reason VARCHAR(256) DEFAULT '' NOT NULL,
    subscriber_salt BLOB,
    CONSTRAINT pk_changes PRIMARY KEY (sequence)
"""
_WHITELIST = """
    imei_key BIGINT NOT NULL,
    device_id VARCHAR(32) NOT NULL,
    valid_until_us BIGINT,
    CONSTRAINT pk_whitelist PRIMARY KEY (imei_key)
"""
_DEVICES = """
    id VARCHAR(32) NOT NULL,
    source INTEGER NOT NULL,
    reference VARCHAR(128) NOT NULL,
    valid_until_us BIGINT,
    brand VARCHAR(64) NOT NULL,
    model VARCHAR(64) NOT NULL,
    registered_by VARCHAR(64) NOT NULL,
    registered_at_us BIGINT NOT NULL,
    imei_keys VARCHAR(160) NOT NULL,
    CONSTRAINT pk_devices PRIMARY KEY (id)
"""


def upgrade() -> None:
    """Upgrade schema."""
    # Before the own-slot rows become '': a registration without slots is '-'.
    op.execute(f"UPDATE changes SET device_imei_keys = '-' WHERE {_NO_SLOT}")
    op.execute(f"UPDATE changes SET device_imei_keys = '' WHERE {_OWN_SLOT}")
    if op.get_bind().dialect.name != "sqlite":
        return
    _rebuild("changes", "sequence INTEGER NOT NULL," + _CHANGES_COLUMNS, "", "sequence")
    op.execute("CREATE INDEX ix_changes_imei_key ON changes (imei_key)")
    _rebuild("whitelist", _WHITELIST, " WITHOUT ROWID", "imei_key")
    _rebuild("devices", _DEVICES, " WITHOUT ROWID", "id")


def downgrade() -> None:
    """Downgrade schema: the slots spelled out again, the tables as 0005 made them."""
    if op.get_bind().dialect.name == "sqlite":
        _rebuild("changes", "sequence BIGINT NOT NULL," + _CHANGES_COLUMNS, "", "sequence")
        op.execute("CREATE INDEX ix_changes_imei_key ON changes (imei_key)")
        _rebuild("whitelist", _WHITELIST, "", "imei_key")
        _rebuild("devices", _DEVICES, "", "id")
    op.execute(
        "UPDATE changes SET device_imei_keys = CAST(imei_key AS TEXT) "
        "WHERE kind = 1 AND leaf_version >= 2 AND device_imei_keys = ''"
    )
    op.execute("UPDATE changes SET device_imei_keys = '' WHERE device_imei_keys = '-'")


def _rebuild(table: str, columns: str, options: str, order: str) -> None:
    """Copy ``table`` into a new table of ``columns`` (SQLite), in key order."""
    op.execute(f"CREATE TABLE {table}_0006 ({columns}){options}")
    op.execute(f"INSERT INTO {table}_0006 SELECT * FROM {table} ORDER BY {order}")
    op.execute(f"DROP TABLE {table}")
    op.execute(f"ALTER TABLE {table}_0006 RENAME TO {table}")
