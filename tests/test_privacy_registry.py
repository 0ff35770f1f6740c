"""The privacy registry covers every table that names a resident or a worker.

Export, erasure and retention walk the registry, so a table missing from it would be
left out of a subject-access export and keep an erased person's identity. These tests
walk the whole schema (``ivr.schema.metadata``): a new table that refers to residents
or workers (a ``resident_id``/``worker_id`` column or a foreign key to them, directly or
through a parent that does) fails here until it has an entry.
"""

from __future__ import annotations

import pytest

from ivr.schema import metadata
from privacy import registry
from privacy.registry import RESIDENT, WORKER, Erase


def _direct_kinds(table) -> set[str]:
    kinds = set()
    for col in table.columns:
        if col.name == "resident_id":
            kinds.add(RESIDENT)
        if col.name == "worker_id":
            kinds.add(WORKER)
        for fk in col.foreign_keys:
            if fk.column.table.name == "residents":
                kinds.add(RESIDENT)
            if fk.column.table.name == "workers":
                kinds.add(WORKER)
    if table.name == "residents":
        kinds.add(RESIDENT)
    if table.name == "workers":
        kinds.add(WORKER)
    return kinds


def test_every_table_naming_a_resident_or_worker_is_registered_for_that_kind():
    entries = {e.table: e for e in registry.entries()}
    missing = []
    for table in metadata.sorted_tables:
        for kind in sorted(_direct_kinds(table)):
            e = entries.get(table.name)
            if e is None or kind not in e.links:
                missing.append(f"{table.name} ({kind})")
    assert not missing, f"add these to privacy.registry: {missing}"


def test_children_of_registered_tables_are_registered_too():
    """A table whose foreign key points at a table that names a person (alert history,
    invoice lines) names that person as well."""
    entries = {e.table: e for e in registry.entries()}
    missing = []
    for table in metadata.sorted_tables:
        if table.name in registry.NOT_PERSONAL:
            continue
        for fk in table.foreign_keys:
            parent = entries.get(fk.column.table.name)
            if parent is None or fk.column.table.name in ("residents", "workers"):
                continue
            if table.name not in entries:
                missing.append(f"{table.name} (refers to {parent.table})")
    assert not missing, f"add these to privacy.registry: {missing}"


def test_every_table_is_either_registered_or_declared_not_personal():
    entries = {e.table for e in registry.entries()}
    unclassified = [t.name for t in metadata.sorted_tables
                    if t.name not in entries and t.name not in registry.NOT_PERSONAL]
    assert not unclassified, f"say in privacy.registry whether these hold personal data: {unclassified}"
    assert not entries & set(registry.NOT_PERSONAL)


@pytest.mark.parametrize("entry", registry.entries(), ids=lambda e: e.table)
def test_entries_name_real_tables_and_columns(entry):
    table = metadata.tables[entry.table]
    for kind, columns in entry.blank.items():
        assert kind in entry.links
        assert set(columns) <= set(table.c.keys())
    assert set(entry.secret) <= set(table.c.keys())
    if entry.retention:
        assert entry.retention.column in table.c
    for kind in entry.links:
        assert entry.erase[kind] in Erase.ALL


def test_the_registry_test_fails_for_an_unregistered_table():
    """The walk above is real: a new table with a resident_id is reported."""
    from sqlalchemy import Column, ForeignKey, Integer, MetaData, Table

    scratch = MetaData()
    Table("residents", scratch, Column("id", Integer, primary_key=True))
    t = Table("resident_notes", scratch, Column("id", Integer, primary_key=True),
              Column("resident_id", Integer, ForeignKey("residents.id")))
    assert _direct_kinds(t) == {RESIDENT}
    assert "resident_notes" not in {e.table for e in registry.entries()}
