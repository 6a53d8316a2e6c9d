"""One way to play a plan, for both executors: the simulator and the real replay.

A plan becomes a list of ``Action``s: each step's start at its time and, for a lasting
event with ``for_s``, its end. ``dispatch`` calls the executor's verb for an action.
The two executors differ only in their clock (simpy's virtual one, the wall clock), as
simpy's ``Environment`` and ``RealtimeEnvironment`` do: the model and the replay cannot
drift apart through the code layout.

Ties: at one instant, ends come before starts (as in the membership timeline, where a
hang ending at ``t`` no longer blocks an event at ``t``), then file order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Protocol

from mwsim.events import Kind
from mwsim.membership import Step


class Executor(Protocol):
    """What the simulator and the replay controller both do with a plan's steps."""

    def crash(self, step: Step) -> None:
        """Kill the step's workers (a crash or a host crash)."""

    def hang(self, step: Step) -> None:
        """Stop the target's process."""

    def resume(self, step: Step) -> None:
        """The hang's ``for_s`` is over: let the target run again."""

    def leave(self, step: Step) -> None:
        """Have the target leave its worlds and exit gracefully."""

    def slow(self, step: Step) -> None:
        """Delay each of the target's ops."""

    def restore(self, step: Step) -> None:
        """The slow's ``for_s`` is over: back to full speed."""

    def join(self, step: Step) -> None:
        """Start a new worker and form its worlds."""

    def add_world(self, step: Step) -> None:
        """Have live workers form a new world."""

    def remove_world(self, step: Step) -> None:
        """Have every member remove a world gracefully."""

    def partition(self, step: Step) -> None:
        """Cut the links between the step's sets of hosts."""

    def heal(self, step: Step) -> None:
        """The partition's ``for_s`` is over: the links work again."""

    def degrade(self, step: Step) -> None:
        """Degrade a host's link (delay, jitter, loss, rate)."""

    def repair(self, step: Step) -> None:
        """The degrade's ``for_s`` is over: the link is as good as new."""

    def power_off(self, step: Step) -> None:
        """The host vanishes: its link goes silent, then its workers die."""

    def gpu_hang(self, step: Step) -> None:
        """The target's GPU stops completing work (its process runs on)."""

    def gpu_resume(self, step: Step) -> None:
        """The GPU hang's ``for_s`` is over: its work completes again."""

    def gpu_error(self, step: Step) -> None:
        """A sticky error makes the target's GPU unusable (its process runs on)."""

    def gpu_slow(self, step: Step) -> None:
        """The target's GPU work takes ``factor`` times longer."""

    def gpu_restore(self, step: Step) -> None:
        """The GPU slow's ``for_s`` is over: back to full speed."""


Verb = Callable[[Executor, Step], None]

#: What starts each kind of event.
START: Mapping[Kind, Verb] = {
    Kind.CRASH: lambda x, s: x.crash(s),
    Kind.CRASH_HOST: lambda x, s: x.crash(s),
    Kind.HANG: lambda x, s: x.hang(s),
    Kind.LEAVE: lambda x, s: x.leave(s),
    Kind.SLOW: lambda x, s: x.slow(s),
    Kind.JOIN: lambda x, s: x.join(s),
    Kind.ADD_WORLD: lambda x, s: x.add_world(s),
    Kind.REMOVE_WORLD: lambda x, s: x.remove_world(s),
    Kind.PARTITION: lambda x, s: x.partition(s),
    Kind.DEGRADE: lambda x, s: x.degrade(s),
    Kind.POWER_OFF: lambda x, s: x.power_off(s),
    Kind.GPU_HANG: lambda x, s: x.gpu_hang(s),
    Kind.GPU_ERROR: lambda x, s: x.gpu_error(s),
    Kind.GPU_SLOW: lambda x, s: x.gpu_slow(s),
}
#: What ends each lasting kind after its ``for_s``.
END: Mapping[Kind, Verb] = {
    Kind.HANG: lambda x, s: x.resume(s),
    Kind.SLOW: lambda x, s: x.restore(s),
    Kind.PARTITION: lambda x, s: x.heal(s),
    Kind.DEGRADE: lambda x, s: x.repair(s),
    Kind.GPU_HANG: lambda x, s: x.gpu_resume(s),
    Kind.GPU_SLOW: lambda x, s: x.gpu_restore(s),
}


class Edge(IntEnum):
    """Whether an action ends or starts its step (ends sort first at one instant)."""

    END = 0
    START = 1


@dataclass(frozen=True, order=True)
class Action:
    """One thing to do at one time: start a step, or end a lasting one."""

    at: float
    edge: Edge
    order: int  # the step's position in the plan
    step: Step = field(compare=False)


def actions(steps: Iterable[Step], first: int = 0) -> list[Action]:
    """Every action of ``steps`` in the order they happen (``first``: the order of the
    first step, for steps added to a running plan)."""
    out = []
    for order, step in enumerate(steps, start=first):
        out.append(Action(step.event.at, Edge.START, order, step))
        lasts = step.event.lasts()
        if lasts is not None:
            out.append(Action(step.event.at + lasts, Edge.END, order, step))
    return sorted(out)


def dispatch(action: Action, executor: Executor) -> None:
    """Do one action on an executor."""
    table = START if action.edge is Edge.START else END
    table[action.step.kind](executor, action.step)
