"""Bringing a deployment up: start the initial agents, form the initial worlds, then have
each serve an op; or say at which stage it failed and whose doing that was.

Each stage is bounded twice: by a stall (nothing moved for the model's stall bound) and
by the run's bring-up timeout. A failure is written to the history as a ``Bringup``
record followed by ``phase: stop``; its cause is the harness's (an error of mwsim's own,
a fork server lost), the runtime's (an agent exited, or the runtime raised before a
stall), or unclear (a SIGKILL others may have sent, a silent stall): the reference
runtime decides those (``mwsim.runs.ask_reference``).
"""

from __future__ import annotations

import signal
from collections.abc import Callable

from mwsim.errors import BringUpFailed, ZygoteError
from mwsim.history import Bringup, Cause, Error, Op, Phase, PhaseName, Record, Source, Stage
from mwsim.membership import Plan
from mwsim.replay import protocol as wire
from mwsim.replay.pool import AgentPool, AgentProc, log_tail
from mwsim.replay.recorder import Clock, Recorder
from mwsim.replay.worlds import Formation
from mwsim.timing import RuntimeModel

#: How long after the start command every agent starts its workload (they agree on it).
START_LEAD_S = 0.05


class BringUp:
    """One deployment's bring-up; ``run`` once, after the sites are open."""

    def __init__(
        self,
        plan: Plan,
        pool: AgentPool,
        formation: Formation,
        recorder: Recorder,
        boot: Callable[[str, float], wire.Boot],
        pump: Callable[[float], None],
        clock: Clock,
        model: RuntimeModel,
        window_s: float,
        timeout_s: float,
        check: Callable[[], None],
    ) -> None:
        self.plan, self.pool, self.formation, self.recorder = plan, pool, formation, recorder
        self.boot, self.pump, self.clock = boot, pump, clock
        self.check = check  # raises a trapped Ctrl-C, also while the fork servers import
        self.model, self.window_s, self.timeout_s = model, window_s, timeout_s
        self.go: float | None = None  # when the workload was told to start
        self.served: set[tuple[str, int]] = set()  # worlds with an op before the clock starts
        self.harness_errors: list[str] = []  # mwsim's own failures during bring-up
        self.runtime_errors: set[str] = set()  # workers whose runtime raised in bring-up

    def saw(self, agent: AgentProc, record: Record) -> None:
        """Take note of an agent's record from before the workload's clock started."""
        if isinstance(record, Op):
            self.served.add((record.world, record.life or 0))
        elif isinstance(record, Error) and record.source == Source.HARNESS:
            self.harness_errors.append(f"{agent.worker}: {record.message}")
        elif isinstance(record, Error) and record.source == Source.RUNTIME:
            self.runtime_errors.add(agent.worker)

    def warm_up(self) -> str | None:
        """Wait for every fork server to have imported the runtime; None when they have,
        else why."""
        deadline = self.clock() + self.timeout_s
        for site in self.pool.distinct_sites():
            try:
                site.wait_ready(max(0.0, deadline - self.clock()), self.check)
            except ZygoteError as exc:
                return f"the fork server did not start: {exc}\n" + log_tail(site.log)
        return None

    def run(self) -> BringUpFailed | None:
        """None once every initial world served an op (the workload's clock then starts),
        else the failure with its cause (a fork server lost is the harness's)."""
        try:
            return self._form_and_serve()
        except ZygoteError as exc:
            waiting = [life.name for life in self.plan.worlds if life.origin is None]
            stage = Stage.FORM if self.go is None else Stage.SERVE
            return self.failed(stage, Cause.HARNESS, f"the harness failed: {exc}", waiting)

    def _form_and_serve(self) -> BringUpFailed | None:
        deadline = self.clock() + self.timeout_s
        for worker in self.plan.initial.workers():
            self.pool.spawn(self.boot(worker, 0.0), self.plan.initial.host_of(worker))
        initial = [life for life in self.plan.worlds if life.origin is None]
        for life in initial:
            self.formation.form(life)

        def unformed() -> list[str]:
            return [life.name for life in initial if not self.formation.formed(life)]

        def formation_moved() -> int:
            return sum(a.ready for a in self.pool.every) + len(self.formation.joined)

        stall = self.model.form_stall_s
        failed = self._stage(Stage.FORM, unformed, formation_moved, stall, deadline)
        if failed is not None:
            return failed
        self.go = self.clock() + START_LEAD_S
        for agent in self.pool.every:
            self.pool.command(agent.worker, wire.Start(self.go))
        # the workload's clock starts once every initial world has served an op
        wanted = {(life.name, life.id.life) for life in initial}

        def unserved() -> list[str]:
            return sorted(name for name, _ in wanted - self.served)

        stall = self.model.serve_stall_s(self.window_s)
        failed = self._stage(Stage.SERVE, unserved, lambda: len(self.served), stall, deadline)
        if failed is None:
            self.recorder.start(self.clock())
        return failed

    def _stage(
        self,
        stage: Stage,
        waiting: Callable[[], list[str]],
        moved: Callable[[], int],
        stall_s: float,
        deadline: float,
    ) -> BringUpFailed | None:
        """Serve the agents until no world is ``waiting``; else the failure and whose
        doing it was. The harness's: an error of mwsim's own (a fork server lost raises
        ``ZygoteError`` from ``pump``). The runtime's: an agent that exited (by SIGKILL,
        which others send too: unclear), or nothing ``moved`` for ``stall_s`` (or the
        deadline passed) after the runtime raised; a stall without an error is unclear."""
        mark, moved_at = moved(), self.clock()
        while names := waiting():
            if self.harness_errors:
                why = f"the harness failed: {self.harness_errors[0]}"
                return self.failed(stage, Cause.HARNESS, why, names)
            dead = next((a for a in self.pool.every if not a.alive), None)
            if dead is not None:
                killed = dead.code == -signal.SIGKILL and dead.worker not in self.runtime_errors
                tail = log_tail(dead.log)
                why = f"agent {dead.worker} exited during bring-up (code {dead.code})"
                why += f":\n{tail}" if tail else ""
                return self.failed(stage, Cause.UNCLEAR if killed else Cause.RUNTIME, why, names)
            now = self.clock()
            if moved() != mark:
                mark, moved_at = moved(), now
            stalled = now - moved_at >= stall_s
            if stalled or now >= deadline:
                what = "formed" if stage is Stage.FORM else "served an op"
                why = (
                    f"bring-up stalled: nothing moved for {stall_s:g} s"
                    if stalled
                    else f"bring-up did not finish within {self.timeout_s:g} s"
                )
                why += f": {len(names)} world(s) not {what} ({', '.join(names[:8])})"
                cause = Cause.RUNTIME if self.runtime_errors else Cause.UNCLEAR
                return self.failed(stage, cause, why, names, stall_s if stalled else None)
            self.pump(min(deadline, moved_at + stall_s))
        return None

    def failed(
        self,
        stage: Stage,
        cause: Cause,
        reason: str,
        waiting: list[str],
        stalled_s: float | None = None,
    ) -> BringUpFailed:
        """Stop the clock where bring-up failed and record why (a ``Bringup`` record): the
        judged interval is the bring-up's (from the workload's start, at the serve stage)."""
        now = self.clock()
        if self.recorder.t0 is None:
            self.recorder.start(self.go if self.go is not None else now)
        self.recorder.note(
            Bringup,
            mono=now,
            ok=False,
            stage=stage,
            cause=cause,
            reason=reason[:2000],
            waiting=tuple(waiting[:20]),
            stalled_s=stalled_s,
        )
        self.recorder.note(Phase, mono=now, name=PhaseName.STOP)
        return BringUpFailed(reason, cause)
