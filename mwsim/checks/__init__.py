"""The properties of a run, judged from its History and its scenario.

The same code judges a predicted (simulated) and an observed (real) history. First the
facts are read out of the history once (``index``); each property is then a module with
a plain function ``check(facts) -> Verdict`` and its ``NAME``; ``judging`` runs them all,
each isolated (a check that raises is ``unknown`` with its traceback, and the others
still judge), and gives the overall verdict.

Modules: ``verdicts`` (what a property says), ``index`` (the facts), ``reasoning``
(shared by several properties), one per property (``progress``, ``detection``,
``no_false_alarm``, ``integrity``, ``scale_out``, ``recovery``, ``hygiene``,
``survival``, ``errors``, ``conformance``), ``bringup`` (a failed bring-up), ``judging``.
"""

from mwsim.checks.bringup import bringup_cause, bringup_failure, headline
from mwsim.checks.conformance import CONFORMANCE_TOLERANCE_S, check_conformance, conformance_of
from mwsim.checks.index import Bounds, Facts, Injected, Lag, Seg, facts
from mwsim.checks.judging import (
    CHECKS,
    PROPERTIES,
    broken_worlds,
    check,
    detections,
    evaluate,
    expected_violations,
    judge,
    safely,
    violated_pairs,
)
from mwsim.checks.reasoning import healthy_segments
from mwsim.checks.verdicts import FAIL, PASS, UNKNOWN, Evidence, Result, Verdict

__all__ = [
    "CHECKS",
    "CONFORMANCE_TOLERANCE_S",
    "FAIL",
    "PASS",
    "PROPERTIES",
    "UNKNOWN",
    "Bounds",
    "Evidence",
    "Facts",
    "Injected",
    "Lag",
    "Result",
    "Seg",
    "Verdict",
    "bringup_cause",
    "bringup_failure",
    "broken_worlds",
    "check",
    "check_conformance",
    "conformance_of",
    "detections",
    "evaluate",
    "expected_violations",
    "facts",
    "headline",
    "healthy_segments",
    "judge",
    "safely",
    "violated_pairs",
]
