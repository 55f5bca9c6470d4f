"""Engines, connection settings and schema migrations.

SQLite is the embedded default: WAL, ``synchronous=FULL`` (an acknowledged
change survives a power cut), foreign keys on, a busy timeout, and write
transactions that take the write lock up front (``BEGIN IMMEDIATE``) so two
writers never deadlock on a lock upgrade. PostgreSQL is used as it comes;
snapshots read at REPEATABLE READ.

Several servers may share one PostgreSQL database. Each write transaction
there sends ``NOTIFY ceir_changes`` (delivered at its commit, with the
writing process's token as the payload), and ``listen`` gives a connection
of its own that wakes on the other processes' commits, so a server follows
another's writes within milliseconds instead of a polling interval.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from time import monotonic
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
# The PostgreSQL channel every write transaction notifies at its commit.
CHANGES_CHANNEL = "ceir_changes"
# The PostgreSQL advisory lock held while migrating: servers starting
# together on a new database migrate one after the other.
MIGRATION_LOCK = 0x6365_6972  # "ceir"
# A PostgreSQL write transaction left idle this long is ended by the
# database: a server frozen or cut off while it held the write lock (the
# state row) stops the other servers' writes for this long at most.
WRITE_IDLE_TIMEOUT_MS = 30_000


def normalise_url(db: str) -> str:
    """Accept a plain file path as shorthand for a SQLite database."""
    if "://" in db:
        return db
    return f"sqlite:///{Path(db).expanduser().resolve()}"


class Database:
    """One database: a reading engine and a writing one over the same pool."""

    def __init__(
        self, url: str, *, echo: bool = False, write_idle_timeout_ms: int = WRITE_IDLE_TIMEOUT_MS
    ) -> None:
        self.url = normalise_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        kwargs: dict[str, Any] = {"echo": echo}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        else:
            kwargs.update(pool_size=16, max_overflow=16, pool_pre_ping=True)
        self.engine: Engine = create_engine(self.url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        else:
            _configure_postgresql(self.engine, write_idle_timeout_ms)
        self.writer: Engine = self.engine.execution_options(ceir_begin="IMMEDIATE")
        self.snapshot_reader: Engine = (
            self.engine
            if self.is_sqlite
            else self.engine.execution_options(isolation_level="REPEATABLE READ")
        )
        self._sessions = sessionmaker(self.writer, expire_on_commit=False)
        # This process's payload on CHANGES_CHANNEL: its listener skips its own commits.
        self.token = uuid.uuid4().hex
        self._notify = text(f"NOTIFY {CHANGES_CHANNEL}, '{self.token}'")

    def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.set_main_option("sqlalchemy.url", self.url.replace("%", "%%"))
        with self.engine.begin() as connection:
            if not self.is_sqlite:
                connection.execute(text(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})"))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A session in one write transaction, committed on success (on
        PostgreSQL the commit also notifies the other servers' listeners)."""
        with self._sessions.begin() as session:
            yield session
            if not self.is_sqlite:
                session.execute(self._notify)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection in one read transaction."""
        with self.engine.connect() as connection, connection.begin():
            yield connection

    @contextmanager
    def read_snapshot(self) -> Iterator[Connection]:
        """A connection whose reads all see one consistent state."""
        with self.snapshot_reader.connect() as connection, connection.begin():
            yield connection

    def listen(self) -> ChangeListener | None:
        """A connection of its own listening for other processes' write commits
        (None on SQLite, or with a driver that cannot: then poll)."""
        if self.is_sqlite:
            return None
        dialect = self.engine.dialect
        arguments, keywords = dialect.create_connect_args(self.engine.url)
        connection = dialect.connect(*arguments, **keywords)
        if not hasattr(connection, "notifies"):  # not psycopg 3
            connection.close()
            return None
        try:
            connection.autocommit = True
            connection.execute(f"LISTEN {CHANGES_CHANNEL}")
        except BaseException:
            connection.close()
            raise
        return ChangeListener(connection, self.token)

    def dispose(self) -> None:
        self.engine.dispose()


class ChangeListener:
    """A psycopg connection LISTENing on ``CHANGES_CHANNEL``."""

    def __init__(self, connection: Any, own_token: str) -> None:
        self._connection = connection
        self._own = own_token

    def wait(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for another process's write to commit;
        True when one did (the notifications already here are consumed with it)."""
        deadline = monotonic() + timeout
        woken = False
        # Each notifies() generator holds the connection's lock until it is
        # closed: the burst is drained by a second one only once the first is.
        notifications = self._connection.notifies(timeout=timeout)
        try:
            for notification in notifications:
                if notification.payload != self._own:
                    woken = True
                    break
                if monotonic() >= deadline:
                    break
        finally:
            notifications.close()
        if woken:
            for _ in self._connection.notifies(timeout=0):
                pass  # a burst of commits: one catch-up reads them all
        return woken

    def close(self) -> None:
        with contextlib.suppress(Exception):  # a broken connection is closed all the same
            self._connection.close()


def _configure_postgresql(engine: Engine, write_idle_timeout_ms: int) -> None:
    setting = f"SET LOCAL idle_in_transaction_session_timeout = {int(write_idle_timeout_ms)}"

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.get_execution_options().get("ceir_begin"):  # a write transaction
            connection.exec_driver_sql(setting)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own
        # implicit transactions cannot do IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        mode = connection.get_execution_options().get("ceir_begin", "")
        connection.exec_driver_sql(f"BEGIN {mode}".strip())
