"""mwsim: fault-injection simulation and testing for elastic model serving on MultiWorld.

The public surface is small; everything under ``mwsim.internal`` is private.

Layout. Data flows one way: scenario -> simulator | replay -> history -> checks -> report.
A module imports only from its own layer or the layers above it in this list (checked
by ``tests/cover/test_layout.py``):

1. ``errors``, ``internal``: errors, YAML positions, shared field types, the RNG.
2. ``events`` (the vocabulary of event kinds), ``topology``, ``history`` (the vocabulary of
   history records: one dataclass per kind).
3. ``membership``: the timeline of a scenario and its ``Plan``.
4. ``scenario``: the file format; a loaded scenario carries its plan.
5. ``timing`` (the runtime model), ``playback`` (the executor protocol and dispatch),
   ``findings``, ``workloads`` and ``serve`` (what a world runs in a real replay),
   ``runtimes``, ``hosts`` (loopback or emulated hosts, and
   the network faults on them).
6. ``checks`` (a package: the facts index, one module per property, judging), ``sim`` (the
   model executor), ``replay`` (the real executor), ``strategies``, ``generate``.
7. ``runs`` (scenario -> verdicts), ``whatif`` (what each fault cost a serve run),
   ``report``, ``timeline``, ``trace``, ``calibrate``,
   ``bench`` (a runtime against a baseline, no faults), ``matrix`` (scenarios on several
   runtimes or environments, side by side).
8. ``fuzz`` (a package: the fuzzers behind one protocol, shrinking, sessions), ``testing``,
   ``cli``, ``__main__`` (the command's entry point), ``pytest_plugin``.

Library code never imports ``testing`` (it is for users' tests), and no module imports
another's private (underscored) names.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mwsim.errors import MwsimError, Problem, ProblemError
    from mwsim.history import (
        History,
        HistoryWriter,
        Record,
        event,
        read_history,
        record,
        write_history,
    )
    from mwsim.membership import Plan
    from mwsim.scenario import Scenario, dump_scenario, load_scenario, parse_scenario
    from mwsim.topology import Topology, explicit, fan_in, pipeline

    Event = Record  # the name of earlier versions

__version__ = "0.1.0"

#: Where each public name lives; imported on first use, so that importing a submodule
#: (the pytest plugin, an agent) does not load pydantic and networkx.
_HOMES = {
    "MwsimError": "mwsim.errors",
    "Problem": "mwsim.errors",
    "ProblemError": "mwsim.errors",
    "Event": "mwsim.history",
    "History": "mwsim.history",
    "HistoryWriter": "mwsim.history",
    "Record": "mwsim.history",
    "event": "mwsim.history",
    "read_history": "mwsim.history",
    "record": "mwsim.history",
    "write_history": "mwsim.history",
    "Plan": "mwsim.membership",
    "Scenario": "mwsim.scenario",
    "dump_scenario": "mwsim.scenario",
    "load_scenario": "mwsim.scenario",
    "parse_scenario": "mwsim.scenario",
    "Topology": "mwsim.topology",
    "explicit": "mwsim.topology",
    "fan_in": "mwsim.topology",
    "pipeline": "mwsim.topology",
}

__all__ = [
    "Event",
    "History",
    "HistoryWriter",
    "MwsimError",
    "Plan",
    "Problem",
    "ProblemError",
    "Record",
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
    "record",
    "write_history",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'mwsim' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(home), "Record" if name == "Event" else name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
