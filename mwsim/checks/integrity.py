"""**integrity**: every op reported successful carried the right data, in order, once."""

from __future__ import annotations

from mwsim.checks.index import Facts
from mwsim.checks.reasoning import formed_at, healthy_segments
from mwsim.checks.verdicts import Evidence, Verdict, fmt, summary
from mwsim.scenario import Property

NAME = Property.INTEGRITY


def _healthy_over(segments: list[tuple[float, float]], a: float, b: float) -> bool:
    return any(s <= a and b <= e for s, e in segments)


def check(f: Facts) -> Verdict:
    problems: list[Evidence] = []
    total = 0
    for world_id, streams in f.ops.items():
        life = f.plan.world(world_id)
        healthy = healthy_segments(f, life)
        formed = formed_at(f, life) or life.start
        for (worker, peer), segs in streams.items():
            source = f" from {peer}" if peer else ""
            expected, last_t = 0, formed
            for seg in segs:
                total += seg.n
                where = f"{life.name}: op {seg.first} at {worker}{source} at {fmt(seg.t0)}"
                if not seg.ok:
                    problems.append(
                        Evidence(life.name, f"{where} carried wrong data", "wrong data", seg.t0)
                    )
                elif seg.first < expected:
                    problems.append(
                        Evidence(
                            life.name,
                            f"{where} is a duplicate or out of order",
                            "duplicate or out of order",
                            seg.t0,
                        )
                    )
                elif seg.first > expected and _healthy_over(healthy, last_t, seg.t0):
                    lost = f"{expected}" + (
                        f"..{seg.first - 1}" if seg.first - 1 > expected else ""
                    )
                    problems.append(
                        Evidence(
                            life.name,
                            f"{where}: op(s) {lost} lost while healthy",
                            "lost while healthy",
                            seg.t0,
                        )
                    )
                expected = max(expected, seg.first + seg.n)
                last_t = seg.t1
    return summary(NAME, problems, f"{total} op(s) carried the right data, in order")
