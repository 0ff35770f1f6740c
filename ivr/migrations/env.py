"""Alembic environment: runs migrations on the URL carecall hands it."""

from __future__ import annotations

from alembic import context

from ivr.db import make_engine
from ivr.schema import metadata

config = context.config


def run_migrations_online() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url is not None
    engine = make_engine(url)
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # Batch migrations rebuild a table (copy, drop, rename). With foreign keys on, dropping
            # a table other rows refer to (workers, residents) fails on a database that holds
            # data, so they are off while migrating (outside any transaction, where SQLite heeds
            # the pragma) and every reference is checked once the migrations have run.
            connection.connection.dbapi_connection.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        context.configure(
            connection=connection,
            target_metadata=metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
            if sqlite:
                broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                if broken:
                    raise RuntimeError(f"migration left {len(broken)} broken references, first: {broken[0]}")
    engine.dispose()


run_migrations_online()
