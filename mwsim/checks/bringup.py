"""A failed bring-up: whose doing it was, and what reports say about it."""

from __future__ import annotations

from typing import Any

from mwsim.checks.index import Facts
from mwsim.history import Cause


def bringup_cause(f: Facts) -> Cause | None:
    """Whose doing a failed bring-up was (None: the deployment came up). An unclear one is
    the harness's only if the reference runtime did not come up either."""
    if f.bringup is None:
        return None
    cause = Cause(f.bringup.cause)
    if cause is Cause.UNCLEAR:
        served = f.reference.served if f.reference is not None else None
        return Cause.HARNESS if served is False else Cause.RUNTIME
    return cause


def headline(text: str) -> str:
    """The first line of a multi-line reason (a log tail may follow it)."""
    return (text.strip().splitlines() or [""])[0].rstrip(":")


def bringup_failure(f: Facts) -> dict[str, Any] | None:
    """What a failed bring-up was, for reports: its stage, whose doing (decided), why, and
    what the reference runtime showed (None: the deployment came up)."""
    cause = bringup_cause(f)
    if f.bringup is None or cause is None:
        return None
    reason = f.bringup.reason
    out = {"stage": f.bringup.stage, "cause": str(cause), "reason": reason}
    out["headline"] = headline(reason)
    if f.reference is not None:
        out["reference"] = f.reference.detail or ""
    return out


def not_the_runtimes(f: Facts) -> str:
    assert f.bringup is not None
    reason = headline(f.bringup.reason)
    if f.reference is not None and f.reference.served is False:
        return f"bring-up failed, and on the reference runtime too: {reason}; {f.reference.detail}"
    return f"bring-up failed by the harness's doing, not the runtime's: {reason}"
