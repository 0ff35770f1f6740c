"""Shared fixtures: every database test runs on SQLite and on a real PostgreSQL.

``db_url`` is parametrised over both engines and hands each test a freshly migrated,
empty database: SQLite by copying a migrated template file, PostgreSQL by
``CREATE DATABASE … TEMPLATE`` from a migrated template database (fast, and the schema
really comes from the Alembic migrations). PostgreSQL is the suite's own private cluster
(see ``tests/pg.py``) unless ``CARECALL_TEST_PG_URL`` names an admin URL of another one.
Under ``CI=true`` a missing PostgreSQL fails the run instead of skipping.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# pytest keeps only the three newest temporary roots under /tmp/pytest-of-USER and deletes
# older ones when a session starts: two test runs at once on one machine (two checkouts,
# or a quick run beside the full suite) would delete each other's databases mid-run. Each
# run gets a root of its own, and removes the roots of runs that have ended.
def _own_temproot() -> None:
    if "PYTEST_DEBUG_TEMPROOT" in os.environ:
        return
    base = Path(tempfile.gettempdir()) / f"carecall-tests-{ROOT.name}"
    base.mkdir(parents=True, exist_ok=True)
    for old in base.iterdir():
        pid = int(old.name) if old.name.isdigit() else 0
        try:
            if pid:
                os.kill(pid, 0)
                continue  # that run is still going
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        shutil.rmtree(old, ignore_errors=True)
    mine = base / str(os.getpid())
    mine.mkdir(exist_ok=True)
    os.environ["PYTEST_DEBUG_TEMPROOT"] = str(mine)


_own_temproot()

from carecall.config import Settings, load_settings  # noqa: E402
from ivr.db import normalise_url, upgrade  # noqa: E402
from tests.asterisk_fixtures import asterisk, asterisk_rig  # noqa: E402,F401  (real-Asterisk tests)
from tests.pg import PgCluster, find_bindir  # noqa: E402

DATA = Path(__file__).with_name("data")
_counter = itertools.count()


class PgServer:
    """Where the suite's PostgreSQL lives, and the cluster handle when it is ours."""

    def __init__(self, admin_url: str, cluster: PgCluster | None) -> None:
        self.admin_url = normalise_url(admin_url)
        self.cluster = cluster

    def url(self, database: str) -> str:
        base = self.admin_url.rsplit("/", 1)[0]
        return f"{base}/{database}"

    def execute_autocommit(self, sql: str) -> None:
        engine = create_engine(self.admin_url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as conn:
                conn.execute(text(sql))
        finally:
            engine.dispose()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    external = os.environ.get("CARECALL_TEST_PG_URL")
    if external:
        yield PgServer(external, None)
        return
    bindir = find_bindir()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail("CI=true but no PostgreSQL server binaries: .ci/run must install postgresql")
        pytest.skip("PostgreSQL not installed (apt-get install postgresql); SQLite only")
    cluster = PgCluster(bindir)
    cluster.init()
    cluster.start()
    try:
        yield PgServer(cluster.url(), cluster)
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def pg_template(pg_server: PgServer) -> str:
    name = f"carecall_template_{os.getpid()}"
    pg_server.execute_autocommit(f"DROP DATABASE IF EXISTS {name}")
    pg_server.execute_autocommit(f"CREATE DATABASE {name}")
    upgrade(pg_server.url(name))
    return name


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


def fresh_pg_database(pg_server: PgServer, template: str) -> tuple[str, str]:
    name = f"t_{os.getpid()}_{next(_counter)}"
    pg_server.execute_autocommit(f"CREATE DATABASE {name} TEMPLATE {template}")
    return name, pg_server.url(name)


def drop_pg_database(pg_server: PgServer, name: str) -> None:
    pg_server.execute_autocommit(
        f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
    )
    pg_server.execute_autocommit(f"DROP DATABASE IF EXISTS {name}")


@contextlib.contextmanager
def fresh_database(request: pytest.FixtureRequest, engine: str, directory: Path) -> Iterator[str]:
    """A freshly migrated, empty database on ``engine`` ("sqlite" or "postgresql"), dropped after."""
    if engine == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        path = directory / "carecall.db"
        shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    server: PgServer = request.getfixturevalue("pg_server")
    name, url = fresh_pg_database(server, request.getfixturevalue("pg_template"))
    try:
        yield url
    finally:
        drop_pg_database(server, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A freshly migrated, empty database on each engine in turn."""
    with fresh_database(request, request.param, tmp_path) as url:
        yield url


# The suite shares 2 cores with other work: a cold effect worker process or two loaded
# servers can take longer than the deployed 2.5 s, which would journal check-ins the tests
# expect in the database. The stuck-database tests (tests/test_fault_stuck_database.py)
# run with the deployed default.
SUITE_EFFECT_TIMEOUT = 30.0


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    """Site settings pointing at the test's database, with a private key and data dir."""
    return load_settings(
        tmp_path / "empty.toml" if (tmp_path / "empty.toml").write_text("") == 0 else None,
        db_url=db_url,
        environ={},
        secret_file=str(tmp_path / "carecall.key"),
        data_dir=str(tmp_path / "var"),
        agi_effect_timeout=SUITE_EFFECT_TIMEOUT,
    )
