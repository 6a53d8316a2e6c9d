"""The controller's wait: serve agents and sites until a deadline, doing on the way what
is due (a lost fork server raised, lags recorded, confirmations settled, the history
flushed, progress reported, a trapped signal raised)."""

from __future__ import annotations

from collections.abc import Callable

from mwsim.errors import ZygoteError
from mwsim.history import Lag, Source
from mwsim.replay.lag import LAG_S, CpuWatch
from mwsim.replay.pool import AgentPool
from mwsim.replay.recorder import Clock, Recorder
from mwsim.replay.schedule import Confirmations
from mwsim.replay.signals import SignalTrap

PROGRESS_EVERY_S = 0.25

#: Reports (seconds since the workload started, its duration, counts of ops, faults and
#: broken reports) of a run under way.
Progress = Callable[[float, float, dict[str, int]], None]


class Loop:
    """Waits for a run's agents; ``pump`` once, or ``until`` a condition holds."""

    def __init__(
        self,
        pool: AgentPool,
        recorder: Recorder,
        confirmations: Confirmations,
        trap: SignalTrap,
        clock: Clock,
        progress: Progress | None,
        duration_s: Callable[[], float],
    ) -> None:
        self.pool, self.recorder, self.confirmations = pool, recorder, confirmations
        self.trap, self.clock = trap, clock
        self.progress, self.duration_s = progress, duration_s
        self.cpu = CpuWatch()
        self.last_progress = 0.0

    def pump(self, until: float) -> None:
        """Handle everything that happens until ``until`` (or the next due check); a
        trapped signal wakes the wait and is raised here."""
        now = self.clock()
        horizon = min(until, now + PROGRESS_EVERY_S)
        if self.confirmations:
            horizon = min(horizon, now + 0.01)
        self.pool.poll(horizon - now)
        lost = next((why for site in self.pool.distinct_sites() if (why := site.lost())), None)
        if lost is not None:  # its agents died with it, unreported: nothing can be judged
            raise ZygoteError(lost)
        woke = self.clock()
        if woke - horizon >= LAG_S:
            self.recorder.note(Lag, source=Source.CONTROLLER, lag_s=round(woke - horizon, 3))
        cpu = self.cpu.sample(woke)
        if cpu is not None:
            self.recorder.note(Lag, mono=woke, **cpu)
        self.confirmations.settle()
        self.recorder.flush()
        self._report_progress(now)
        self.trap.check()

    def _report_progress(self, now: float) -> None:
        t0 = self.recorder.t0
        if self.progress is None or t0 is None or now - self.last_progress < PROGRESS_EVERY_S:
            return
        self.last_progress = now
        self.progress(now - t0, self.duration_s(), dict(self.recorder.counts))

    def until(self, condition: Callable[[], bool], deadline: float) -> bool:
        """Pump until ``condition()`` holds (True) or ``deadline`` passes (False)."""
        while not condition():
            if self.clock() >= deadline:
                return False
            self.pump(deadline)
        return True
