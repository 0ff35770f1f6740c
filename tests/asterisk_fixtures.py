"""pytest fixtures for the real-Asterisk tests (the rig itself is :mod:`tests.asterisk_rig`).

* ``asterisk`` (session): one private instance for the whole run — starting Asterisk
  costs ~3 s, a test ~0.5 s. Skipped with a plain reason when no binary is installed,
  a failure under ``CI=true`` when the shared bundle was there to install.
* ``asterisk_rig`` (per test): that instance with the shipped dialplan restored (a test
  may have rewritten ``carecall.conf`` or the rig contexts) and both AGI targets pointing
  at dead ports until the test says where its server listens (``rig.set_agi``).
* ``in_thread(fn, *args)``: a Deferred running a blocking rig call (a wait, DTMF) in a
  thread, for ``pytest_twisted.inlineCallbacks`` tests whose FastAGI server runs on the
  reactor in this process.

Tests using them carry the ``asterisk`` marker (``-m "not asterisk"`` leaves them out).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.asterisk_rig import MISSING_REASON, RIG_DIALPLAN, AsteriskRig, find_asterisk, must_have_asterisk


@pytest.fixture(scope="session")
def asterisk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AsteriskRig]:
    binary = find_asterisk()
    if binary is None:
        if must_have_asterisk():
            pytest.fail("CI=true and ../shared/asterisk is present, but no asterisk binary: "
                        "scripts/setup.sh test should have run ../shared/asterisk/install.sh")
        pytest.skip(MISSING_REASON)
    rig = AsteriskRig.start(tmp_path_factory.mktemp("asterisk"), binary)
    try:
        yield rig
    finally:
        rig.stop()


@pytest.fixture
def asterisk_rig(asterisk: AsteriskRig) -> Iterator[AsteriskRig]:
    rig = asterisk
    shipped = (rig.etc / "carecall.conf").read_text()
    rig.write_carecall_dialplan()
    if (rig.etc / "carecall.conf").read_text() != shipped or (rig.etc / "rig.conf").read_text() != RIG_DIALPLAN:
        (rig.etc / "rig.conf").write_text(RIG_DIALPLAN)
        rig.reload_dialplan()
    rig.set_agi(None, None)
    yield rig
    # Leave no call behind for the next test.
    rig.rx("channel request hangup all")


def in_thread(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    from twisted.internet import threads

    return threads.deferToThread(fn, *args, **kwargs)
