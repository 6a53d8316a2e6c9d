"""What a failure is: its *signature* (the (property, kind of evidence) pairs it shows,
with no world or worker names, so the same bug on another world is the same failure), the
``Violation`` that carries a reproducer, and the known findings to steer around."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from pathlib import Path

from mwsim.checks import FAIL, Verdict
from mwsim.errors import MwsimError
from mwsim.history import Mode
from mwsim.internal.fields import check_name
from mwsim.scenario import Scenario, dump_scenario

#: One (property, kind of evidence) pair of a failure's signature.
Sig = tuple[str, str]


def signature(verdicts: Iterable[Verdict]) -> frozenset[Sig]:
    """The (property, kind of evidence) pairs of every unexpected violation."""
    return frozenset(
        (v.name, kind)
        for v in verdicts
        if v.verdict == FAIL and not v.expected
        for kind in (v.evidence or ("",))
    )


def describe(sig: Iterable[Sig]) -> str:
    return "; ".join(f"{name} ({kind})" if kind else name for name, kind in sorted(sig))


#: Where a session keeps what it has not judged yet, under its output: a hidden folder, so
#: that ``mwsim validate OUT`` and ``mwsim run OUT`` see only the finds.
SCRATCH = ".scratch"


class Violation(MwsimError, AssertionError):
    """A drawn example violated a property; the scenario file reproduces it."""

    def __init__(
        self,
        scenario: Scenario,
        verdicts: list[Verdict],
        path: Path,
        note: str = "",
        mode: Mode = Mode.REAL,
    ) -> None:
        self.scenario, self.verdicts, self.path = scenario, verdicts, path
        self.note = note  # what was not done with it (say, shrinking: the budget ran out)
        self.mode = mode  # how it was found, and so how it replays
        failed = "; ".join(f"{v.name}: {v.detail}" for v in verdicts if v.verdict == FAIL)
        again = reproduce_command(path, scenario.runtime, mode)
        super().__init__(f"{failed}\nreproduce with: {again}")

    @property
    def signature(self) -> frozenset[Sig]:
        return signature(self.verdicts)


def reproduce_command(path: Path, runtime: str, mode: str = Mode.REAL) -> str:
    """The complete ``mwsim run`` line that replays a found scenario on ``runtime``."""
    flag = {Mode.SIM: " --sim", Mode.REAL: " --real", Mode.BOTH: ""}[Mode(mode)]
    return f"mwsim run {path}{flag} --runtime {runtime}"


def save_failure(scenario: Scenario, verdicts: list[Verdict], path: Path, how: str) -> Path:
    """Write the failing scenario (its runtime included) where ``mwsim run`` can replay it,
    named after its file (the finds of a folder have names of their own)."""
    failed = [v for v in verdicts if v.verdict == FAIL]
    note = "; ".join(f"{v.name} violated ({v.detail})" for v in failed)
    what = f"found by mwsim fuzz ({how}) on runtime {scenario.runtime}: {note}"
    update = {"description": what}
    with contextlib.suppress(ValueError):
        update["name"] = check_name(path.stem)
    described = scenario.model_copy(update=update)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_scenario(described))
    return path


def failures(verdicts: list[Verdict]) -> list[Verdict]:
    return [v for v in verdicts if v.verdict == FAIL]
