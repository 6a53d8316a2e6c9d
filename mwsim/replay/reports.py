"""What agents report to the controller during a run, into the history: their records,
where a cluster's agent runs, an agent's own failure, and how each process ended."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mwsim.history import Agent, Error, Exit, Source
from mwsim.hosts import Network
from mwsim.membership import Plan
from mwsim.replay import protocol as wire
from mwsim.replay.bringup import BringUp
from mwsim.replay.pool import AgentProc, Handler, log_tail
from mwsim.replay.recorder import Recorder
from mwsim.replay.worlds import Formation


class Reports:
    """The controller's handlers of agents' messages (``handlers``) and exits (``exited``)."""

    def __init__(
        self,
        plan: Callable[[], Plan],
        network: Network,
        recorder: Recorder,
        formation: Formation,
        bringup: BringUp,
    ) -> None:
        self.plan, self.network, self.recorder = plan, network, recorder
        self.formation, self.bringup = formation, bringup

    @property
    def handlers(self) -> dict[type[wire.Message], Handler]:
        return {
            wire.Events: self.events,
            wire.Fatal: self.fatal,
            wire.Hello: self.hello,
            wire.Port: self.formation.on_port,
        }

    def events(self, agent: AgentProc, message: wire.Events) -> None:
        for record in message.records:
            self.formation.saw(agent, record)
            self.recorder.record(record)
            if self.recorder.t0 is None:
                self.bringup.saw(agent, record)

    def hello(self, agent: AgentProc, message: wire.Hello) -> None:
        if message.node is not None:  # where a cluster's agent says it runs
            at = self.recorder.since_t0() if self.recorder.t0 is not None else 0.0
            host = self.plan().worker(agent.worker, at).host
            self.recorder.note(
                Agent,
                worker=agent.worker,
                incarnation=agent.incarnation,
                pid=message.pid,
                host=host,
                node=message.node,
                address=self.network.address(host),
            )

    def fatal(self, agent: AgentProc, message: wire.Fatal) -> None:
        self.recorder.note(
            Error, worker=agent.worker, message=message.message[-500:], source=Source.HARNESS
        )
        last = (message.message.strip().splitlines() or ["?"])[-1]
        self.bringup.harness_errors.append(f"agent {agent.worker} failed: {last}")

    def exited(self, agent: AgentProc) -> None:
        fields: dict[str, Any] = {"worker": agent.worker, "code": agent.code}
        fields["expected"] = agent.expect_exit is not None
        if agent.expect_exit is None:
            fields["detail"] = log_tail(agent.log, 6)[-500:]
        self.recorder.note(Exit, **fields)
