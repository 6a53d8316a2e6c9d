"""A fuzzing session's summary for people: its log, what was the reference's, flaky or a
known finding, then each distinct failure with its reproducer (``mwsim fuzz`` prints it;
the JSON summary is ``FuzzResult.to_dict``)."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape

from mwsim.checks import FAIL
from mwsim.fuzz.session import FuzzResult
from mwsim.fuzz.signatures import describe
from mwsim.runtimes import load


def print_summary(console: Console, result: FuzzResult, runtime: str, reference: str) -> None:
    """Print what a fuzzing session did and found: its log, then each distinct failure."""
    for line in result.log:  # whole lines: they end in paths to copy
        console.print(f"  {escape(line)}", soft_wrap=True)
    for found in result.upstream:
        console.print(
            f"[yellow]{reference} violates it too (not the runtime's):[/] {found.path}",
            soft_wrap=True,
        )
    for found in result.flaky:
        console.print(
            f"[yellow]seen once, not again on replay (flaky):[/] {found.path}", soft_wrap=True
        )
    for known in result.known:
        what = load(runtime).known_findings.get(known.finding or "", "")
        console.print(
            f"[yellow]known finding {known.finding} ({escape(what)}):[/] {known.path}",
            soft_wrap=True,
        )
    summary = f"{result.examples} examples in {result.batches} batches, {result.elapsed_s:.0f} s"
    if result.bringup_failures:
        summary += f", {len(result.bringup_failures)} skipped: the deployment did not come up"
    if result.interrupted is not None:
        summary += ", stopped early"
    if not result.failures:
        so_far = " so far" if result.interrupted is not None else ""
        console.print(f"[green]no violation found{so_far}[/] ({summary})")
        return
    console.print(f"[red]{len(result.failures)} distinct failure(s)[/] ({summary})")
    for number, failure in enumerate(result.failures, 1):
        console.print(
            f"[bold]{number}. {escape(describe(failure.signature))}[/]: found by "
            f"{failure.found_by} after {failure.found_after_s:.0f} s, "
            f"{len(failure.violation.scenario.events)} event(s), hit by {failure.hits} example(s)"
        )
        if failure.note:
            console.print(f"     [yellow]{escape(failure.note)}[/]")
        for v in failure.violation.verdicts:
            if v.verdict == FAIL:
                console.print(f"     {v.name}: {escape(v.detail)}")
        console.print(f"     scenario: {failure.path}", soft_wrap=True)
        console.print(f"     report: {failure.report}", soft_wrap=True)
        for line in failure.reproduce:  # whole lines, to copy and paste
            console.print(f"     reproduce: {escape(line)}", soft_wrap=True)
