"""mwsim: fault-injection simulation and testing for elastic model serving on MultiWorld.

The public surface is small; everything under ``mwsim.internal`` is private.

Layout. Data flows one way: scenario -> simulator | replay -> history -> checks -> report.
A module imports only from its own layer or the layers above it in this list (checked
by ``tests/cover/test_layout.py``):

1. ``errors``, ``internal``: errors, YAML positions, shared field types, the RNG.
2. ``events`` (the vocabulary of event kinds), ``topology``, ``history``.
3. ``membership``: the timeline of a scenario and its ``Plan``.
4. ``scenario``: the file format; a loaded scenario carries its plan.
5. ``timing`` (the runtime model), ``playback`` (the executor protocol and dispatch),
   ``findings``, ``workloads``, ``runtimes``, ``hosts`` (loopback or emulated hosts, and
   the network faults on them).
6. ``checks`` (properties of a history), ``sim`` (the model executor), ``replay`` (the real
   executor), ``strategies``, ``generate``.
7. ``runs`` (scenario -> verdicts), ``report``, ``timeline``, ``trace``, ``calibrate``,
   ``bench`` (a runtime against a baseline, no faults), ``matrix`` (scenarios on several
   runtimes or environments, side by side).
8. ``fuzz``, ``testing``, ``cli``, ``pytest_plugin``.

Library code never imports ``testing`` (it is for users' tests), and no module imports
another's private (underscored) names.
"""

from mwsim.errors import MwsimError, Problem, ProblemError
from mwsim.history import Event, History, HistoryWriter, event, read_history, write_history
from mwsim.membership import Plan
from mwsim.scenario import Scenario, dump_scenario, load_scenario, parse_scenario
from mwsim.topology import Topology, explicit, fan_in, pipeline

__version__ = "0.1.0"

__all__ = [
    "Event",
    "History",
    "HistoryWriter",
    "MwsimError",
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
    "read_history",
    "write_history",
]
