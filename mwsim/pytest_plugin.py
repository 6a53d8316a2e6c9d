"""pytest plugin: scenario files are test items (``pytest scenarios/``).

Registered through the ``pytest11`` entry point. Every YAML file with a top-level
``mwsim:`` key becomes one item per mode (``sim``, ``real``; ``both`` runs the two and
checks conformance). A real item whose runtime cannot run here is skipped with the
reason, never passed. A failing item shows the verdict table and where the history,
timeline and trace are.

Options: ``--mwsim-mode`` (comma-separated, default ``sim,real``), ``--mwsim-runtime``,
``--mwsim-backend``, ``--mwsim-out``. Markers: ``sim``, ``real``, ``gpu`` (nccl),
``slow`` (real runs of scenarios longer than 10 s).
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

SLOW_S = 10.0
MARKERS = {
    "sim": "a scenario run on the simpy model",
    "real": "a scenario run on real processes with the real runtime",
    "gpu": "needs CUDA devices (backend nccl)",
    "slow": f"a real run of a scenario longer than {SLOW_S:g} s",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mwsim", "mwsim scenario runs")
    group.addoption(
        "--mwsim-mode",
        default="sim,real",
        help="modes to run each scenario file in: sim, real, both (comma-separated; the "
        "default sim,real starts real processes for every file: sim alone starts none)",
    )
    group.addoption("--mwsim-runtime", default=None, help="system under test for real runs")
    group.addoption("--mwsim-backend", default=None, choices=["gloo", "nccl"])
    group.addoption("--mwsim-out", default=None, help="where histories and reports go")
    group.addoption(
        "--mwsim-network",
        default="auto",
        choices=["auto", "emulated", "loopback"],
        help="where real agents live: emulated hosts where possible (auto), or as asked",
    )
    group.addoption(
        "--mwsim-cluster",
        default=None,
        help="place real agents on a Ray cluster: ray (RAY_ADDRESS), ray://HOST:PORT, or "
        "auto (the local cluster of `mwsim cluster start`)",
    )


ZYGOTES = pytest.StashKey[dict[str, Any]]()
HOMES = pytest.StashKey[list[Path]]()  # where the fork servers log (removed at the end)


def pytest_configure(config: pytest.Config) -> None:
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    config.stash[ZYGOTES] = {}
    config.stash[HOMES] = []


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the session's fork servers (they take any agent still alive with them) and
    remove their log folders."""
    import shutil

    for warm in config.stash.get(ZYGOTES, {}).values():
        warm.stop()
    for home in config.stash.get(HOMES, []):
        shutil.rmtree(home, ignore_errors=True)


def _zygote(config: pytest.Config, runtime: str) -> Any:
    """One warm fork server per runtime for the whole session (a torch import each)."""
    from mwsim.replay.pool import ZYGOTE_HOME_PREFIX
    from mwsim.replay.zygote import Zygote, agent_env

    zygotes = config.stash[ZYGOTES]
    if runtime not in zygotes or not zygotes[runtime].alive:
        home = Path(tempfile.mkdtemp(prefix=f"{ZYGOTE_HOME_PREFIX}{os.getpid()}-"))
        config.stash[HOMES].append(home)
        zygotes[runtime] = Zygote(runtime, home / "zygote.log", agent_env())
    return zygotes[runtime]


def _modes(config: pytest.Config) -> list[str]:
    modes = [m.strip() for m in str(config.getoption("--mwsim-mode")).split(",") if m.strip()]
    bad = [m for m in modes if m not in ("sim", "real", "both")]
    if bad:
        raise pytest.UsageError(f"--mwsim-mode: unknown mode(s) {', '.join(bad)}")
    return modes


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    from mwsim.internal.yamlsource import is_scenario_file

    if is_scenario_file(file_path):
        return ScenarioFile.from_parent(parent, path=file_path)
    return None


class ScenarioFile(pytest.File):
    """A scenario file: one item per mode, or one failing item if the file is invalid."""

    def collect(self) -> Iterator[pytest.Item]:
        from mwsim.errors import ProblemError
        from mwsim.scenario import load_scenario

        try:
            scenario = load_scenario(self.path)
        except ProblemError as exc:
            yield InvalidScenario.from_parent(self, name="validate", problems=exc.problems)
            return
        for mode in _modes(self.config):
            item = ScenarioItem.from_parent(self, name=f"{scenario.name}[{mode}]", mode=mode)
            item.add_marker(mode if mode != "both" else "real")
            if mode != "sim" and scenario.backend == "nccl":
                item.add_marker("gpu")
            if mode != "sim" and scenario.duration_s > SLOW_S:
                item.add_marker("slow")
            yield item


class InvalidScenario(pytest.Item):
    def __init__(self, *, problems: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.problems = problems

    def runtest(self) -> None:
        raise ScenarioInvalid(self.problems)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        return "\n".join(str(p) for p in self.problems)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"validate {self.path.name}"


class ScenarioInvalid(Exception):
    pass


class ScenarioFailed(Exception):
    def __init__(self, outcome: Any) -> None:
        super().__init__(outcome.verdict)
        self.outcome = outcome


def _summary(outcome: Any) -> str:
    """One line for pytest's short summary: the verdict, what failed, the first evidence."""
    bad = [v for v in outcome.verdicts if v.verdict != "pass" and not v.expected]
    names = ", ".join(dict.fromkeys(str(v.name) for v in bad))
    first = f": {bad[0].detail}" if bad else ""
    return f"{outcome.verdict} {names}{first}"[:200]


class _Verdicts:
    """A failed item's report: the verdict table and where its artifacts are (printed),
    and one line for pytest's short summary and JUnit XML (``reprcrash.message``)."""

    def __init__(self, text: str, path: Path, summary: str) -> None:
        self.text = text
        self.reprcrash = SimpleNamespace(path=str(path), lineno=0, message=summary)

    def toterminal(self, tw: Any) -> None:
        for line in self.text.splitlines():
            tw.line(line)

    def __str__(self) -> str:
        return self.text


class ScenarioItem(pytest.Item):
    """Run one scenario in one mode and judge it."""

    def __init__(self, *, mode: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mode = mode

    def _out_dir(self, name: str) -> Path:
        chosen = self.config.getoption("--mwsim-out")
        if chosen:
            return Path(chosen) / name / self.mode
        factory = getattr(self.config, "_tmp_path_factory", None)  # pytest's own tmp_path root
        if factory is None:
            return Path(tempfile.mkdtemp(prefix=f"mwsim-{name}-{self.mode}-"))
        return Path(factory.mktemp(f"mwsim-{name}-{self.mode}", numbered=True))

    def runtest(self) -> None:
        from mwsim import report
        from mwsim.checks import Result
        from mwsim.errors import Inconclusive, ProblemError
        from mwsim.replay.controller import runtime_class
        from mwsim.runs import run_scenario, with_overrides
        from mwsim.scenario import load_scenario

        loaded = load_scenario(self.path)
        backend = self.config.getoption("--mwsim-backend")
        try:
            scenario = with_overrides(loaded, self.config.getoption("--mwsim-runtime"), backend)
        except ProblemError as exc:  # say, --mwsim-backend nccl on a host without GPUs
            pytest.skip(f"this scenario cannot run as asked: {exc.problems[0].message}")
        try:
            real = scenario if self.mode != "sim" else None
            runtime_class(scenario.runtime, scenario.backend, 0, real)  # before a fork server
            cluster = self.config.getoption("--mwsim-cluster")
            local = self.mode != "sim" and cluster is None
            warm = _zygote(self.config, scenario.runtime) if local else None
            outcome = run_scenario(
                scenario,
                mode=self.mode,
                out_dir=self._out_dir(scenario.name),
                network=self.config.getoption("--mwsim-network"),
                zygote=warm,
                cluster=cluster,
            )
        except Inconclusive as exc:
            pytest.skip(f"the real run cannot happen here: {exc}")
        report.write_artifacts(outcome)
        self.user_properties.append(("mwsim_report", str(outcome.artifacts["report"])))
        if outcome.verdict != Result.PASS:
            raise ScenarioFailed(outcome)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, ScenarioFailed):
            from rich.console import Console

            from mwsim import report

            outcome = excinfo.value.outcome
            text = io.StringIO()
            console = Console(width=110, file=text, color_system=None)
            console.print(report.verdict_table(outcome))
            lines = [text.getvalue()]
            for run in outcome.runs:
                lines.append(f"{run.mode} history: {run.history_path}")
                if run.logs is not None:
                    lines.append(f"{run.mode} agent logs: {run.logs}")
            for name, path in outcome.artifacts.items():
                lines.append(f"{name}: {path}")
            return _Verdicts("\n".join(lines), self.path, _summary(outcome))
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, f"{self.name}"
