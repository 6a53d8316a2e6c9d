"""The replay's ``Executor``: each verb of :mod:`mwsim.playback` done to real processes.

Faults are real signals to real process groups (or commands the agent acts on), and each
is confirmed the way the vocabulary says (``Confirm``): from the kernel's view of the
process (killed, stopped, running again, exited 0) or the agent's acknowledgement. An
action's record carries the instant it began; its confirmation, or the lack of one by
its deadline, is written by ``Confirmations``. A lasting fault's end acts only on the
incarnation it began on: a worker that died or was replaced meanwhile is left alone.

Network faults are kernel work (nft, tc, iptables, the delay daemon: up to a second for a
degraded link), done on a few worker threads so that the controller's loop, and the
other actions, keep their times; a fault's end waits for its own start.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from mwsim.events import Confirm, Degrade, GpuSlow, Partition, Slow
from mwsim.history import Fault, Resumed, Scale
from mwsim.hosts.netfaults import NetFaults
from mwsim.membership import Plan, Step
from mwsim.replay import protocol as wire
from mwsim.replay.pool import AgentPool, AgentProc
from mwsim.replay.recorder import Clock, Recorder
from mwsim.replay.schedule import Confirmations
from mwsim.replay.worlds import Formation

HEAL_WITHIN_S = 2.0


class Injector:
    """Acts on the live deployment for each step of the plan (``plan`` may grow)."""

    def __init__(
        self,
        plan: Plan,
        pool: AgentPool,
        formation: Formation,
        recorder: Recorder,
        confirmations: Confirmations,
        boot: Callable[[str, float], wire.Boot],
        clock: Clock,
        net: NetFaults | None = None,
    ) -> None:
        self.plan = plan
        self.pool = pool
        self.formation = formation
        self.recorder = recorder
        self.confirmations = confirmations
        self.boot = boot
        self.clock = clock
        self.net = net  # None where hosts share loopback (no network event gets here)
        self.kernel = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mwsim-kernel")
        self.applying: dict[str, Future[bool]] = {}  # network faults by key

    # -- finding the processes -----------------------------------------------------------

    def _targets(self, step: Step) -> list[AgentProc] | None:
        """The live agents a fault acts on; None (recorded unconfirmed) when none is left."""
        victims = self.pool.alive(step.workers)
        if not victims:
            detail = "the process was no longer running"
            self.recorder.note(Fault, **step.record(), confirmed=False, detail=detail)
            return None
        return victims

    def _same_incarnation(self, step: Step) -> AgentProc | None:
        """The live agent a lasting step acted on (None: it died or was replaced since)."""
        name = step.event.subject
        agent = self.pool.current.get(name)
        wanted = self.plan.worker(name, step.event.at).incarnation
        return agent if agent is not None and agent.alive and agent.incarnation == wanted else None

    # -- confirming ----------------------------------------------------------------------

    def _check(
        self, how: Confirm, agents: list[AgentProc], ending: bool, ack: str = ""
    ) -> Callable[[], bool]:
        """What the kernel or the agent must show for an action (or its end) to count."""
        if how is Confirm.KILLED:
            return lambda: all(a.code == -signal.SIGKILL for a in agents)
        if how is Confirm.EXITED:
            return lambda: all(a.code == 0 for a in agents)
        if how is Confirm.STOPPED and ending:
            return lambda: not any(self.pool.is_stopped(a) for a in agents)
        if how is Confirm.STOPPED:
            return lambda: all(self.pool.is_stopped(a) for a in agents)
        if how is Confirm.ACKED:  # each agent acknowledged this command (``ack``) once more
            before = [a.acks[ack] for a in agents]
            return lambda: all(a.acks[ack] > n for a, n in zip(agents, before, strict=True))
        raise ValueError(f"the replay has nothing to confirm for {how}")

    def _expect(
        self,
        step: Step,
        agents: list[AgentProc],
        began: float,
        ending: bool = False,
        ack: str = "",
    ) -> None:
        info = step.event.info
        check = self._check(info.confirm, agents, ending, ack)
        if ending:
            self.confirmations.expect(_resumed(step), began, check, HEAL_WITHIN_S)
        else:
            self.confirmations.expect(_fault(step), began, check, info.confirm_within_s)

    def _kernel(
        self,
        step: Step,
        apply: Callable[[NetFaults], bool],
        ending: bool = False,
        then: Callable[[], bool] = lambda: True,
    ) -> None:
        """Apply a network fault (or undo it) in the kernel, off the controller's loop; it
        counts once the kernel's state reads back as asked (and ``then()`` holds)."""
        began = self.clock()
        net = self.net
        assert net is not None, "network faults need emulated hosts"
        key = _key(step)
        record = _resumed(step) if ending else _fault(step)
        failed: list[str] = []  # why a tool failed (written from the kernel's thread)
        start = self.applying.get(key) if ending else None

        def work() -> bool:
            if start is not None:
                start.exception()  # an undo waits for its own start, however it ended
            try:
                return apply(net)
            except RuntimeError as exc:  # a tool failed: recorded unconfirmed, with why
                failed.append(str(exc)[-300:])
                return False

        done = self.kernel.submit(work)
        if not ending:
            self.applying[key] = done

        def confirmed() -> bool:
            return done.done() and done.exception() is None and done.result() and then()

        def why_not() -> dict[str, object]:
            return {"detail": failed[0]} if failed else {}

        within = step.event.info.confirm_within_s  # an undo is the same kernel work
        self.confirmations.expect(record, began, confirmed, within, why_not)

    def close(self) -> None:
        """Wait for kernel work under way (the teardown removes what it did)."""
        self.kernel.shutdown(wait=True)

    def _signal(self, step: Step, signum: int, *, ends: bool) -> None:
        began = self.clock()  # before any signal: reports may follow at once
        victims = self._targets(step)
        if victims is None:
            return
        for agent in victims:
            if ends:
                agent.expect_exit = step.kind
            self.pool.signal(agent, signum)
        self._expect(step, victims, began)

    # -- the verbs -----------------------------------------------------------------------

    def crash(self, step: Step) -> None:
        self._signal(step, signal.SIGKILL, ends=True)

    def hang(self, step: Step) -> None:
        self._signal(step, signal.SIGSTOP, ends=False)

    def resume(self, step: Step) -> None:
        began = self.clock()
        agent = self._same_incarnation(step)
        if agent is not None:
            self.pool.signal(agent, signal.SIGCONT)
            self._expect(step, [agent], began, ending=True)

    def leave(self, step: Step) -> None:
        """The agent acknowledges the command at once (``delivered``); the leave itself,
        up to the exit, is the runtime's to complete (confirmed by exit status 0)."""
        began = self.clock()
        victims = self._targets(step)
        if victims is None:
            return
        ack = wire.ack_of(wire.Leave())
        acks = [a.acks[ack] for a in victims]
        for agent in victims:
            agent.expect_exit = step.kind
            self.pool.command(agent.worker, wire.Leave())

        def why_not() -> dict[str, object]:
            delivered = all(a.acks[ack] > n for a, n in zip(victims, acks, strict=True))
            return {"delivered": delivered, "code": next((a.code for a in victims), None)}

        check = self._check(Confirm.EXITED, victims, ending=False)
        within = step.event.info.confirm_within_s
        self.confirmations.expect(_fault(step), began, check, within, why_not)

    def slow(self, step: Step) -> None:
        began, event, t0 = self.clock(), step.event, self.recorder.t0
        assert isinstance(event, Slow) and t0 is not None
        victims = self._targets(step)
        if victims is None:
            return
        until = None if event.for_s is None else t0 + event.at + event.for_s
        command = wire.SetDelay(event.delay_ms, until)
        self._expect(step, victims, began, ack=wire.ack_of(command))  # acks before it
        for agent in victims:
            self.pool.command(agent.worker, command)

    def restore(self, step: Step) -> None:
        began = self.clock()
        agent = self._same_incarnation(step)
        if agent is not None:
            command = wire.SetDelay(0.0, None)
            self._expect(step, [agent], began, ending=True, ack=wire.ack_of(command))
            self.pool.command(agent.worker, command)

    def join(self, step: Step) -> None:
        t0 = self.recorder.t0
        assert t0 is not None
        self.recorder.note(Scale, **step.record())
        host = self.plan.worker(step.event.subject, step.event.at).host
        agent = self.pool.spawn(self.boot(step.event.subject, step.event.at), host)
        self.pool.command(agent.worker, wire.Start(t0))
        lives = self.plan.formed_by(step)

        def form() -> None:  # unless it was told to go before it was up
            if agent.expect_exit is None:
                for life in lives:
                    self.formation.form(life)

        agent.on_ready.append(form)

    def add_world(self, step: Step) -> None:
        self.recorder.note(Scale, **step.record())
        for life in self.plan.formed_by(step):
            self.formation.form(life)

    def remove_world(self, step: Step) -> None:
        self.recorder.note(Scale, **step.record())
        for member in step.workers:
            self.pool.command(member, wire.RemoveWorld(step.event.subject))

    def partition(self, step: Step) -> None:
        event = step.event
        assert isinstance(event, Partition)
        sides, reset = event.sides(), event.mode == "reset"
        self._kernel(
            step, lambda net: net.partition(_key(step), sides, one_way=event.one_way, reset=reset)
        )

    def heal(self, step: Step) -> None:
        self._kernel(step, lambda net: net.undo(_key(step)), ending=True)

    def degrade(self, step: Step) -> None:
        event = step.event
        assert isinstance(event, Degrade)
        knobs = {
            "delay_ms": event.delay_ms or 0.0,
            "jitter_ms": event.jitter_ms or 0.0,
            "loss_pct": event.loss_pct or 0.0,
            "rate_mbit": event.rate_mbit or 0.0,
        }
        self._kernel(step, lambda net: net.degrade(_key(step), event.target, **knobs))

    def repair(self, step: Step) -> None:
        self._kernel(step, lambda net: net.undo(_key(step)), ending=True)

    # -- GPU faults: commands the agent acts on, acknowledged once its GPU shows them ----

    def _gpu(self, step: Step, ending: bool = False) -> None:
        began, event = self.clock(), step.event
        if ending:
            agent = self._same_incarnation(step)
            victims = [agent] if agent is not None else None
        else:
            victims = self._targets(step)
        if victims is None:
            return
        factor = event.factor if isinstance(event, GpuSlow) else 1.0
        command = wire.GpuFault(step.kind.value, ending, event.lasts(), factor)
        self._expect(step, victims, began, ending, wire.ack_of(command))  # acks before it
        for agent in victims:
            self.pool.command(agent.worker, command)

    def gpu_hang(self, step: Step) -> None:
        self._gpu(step)

    def gpu_resume(self, step: Step) -> None:
        self._gpu(step, ending=True)

    def gpu_error(self, step: Step) -> None:
        self._gpu(step)

    def gpu_slow(self, step: Step) -> None:
        self._gpu(step)

    def gpu_restore(self, step: Step) -> None:
        self._gpu(step, ending=True)

    def power_off(self, step: Step) -> None:
        """The link goes down first (so no reset leaves the host), then every process on
        it is killed; confirmed when the link reads back down and all were SIGKILLed."""
        victims = self._targets(step)
        if victims is None:
            return
        for agent in victims:
            agent.expect_exit = step.kind

        def off(net: NetFaults) -> bool:
            down = net.power_off(step.event.subject)
            for agent in victims:
                self.pool.signal(agent, signal.SIGKILL)
            return down

        self._kernel(step, off, then=self._check(Confirm.KILLED, victims, ending=False))


def _key(step: Step) -> str:
    """The name a network fault's rules carry in the kernel (unique in a run)."""
    return f"e{step.index}"


def _fault(step: Step) -> Fault:
    """The record of a step's fault (stamped and confirmed when decided)."""
    return Fault.of(0.0, **step.record())


def _resumed(step: Step) -> Resumed:
    """The record of a lasting fault's end (stamped and confirmed when decided)."""
    return Resumed(t=0.0, do=step.kind.value, target=step.event.subject)
