"""The daily retention run inside the server (``[retention] run_at``, local time).

APScheduler only says when, as for alerts (scheduler/service.py): its job hops to the
reactor, which runs :func:`privacy.retention.run` in the database pool. Several servers
sharing a database may all run it; the deletes are idempotent. The log line names
tables and counts, never a person.
"""

from __future__ import annotations

from typing import Any

from apscheduler.schedulers.twisted import TwistedScheduler
from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.logger import Logger

from carecall.runtime import Runtime
from ivr.db import unit_of_work
from ivr.models import utcnow
from privacy.retention import RetentionPolicy, run

log = Logger(namespace="carecall.privacy")


class RetentionService(Service):
    name = "retention"

    def __init__(self, runtime: Runtime, policy: RetentionPolicy) -> None:
        self.runtime = runtime
        self.policy = policy
        self.scheduler: TwistedScheduler | None = None

    def startService(self) -> None:
        super().startService()
        hour, minute = (int(x) for x in self.policy.run_at.split(":"))
        self.scheduler = TwistedScheduler(reactor=self.runtime.reactor, timezone=self.runtime.settings.tz,
                                          job_defaults={"coalesce": True, "max_instances": 1,
                                                        "misfire_grace_time": 3600})
        self.scheduler.add_job(lambda: self.runtime.reactor.callFromThread(self.run_once), "cron", hour=hour,
                               minute=minute, id="retention")
        self.scheduler.start()

    def stopService(self) -> None:
        super().stopService()
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def run_once(self) -> Deferred[Any]:
        factory, policy = self.runtime.factory, self.policy

        def work() -> dict[str, int]:
            with unit_of_work(factory) as session:
                return {x.table: x.rows for x in run(session, policy, utcnow(), dry_run=False) if x.rows}

        d = self.runtime.run_db(work)
        d.addCallback(lambda deleted: log.info("retention run: deleted {deleted}", deleted=deleted or "nothing"))
        d.addErrback(lambda f: log.failure("retention run failed", f))
        return d


def make_service(runtime: Runtime) -> RetentionService | None:
    policy: RetentionPolicy = runtime.settings.table("retention")
    return RetentionService(runtime, policy) if policy.enabled else None
