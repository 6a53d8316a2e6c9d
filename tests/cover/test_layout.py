"""The package layout promised in ``mwsim/__init__.py``: layers, no cycles, one vocabulary.

Read from the source with ``ast`` (nothing is imported), so a violation names the file
and line that introduced it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

from mwsim.events import Kind
from mwsim.history import KINDS

ROOT = Path(__file__).resolve().parents[2] / "mwsim"

#: The layers of mwsim/__init__.py (a module may import from its own layer or lower ones).
LAYERS = {
    "mwsim.errors": 1,
    "mwsim.internal": 1,
    "mwsim.events": 2,
    "mwsim.topology": 2,
    "mwsim.history": 2,
    "mwsim.membership": 3,
    "mwsim.scenario": 4,
    "mwsim": 4,  # the package namespace re-exports the data types
    "mwsim.timing": 5,
    "mwsim.playback": 5,
    "mwsim.findings": 5,
    "mwsim.workloads": 5,
    "mwsim.serve": 5,
    "mwsim.runtimes": 5,
    "mwsim.hosts": 5,
    "mwsim.checks": 6,
    "mwsim.sim": 6,
    "mwsim.replay": 6,
    "mwsim.strategies": 6,
    "mwsim.generate": 6,
    "mwsim.runs": 7,
    "mwsim.whatif": 7,
    "mwsim.report": 7,
    "mwsim.timeline": 7,
    "mwsim.trace": 7,
    "mwsim.calibrate": 7,
    "mwsim.bench": 7,
    "mwsim.matrix": 7,
    "mwsim.fuzz": 8,
    "mwsim.testing": 8,
    "mwsim.cli": 8,
    "mwsim.__main__": 8,
    "mwsim.pytest_plugin": 8,
}


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


MODULES = _modules()


def _layer(module: str) -> int:
    while module not in LAYERS:
        module = module.rsplit(".", 1)[0]
    return LAYERS[module]


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every ``mwsim`` import in a file."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("mwsim"):
            names = [a.name for a in node.names]
            targets = [f"{node.module}.{n}" for n in names if f"{node.module}.{n}" in MODULES]
            for target in targets or [node.module]:
                out.append((node.lineno, target, names))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name, []) for a in node.names if a.name.startswith("mwsim")]
    return out


def test_every_module_has_a_layer():
    assert all(_layer(m) for m in MODULES)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_down_the_layers(module):
    wrong = [
        f"{MODULES[module].name}:{line}: {module} (layer {_layer(module)}) imports "
        f"{target} (layer {_layer(target)})"
        for line, target, _ in _imports(MODULES[module])
        if _layer(target) > _layer(module)
    ]
    assert not wrong, wrong


def test_no_import_cycle():
    graph = nx.DiGraph()
    for module, path in MODULES.items():
        for _, target, _ in _imports(path):
            if target != module and not module.startswith(target + "."):
                graph.add_edge(module, target)
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, cycles


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_private_name_crosses_modules_and_no_test_helpers_in_library_code(module):
    wrong = []
    for line, target, names in _imports(MODULES[module]):
        private = [n for n in names if n.startswith("_")]
        if private and target != module:
            wrong.append(f"{MODULES[module].name}:{line}: imports private {private} of {target}")
        if target == "mwsim.testing" and module != "mwsim.testing":
            wrong.append(f"{MODULES[module].name}:{line}: library code imports mwsim.testing")
    assert not wrong, wrong


#: String constants equal to a kind's name that are not event kinds.
NOT_KINDS = {
    ("mwsim/pytest_plugin.py", "slow"),  # the pytest marker of long real runs
    # the runtime's operation (a method of the Runtime interface), not the event
    ("mwsim/runtimes/__init__.py", "remove_world"),
    ("mwsim/replay/agent.py", "remove_world"),
    ("mwsim/runtimes/mutants.py", "remove_world"),
}


#: String constants equal to a history record kind's name that are not record kinds.
NOT_RECORD_KINDS = {
    ("mwsim/bench.py", "left"),  # a column's justification
    ("mwsim/timeline.py", "left"),  # the title's place
    ("mwsim/checks/bringup.py", "reference"),  # keys of the JSON report
    ("mwsim/checks/judging.py", "fault"),
    ("mwsim/report.py", "reference"),
    ("mwsim/report.py", "bringup"),
    ("mwsim/matrix.py", "op"),
    ("mwsim/matrix.py", "error"),
    ("mwsim/matrix.py", "bringup"),
    ("mwsim/matrix.py", "broken"),
    ("mwsim/matrix.py", "run"),  # the ``mwsim run`` command
    ("mwsim/cli.py", "ops"),  # the progress counters of a real run
    ("mwsim/cli.py", "broken"),
    ("mwsim/replay/recorder.py", "ops"),
    ("mwsim/replay/recorder.py", "broken"),
    ("mwsim/trace.py", "ops"),  # a trace counter's argument
    ("mwsim/replay/protocol.py", "exit"),  # the agent's ``Exit`` command
    ("mwsim/runs.py", "reference"),  # where the reference runtime's run goes
    ("mwsim/fuzz/session.py", "reference"),
    ("mwsim/scenario.py", "hygiene"),
}


def _constants(path: Path, values: set[str]) -> list[tuple[int, str]]:
    """String constants among ``values`` in a file, docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in values and id(node) not in docstrings
    ]


def test_record_kinds_are_spelled_out_only_in_the_history_module():
    """Producers and consumers of history records use the record types (``Op``,
    ``Broken`` ...), never the kind's name as a string."""
    found = []
    for module, path in MODULES.items():
        if module == "mwsim.history":
            continue
        relative = str(path.relative_to(ROOT.parent))
        found += [
            f"{relative}:{line}: {value!r}"
            for line, value in _constants(path, set(KINDS))
            if (relative, value) not in NOT_RECORD_KINDS
        ]
    assert not found, found


def test_no_wire_message_is_dispatched_on_the_keys_it_has():
    """The three channels of a replay (agents, fork servers, host actors) speak typed
    messages: no ``"key" in message`` or ``message.get("key")`` decides what one is."""
    messages = ("message", "reply", "report", "request", "info", "m")
    found = []
    for path in sorted((ROOT / "replay").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            keyed = (
                isinstance(node, ast.Compare)
                and isinstance(node.left, ast.Constant)
                and isinstance(node.left.value, str)
                and isinstance(node.ops[0], ast.In | ast.NotIn)
                and isinstance(node.comparators[0], ast.Name)
                and node.comparators[0].id in messages
            )
            got = (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in messages
            )
            if keyed or got:
                found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}")
    assert not found, found


def test_kind_names_are_spelled_out_only_in_the_vocabulary():
    kinds = {k.value for k in Kind}
    found = []
    for module, path in MODULES.items():
        if module == "mwsim.events":
            continue
        relative = str(path.relative_to(ROOT.parent))
        found += [
            f"{relative}:{line}: {value!r}"
            for line, value in _constants(path, kinds)
            if (relative, value) not in NOT_KINDS
        ]
    assert not found, found


def test_the_pytest_plugin_loads_neither_pydantic_nor_networkx():
    """Loaded into every pytest session of an environment with mwsim installed, it imports
    mwsim's heavy modules only once an item is collected."""
    import subprocess
    import sys

    code = "import sys, mwsim.pytest_plugin; print(sorted(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    heavy = [m for m in ("pydantic", "networkx", "simpy", "mwsim.scenario") if f"'{m}'" in loaded]
    assert not heavy, heavy


#: The most lines a class of the replay may have: a class that grows past it holds
#: several jobs, and one of them wants a module of its own.
LARGEST_REPLAY_CLASS = 300


def test_no_class_of_the_replay_is_larger_than_one_job():
    found = []
    for path in sorted((ROOT / "replay").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                size = node.end_lineno - node.lineno + 1
                if size > LARGEST_REPLAY_CLASS:
                    found.append(f"{path.relative_to(ROOT.parent)}:{node.lineno}: {size} lines")
    assert not found, found


def test_the_controller_never_asks_which_placement_it_has():
    """Where agents live is a ``Placement`` (this machine, or Ray nodes): the controller
    uses its protocol and names none of its classes."""
    text = (ROOT / "replay" / "controller.py").read_text()
    named = [
        name for name in ("RayNodes", "Emulated", "Loopback", "LocalPlacement") if name in text
    ]
    assert not named, named
