"""**hygiene**: the run left no process, port or namespace behind."""

from __future__ import annotations

from mwsim.checks.index import Facts
from mwsim.checks.verdicts import FAIL, PASS, UNKNOWN, Verdict
from mwsim.scenario import Property

NAME = Property.HYGIENE


def check(f: Facts) -> Verdict:
    if f.hygiene is None:
        return Verdict(NAME, UNKNOWN, "the history has no hygiene record")
    detail = f.hygiene.detail or ""
    if f.hygiene.ok:
        return Verdict(NAME, PASS, detail or "clean")
    return Verdict(NAME, FAIL, detail, evidence=("left behind",), at=f.hygiene.t)
