"""mwsim: fault-injection simulation and testing for elastic model serving on MultiWorld.

The public surface is small; everything under ``mwsim.internal`` is private.
"""

from mwsim.history import Event, History, HistoryWriter, event, read_history, write_history
from mwsim.membership import Plan, plan
from mwsim.problems import Problem, ProblemError
from mwsim.scenario import Scenario, dump_scenario, load_scenario, parse_scenario
from mwsim.topology import Fault, Topology, explicit, fan_in, pipeline

__version__ = "0.1.0"

__all__ = [
    "Event",
    "Fault",
    "History",
    "HistoryWriter",
    "Plan",
    "Problem",
    "ProblemError",
    "Scenario",
    "Topology",
    "dump_scenario",
    "event",
    "explicit",
    "fan_in",
    "load_scenario",
    "parse_scenario",
    "pipeline",
    "plan",
    "read_history",
    "write_history",
]
