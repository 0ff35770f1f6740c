"""The schema comes from the Alembic migrations and matches the models exactly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from ivr.db import current_heads, expected_heads, make_engine
from ivr.schema import metadata


def test_database_is_at_the_single_head_revision(db_url):
    assert len(expected_heads()) == 1, f"several heads, add a merge revision: {expected_heads()}"
    assert current_heads(db_url) == expected_heads()


def test_migrated_schema_matches_the_models(db_url):
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": False})
            diff = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert diff == [], f"models and migrations differ: {diff}"
