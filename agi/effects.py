"""Group commit: the calls' database effects go to the thread pool in batches, not one by one.

Under load, most of a check-in's database cost is not its SQL but what surrounds it:
a thread hand-off each way, the reactor and the database thread fighting over the GIL,
and a commit (on PostgreSQL a WAL flush, on SQLite a WAL append under the write lock).
:class:`EffectBatcher` sends an effect to the pool at once when the pool has room, and
otherwise queues it; when a batch comes back, everything queued meanwhile goes as the
next batch, one hand-off and one transaction for all of them
(:meth:`ivr.callstore.CallStore.run_batch`), in the database thread pool or in a worker
process (:mod:`agi.effectprocess`). A quiet server therefore runs each effect
alone with no added delay, and a busy one amortises the fixed costs over the calls
that arrived while the database was working: the classic group commit.

Nothing is acknowledged before its transaction commits: a caller hears "logged" only
after the batch holding their check-in is durable. A batch that fails is rolled back
whole and its effects are run again one by one (in the store), so one call's race or
constraint error never costs another call its check-in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

# Up to this many effects per batch: 256 ran 8 % more dialogs/s than 64 at 200 calls in
# flight, with a lower p99 (fewer batches, fewer GIL hand-offs), and still holds SQLite's
# write lock for only ~25 ms at worst (docs/benchmarks.md).
MAX_BATCH = 256

# (True, result) or (False, the exception that effect raised)
Outcome = tuple[bool, Any]
BatchRunner = Callable[[Sequence[Any]], list[Outcome]]


def in_thread_pool(run_db: Callable[..., Deferred[Any]], run_batch: BatchRunner
                   ) -> Callable[[list[Any]], Deferred[list[Outcome]]]:
    """A batch runner for :class:`EffectBatcher`: ``run_batch`` in the database thread pool (``Runtime.run_db``)."""
    return lambda effects: run_db(run_batch, effects)


def one_by_one(run: Callable[[Any], Any]) -> BatchRunner:
    """A batch runner for a store that only runs single effects (tests' fakes, simple stores)."""

    def run_batch(effects: Sequence[Any]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for effect in effects:
            try:
                outcomes.append((True, run(effect)))
            except Exception as exc:
                outcomes.append((False, exc))
        return outcomes

    return run_batch


class EffectBatcher:
    """Queues effects on the reactor thread; at most ``max_inflight`` batches out at once.

    ``runner(effects)`` runs a batch off the reactor thread and returns a Deferred that
    fires with one :data:`Outcome` per effect: :func:`in_thread_pool` (the database thread
    pool) or :meth:`agi.effectprocess.EffectProcessPool.run_batch` (worker processes).
    Reactor thread only.
    """

    def __init__(self, runner: Callable[[list[Any]], Deferred[list[Outcome]]], *,
                 max_batch: int = MAX_BATCH, max_inflight: int = 1) -> None:
        if max_batch < 1 or max_inflight < 1:
            raise ValueError("max_batch and max_inflight must be at least 1")
        self.runner = runner
        self.max_batch = max_batch
        self.max_inflight = max_inflight
        self._queue: list[tuple[Any, Deferred[Any]]] = []
        self._inflight = 0
        self.batches = 0  # counters for the benchmark and the tests
        self.effects = 0
        self.largest = 0

    def submit(self, effect: Any) -> Deferred[Any]:
        """Run ``effect`` in the next batch; fires with its result or fails with its error."""
        d: Deferred[Any] = Deferred()
        self._queue.append((effect, d))
        self._dispatch()
        return d

    def withdraw(self, d: Deferred[Any]) -> bool:
        """Take a queued effect back before it runs (its caller stopped waiting); False if it already left."""
        for i, (_effect, queued) in enumerate(self._queue):
            if queued is d:
                del self._queue[i]
                return True
        return False

    def _dispatch(self) -> None:
        while self._queue and self._inflight < self.max_inflight:
            batch = self._queue[: self.max_batch]
            del self._queue[: self.max_batch]
            self._inflight += 1
            self.batches += 1
            self.effects += len(batch)
            self.largest = max(self.largest, len(batch))
            d = self.runner([effect for effect, _ in batch])
            d.addBoth(self._done, batch)

    def _done(self, result: list[Outcome] | Failure, batch: list[tuple[Any, Deferred[Any]]]) -> None:
        # Free the slot first: the callbacks below may submit the same calls' next effects.
        self._inflight -= 1
        if isinstance(result, Failure):  # the runner itself broke: every effect in it failed
            outcomes: list[Outcome] = [(False, result.value)] * len(batch)
        else:
            outcomes = result
        for (_effect, d), (ok, value) in zip(batch, outcomes, strict=True):
            if ok:
                d.callback(value)
            else:
                d.errback(Failure(value))
        self._dispatch()
