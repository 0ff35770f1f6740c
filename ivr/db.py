"""Engines, sessions and schema upgrades for SQLite and PostgreSQL.

SQLite is tuned for one machine with many concurrent calls: WAL so readers never wait
for the writer, ``synchronous=NORMAL`` (durable across a process crash, which is what
the call path must survive), a busy timeout instead of immediate "database is locked",
and foreign keys switched on, which SQLite leaves off by default.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).with_name("migrations")


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` and use psycopg 3 for both."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def is_sqlite(url: str) -> bool:
    return make_url(normalise_url(url)).get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite's own transaction handling defers BEGIN; take it over so that
    # "BEGIN IMMEDIATE" style locking follows SQLAlchemy's unit of work.
    dbapi_connection.isolation_level = None
    cur = dbapi_connection.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


READ_ONLY = {"carecall_read_only": True}


def _sqlite_begin(conn: Any) -> None:
    # IMMEDIATE takes the write lock at BEGIN, so two writers queue on busy_timeout
    # instead of one failing with SQLITE_BUSY when it upgrades a read lock. A connection
    # marked read-only (``conn.execution_options(**READ_ONLY)``, one SELECT) needs no
    # transaction at all: SQLite reads a consistent snapshot per statement in WAL mode.
    if conn.get_execution_options().get("carecall_read_only"):
        return
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs: Any) -> Engine:
    url = normalise_url(url)
    if is_sqlite(url):
        engine = create_engine(url, connect_args={"check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextlib.contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: committed if the block returns, rolled back if it raises."""
    with factory() as session, session.begin():
        yield session


@contextlib.contextmanager
def reading(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that only reads and never takes SQLite's write lock.

    On SQLite it opens no transaction (:func:`_sqlite_begin`), so each SELECT sees its
    own WAL snapshot and writers are never queued behind it; a caller that needs the
    reads to agree must check again under :func:`unit_of_work`. On PostgreSQL it is an
    ordinary transaction, rolled back.
    """
    bind = factory.kw["bind"]
    with factory(bind=bind.execution_options(**READ_ONLY)) as session:
        try:
            yield session
        finally:
            session.rollback()


def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str) -> None:
    """Bring the schema to the newest revision (every branch head)."""
    from alembic import command

    command.upgrade(alembic_config(url), "heads")


def current_heads(url: str) -> set[str]:
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return set(MigrationContext.configure(conn).get_current_heads())
    finally:
        engine.dispose()


def expected_heads() -> set[str]:
    from alembic.script import ScriptDirectory

    return set(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())
