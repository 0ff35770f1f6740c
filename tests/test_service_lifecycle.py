"""The server stops its parts before the thread pools their last work runs in."""

from __future__ import annotations

import pytest_twisted
from twisted.application.service import Service
from twisted.internet import reactor

from carecall.runtime import Runtime
from carecall.service import CarecallService


class FinishingPart(Service):
    """A part that, like the alert scheduler mid-tick, finishes work in the database pool."""

    def __init__(self, runtime: Runtime, ran: list[str]) -> None:
        self.runtime, self.ran = runtime, ran

    def stopService(self):
        super().stopService()
        return self.runtime.run_db(self.ran.append, "last database work")


@pytest_twisted.inlineCallbacks
def test_pools_stop_only_after_every_part_finished_its_work(settings):
    runtime = Runtime.create(settings, reactor)
    ran: list[str] = []
    top = CarecallService(runtime)
    FinishingPart(runtime, ran).setServiceParent(top)
    top.startService()
    assert runtime.pool.started
    stopping = top.stopService()
    assert runtime.pool.started, "the pool must outlive the parts that are still stopping"
    yield stopping
    assert ran == ["last database work"]
    assert not runtime.pool.started


def test_the_server_freezes_what_startup_built_out_of_the_collectors_scans():
    import gc

    from carecall.commands import GC_THRESHOLDS, quiet_collector

    before = gc.get_threshold()
    try:
        quiet_collector()
        assert gc.get_freeze_count() > 1000  # modules, classes, mappers: everything built so far
        assert gc.get_threshold() == GC_THRESHOLDS
        assert gc.isenabled()  # cycles made later are still collected
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
