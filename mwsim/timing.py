"""Timing parameters of a runtime, in one place: what the simulator predicts and the
checkers' default bounds come from. Neither the checks nor the simulator own it: both
read it.

``MODELS["multiworld"]`` holds values measured on a 2-core gloo machine with ``mwsim
calibrate`` (see the model table in docs/model.md); ``calibrate`` refits them from real runs and
``RuntimeModel.load`` reads a fitted file. The model describes a *correct* MultiWorld:
every runtime under test is judged against it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from mwsim.events import Kind

if TYPE_CHECKING:
    from mwsim.membership import Step, WorldLife
    from mwsim.scenario import Scenario


@dataclass(frozen=True)
class RuntimeModel:
    """How long things take in a runtime (seconds)."""

    op_latency_s: float = 0.0005  # a tensor from send to receipt
    #: serve: a request crossing one world, send to receipt through MultiWorld's per-call
    #: thread pools (gloo, 2 cores: a fan-in round trip's p50 3.2 ms, a 3-stage
    #: pipeline's 6.6 ms, four crossings)
    hop_s: float = 0.0016
    fail_s: float = 0.01  # an op on a closed connection raising
    kill_s: float = 0.02  # SIGKILL to the process being gone
    init_s: float = 0.01  # live processes forming a new world
    spawn_s: float = 0.1  # a joining worker's process up (forked from the warm zygote)
    leave_s: float = 0.03  # a leaving worker's exit after the command
    tick_s: float = 0.3  # watchdog tick into each world's store
    check_every: int = 10  # ticks per liveness check
    poll_s: float = 0.02  # the agent's broken-world poll
    rto_min_s: float = 0.2  # TCP's least retransmission timeout (Linux)
    rto_max_s: float = 120.0  # ... and its greatest
    slack_s: float = 0.75  # added to each predicted window's upper end (loaded machines)
    progress_window_s: float = 2.0  # default: a healthy world completes an op this often
    join_bound_s: float = 3.0  # default: a joining worker's world serves its first op by then
    add_world_bound_s: float = 2.0  # default: an added world serves its first op by then
    remove_bound_s: float = 1.0  # ... and a removed world is left by every member (+ 2 intervals)
    form_stall_s: float = 10.0  # bring-up: no agent up and no member joined for this long: stuck
    source: str = "defaults measured with mwsim calibrate (gloo, 2 cores)"

    @property
    def check_s(self) -> float:
        """Time between two liveness checks of the watchdog."""
        return self.tick_s * self.check_every

    def watchdog_window(self) -> tuple[float, float]:
        """Delay after a peer goes silent until the watchdog flags it and the member's
        agent sees it at its next poll of the broken-world query: [lo, hi]."""
        hi = 2 * self.check_s + self.tick_s + self.poll_s + self.slack_s
        return self.check_s - self.tick_s, hi

    def store_window(self) -> tuple[float, float]:
        """Delay after a world's store host dies until a member's next tick fails (and its
        agent's next poll sees it)."""
        return 0.0, self.tick_s + self.fail_s + self.poll_s + self.slack_s

    def op_window(self, interval_s: float) -> tuple[float, float]:
        """Delay until the next op on a broken connection raises."""
        return 0.0, 2 * interval_s + self.fail_s + self.poll_s + self.slack_s

    def resume_after(self, outage_s: float) -> float:
        """How long after a silent outage of ``outage_s`` ends TCP sends again: its
        retransmissions back off (RTO, 2 RTO, 4 RTO, ...) and the first one after the
        outage gets through, so the wait grows with the outage."""
        sent, rto = 0.0, self.rto_min_s
        while sent < outage_s:
            sent, rto = sent + rto, min(2 * rto, self.rto_max_s)
        return sent - outage_s

    def recovery_bound(self, outage_s: float, interval_s: float) -> float:
        """By when, after a heal, a world that was not reported broken serves again."""
        return outage_s + self.rto_min_s + 2 * interval_s + self.slack_s

    def serve_stall_s(self, window_s: float) -> float:
        """Bring-up: how long formed worlds may go without one more serving its first op
        before the deployment is taken not to serve; a run cut there misses a progress
        window of ``window_s`` by more than a window, so a lag shorter than that cannot
        excuse it."""
        return 2 * window_s + self.slack_s

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> RuntimeModel:
        data = json.loads(Path(path).read_text())
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"{path}: unknown model parameters: {', '.join(sorted(unknown))}")
        return replace(cls(), **data)


MODELS: dict[str, RuntimeModel] = {"multiworld": RuntimeModel()}


def model_for(runtime: str) -> RuntimeModel:
    """The model a runtime is judged against: its own if it has one, else MultiWorld's."""
    return MODELS.get(runtime, MODELS["multiworld"])


#: Up to this many worker processes, each agent asks its runtime's broken-world query every
#: ``poll_s``; in bigger deployments proportionally less often, so that the machine wakes
#: agents about as often in all (256 agents polling every 20 ms kept a 2-core machine's CPU
#: saturated: bench/results.md, "The real replay's capacity, second look").
POLL_PROCESSES = 32


def poll_period(model: RuntimeModel, processes: int) -> float:
    """How often an agent polls the broken-world query in a deployment of ``processes``."""
    return model.poll_s * max(1.0, processes / POLL_PROCESSES)


def sized(model: RuntimeModel, scenario: Scenario) -> RuntimeModel:
    """``model`` for the scenario's deployment size (its agents' poll period)."""
    poll = poll_period(model, len(scenario.plan.workers))
    return model if poll == model.poll_s else replace(model, poll_s=poll)


def progress_window(model: RuntimeModel, scenario: Scenario) -> float:
    """How often a healthy world of ``scenario`` must complete an op: its ``expect``, else
    the model's window (at least ten intervals)."""
    interval = scenario.workload.interval_ms / 1000
    return scenario.expect.progress_window_s or max(model.progress_window_s, 10 * interval)


def talks(workload: str, rank_a: int, rank_b: int) -> bool:
    """Do two ranks exchange data directly in this workload (so a dead peer fails an op)?"""
    return workload == "allreduce" or 0 in (rank_a, rank_b)


class Mechanism(StrEnum):
    """How a surviving member notices that a world broke."""

    OP = "an op on the broken connection"
    STORE = "the world's store went away"
    WATCHDOG = "the watchdog saw no ticks"


@dataclass(frozen=True)
class Window:
    """When a survivor must see a faulty member, relative to the fault, and how."""

    lo: float
    hi: float
    how: Mechanism


def detection_window(
    model: RuntimeModel,
    workload: str,
    interval_s: float,
    silent: bool,
    survivor_rank: int,
    faulty_rank: int,
) -> Window:
    """The window of the fastest mechanism by which a survivor sees a faulty member (or,
    for a partition, one across the cut).

    A dead or reset peer fails the next op that touches it; a dead rank 0 takes the
    world's store with it, failing the next watchdog tick; anything silent (a hang, a
    powered-off host, a dropping partition) is left to the watchdog.
    """
    options: list[Window] = []
    if not silent:
        if talks(workload, survivor_rank, faulty_rank):
            options.append(Window(*model.op_window(interval_s), Mechanism.OP))
        if faulty_rank == 0:
            options.append(Window(*model.store_window(), Mechanism.STORE))
    options.append(Window(*model.watchdog_window(), Mechanism.WATCHDOG))
    best = min(options, key=lambda o: o.hi)
    return Window(min(o.lo for o in options), best.hi, best.how)


def failing_peers(step: Step, life: WorldLife, noticed: str | None = None) -> dict[int, list[int]]:
    """For a step that breaks ``life``: each member (rank) that must notice, with the ranks
    of the members whose loss it notices (the failed ones, or those across a cut). By the
    kind's ``noticed`` (or ``noticed`` given): the other members, the faulty one itself (it
    notices the loss of all the others: its own ops fail), or nobody."""
    members = life.members
    noticed = noticed or step.event.info.noticed
    if noticed == "none":
        return {}
    if step.cut:
        across = step.cut.get(life.name, {})
        return {
            members.index(m): [members.index(o) for o in others]
            for m, others in across.items()
            if m in members
        }
    bad = [members.index(m) for m in members if m in step.workers]
    rest = [rank for rank in range(len(members)) if rank not in bad]
    if noticed == "self":
        return {rank: rest for rank in bad} if rest else {}
    return {rank: bad for rank in rest} if bad else {}


#: The least quiet time after a scenario's last event (ops must be seen flowing again).
MIN_TAIL_S = 2.0


def judged_end(scenario: Scenario, margin_s: float = 0.5, min_tail_s: float = MIN_TAIL_S) -> float:
    """How long a run must last for every bound of its events to fall inside it: the last
    detection deadline (from the runtime model) or join bound, plus a margin."""
    model = model_for(scenario.runtime)
    interval = scenario.op_interval_s
    p = scenario.plan
    end = max((step.event.at for step in p.steps), default=0.0) + min_tail_s
    for step in p.steps:
        ev = step.event
        if ev.kind is Kind.JOIN:
            end = max(end, ev.at + model.join_bound_s)
        elif ev.kind is Kind.ADD_WORLD:
            end = max(end, ev.at + model.add_world_bound_s)
        lasts = ev.lasts()
        if ev.kind is Kind.PARTITION and lasts is not None:  # a heal: recovery must show
            end = max(end, ev.at + lasts + model.recovery_bound(lasts, interval))
        if not ev.info.breaks:
            continue
        for life in p.worlds:
            if step.index != life.end_event and all(x.event != step.index for x in life.spans):
                continue
            for rank, others in failing_peers(step, life).items():
                silent = ev.silent_to(p.worker(life.members[rank], ev.at).host)
                hi = min(
                    detection_window(
                        model, scenario.workload.kind, interval, silent, rank, other
                    ).hi
                    for other in others
                )
                end = max(end, ev.at + hi)
    return round(end + margin_s, 1)
