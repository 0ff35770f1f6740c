"""A leaked database alone reveals no sealed field: the whole database — the SQLite file
bytes, or PostgreSQL's ``pg_dump`` and every text column read back — holds none of the
planted values in clear, while the site key still opens each of them.

Generic over planters: each planter stores sensitive values the way the application
does and returns them in clear: NI numbers, key-safe codes and device secrets
(``SECRET_PLANTERS``); a new sealed field needs only a planter here.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import String, Text, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from ivr.importer import import_csv
from ivr.models import Worker
from ivr.schema import metadata
from ivr.sealed import Sealer
from ivr.sensitive import open_ni, set_ni, site_sealer
from tests.helpers import context_for, factory_for, import_world
from tests.pg import find_bindir

Planter = Callable[[Session, Sealer, object], list[str]]


def plant_ni_numbers(session: Session, sealer: Sealer, settings: object) -> list[str]:
    """Two through the model (as the worker page does), one through the workers CSV."""
    values = {"1001": "AB123456C", "1002": "CE654321A"}
    for number, ni in values.items():
        wid = session.scalar(select(Worker.id).where(Worker.worker_number == number))
        set_ni(session, sealer, wid, ni)
    session.commit()
    csv = "worker_number,name,pin,mobile,ni_number\n1003,Priya Patel,3456,,JK 11 22 33 D\n"
    report = import_csv(_factory(session), "workers", csv, context_for(settings))
    assert report.ok, report.errors
    for wid in session.scalars(select(Worker.id)):
        opened = open_ni(session, sealer, wid)
        if opened:
            assert opened in (*values.values(), "JK112233D")  # the key opens what was planted
    return [*values.values(), "JK112233D", "JK 11 22 33 D"]


def _factory(session: Session):  # the importer opens its own sessions
    from sqlalchemy.orm import sessionmaker

    return sessionmaker(bind=session.get_bind())


def plant_keysafe_codes(session: Session, sealer: Sealer, settings: object) -> list[str]:
    """Through ivr.keysafe, as the resident page's key-safe form does (distinctive codes, so
    a match in the dump cannot be a coincidence of digits)."""
    import datetime as dt

    from ivr import keysafe
    from ivr.models import Resident

    codes = {"R001": "KS-7Q4Z-1", "R002": "KS-9W2X-5"}
    now = dt.datetime(2026, 3, 10, 9, 0, tzinfo=dt.UTC)
    for ref, code in codes.items():
        rid = session.scalar(select(Resident.id).where(Resident.reference == ref))
        keysafe.set_code(session, sealer, rid, code, actor="manager", now=now)
        session.flush()
        assert keysafe.reveal(session, sealer, rid, actor="manager", now=now) == code
    session.commit()  # the next planter's import opens its own session (SQLite: one writer)
    return list(codes.values())


def plant_device_secrets(session: Session, sealer: Sealer, settings: object) -> list[str]:
    """Through the devices CSV import, as a site registers its visit-verification devices."""
    seeds = ["JBSWY3DPEHPK3PXPKRUGKIDROVUWG2ZA", "MJZG653OEBTG66BAJBSWY3DPEHPK3PXP"]
    csv = "serial,resident_reference,secret\n" + "".join(f"TOK-{i},R00{i + 1},{s}\n" for i, s in enumerate(seeds))
    report = import_csv(_factory(session), "devices", csv, context_for(settings))
    assert report.ok, report.errors
    return seeds


SECRET_PLANTERS: list[Planter] = [plant_ni_numbers, plant_keysafe_codes, plant_device_secrets]


def every_text_value(session: Session) -> list[str]:
    out = []
    for table in metadata.sorted_tables:
        cols = [c for c in table.columns if isinstance(c.type, String | Text)]
        if cols:
            for row in session.execute(select(*cols)).all():
                out += [v for v in row if v]
    return out


def dump_bytes(db_url: str) -> bytes:
    url = make_url(db_url)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database)
        return b"".join(p.read_bytes() for p in (path, path.with_name(path.name + "-wal")) if p.exists())
    bindir = find_bindir()
    assert bindir is not None
    libpq = url.set(drivername="postgresql").render_as_string(hide_password=False)
    return subprocess.run([str(bindir / "pg_dump"), "--no-owner", libpq], capture_output=True, check=True,
                          timeout=120).stdout


def test_a_database_dump_holds_no_sealed_value_in_clear(settings):
    factory = factory_for(settings)
    import_world(settings, factory)
    sealer = site_sealer(settings.secret_path)
    planted: list[str] = []
    with factory() as session:
        for planter in SECRET_PLANTERS:
            planted += planter(session, sealer, settings)
        session.commit()
        texts = every_text_value(session)
    factory.kw["bind"].dispose()  # SQLite: everything checkpointed into the file
    dump = dump_bytes(settings.db_url)
    assert b"s1:" in dump and b"Wendy Walker" in dump  # the search sees sealed rows and clear text
    assert sum(v.startswith("s1:") for v in texts) >= 3
    for value in planted:
        compact = value.replace(" ", "")
        for needle in {value, compact, compact.lower()}:
            assert needle.encode() not in dump, needle
            assert not [t for t in texts if needle in t], needle
