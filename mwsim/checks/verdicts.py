"""What a property says: a ``Verdict`` (pass, fail or unknown) with one line of evidence."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any, NamedTuple


class Result(StrEnum):
    """A property's verdict."""

    PASS = "pass"
    FAIL = "fail"
    UNKNOWN = "unknown"


PASS, FAIL, UNKNOWN = Result.PASS, Result.FAIL, Result.UNKNOWN


@dataclass(frozen=True)
class Verdict:
    """One property's verdict with one line of evidence."""

    name: str
    verdict: Result
    detail: str
    world: str | None = None
    expected: bool = False  # a violation the scenario names in expect.violations
    worlds: tuple[str, ...] = ()  # every world with a problem (``world`` is the first)
    #: the kinds of evidence a violation has (no names: how a fuzzer tells bugs apart)
    evidence: tuple[str, ...] = ()
    at: float | None = None  # when its first problem was seen
    traceback: str | None = None  # the check itself raised (a bug of mwsim's): where
    #: every problem's line when there were several (``detail`` says "and N more"), at
    #: most ``MAX_PROBLEMS``; ``-v`` and the JSON report's ``problems`` show them
    problems: tuple[str, ...] = ()
    #: (world, from, to) of each bound a problem broke: what the picture draws in red
    bounds: tuple[tuple[str, float, float], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = {
            k: v
            for k, v in asdict(self).items()
            if v is not None and k not in ("worlds", "evidence", "problems", "bounds")
        }
        if len(self.worlds) > 1:
            out["worlds"] = list(self.worlds)
        if self.evidence:
            out["evidence"] = list(self.evidence)
        if self.problems:
            out["problems"] = list(self.problems)
        return out


class Evidence(NamedTuple):
    """One problem found by a property: the world (if any), one line saying what happened,
    its kind (the line without names or numbers that vary), when it was seen and the window
    of the bound it broke (from the fault or the last op to when it was due)."""

    world: str | None
    detail: str
    kind: str
    at: float | None = None
    window: tuple[float, float] | None = None


#: A property keeps at most this many problem lines (a 4,096-worker hour can have
#: thousands); the count in ``detail`` is always exact.
MAX_PROBLEMS = 1000


def fmt(t: float) -> str:
    return f"{t:.2f} s"


def summary(name: str, problems: list[Evidence], ok: str, unknown: Sequence[str] = ()) -> Verdict:
    """Fail with the first problem (and how many more); else unknown with the first reason
    for doubt; else pass with ``ok``."""
    if not problems:
        return Verdict(name, UNKNOWN, unknown[0]) if unknown else Verdict(name, PASS, ok)
    first = problems[0]
    more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
    worlds = tuple(dict.fromkeys(p.world for p in problems if p.world is not None))
    kinds = tuple(dict.fromkeys(p.kind for p in problems))
    listed = tuple(p.detail for p in problems[:MAX_PROBLEMS]) if len(problems) > 1 else ()
    bounds = tuple((p.world, *p.window) for p in problems[:MAX_PROBLEMS] if p.world and p.window)
    return Verdict(
        name,
        FAIL,
        first.detail + more,
        first.world,
        worlds=worlds,
        evidence=kinds,
        at=first.at,
        problems=listed,
        bounds=bounds,
    )
