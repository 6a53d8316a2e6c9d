"""The ``mwsim`` command (docs/cli.md; heavy modules are imported per command).

Exit statuses of ``run``, ``check`` and ``fuzz``: 0 every property holds (or exactly the
expected violations occurred), 1 a property is violated, 2 bad input or usage, 3
inconclusive (a failure of mwsim itself included: one line names the log with its
traceback).
"""

from __future__ import annotations

import datetime
import math
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
import yaml
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from mwsim.checks import Result
from mwsim.errors import Inconclusive, ProblemError
from mwsim.events import Kind
from mwsim.history import Mode
from mwsim.internal.yamlsource import is_scenario_file
from mwsim.scenario import Scenario, duplicate_names, load_scenario

if TYPE_CHECKING:
    from mwsim.fuzz import FuzzResult
    from mwsim.timing import RuntimeModel

EXIT_OK, EXIT_VIOLATED, EXIT_BAD_INPUT, EXIT_INCONCLUSIVE = 0, 1, 2, 3


def expand(paths: Iterable[str]) -> list[Path]:
    """Files as given; a folder becomes the scenario files under it, sorted (YAML files
    with a top-level ``mwsim:`` key, not under a hidden folder such as a fuzz session's
    ``.scratch``; each other YAML file is named on stderr as skipped).
    A folder with no scenario file is bad input (exit 2): a CI job that points at the
    wrong folder must not pass."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            out.append(path)
            continue
        found = []
        yamls = [p for p in path.rglob("*") if p.suffix in (".yaml", ".yml")]
        hidden = [p for p in yamls if any(n.startswith(".") for n in p.relative_to(path).parts)]
        for candidate in sorted(set(yamls) - set(hidden)):  # not under a hidden folder
            if is_scenario_file(candidate):
                found.append(candidate)
            else:
                click.echo(
                    f"{candidate}: skipped: not a scenario (no top-level mwsim: key)", err=True
                )
        if not found:
            click.echo(
                f"{path}: no scenario file in this folder (*.yaml, *.yml with mwsim: 1)", err=True
            )
            sys.exit(EXIT_BAD_INPUT)
        out += found
    return out


def _echo(exc: ProblemError) -> None:
    """Each problem on its own line (``path:line: problem``) on stderr."""
    for problem in exc.problems:
        click.echo(str(problem), err=True)


def _refuse(exc: ProblemError) -> NoReturn:
    """Bad input: say each problem and exit 2 (nothing was started)."""
    _echo(exc)
    sys.exit(EXIT_BAD_INPUT)


def _load_all(files: Iterable[str], overrides: dict[str, str] | None = None) -> list[Scenario]:
    """Every scenario (names distinct), with the command line's ``overrides``, or print
    every problem and exit 2 before anything starts."""
    loaded, bad = [], False
    for path in expand(files):
        try:
            loaded.append((path, load_scenario(path, overrides)))
        except ProblemError as exc:
            bad = True
            _echo(exc)
    clashes = duplicate_names(loaded)
    if clashes:
        _echo(ProblemError(clashes))
    if bad or clashes:
        sys.exit(EXIT_BAD_INPUT)
    return [scenario for _, scenario in loaded]


def _interrupted_status(exc: KeyboardInterrupt) -> int:
    """128 + the signal, as a shell reports it: 130 for Ctrl-C, 143 for SIGTERM."""
    return 128 + int(getattr(exc, "signum", signal.SIGINT))


def exit_status(verdicts: Iterable[str]) -> int:
    verdicts = list(verdicts)
    if Result.FAIL in verdicts:
        return EXIT_VIOLATED
    if Result.UNKNOWN in verdicts:
        return EXIT_INCONCLUSIVE
    return EXIT_OK


def _crash_log(exc: BaseException) -> Path:
    """Write the traceback of a failure of mwsim itself (in the temporary directory); the
    file."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    fd, name = tempfile.mkstemp(prefix=f"mwsim-error-{stamp}-", suffix=".log")
    with os.fdopen(fd, "w") as log:
        log.write("".join(traceback.format_exception(exc)))
    return Path(name)


class _Console(Console):
    """The terminal output: a reader that went away (``| head``) ends the command as
    ``SIGPIPE`` would (141), not with the "violated" status rich would give."""

    def on_broken_pipe(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)  # nothing more to say at exit
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(128 + signal.SIGPIPE)


class _Command(click.Group):
    """The command group: a failure of mwsim itself (not of the system under test) is
    inconclusive, exit 3, with one line naming the log that holds the traceback. Ctrl-C or
    SIGTERM at any moment exits 130 or 143 (never click's "Aborted!" and 1); a reader that
    went away (``| head``) ends the command quietly, as ``SIGPIPE`` would (141)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt as exc:
            sys.exit(_interrupted_status(exc))
        except BrokenPipeError:
            devnull = os.open(os.devnull, os.O_WRONLY)  # nothing more to say at exit
            os.dup2(devnull, sys.stdout.fileno())
            sys.exit(128 + signal.SIGPIPE)
        except Exception as exc:
            sub = ctx.invoked_subcommand
            log = _crash_log(exc)
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            click.echo(
                f"mwsim {sub or ''}: internal error, inconclusive ({type(exc).__name__}: "
                f"{first}); traceback in {log}",
                err=True,
            )
            sys.exit(EXIT_INCONCLUSIVE)


@click.group(cls=_Command, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mwsim")
def main() -> None:
    """Fault-injection simulation and testing for elastic model serving on MultiWorld."""


@main.command()
@click.argument("files", nargs=-1, required=True)
def validate(files: tuple[str, ...]) -> None:
    """Check scenario files; print path:line: problem for each problem found (names must
    be distinct among the files given).

    Exit status: 0 every file is valid, 2 a problem (or no scenario file was given).
    """
    bad = 0
    loaded = []
    for path in expand(files):
        try:
            loaded.append((path, load_scenario(path)))
        except ProblemError as exc:
            bad += 1
            _echo(exc)
    clashes = {problem.path: problem for problem in duplicate_names(loaded)}
    for path, _ in loaded:
        if str(path) in clashes:
            bad += 1
            click.echo(str(clashes[str(path)]), err=True)
        else:
            click.echo(f"ok  {path}")
    sys.exit(EXIT_BAD_INPUT if bad else EXIT_OK)


def _known_runtime(name: str | None, option: str) -> None:
    """A runtime named on the command line must be one mwsim has (usage error, exit 2)."""
    from mwsim.runtimes import names

    if name is not None and name not in names():
        raise click.BadParameter(f"choose one of {', '.join(names())}", param_hint=option)


def _writable(path: str | None) -> None:
    """Make the folder of a ``--json`` file now, before anything runs (usage error, exit 2,
    if it cannot be made), so that a run is never lost for want of it."""
    if path is None:
        return
    try:
        Path(path).resolve().parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = f"cannot write {path}: {exc.strerror}"
        raise click.BadParameter(why, param_hint="--json") from None


def _model(path: str | None) -> RuntimeModel | None:
    from mwsim.timing import RuntimeModel

    if path is None:
        return None
    try:
        return RuntimeModel.load(path)
    except (ValueError, OSError) as exc:
        click.echo(f"{path}:1: cannot use this model file: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)


@main.command()
@click.argument("files", nargs=-1, required=True)
@click.option("--sim", is_flag=True, help="Only the simulated run (starts no process).")
@click.option("--real", is_flag=True, help="Only the real run.")
@click.option("--runtime", help="System under test (default: the scenario's).")
@click.option("--backend", type=click.Choice(["gloo", "nccl"]), help="Override the backend.")
@click.option("--out", "out_dir", default="out", show_default=True, help="Artifacts go here.")
@click.option(
    "--json", "json_path", type=click.Path(dir_okay=False), help="Write the report (JSON)."
)
@click.option("--seed", type=int, help="Seed of the simulation (default: the scenario's).")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), help="Calibrated model.")
@click.option(
    "-v", "--verbose", is_flag=True, help="Every problem's line, not the first and a count."
)
@click.option("--bringup-timeout", default=90.0, show_default=True, help="Seconds, real runs.")
@click.option(
    "--network",
    type=click.Choice(["auto", "emulated", "loopback"]),
    default="auto",
    show_default=True,
    help="Where real agents live: emulated hosts (network namespaces) or loopback.",
)
@click.option(
    "--cluster",
    callback=lambda _ctx, _param, value: _cluster(value),
    help="Place the real agents on a Ray cluster, one topology host per node: ray "
    "(RAY_ADDRESS), ray://HOST:PORT, or auto (the local cluster of `mwsim cluster start`).",
)
def run(
    files: tuple[str, ...],
    sim: bool,
    real: bool,
    runtime: str | None,
    backend: str | None,
    out_dir: str,
    json_path: str | None,
    seed: int | None,
    model_path: str | None,
    verbose: bool,
    bringup_timeout: float,
    network: str,
    cluster: str | None,
) -> None:
    """Run scenarios (both modes by default, adding conformance) and judge them.

    Exit status: 0 every property holds (or exactly the expected violations occurred), 1 a
    property is violated, 2 bad input or usage, 3 inconclusive.
    """
    from mwsim import report
    from mwsim.runs import run_scenario

    if sim and real:
        raise click.BadParameter(
            "--sim and --real exclude each other (leave both out to run both and compare)",
            param_hint="--sim/--real",
        )
    mode = Mode.SIM if sim else Mode.REAL if real else Mode.BOTH
    _known_runtime(runtime, "--runtime")
    _writable(json_path)
    model = _model(model_path)
    scenarios = _load_all(files, {"runtime": runtime or "", "backend": backend or ""})
    console = _Console()
    reports: list[dict[str, Any]] = []  # the --json file's, in order
    statuses = []
    for scenario in scenarios:
        target = Path(out_dir) / scenario.name
        try:
            with _progress(console, scenario.name, mode) as progress:
                outcome = run_scenario(
                    scenario,
                    mode=mode,
                    out_dir=target,
                    model=model,
                    seed=seed,
                    progress=progress,
                    bringup_timeout_s=bringup_timeout,
                    network=network,
                    cluster=cluster,
                )
        except Inconclusive as exc:
            console.print(f"[yellow]{scenario.name}: inconclusive: {exc}[/]")
            statuses.append(Result.UNKNOWN)
            reports.append(report.inconclusive_dict(scenario.name, mode, str(exc)))
            continue
        except KeyboardInterrupt as exc:
            console.print(f"[yellow]{scenario.name}: interrupted; its processes were stopped[/]")
            sys.exit(_interrupted_status(exc))
        report.write_artifacts(outcome)
        reports.append(report.report_dict(outcome))
        statuses.append(outcome.verdict)
        if len(scenarios) > 1 and outcome.verdict == Result.PASS:  # one line; failures in full
            where = outcome.artifacts.get("report", target)
            console.print(f"[green]PASS[/] {scenario.name} ({mode})  {where}", soft_wrap=True)
            continue
        ran = report.runtime_line(outcome)
        for line in ([ran] if ran else []) + _placement(outcome):
            console.print(line)
        console.print(report.verdict_table(outcome, verbose))
        for name, path in outcome.artifacts.items():
            console.print(f"  {name}: {path}")
    if json_path and reports:
        report.write_reports(reports, mode, json_path)
    if len(scenarios) > 1:
        said = {Result.PASS: "pass", Result.FAIL: "fail", Result.UNKNOWN: "inconclusive"}
        counts = ", ".join(f"{statuses.count(r)} {word}" for r, word in said.items())
        console.print(f"{len(scenarios)} scenarios: {counts}")
    sys.exit(exit_status(statuses))


@main.command(name="matrix")
@click.argument("files", nargs=-1, required=True)
@click.option(
    "--target",
    "targets",
    multiple=True,
    required=True,
    help="A runtime in an environment (repeat): RUNTIME, RUNTIME@PYTHON (the mwsim installed "
    "beside another torch) or LABEL=RUNTIME[@PYTHON].",
)
@click.option("--out", "out_dir", default="out/matrix", show_default=True, help="Runs go here.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the matrix.")
def matrix_command(
    files: tuple[str, ...], targets: tuple[str, ...], out_dir: str, json_path: str | None
) -> None:
    """Replay scenarios for real on several runtimes or environments, side by side.

    Prints scenario x target with each verdict and the properties violated, and whether the
    targets agree (the same verdicts, broken worlds and detection classes).

    Exit status: 0 every scenario agrees, 1 one differs, 2 bad input, 3 a target could not
    run.
    """
    _writable(json_path)
    from rich.table import Table

    from mwsim import matrix
    from mwsim.internal import jsonout
    from mwsim.runtimes import names

    scenarios = _load_all(files)
    paths = expand(files)
    try:
        parsed = [matrix.parse_target(spec) for spec in targets]
    except ProblemError as exc:
        _refuse(exc)
    for target in parsed:
        if target.python is None and target.runtime not in names():
            hint = f"{target.runtime}: choose one of {', '.join(names())}"
            raise click.BadParameter(hint, param_hint="--target")
    console = _Console()
    with console.status("replaying") as status:

        def on_target(column: matrix.Column) -> None:
            status.update(f"replayed on {column.target.label}")

        result = matrix.run_matrix(paths, scenarios, parsed, Path(out_dir), on_target)
    table = Table(title="mwsim matrix (real runs)")
    table.add_column("scenario", overflow="fold")
    for column in result.columns:
        table.add_column(escape(column.heading), overflow="fold")
    table.add_column("agree")
    for name in result.scenarios:
        cells = [column.cells[name] for column in result.columns]
        shown = [_cell_text(cell) for cell in cells]
        agree = "[green]yes[/]" if not result.agree[name] else "[red]no[/]"
        table.add_row(name, *shown, agree)
    console.print(table)
    for name in result.scenarios:
        for line in result.agree[name]:
            console.print(f"  {name}: {escape(line)}", soft_wrap=True)
    for column in result.columns:
        if column.error:
            console.print(f"[yellow]{column.target.label}: {escape(column.error)}[/]")
    if json_path:
        Path(json_path).write_text(jsonout.dumps(result.to_dict(), indent=True) + "\n")
    if any(column.error for column in result.columns):
        sys.exit(EXIT_INCONCLUSIVE)
    sys.exit(EXIT_VIOLATED if any(result.agree.values()) else EXIT_OK)


def _cell_text(cell: Any) -> str:
    colour = {"pass": "green", "fail": "red"}.get(cell.verdict, "yellow")
    text = f"[{colour}]{cell.verdict}[/]"
    if cell.failed:
        text += ": " + ", ".join(cell.failed)
    if cell.expected:
        text += " (expected: " + ", ".join(cell.expected) + ")"
    if cell.note:
        text += f" ({escape(cell.note)})"
    return text


def _cluster(value: str | None) -> str | None:
    """``--cluster``'s value, checked (``ray``, ``ray://HOST:PORT`` or ``auto``)."""
    if value is None or value in ("ray", "auto"):
        return value
    host, _, port = value.removeprefix("ray://").rpartition(":")
    if not value.startswith("ray://") or not host or not port.isdigit():
        raise click.BadParameter(f"use ray, ray://HOST:PORT or auto, not {value!r}")
    return value


def _placement(outcome: Any) -> list[str]:
    """Where a cluster run placed each host, from its history's run line."""
    lines = []
    for run in outcome.runs:
        if run.mode != Mode.REAL:
            continue
        meta = run.history.meta
        network = (meta or {}).get("network") or {}
        for host, where in (network.get("placement") or {}).items():
            how = "claimed" if where.get("claimed") else "placed"
            lines.append(f"  {host} -> node {where['node'][:12]} ({where['address']}, {how})")
    return lines


#: Without a terminal (a CI log), progress is a plain line this often instead of a bar.
PROGRESS_LINE_S = 10.0


class _Lines:
    """Progress as plain lines, at most one per ``PROGRESS_LINE_S`` (where no bar shows)."""

    def __init__(self, console: Console) -> None:
        self.console, self.last = console, -math.inf

    def say(self, line: str) -> None:
        now = time.monotonic()
        if now - self.last >= PROGRESS_LINE_S:
            self.last = now
            self.console.print(line, highlight=False, soft_wrap=True)


class _progress:
    """A progress bar for the real run (the model is too quick to need one); plain lines
    without a terminal."""

    def __init__(self, console: Console, name: str, mode: str) -> None:
        self.console, self.name, self.mode = console, name, mode
        self.bar: Progress | None = None
        self.task = TaskID(0)
        self.lines = None if console.is_terminal else _Lines(console)

    def __enter__(self) -> Callable[[float, float, dict[str, int]], None] | None:
        if self.mode == Mode.SIM:
            return None
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.completed:.1f}/{task.total:.1f} s"),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        )
        self.bar.__enter__()
        self.task = self.bar.add_task(f"{self.name} real", total=1.0, stats="bringing up")
        return self.update

    def update(self, t: float, duration: float, counts: dict[str, int]) -> None:
        assert self.bar is not None
        stats = f"ops {counts['ops']}  faults {counts['faults']}  broken {counts['broken']}"
        if self.lines is not None:
            self.lines.say(f"{self.name} real: {max(0.0, t):.0f}/{duration:.0f} s, {stats}")
        self.bar.update(
            self.task, completed=max(0.0, min(t, duration)), total=duration, stats=stats
        )

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


@main.command(name="bench")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--runtime", help="System under test (default: the scenario's).")
@click.option("--baseline", required=True, help="The runtime to compare it with.")
@click.option("--repeat", default=3, show_default=True, type=click.IntRange(1, 100))
@click.option(
    "--tensor-bytes",
    "sizes",
    multiple=True,
    type=click.IntRange(64, 64 * 1024 * 1024),
    help="A tensor size to measure (repeatable; default: the scenario's).",
)
@click.option("--interval-ms", type=click.FloatRange(0, 60_000), help="Override the pace.")
@click.option("--warmup", default=1.0, show_default=True, type=click.FloatRange(0, 3600))
@click.option("--out", "out_dir", default="out/bench", show_default=True)
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the figures.")
def bench_command(
    file: str,
    runtime: str | None,
    baseline: str,
    repeat: int,
    sizes: tuple[int, ...],
    interval_ms: float | None,
    warmup: float,
    out_dir: str,
    json_path: str | None,
) -> None:
    """The runtime against a baseline on the scenario's workload without faults, runs
    alternating: ops/s and latency per world (table, JSON, plot).

    Exit status: 0 measured, 1 a run violated a property (its figures are suspect), 2 bad
    input, 3 a runtime cannot run here.
    """
    from mwsim import bench

    _writable(json_path)

    (scenario,) = _load_all([file])
    if scenario.duration_s <= warmup:
        click.echo(
            f"{file}:1: duration_s {scenario.duration_s} leaves nothing after the "
            f"{warmup} s warm-up",
            err=True,
        )
        sys.exit(EXIT_BAD_INPUT)
    console = _Console()
    out = Path(out_dir) / scenario.name
    runtime = runtime or scenario.runtime

    def on_run(sample: bench.Sample) -> None:
        total = sample.worlds[-1].ops_per_s if sample.worlds else 0.0
        console.print(
            f"  {sample.runtime} {sample.tensor_bytes} B run {sample.repeat + 1}: "
            f"{total:.1f} ops/s ({sample.verdict})"
        )

    try:
        result = bench.bench(
            scenario,
            runtime,
            baseline,
            out,
            sizes=sizes,
            repeat=repeat,
            warmup_s=warmup,
            interval_ms=interval_ms,
            on_run=on_run,
        )
    except ProblemError as exc:
        _refuse(exc)
    except Inconclusive as exc:
        console.print(f"[yellow]{scenario.name}: inconclusive: {exc}[/]")
        sys.exit(EXIT_INCONCLUSIVE)
    except KeyboardInterrupt as exc:
        console.print("[yellow]interrupted; every process it started was stopped[/]")
        sys.exit(_interrupted_status(exc))
    console.print(bench.table(result))
    console.print(f"  plot: {bench.plot(result, out / 'bench.png')}")
    console.print(f"  json: {bench.write_json(result, json_path or out / 'bench.json')}")
    for sample in result.not_passed:
        console.print(
            f"[yellow]{sample.runtime} run {sample.repeat + 1} at {sample.tensor_bytes} B "
            f"did not pass ({sample.verdict}): its figures are suspect[/]"
        )
    failed = any(s.verdict == Result.FAIL for s in result.not_passed)
    sys.exit(EXIT_VIOLATED if failed else EXIT_OK)


@main.group()
def cluster() -> None:
    """A local multi-node Ray cluster (each node in an emulated host) for --cluster.

    Exit status: see each command's help.
    """


@cluster.command("start")
@click.option("--nodes", default=3, show_default=True, type=click.IntRange(1, 200))
def cluster_start(nodes: int) -> None:
    """Start it (node i claims mwsim-host-h<i>); print the RAY_ADDRESS line to use.

    Exit status: 0 it runs, 3 Ray is missing or the cluster could not start.
    """
    import importlib.util

    from mwsim.hosts import cluster as local

    if importlib.util.find_spec("ray") is None:
        click.echo("inconclusive: Ray is not installed (pip install 'mwsim[ray]')", err=True)
        sys.exit(EXIT_INCONCLUSIVE)
    try:
        state = local.start(nodes, say=lambda line: click.echo(f"  {line}", err=True))
    except local.ClusterError as exc:
        click.echo(f"cannot start the local cluster: {exc}", err=True)
        sys.exit(EXIT_INCONCLUSIVE)
    click.echo(f"RAY_ADDRESS={state['address']}")
    click.echo(
        f"# {state['nodes']} node(s) at {', '.join(state['node_addresses'])}; "
        "use: mwsim run FILE --real --cluster auto (or --cluster ray with RAY_ADDRESS set)",
        err=True,
    )


@cluster.command("stop")
def cluster_stop() -> None:
    """Stop it and remove every trace of it (processes, namespaces, state).

    Exit status: 0 nothing is left, 1 something was left (named).
    """
    from mwsim.hosts import cluster as local

    removed = local.stop()
    left = local.leftovers()
    click.echo(f"removed {len(removed)} namespace(s)" + (f"; left: {left}" if left else ""))
    sys.exit(1 if left else EXIT_OK)


@cluster.command("status")
def cluster_status() -> None:
    """Say whether it runs, and where.

    Exit status: 0 it runs, 1 no local cluster.
    """
    from mwsim.hosts import cluster as local

    state = local.read_state()
    if state is None:
        click.echo("no local cluster")
        sys.exit(1)
    click.echo(f"RAY_ADDRESS={state['address']}")
    click.echo(f"{state['nodes']} node(s): {', '.join(state['node_addresses'])}")


@main.command()
def clean() -> None:
    """Remove what runs whose controller died left behind (network namespaces with their
    links, rules and helpers; the controller's socket directory); live runs are left
    alone.

    Exit status: 0 (what was removed and what was kept is printed).
    """
    from mwsim.hosts import emulated
    from mwsim.replay.pool import clean_dead_homes

    for home in clean_dead_homes():
        click.echo(f"removed {home}")
    removed = emulated.clean_dead()
    for namespace in removed:
        click.echo(f"removed {namespace}")
    left = [ns for ns in emulated.ours() if ns not in removed]
    click.echo(f"{len(removed)} removed; {len(left)} of live runs kept")


@main.command()
@click.argument("history", type=click.Path(dir_okay=False))
@click.option("--scenario", "scenario_path", required=True, help="The scenario it ran.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write the report.")
@click.option("--model", "model_path", type=click.Path(dir_okay=False), help="Calibrated model.")
@click.option(
    "-v", "--verbose", is_flag=True, help="Every problem's line, not the first and a count."
)
def check(
    history: str,
    scenario_path: str,
    json_path: str | None,
    model_path: str | None,
    verbose: bool,
) -> None:
    """Judge a stored history again (new checks on old runs).

    Exit status: 0 every property holds, 1 a property is violated, 2 bad input, 3
    inconclusive.
    """
    from mwsim import report
    from mwsim.history import Hygiene, read_history
    from mwsim.runs import recheck

    _writable(json_path)

    (scenario,) = _load_all([scenario_path])
    try:
        stored = read_history(history)
    except ProblemError as exc:
        _refuse(exc)
    meta = stored.meta
    if meta is not None and meta["scenario"] != scenario.name:
        click.echo(
            f"{history}:1: this history is of scenario '{meta['scenario']}', "
            f"not '{scenario.name}' ({scenario_path})",
            err=True,
        )
        sys.exit(EXIT_BAD_INPUT)
    if meta is not None and meta.digest is not None and meta.digest != scenario.digest():
        click.echo(
            f"{history}:1: this history is of another version of scenario '{scenario.name}' "
            f"(its events or settings changed since it ran): not {scenario_path}",
            err=True,
        )
        sys.exit(EXIT_BAD_INPUT)
    if stored.first(Hygiene) is None:  # every finished run's last record
        last = stored.events[-1].t if len(stored) else 0.0
        click.echo(
            f"{history}: inconclusive: it ends at {last:.2f} s without the record a finished "
            "run ends with (hygiene): the run did not finish, or the file was cut short",
            err=True,
        )
        sys.exit(EXIT_INCONCLUSIVE)
    outcome = recheck(history, scenario, _model(model_path))
    _Console().print(report.verdict_table(outcome, verbose))
    if json_path:
        report.write_json([outcome], json_path)
    sys.exit(exit_status([outcome.verdict]))


@main.command()
@click.option(
    "--family", required=True, help="mtbf | hosts | autoscale | spot | swarm | partitions"
)
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--count", default=1, show_default=True, type=click.IntRange(1, 100_000))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@click.option("--workers", type=click.IntRange(1, 100_000), help="Workers at the start.")
@click.option("--duration", type=click.FloatRange(0.1, 86_400), help="Seconds of each run.")
def generate(
    family: str, seed: int, count: int, out_dir: str, workers: int | None, duration: float | None
) -> None:
    """Write COUNT scenario files from a stochastic FAMILY, seeds SEED, SEED+1, ...

    Exit status: 0 written (their paths are printed), 2 bad usage.
    """
    from mwsim.generate import FAMILIES
    from mwsim.generate import generate as make

    if family not in FAMILIES:
        raise click.BadParameter(f"choose one of {', '.join(FAMILIES)}", param_hint="--family")
    overrides = {k: v for k, v in (("workers", workers), ("duration_s", duration)) if v}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for n in range(seed, seed + count):
        data = make(family, n, **overrides)
        path = out / f"{data['name']}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False, width=100))
        click.echo(str(path))


@main.command()
@click.option("--runtime", default="multiworld", show_default=True)
@click.option("--out", "out_path", type=click.Path(dir_okay=False), help="Write the model here.")
@click.option("--repeat", default=2, show_default=True, type=click.IntRange(1, 20))
def calibrate(runtime: str, out_path: str | None, repeat: int) -> None:
    """Fit the simulator's timing model from micro-scenarios run for real.

    Exit status: 0 fitted, 2 bad usage, 3 the runtime cannot run here.
    """
    from mwsim.calibrate import calibrate as fit

    console = _Console()
    try:
        fitted, rows = fit(runtime, repeat=repeat, log=console.print)
    except Inconclusive as exc:
        console.print(f"[yellow]inconclusive: {exc}[/]")
        sys.exit(EXIT_INCONCLUSIVE)
    from rich.table import Table

    table = Table(title=f"timing model of {runtime}")
    for column in ("parameter", "current", "fitted", "samples"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    if out_path:
        fitted.dump(out_path)
        console.print(f"model written to {out_path}; use it with: mwsim run --model {out_path}")


@main.command()
@click.option(
    "--budget",
    default=60.0,
    show_default=True,
    type=click.FloatRange(1, 86_400),
    help="Seconds the whole session takes, shrinking and replays included (it may end up "
    "to 15 s later: the example under way is torn down).",
)
@click.option("--real", is_flag=True, help="Fuzz live deployments (stateful + differential).")
@click.option("--runtime", default="multiworld", show_default=True, help="System under test.")
@click.option(
    "--out",
    "out_dir",
    default="out/fuzz",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Failing scenarios and reports go here.",
)
@click.option(
    "--fuzzer",
    "fuzzers",
    multiple=True,
    type=click.Choice(["model", "stateful", "differential"]),
    help="Only these fuzzers (default: model; with --real stateful and differential).",
)
@click.option("--seed", type=int, help="Make the examples a function of this seed.")
@click.option(
    "--stop-after",
    type=click.IntRange(1, 1000),
    help="Stop once this many distinct failures are found (default: fuzz the whole budget).",
)
@click.option(
    "--reference",
    default="multiworld",
    show_default=True,
    help="Violations this runtime shows too are upstream findings, not the runtime's.",
)
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice([k.value for k in Kind]),
    help="Only these kinds of event (default: every kind; on --real, the network kinds "
    "where hosts can be emulated).",
)
@click.option(
    "--cluster",
    callback=lambda _ctx, _param, value: _cluster(value),
    help="With --real: the live deployments on a Ray cluster (as for run).",
)
def fuzz(
    budget: float,
    real: bool,
    runtime: str,
    out_dir: str,
    fuzzers: tuple[str, ...],
    seed: int | None,
    stop_after: int | None,
    reference: str,
    kinds: tuple[str, ...],
    cluster: str | None,
) -> None:
    """Fuzz the model (default) or live deployments for the whole budget, and report every
    distinct failure.

    Each failure is shrunk and written to OUT under a name of its own, as a scenario file
    that `mwsim run` replays, with its report. Known findings, flaky ones and the
    reference's are listed. The budget bounds the whole session; Ctrl-C or SIGTERM ends it
    early, and either way the summary is printed and kept in OUT.

    Exit status: 0 the budget ran out with no failure, 1 a failure was found, 2 bad usage,
    3 the runtime cannot run here, 130 / 143 interrupted.
    """
    from mwsim.fuzz import fuzz as explore
    from mwsim.fuzz.summary import print_summary
    from mwsim.runtimes import load, names

    for option, value in (("--runtime", runtime), ("--reference", reference)):
        if value not in names():
            raise click.BadParameter(f"choose one of {', '.join(names())}", param_hint=option)
    if real and "model" in fuzzers:
        raise click.BadParameter("the model fuzzer does not run with --real", param_hint="--fuzzer")
    if not real and set(fuzzers) - {"model"}:
        raise click.BadParameter("stateful and differential need --real", param_hint="--fuzzer")
    if cluster is not None and not real:
        hint = "a cluster runs live deployments: add --real"
        raise click.BadParameter(hint, param_hint="--cluster")
    if real:
        why = load(runtime).unavailable("gloo", 0)
        if why:
            click.echo(f"inconclusive: runtime {runtime} cannot run here: {why}", err=True)
            sys.exit(EXIT_INCONCLUSIVE)
    console, out = _Console(), Path(out_dir)
    bar = Progress(
        TextColumn("[bold]fuzz {task.fields[what]}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
        TextColumn("{task.fields[stats]}"),
        console=console,
        transient=True,
    )
    what = f"{runtime} (real)" if real else "the model"
    lines = None if console.is_terminal else _Lines(console)
    started = time.monotonic()
    with bar:
        task = bar.add_task("fuzz", total=budget, what=what, stats="starting")

        def on_batch(result: FuzzResult, kind: str) -> None:
            stats = (
                f"{result.examples} examples, {result.batches} batches (last: {kind}), "
                f"{len(result.failures)} failure(s)"
            )
            spent = min(budget, time.monotonic() - started)
            if lines is not None:
                lines.say(f"fuzz {what}: {spent:.0f}/{budget:.0f} s, {stats}")
            bar.update(task, completed=spent, stats=stats)

        result = explore(
            budget,
            real=real,
            runtime=runtime,
            out=out,
            fuzzers=fuzzers or None,
            seed=seed,
            reference=reference if real else None,
            on_batch=on_batch,
            kinds=tuple(map(Kind, kinds)) if kinds else tuple(Kind),
            stop_after=stop_after,
            cluster=cluster,
        )
    print_summary(console, result, runtime, reference)
    if result.interrupted is not None:
        console.print(
            "[yellow]interrupted; every process it started was stopped; the summary so far "
            f"is above and in {result.summary}[/]",
            soft_wrap=True,
        )
        sys.exit(128 + result.interrupted)
    console.print(f"summary: {result.summary}", soft_wrap=True)
    sys.exit(EXIT_VIOLATED if result.failures else EXIT_OK)


if __name__ == "__main__":
    main()
