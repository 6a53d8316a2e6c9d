"""The ``mwsim`` command (Contract 3)."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path

import click

from mwsim.problems import ProblemError
from mwsim.scenario import load_scenario

EXIT_OK, EXIT_VIOLATED, EXIT_BAD_INPUT, EXIT_INCONCLUSIVE = 0, 1, 2, 3


def expand(paths: Iterable[str]) -> list[Path]:
    """Files as given; directories become their ``*.yaml`` / ``*.yml`` files, sorted."""
    out: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            out += sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml"))
        else:
            out.append(path)
    return out


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mwsim")
def main() -> None:
    """Fault-injection simulation and testing for elastic model serving on MultiWorld."""


@main.command()
@click.argument("files", nargs=-1, required=True)
def validate(files: tuple[str, ...]) -> None:
    """Check scenario files; print path:line: problem for each problem found."""
    bad = 0
    for path in expand(files):
        try:
            load_scenario(path)
        except ProblemError as exc:
            bad += 1
            for problem in exc.problems:
                click.echo(str(problem), err=True)
        else:
            click.echo(f"ok  {path}")
    sys.exit(EXIT_BAD_INPUT if bad else EXIT_OK)


if __name__ == "__main__":
    main()
