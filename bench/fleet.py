"""The autoscaled fleet of the scale benchmark, as a scenario file.

    python bench/fleet.py [--workers 4096] [--hours 1] [--seed 0] > big.yaml

A fan-in of ``workers`` workers; each worker, original or replacement, crashes as a
Poisson process (MTBF 1 h), and each crashed worker is replaced by a joining one 10 s
later, which may crash in its turn (never before it joined); the last minute is quiet, so
every bound falls due inside the run. At 4,096 workers and one hour that is about 4,000
crashes and 4,000 joins.
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys

import yaml

MTBF_S = 3600.0
REPLACE_AFTER_S = 10.0
QUIET_END_S = 60.0  # no event in the last minute: every bound falls due in the run (a
# crash at 40,960 workers may take the leader 52 s to see: its poll of 40,960 worlds)


def fleet(workers: int = 4096, hours: float = 1.0, seed: int = 0) -> dict:
    """The scenario's data: crashes at MTBF 1 h per worker, a replacement 10 s after each."""
    rng = random.Random(seed)
    horizon = hours * 3600.0
    events: list[dict] = []
    # (crash time, worker) for every live worker, drawn when it starts
    due = [(rng.expovariate(1 / MTBF_S), f"w{i}") for i in range(1, workers + 1)]
    heapq.heapify(due)
    replacements = 0
    last = horizon - QUIET_END_S
    while due and due[0][0] < last:
        at, worker = heapq.heappop(due)
        events.append({"at": round(at, 3), "do": "crash", "target": worker})
        joins_at = at + REPLACE_AFTER_S
        if joins_at >= last:
            continue
        replacements += 1
        new = f"r{replacements}"
        events.append(
            {
                "at": round(joins_at, 3),
                "do": "join",
                "worker": new,
                "worlds": {f"rworld{replacements}": ["leader", new]},
            }
        )
        heapq.heappush(due, (joins_at + rng.expovariate(1 / MTBF_S), new))
    events.sort(key=lambda e: e["at"])
    return {
        "mwsim": 1,
        "name": f"fleet-{workers}-{hours:g}h",
        "description": f"{workers}-worker fan-in, Poisson crashes (MTBF 1 h per worker), "
        f"each replaced by a joining worker {REPLACE_AFTER_S:g} s later",
        "topology": {"generator": "fan_in", "workers": workers, "hosts": 64},
        "workload": {"kind": "stream"},
        "duration_s": horizon,
        "events": events,
    }


class _Flow(yaml.SafeDumper):
    """Events one per line (flow style inside), the rest block style."""


def _represent_dict(dumper: yaml.SafeDumper, data: dict) -> yaml.Node:
    flow = "at" in data or all(isinstance(v, list) for v in data.values())
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)


_Flow.add_representer(dict, _represent_dict)


def dump(data: dict) -> str:
    return yaml.dump(data, Dumper=_Flow, sort_keys=False, width=200)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4096)
    parser.add_argument("--hours", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sys.stdout.write(dump(fleet(args.workers, args.hours, args.seed)))


if __name__ == "__main__":
    main()
