"""The replay's parts without processes: a fake clock, a pool whose agents are records.

The schedule (what happens when), confirmations (did it take, by when), the injector's
verbs (which signal to which incarnation, and what counts as confirmed), the recorder
and the wire codec are each driven directly; real processes are tests/real's business.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from mwsim.events import Kind
from mwsim.history import Fault, History, Joined, Op, Run, read_history
from mwsim.playback import END, START, Edge, actions, dispatch
from mwsim.replay import protocol as wire
from mwsim.replay.injector import HEAL_WITHIN_S, Injector
from mwsim.replay.pool import AgentPool, AgentProc
from mwsim.replay.recorder import Recorder
from mwsim.replay.schedule import Confirmations, Schedule
from mwsim.replay.signals import Waker
from mwsim.replay.worlds import Formation
from mwsim.testing import scenario


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


FAKE_SITE = object()  # the fake pool forks, signals and reaps nothing anywhere


class FakePool(AgentPool):
    """Agents are records; signals and stops are remembered, nothing is forked."""

    def __init__(self, logs: Path) -> None:
        self.waker_ = Waker()
        super().__init__(logs, self.waker_, {}, lambda agent: None)
        self.sent: list[tuple[str, int, int]] = []  # (worker, incarnation, signal)
        self.stopped: set[int] = set()
        self.pids = iter(range(1000, 2000))

    def spawn(self, boot: wire.Boot, host: str = "h0") -> AgentProc:
        incarnation = sum(1 for a in self.every if a.worker == boot.worker)
        pid = next(self.pids)
        agent = AgentProc(boot.worker, incarnation, pid, self.logs / "x.log", site=FAKE_SITE)
        self.current[boot.worker] = agent
        self.every.append(agent)
        self.by_pid[agent.pid] = agent
        return agent

    def start(self, *workers: str) -> None:
        for worker in workers:
            agent = self.spawn(boot(worker))
            agent.ready = True

    def signal(self, agent: AgentProc, signum: int) -> None:
        self.sent.append((agent.worker, agent.incarnation, signum))
        if signum == signal.SIGSTOP:
            self.stopped.add(agent.pid)
        elif signum == signal.SIGCONT:
            self.stopped.discard(agent.pid)

    def is_stopped(self, agent: AgentProc) -> bool:
        return agent.pid in self.stopped

    def reap(self, worker: str, code: int) -> None:
        self._exited(FAKE_SITE, self.current[worker].pid, code)


def boot(worker: str, at: float = 0.0) -> wire.Boot:
    return wire.Boot(worker, "/nowhere", "00", 1, "multiworld", "gloo", "cpu", "x", {})


SCENARIO = scenario(
    """
    topology: {generator: fan_in, workers: 3, hosts: 2}
    duration_s: 30
    events:
      - {at: 1.0, do: hang, target: w1, for_s: 4.0}
      - {at: 2.0, do: crash, target: w2}
      - {at: 3.0, do: join, worker: w2, worlds: {world2: [leader, w2]}}
      - {at: 4.0, do: slow, target: w2, delay_ms: 50, for_s: 2.0}
      - {at: 5.0, do: leave, target: w3}
      - {at: 9.0, do: crash_host, target: h0}
    """
)


def make_rig(tmp_path, s):
    """An injector of scenario ``s`` over a fake pool whose initial agents are up, and
    what it writes."""
    clock = FakeClock()
    pool = FakePool(tmp_path)
    pool.start(*s.plan.initial.workers())
    recorder = Recorder(tmp_path / "history.jsonl", clock)
    recorder.open()
    recorder.start(clock.now)
    confirmations = Confirmations(clock, recorder.record)
    injector = Injector(s.plan, pool, Formation(pool), recorder, confirmations, boot, clock)
    return injector, pool, clock, confirmations, recorder


@pytest.fixture
def rig(tmp_path):
    injector, pool, clock, confirmations, recorder = make_rig(tmp_path, SCENARIO)
    steps = {step.event.at: step for step in SCENARIO.plan.steps}
    yield injector, pool, clock, confirmations, recorder, steps
    recorder.close()
    pool.waker_.close()


def so_far(recorder: Recorder) -> History:
    """The history as a reader sees it while the run goes on (flushed at the turn's end)."""
    recorder.flush(now=True)
    return read_history(recorder.path)


def written(recorder: Recorder, kind: str) -> list[dict]:
    recorder.close()
    return [e.to_dict() for e in so_far(recorder) if e.kind == kind]


# -- schedule -----------------------------------------------------------------------------


def test_actions_come_in_time_order_with_ends_before_starts_at_one_instant():
    s = scenario(
        """
        topology: {generator: fan_in, workers: 2}
        duration_s: 10
        events:
          - {at: 3.0, do: crash, target: w2}
          - {at: 1.0, do: hang, target: w1, for_s: 2.0}
          - {at: 3.0, do: slow, target: w1, delay_ms: 10}
        """
    )
    got = [(a.at, a.edge, a.step.kind) for a in actions(s.plan.steps)]
    assert got == [
        (1.0, Edge.START, Kind.HANG),
        (3.0, Edge.END, Kind.HANG),  # the hang is over before anything else at 3 s
        (3.0, Edge.START, Kind.CRASH),  # then file order
        (3.0, Edge.START, Kind.SLOW),
    ]
    schedule = Schedule()
    schedule.add(actions(s.plan.steps))
    assert schedule.pop_due(0.9) is None and schedule.next_at() == 1.0
    assert schedule.pop_due(1.0).step.kind is Kind.HANG
    assert schedule.pop_due(2.99) is None
    assert [schedule.pop_due(3.0).edge for _ in range(3)] == [Edge.END, Edge.START, Edge.START]
    assert len(schedule) == 0 and schedule.next_at() is None


def test_every_kind_has_a_verb_and_every_lasting_kind_an_end():
    assert set(START) == set(Kind)
    assert set(END) == {k for k in Kind if k.info.lasting}

    class Recording:
        def __getattr__(self, verb):
            return lambda step: calls.append(verb)

    calls: list[str] = []
    for action in actions(SCENARIO.plan.steps):
        dispatch(action, Recording())
    assert calls == [
        "hang",
        "crash",
        "join",
        "slow",
        "resume",  # hang at 1 s for 4 s
        "leave",
        "restore",  # slow at 4 s for 2 s
        "crash",  # crash_host
    ]


# -- confirmations ------------------------------------------------------------------------


def test_a_confirmation_carries_the_instant_the_action_began_and_how_long_it_took():
    clock, written_ = FakeClock(10.0), []
    confirmations = Confirmations(clock, written_.append)
    done = [False]
    confirmations.expect(Fault(t=0.0, do="x", target="a"), 10.0, lambda: done[0], 2.0)
    clock.now = 10.5
    confirmations.settle()
    assert not written_ and confirmations and confirmations.deadline() == 12.0
    done[0] = True
    clock.now = 10.75
    confirmations.settle()
    assert written_ == [Fault(t=10.0, do="x", target="a", confirmed=True, confirm_s=0.75)]
    assert not confirmations and confirmations.deadline() is None


def test_no_confirmation_by_the_deadline_is_recorded_as_unconfirmed():
    clock, written_ = FakeClock(0.0), []
    confirmations = Confirmations(clock, written_.append)
    confirmations.expect(Fault(t=5.0, do="x", target="a"), 0.0, lambda: False, 2.0)
    clock.now = 1.99
    confirmations.settle()
    assert not written_
    clock.now = 2.0
    confirmations.settle()
    assert written_ == [Fault(t=0.0, do="x", target="a", confirmed=False)]
    assert written_[0].to_dict() == {
        "t": 0.0,
        "kind": "fault",
        "do": "x",
        "target": "a",
        "confirmed": False,
    }


# -- the injector's verbs -----------------------------------------------------------------


def test_crash_kills_the_process_group_and_is_confirmed_only_by_sigkill(rig):
    injector, pool, clock, confirmations, recorder, steps = rig
    injector.crash(steps[2.0])
    assert pool.sent == [("w2", 0, signal.SIGKILL)]
    assert pool.current["w2"].expect_exit == Kind.CRASH
    clock.now += 0.01
    confirmations.settle()
    assert confirmations  # not dead yet
    pool.reap("w2", -signal.SIGKILL)
    clock.now += 0.01
    confirmations.settle()
    (fault,) = written(recorder, "fault")
    assert fault["do"] == "crash" and fault["confirmed"] is True and fault["confirm_s"] == 0.02


def test_a_crash_that_exits_otherwise_is_not_confirmed(rig):
    injector, pool, clock, confirmations, recorder, steps = rig
    injector.crash(steps[2.0])
    pool.reap("w2", 1)  # died, but not by our SIGKILL
    clock.now += Kind.CRASH.info.confirm_within_s
    confirmations.settle()
    (fault,) = written(recorder, "fault")
    assert fault["confirmed"] is False


def test_hang_is_confirmed_by_the_stopped_state_and_resume_by_running_again(rig):
    injector, pool, _clock, confirmations, recorder, steps = rig
    injector.hang(steps[1.0])
    confirmations.settle()
    injector.resume(steps[1.0])
    confirmations.settle()
    assert pool.sent == [("w1", 0, signal.SIGSTOP), ("w1", 0, signal.SIGCONT)]
    (fault,) = written(recorder, "fault")
    (resumed,) = [e for e in so_far(recorder) if e.kind == "resumed"]
    assert fault["confirmed"] is True and fault["for_s"] == 4.0
    assert resumed["confirmed"] is True and resumed["do"] == "hang"


def test_the_end_of_a_hang_leaves_a_dead_or_replaced_worker_alone(rig):
    injector, pool, _clock, _confirmations, _recorder, steps = rig
    hang = steps[1.0]
    injector.hang(hang)
    pool.reap("w1", -signal.SIGKILL)  # died while hung
    injector.resume(hang)
    assert pool.sent == [("w1", 0, signal.SIGSTOP)]
    pool.spawn(boot("w1"))  # a new incarnation under the same name
    injector.resume(hang)
    assert pool.sent == [("w1", 0, signal.SIGSTOP)]


def test_the_end_of_a_slow_acts_on_the_incarnation_it_began_on(rig):
    injector, pool, clock, confirmations, recorder, steps = rig
    injector.crash(steps[2.0])
    pool.reap("w2", -signal.SIGKILL)
    injector.join(steps[3.0])  # w2, incarnation 1, held until ready
    joined = pool.current["w2"]
    assert joined.incarnation == 1 and [type(m) for m in joined.held] == [wire.Start]
    slow = steps[4.0]
    injector.slow(slow)
    assert isinstance(joined.held[-1], wire.SetDelay) and joined.held[-1].delay_ms == 50
    joined.acks[wire.ack_of(joined.held[-1])] += 1  # the agent acknowledged it
    clock.now += 0.1
    confirmations.settle()
    injector.restore(slow)
    assert joined.held[-1] == wire.SetDelay(0.0, None)
    joined.acks[wire.ack_of(joined.held[-1])] += 1
    confirmations.settle()
    kinds = [(e.kind, e.get("do"), e.get("confirmed")) for e in so_far(recorder)]
    assert ("fault", "slow", True) in kinds and ("resumed", "slow", True) in kinds


def test_a_leave_must_end_in_exit_status_zero_within_its_deadline(rig):
    injector, pool, clock, confirmations, recorder, steps = rig
    injector.leave(steps[5.0])
    w3 = pool.current["w3"]
    assert w3.held[-1] == wire.Leave() and w3.expect_exit == Kind.LEAVE and not pool.sent
    clock.now += Kind.LEAVE.info.confirm_within_s - 0.01
    confirmations.settle()
    assert confirmations
    pool.reap("w3", 0)
    confirmations.settle()
    (fault,) = written(recorder, "fault")
    assert fault["confirmed"] is True


def test_a_host_crash_kills_every_worker_of_the_host_and_names_them(rig):
    injector, pool, _clock, confirmations, recorder, steps = rig
    host_crash = steps[9.0]
    assert host_crash.workers == ("leader", "w2")
    injector.crash(host_crash)
    assert {(w, s) for w, _, s in pool.sent} == {("leader", signal.SIGKILL), ("w2", signal.SIGKILL)}
    pool.reap("leader", -9)
    pool.reap("w2", -9)
    confirmations.settle()
    (fault,) = written(recorder, "fault")
    assert fault["workers"] == ["leader", "w2"] and fault["confirmed"] is True


def test_a_fault_on_a_process_that_is_gone_is_recorded_unconfirmed_at_once(rig):
    injector, pool, _clock, confirmations, recorder, steps = rig
    pool.reap("w2", -9)
    injector.crash(steps[2.0])
    assert not pool.sent and not confirmations
    (fault,) = written(recorder, "fault")
    assert fault["confirmed"] is False and "no longer running" in fault["detail"]


def test_heals_are_confirmed_within_their_own_deadline(rig):
    injector, pool, clock, confirmations, recorder, steps = rig
    injector.hang(steps[1.0])
    confirmations.settle()
    pool.stopped.add(pool.current["w1"].pid)
    injector.resume(steps[1.0])
    pool.stopped.add(pool.current["w1"].pid)  # SIGCONT did not take
    clock.now += HEAL_WITHIN_S
    confirmations.settle()
    (resumed,) = [e for e in so_far(recorder) if e.kind == "resumed"]
    assert resumed["confirmed"] is False


# -- teardown, recorder, wire -------------------------------------------------------------


def test_teardown_kills_and_continues_every_live_agent_once(tmp_path):
    pool = FakePool(tmp_path)
    pool.start("a", "b", "c")
    pool.reap("b", 0)
    pool.current["c"].expect_exit = "crash"
    killed = pool.kill_all("teardown")
    assert [a.worker for a in killed] == ["a", "c"]
    assert pool.sent == [
        ("a", 0, signal.SIGKILL),
        ("a", 0, signal.SIGCONT),
        ("c", 0, signal.SIGKILL),
        ("c", 0, signal.SIGCONT),
    ]
    assert pool.current["a"].expect_exit == "teardown" and pool.current["c"].expect_exit == "crash"
    pool.waker_.close()


def test_commands_wait_for_an_agent_to_be_ready_and_are_dropped_once_it_is_dead(tmp_path):
    pool = FakePool(tmp_path)
    agent = pool.spawn(boot("a"))
    pool.command("a", wire.Start(1.0))
    assert agent.held == [wire.Start(1.0)]
    pool.reap("a", -9)
    pool.command("a", wire.Exit())
    assert agent.held == [wire.Start(1.0)] and not agent.alive
    pool.waker_.close()


def test_the_recorder_holds_bring_up_until_t0_and_stamps_relative_to_it(tmp_path):
    clock = FakeClock(50.0)
    recorder = Recorder(tmp_path / "h.jsonl", clock)
    recorder.open()
    recorder.note(Run, scenario="x", mode="real")
    recorder.record(Joined(t=50.5, world="w", worker="a"))
    assert recorder.held and not (tmp_path / "h.jsonl").read_text()
    recorder.start(51.0)
    recorder.record(Op(t=52.25, world="w", worker="a", seq=0, ok=True))
    recorder.close()
    events = read_history(tmp_path / "h.jsonl")
    assert [(e.kind, e.t) for e in events] == [("run", -1.0), ("joined", -0.5), ("op", 1.25)]
    assert recorder.counts["ops"] == 1


@pytest.mark.parametrize(
    "message",
    [
        wire.InitWorld("w", 1, 0, ["a", "b"]),
        wire.InitWorld("w", 0, 1, ["a", "b"], 4000, "198.18.0.1"),
        wire.Start(1.5),
        wire.SetDelay(20.0, None),
        wire.RemoveWorld("w"),
        wire.Leave(),
        wire.Stop(),
        wire.Exit(),
        wire.Hello("a", 7),
        wire.Ready(),
        wire.Port("w", 0, 4000, "198.18.0.1"),
        wire.Events((Op(t=1.0, world="w", worker="a", seq=0, ok=True),)),
        wire.Ack("set_delay"),
        wire.Stopped(),
        wire.Fatal("boom"),
    ],
)
def test_wire_messages_round_trip_as_json(message):
    assert wire.decode(json.loads(json.dumps(wire.encode(message)))) == message


@pytest.mark.parametrize(
    ("data", "why"),
    [
        ([1, 2], "malformed"),
        ({"kind": "op"}, "malformed"),
        ({"type": "explode"}, "malformed"),
        ({"type": "start", "t0": 1.0, "extra": 2}, "unknown fields"),
        ({"type": "port", "world": "w"}, "malformed port"),
    ],
)
def test_anything_but_a_known_message_is_refused(data, why):
    with pytest.raises(ValueError, match=why):
        wire.decode(data)


# -- the harness watching itself ----------------------------------------------------------


def test_the_cpu_watch_reports_saturation_from_pressure_or_busy_ticks(tmp_path, monkeypatch):
    from mwsim.replay import lag

    psi, stat = tmp_path / "cpu", tmp_path / "stat"
    monkeypatch.setattr(lag, "PSI", psi)
    monkeypatch.setattr(lag, "STAT", stat)
    psi.write_text("some avg10=0 avg60=0 avg300=0 total=1000000\nfull total=0\n")
    stat.write_text("cpu  100 0 100 800 0 0 0 0 0 0\n")
    watch = lag.CpuWatch()
    assert watch.sample(10.0) is None  # the first sample only starts the count
    psi.write_text("some avg10=0 avg60=0 avg300=0 total=1100000\n")  # 0.1 s waited
    assert watch.sample(10.2) is None  # sooner than CPU_SAMPLE_S: not sampled
    assert watch.sample(11.0) is None  # 0.1 of 1 s: not saturated
    psi.write_text("some avg10=0 avg60=0 avg300=0 total=1500000\n")  # 0.4 s of 0.5 s
    got = watch.sample(11.5)
    assert got is not None and got["source"] == "cpu" and got["share"] == 0.8
    assert got["lag_s"] == 0.5 and "waited for a CPU 80%" in got["detail"]
    # no pressure information: the CPUs' busy share (steal counted busy)
    psi.unlink()
    watch = lag.CpuWatch()
    assert watch.sample(0.0) is None
    stat.write_text("cpu  190 0 100 810 0 0 0 80 0 0\n")  # 170 of 180 jiffies busy
    got = watch.sample(1.0)
    assert got is not None and got["share"] == 0.94 and "the CPUs were busy" in got["detail"]


def test_the_agents_poll_period_is_the_one_the_model_judges_by(tmp_path):
    from mwsim.replay.controller import Controller
    from mwsim.testing import scenario
    from mwsim.timing import model_for, sized

    for workers in (3, 255):
        s = scenario(f"topology: {{generator: fan_in, workers: {workers}}}")
        controller = Controller(s, tmp_path / str(workers), network="loopback")
        controller.waker.close()  # never started: nothing else to stop
        assert controller.watch_s == sized(model_for("multiworld"), s).poll_s


# -- GPU faults ---------------------------------------------------------------------------

GPU_SCENARIO = scenario(
    """
    topology: {generator: fan_in, workers: 2}
    backend: nccl
    duration_s: 30
    events:
      - {at: 1.0, do: gpu_hang, target: w1, for_s: 2.0}
      - {at: 2.0, do: gpu_slow, target: w2, factor: 4, for_s: 1.0}
      - {at: 4.0, do: gpu_error, target: w1}
    """
)


def test_a_gpu_fault_is_a_command_the_agent_acknowledges_once_its_gpu_shows_it(tmp_path):
    injector, pool, clock, confirmations, recorder = make_rig(tmp_path, GPU_SCENARIO)
    for action in actions(GPU_SCENARIO.plan.steps):
        dispatch(action, injector)
    held = {w: pool.current[w].held for w in ("w1", "w2")}
    assert [(m.do, m.ending, m.for_s) for m in held["w1"]] == [
        ("gpu_hang", False, 2.0),
        ("gpu_hang", True, 2.0),
        ("gpu_error", False, None),
    ]
    assert [(m.do, m.ending, m.factor) for m in held["w2"]] == [
        ("gpu_slow", False, 4.0),
        ("gpu_slow", True, 4.0),
    ]
    for worker, messages in held.items():  # each shown, but w1's failed GPU never
        for message in messages:
            if message.do != Kind.GPU_ERROR.value:
                pool.current[worker].acks[wire.ack_of(message)] += 1
    clock.now += 10
    confirmations.settle()
    faults = {e["do"]: e["confirmed"] for e in written(recorder, "fault")}
    assert faults == {"gpu_hang": True, "gpu_slow": True, "gpu_error": False}
    pool.waker_.close()


def test_gpu_faults_on_a_device_that_is_no_gpu_are_never_confirmed():
    import asyncio

    from mwsim.replay.gpufaults import GpuFaults

    gpu = GpuFaults("cpu")
    for kind in (Kind.GPU_HANG, Kind.GPU_ERROR, Kind.GPU_SLOW):
        assert asyncio.run(gpu.act(kind, False, 1.0, 4.0)) is False
    gpu.after_op(0.5)  # nothing to stretch
    assert gpu.factor == 1.0


def test_the_gpu_fault_command_crosses_the_wire():
    message = wire.GpuFault(Kind.GPU_SLOW.value, True, None, 4.0)
    assert wire.decode(json.loads(json.dumps(wire.encode(message)))) == message


def test_the_socket_directory_of_a_dead_controller_is_cleaned_and_live_ones_are_kept(tmp_path):
    import os
    import subprocess
    import sys

    from mwsim.replay.pool import HOME_PREFIX, ZYGOTE_HOME_PREFIX, clean_dead_homes

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid now belongs to nobody (or to a newer process)
    dead = tmp_path / f"{HOME_PREFIX}{gone.pid}-abc"
    dead_logs = tmp_path / f"{ZYGOTE_HOME_PREFIX}{gone.pid}-xyz"  # a pytest session's
    live = tmp_path / f"{HOME_PREFIX}{os.getpid()}-def"
    foreign = tmp_path / f"{HOME_PREFIX}nopid"
    for path in (dead, dead_logs, live, foreign):
        path.mkdir()
    assert clean_dead_homes(tmp_path) == [str(dead), str(dead_logs)]
    assert not dead.exists() and not dead_logs.exists()
    assert live.exists() and foreign.exists()
