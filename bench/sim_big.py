"""One side of the simulator benchmark, in its own process (so peak memory is its own).

python bench/sim_big.py ours            mwsim's model, 1 simulated hour
python bench/sim_big.py naive SECONDS   a naive simpy model of the same deployment that
                                        schedules every watchdog heartbeat and check
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

import simpy
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mwsim.events import Crash, Join, Kind, Leave
from mwsim.generate import generate
from mwsim.scenario import parse_scenario
from mwsim.sim import simulate

WORKERS, HOUR = 4096, 3600.0


def deployment():
    """4,096 workers in a fan-in; Poisson crashes (1 h MTBF each) and load-driven joins."""
    data = generate(
        "autoscale",
        1,
        workers=WORKERS,
        hosts=64,
        duration_s=HOUR,
        mtbf_s=HOUR,
        failures=True,
        workload="stream",
    )
    return parse_scenario(yaml.safe_dump(data, sort_keys=False), "big")


def ours() -> dict:
    s = deployment()
    start = time.perf_counter()
    history = simulate(s)
    wall = time.perf_counter() - start
    return {
        "simulate_s": wall,
        "events": len(history),
        "scenario": f"{WORKERS} workers, {len(s.events)} events "
        f"({sum(isinstance(e, Crash) for e in s.events)} crashes, "
        f"{sum(isinstance(e, Join) for e in s.events)} joins, "
        f"{sum(isinstance(e, Leave) for e in s.events)} leaves), {HOUR:g} s",
    }


def naive(horizon: float) -> dict:
    """Every worker ticks into each of its worlds every 0.3 s; every member checks every
    peer every 3 s. Faults stop a worker's ticks; a check that sees no new tick reports."""
    s = deployment()
    p = s.plan
    env = simpy.Environment()
    ticks: dict[tuple[str, str], int] = {}
    dead: set[str] = set()
    reports: list[tuple[float, str, str]] = []
    counted = [0]

    def heartbeat(worker: str, worlds: list[str]):
        while worker not in dead:
            for world in worlds:
                ticks[(world, worker)] = ticks.get((world, worker), 0) + 1
            counted[0] += 1
            yield env.timeout(0.3)

    def checker(world: str, me: str, peers: list[str]):
        seen: dict[str, int] = {}
        while me not in dead:
            yield env.timeout(3.0)
            counted[0] += 1
            for peer in peers:
                now = ticks.get((world, peer), 0)
                if seen.get(peer) == now:
                    reports.append((env.now, world, me))
                    return
                seen[peer] = now

    def faults():
        for step in p.steps:
            yield env.timeout(max(0.0, step.event.at - env.now))
            if step.event.kind in (Kind.CRASH, Kind.LEAVE):
                dead.add(step.event.subject)
            elif isinstance(step.event, Join):
                worker = step.event.worker
                worlds = list(step.event.worlds)
                env.process(heartbeat(worker, worlds))
                for world, members in step.event.worlds.items():
                    for me in members:
                        env.process(checker(world, me, [m for m in members if m != me]))

    topology = p.initial
    for worker in topology.workers():
        env.process(heartbeat(worker, topology.worlds_of(worker)))
    for world in topology.worlds():
        members = list(topology.members(world))
        for me in members:
            env.process(checker(world, me, [m for m in members if m != me]))
    env.process(faults())
    start = time.perf_counter()
    env.run(until=horizon)
    return {"simulate_s": time.perf_counter() - start, "events": counted[0], "horizon_s": horizon}


def main() -> None:
    result = ours() if sys.argv[1] == "ours" else naive(float(sys.argv[2]))
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
