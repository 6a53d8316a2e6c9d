"""mwsim's benchmarks: each goal is a ratio measured side by side in one run.

    python bench/run.py [bringup] [overhead] [sim] [fleet] [hosts] [capacity] [serve]
                        [serve_model] [cluster]
                        [--repeat N] [--json FILE]

bringup   an 8-worker fan-in brought up to its first op, vs 8 bare processes importing
          torch and multiworld (goal: <= 1.5x)
overhead  stream throughput through the harness vs the same loop written directly against
          MultiWorld, same tensor, same environment (goal: <= 2 % slower)
sim       1 simulated hour of a 4,096-worker fan-in, Poisson failures (1 h MTBF per worker)
          and load-driven joins: wall time (goal <= 5 s), peak memory (goal <= 2 GiB), and
          the ratio to a naive simpy model that schedules every watchdog heartbeat (goal >= 10x)
fleet     what a user runs: ``mwsim run FILE --sim --json`` end to end (load, plan,
          simulate, check, JSON, trace, picture) on the autoscaled fleet of bench/fleet.py
          (4,096 workers, 1 h, ~8,000 crashes and joins; goal <= 5 s and <= 1 GiB) and on
          one ten times larger (40,960 workers; goal within 12x of the first)
hosts     16 emulated hosts set up and torn down (goal <= 0.5 s together), and each
          degraded-link knob measured against the undegraded link (bench/hosts.py; root)
capacity  the real replay's largest passing fan-in (16 ... 256 workers; one crash, one 1 s
          hang, one join, 10 s) at 100 ms and 20 ms intervals, with bring-up time and the
          harness's own lag per size (goal: 256 workers at 100 ms)
serve_model  the model serving a 4,096-replica fan-in for one simulated hour through the
          CLI (mwsim run --sim --json): 100,000 and 1 million requests
serve     the serve workload's answers per second through the harness vs the same fan-in loop
          written directly on MultiWorld (bench/direct_serve.py), 4 replicas, as fast as they
          go (goal: <= 5 % fewer), and the largest Poisson rate at which a real run still
          answers with a p99 under 100 ms
cluster   bring-up of a 3-host, 8-worker fan-in to its first op on a local 3-node Ray
          cluster (one host per node: host actors, a fork server per node) vs the same run
          on this machine (one fork server); the cluster is started first (root, Ray)

Runs alternate (A, B, A, B, ...) so both sides see the same machine; medians are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from mwsim.history import read_history  # noqa: E402
from mwsim.replay import run_real  # noqa: E402
from mwsim.replay.zygote import THREAD_LIMITS  # noqa: E402
from mwsim.testing import scenario  # noqa: E402

ENV = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
THREADS = THREAD_LIMITS  # the agents' thread limits, for the direct loops too


# -- bring-up -----------------------------------------------------------------------------


def bare_imports(n: int) -> float:
    """Wall time for n processes started together to import torch and multiworld."""
    code = "import torch, multiworld.manager, multiworld.communicator"
    start = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-c", code], env=ENV) for _ in range(n)]
    for proc in procs:
        proc.wait(timeout=300)
    return time.monotonic() - start


def harness_bringup(n: int, tmp: Path) -> float:
    """Wall time from starting a run of an n-worker fan-in to its first op."""
    s = scenario(f"topology: {{generator: fan_in, workers: {n - 1}}}\nduration_s: 1.0\n", "bringup")
    outcome = run_real(s, tmp / f"bringup-{time.monotonic_ns()}")
    history = read_history(outcome.history)
    started = history.meta.t  # the run record is written when the controller starts
    first = min(e.t for e in history.of_kind("op"))
    return first - started


def bench_bringup(repeat: int, tmp: Path) -> dict:
    bare, ours = [], []
    for _ in range(repeat):
        bare.append(bare_imports(8))
        ours.append(harness_bringup(8, tmp))
    b, o = statistics.median(bare), statistics.median(ours)
    return {
        "bare_imports_s": round(b, 3),
        "harness_first_op_s": round(o, 3),
        "ratio": round(o / b, 3),
        "goal": "<= 1.5",
        "samples": {"bare": bare, "harness": ours},
    }


def controller_bringup(cluster: str | None, tmp: Path) -> float:
    """Wall time of ``Controller.start``: everything up to the workload serving everywhere
    (on a cluster: placement, host actors, a fork server per node)."""
    from mwsim.replay.controller import Controller

    s = scenario(
        "topology: {generator: fan_in, workers: 7, hosts: 3}\nduration_s: 1.0\n", "bringup3"
    )
    controller = Controller(s, tmp / f"bringup-{time.monotonic_ns()}", cluster=cluster)
    began = time.monotonic()
    try:
        controller.start()
        return time.monotonic() - began
    finally:
        controller.finish()


def bench_cluster(repeat: int, tmp: Path) -> dict:
    from mwsim.testing import local_cluster

    here, ray = [], []
    with local_cluster(3) as state:
        controller_bringup("auto", tmp)  # the first connection and worker pool warm-up
        for _ in range(repeat):
            here.append(controller_bringup(None, tmp))
            ray.append(controller_bringup("auto", tmp))
    h, r = statistics.median(here), statistics.median(ray)
    return {
        "local_bringup_s": round(h, 3),
        "cluster_bringup_s": round(r, 3),
        "ratio": round(r / h, 3),
        "nodes": state["nodes"],
        "goal": "reported (the issue sets none): a fork server per node, started per run",
        "samples": {"local": here, "cluster": ray},
    }


# -- throughput overhead ------------------------------------------------------------------


def direct_rate(seconds: float, tensor_bytes: int) -> float:
    out = subprocess.run(
        [sys.executable, str(HERE / "direct_loop.py"), str(seconds), str(tensor_bytes)],
        capture_output=True,
        text=True,
        timeout=seconds + 300,
        env={**ENV, **THREADS},
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])["ops_per_s"]


def harness_rate(seconds: float, tensor_bytes: int, tmp: Path) -> float:
    s = scenario(
        f"topology: {{generator: fan_in, workers: 1}}\n"
        f"workload: {{kind: stream, tensor_bytes: {tensor_bytes}, interval_ms: 0}}\n"
        f"duration_s: {seconds}\n",
        "overhead",
    )
    outcome = run_real(s, tmp / f"overhead-{time.monotonic_ns()}")
    ops = [e for e in read_history(outcome.history).of_kind("op") if 0 <= e.t < seconds]
    assert ops and all(e["ok"] for e in ops)
    return len(ops) / seconds


def bench_overhead(repeat: int, tmp: Path, seconds: float = 8.0, tensor_bytes: int = 4096) -> dict:
    direct, ours = [], []
    for _ in range(repeat):
        direct.append(direct_rate(seconds, tensor_bytes))
        ours.append(harness_rate(seconds, tensor_bytes, tmp))
    d, o = statistics.median(direct), statistics.median(ours)
    return {
        "direct_ops_per_s": round(d, 1),
        "harness_ops_per_s": round(o, 1),
        "overhead_pct": round(100 * (1 - o / d), 2),
        "goal": "<= 2 %",
        "samples": {"direct": direct, "harness": ours},
    }


# -- serving ------------------------------------------------------------------------------

SERVE_REPLICAS = 4
SERVE_SECONDS = 8.0
P99_GOAL_MS = 100.0
SERVE_RATES = (50, 100, 200, 400, 800)


def direct_serve_rate(seconds: float = SERVE_SECONDS) -> float:
    """Answers/s of the fan-in loop written directly on MultiWorld (the agents' threads)."""
    out = subprocess.run(
        [sys.executable, str(HERE / "direct_serve.py"), str(seconds), str(SERVE_REPLICAS), "4096"],
        capture_output=True,
        text=True,
        timeout=seconds + 300,
        env={**os.environ, **THREADS},
        check=True,
    )
    return float(json.loads(out.stdout.strip().splitlines()[-1])["answers_per_s"])


def serve_run(rate: float, arrivals: str, tmp: Path, seconds: float = SERVE_SECONDS) -> dict:
    """One real serve run of a 4-replica fan-in: answers/s after the first second, p99."""
    from mwsim.history import Answered, Unserved

    s = scenario(
        f"topology: {{generator: fan_in, workers: {SERVE_REPLICAS}}}\n"
        f"workload: {{kind: serve, rate_per_s: {rate}, arrivals: {arrivals}, "
        "timeout_ms: 60000}\n"
        f"duration_s: {seconds}\n",
        f"serve-{int(rate)}",
    )
    outcome = run_real(s, tmp / f"{s.name}-{time.monotonic_ns()}")
    history = read_history(outcome.history)
    answers = [a for a in history.of(Answered) if 1.0 <= a.t < seconds]
    latencies = sorted(a.latency_s * 1000 for a in answers)
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else None
    return {
        "rate": rate,
        "answers_per_s": round(len(answers) / (seconds - 1.0), 1),
        "p99_ms": round(p99, 2) if p99 is not None else None,
        "unserved": len(history.of(Unserved)),
        "right": all(a.right for a in answers),
    }


def bench_serve(repeat: int, tmp: Path) -> dict:
    """Harness vs direct at saturation (offered 1.5x the direct loop's rate, constant
    arrivals, alternating), then the rate sweep for the p99 goal."""
    direct, ours = [], []
    for _ in range(repeat):
        d = direct_serve_rate()
        direct.append(d)
        ours.append(serve_run(round(1.5 * d), "constant", tmp)["answers_per_s"])
    d, o = statistics.median(direct), statistics.median(ours)
    sweep = [serve_run(rate, "poisson", tmp) for rate in SERVE_RATES]
    met = [r["rate"] for r in sweep if r["p99_ms"] is not None and r["p99_ms"] <= P99_GOAL_MS]
    return {
        "direct_answers_per_s": round(d, 1),
        "harness_answers_per_s": round(o, 1),
        "fewer_pct": round(100 * (1 - o / d), 2),
        "goal": "<= 5 % fewer",
        "largest_rate_p99_under_100ms": max(met, default=None),
        "sweep": sweep,
        "samples": {"direct": direct, "harness": ours},
    }


# -- the real replay's capacity -----------------------------------------------------------

CAPACITY_SIZES = (16, 32, 64, 128, 256)


def capacity_scenario(workers: int, interval_ms: int) -> Any:
    new = f"w{workers + 1}"
    return scenario(
        f"topology: {{generator: fan_in, workers: {workers}}}\n"
        f"workload: {{kind: stream, interval_ms: {interval_ms}}}\n"
        "duration_s: 10\n"
        "events:\n"
        "  - {at: 3.0, do: crash, target: w2}\n"
        "  - {at: 5.0, do: hang, target: w3, for_s: 1.0}\n"
        f"  - {{at: 6.0, do: join, worker: {new}, "
        f"worlds: {{world{workers + 1}: [leader, {new}]}}}}\n",
        f"capacity-{workers}-{interval_ms}ms",
    )


def capacity_run(workers: int, interval_ms: int, tmp: Path) -> dict:
    """One real run of the capacity scenario: its verdicts, bring-up and lag."""
    from mwsim.runs import run_scenario

    s = capacity_scenario(workers, interval_ms)
    start = time.monotonic()
    outcome = run_scenario(s, mode="real", out_dir=tmp / f"{s.name}-{time.monotonic_ns()}")
    wall = time.monotonic() - start
    run = outcome.runs[0]
    history = run.history
    lags: dict[str, float] = {}
    for e in history.of_kind("lag"):
        lags[e["source"]] = max(lags.get(e["source"], 0.0), float(e["lag_s"]))
    meta = history.meta
    return {
        "workers": workers,
        "interval_ms": interval_ms,
        "verdict": str(outcome.verdict),
        "properties": {v.name: str(v.verdict) for v in outcome.verdicts},
        "first_failure": next((v.detail for v in outcome.verdicts if v.verdict == "fail"), None),
        "reason": run.reason or None,
        "bringup_s": round(-meta.t, 2) if meta is not None else None,
        "wall_s": round(wall, 1),
        "ops": len(history.of_kind("op")),
        "largest_lag_s": lags,
    }


def bench_capacity(repeat: int, tmp: Path) -> dict:
    """Each size once per interval (``repeat`` is not used: one 256-worker run is a minute)."""
    runs = []
    for interval in (100, 20):
        for workers in CAPACITY_SIZES:
            result = capacity_run(workers, interval, tmp)
            print("capacity", json.dumps(result), flush=True)
            runs.append(result)
    largest = {
        f"{interval}ms": max(
            (r["workers"] for r in runs if r["interval_ms"] == interval and r["verdict"] == "pass"),
            default=0,
        )
        for interval in (100, 20)
    }
    return {"largest_passing": largest, "goal": "256 workers at 100 ms", "samples": runs}


# -- simulator ----------------------------------------------------------------------------


def bench_sim(repeat: int) -> dict:
    """Each side runs in its own process so peak memory is its own."""
    ours = [json.loads(_py("bench/sim_big.py", "ours")) for _ in range(repeat)]
    naive = json.loads(_py("bench/sim_big.py", "naive", "120"))
    wall = statistics.median(r["simulate_s"] for r in ours)
    naive_hour = naive["simulate_s"] * 3600 / naive["horizon_s"]
    return {
        "simulate_s": round(wall, 3),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in ours),
        "history_events": ours[0]["events"],
        "scenario": ours[0]["scenario"],
        "naive_s_for_120_simulated_s": round(naive["simulate_s"], 2),
        "naive_heartbeat_events_for_120_s": naive["events"],
        "naive_s_per_hour_extrapolated": round(naive_hour, 1),
        "ratio": round(naive_hour / wall, 1),
        "goals": {"simulate_s": "<= 5", "peak_rss_mib": "<= 2048", "ratio": ">= 10"},
    }


def _cli_run(path: Path, out: Path) -> tuple[float, float]:
    """Wall seconds and peak MiB of one ``mwsim run PATH --sim --json`` process."""
    command = [sys.executable, "-m", "mwsim.cli", "run", str(path), "--sim"]
    command += ["--out", str(out), "--json", str(out / "report.json")]
    start = time.monotonic()
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, cwd=HERE.parent, env=ENV)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, f"mwsim run {path} exited {proc.returncode}"
    return wall, usage.ru_maxrss / 1024


def bench_fleet(repeat: int, tmp: Path) -> dict:
    """The CLI end to end on the fleet and on one ten times larger, alternately."""
    sys.path.insert(0, str(HERE))
    from fleet import dump, fleet

    sizes = {"fleet": 4096, "fleet_x10": 40960}
    # a user's mwsim has its bytecode cached; this machine sets PYTHONDONTWRITEBYTECODE
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(HERE.parent / "mwsim")], check=True
    )
    files = {}
    for name, workers in sizes.items():
        data = fleet(workers)
        files[name] = tmp / f"{name}.yaml"
        files[name].write_text(dump(data))
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in sizes}
    for i in range(repeat):
        for name, path in files.items():
            samples[name].append(_cli_run(path, tmp / f"{name}-{i}"))
    result: dict[str, Any] = {}
    for name, path in files.items():
        events = path.read_text().count("\n- {")
        result[name] = {
            "workers": sizes[name],
            "events": events,
            "wall_s": round(statistics.median(w for w, _ in samples[name]), 2),
            "peak_rss_mib": round(max(m for _, m in samples[name]), 1),
        }
    result["ratio"] = round(result["fleet_x10"]["wall_s"] / result["fleet"]["wall_s"], 2)
    result["goals"] = {"wall_s": "<= 5", "peak_rss_mib": "<= 1024", "ratio": "<= 12"}
    result["samples"] = samples
    return result


#: The model's serving at scale: a 4,096-replica fan-in for one simulated hour, four
#: replicas crashing; 278 requests/s is a million requests (and a tenth of that rate).
SERVE_MODEL_RATES = {"serve_model_100k": 27.8, "serve_model_1m": 278.0}


def bench_serve_model(repeat: int, tmp: Path) -> dict:
    """``mwsim run --sim --json`` end to end on the serving fleet, at two rates."""
    files = {}
    for name, rate in SERVE_MODEL_RATES.items():
        files[name] = tmp / f"{name}.yaml"
        files[name].write_text(
            f"mwsim: 1\nname: {name.replace('_', '-')}\n"
            "topology: {generator: fan_in, workers: 4096, hosts: 64}\n"
            f"workload: {{kind: serve, rate_per_s: {rate}, arrivals: poisson}}\n"
            "duration_s: 3600\nevents:\n"
            + "".join(f"  - {{at: {600 * k}, do: crash, target: w{k}}}\n" for k in (1, 2, 3, 4))
        )
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in files}
    for i in range(repeat):
        for name, path in files.items():
            samples[name].append(_cli_run(path, tmp / f"{name}-{i}"))
    result: dict[str, Any] = {
        name: {
            "requests_per_s": SERVE_MODEL_RATES[name],
            "wall_s": round(statistics.median(w for w, _ in samples[name]), 2),
            "peak_rss_mib": round(max(m for _, m in samples[name]), 1),
        }
        for name in files
    }
    result["goal"] = "1 million requests over 4,096 replicas in <= 10 s end to end"
    result["samples"] = samples
    return result


def _py(*args: str, every: bool = False) -> Any:
    """Run a bench script; its last output line (``every``: all of them)."""
    out = subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
        cwd=HERE.parent,
    )
    lines = out.stdout.strip().splitlines()
    return lines if every else lines[-1]


def bench_hosts(repeat: int) -> dict:
    lines = _py("bench/hosts.py", "--repeat", str(repeat), every=True)
    return {line.split(" ", 1)[0]: json.loads(line.split(" ", 1)[1]) for line in lines}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    everything = [
        "bringup",
        "overhead",
        "sim",
        "fleet",
        "hosts",
        "capacity",
        "serve",
        "serve_model",
    ]
    parser.add_argument("which", nargs="*", default=everything)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(prefix="mwsim-bench-") as tmp:
        for name in args.which:
            if name == "hosts":
                results[name] = bench_hosts(args.repeat)
            elif name == "sim":
                results[name] = bench_sim(args.repeat)
            else:
                fn = {
                    "bringup": bench_bringup,
                    "overhead": bench_overhead,
                    "fleet": bench_fleet,
                    "capacity": bench_capacity,
                    "serve": bench_serve,
                    "serve_model": bench_serve_model,
                    "cluster": bench_cluster,
                }[name]
                results[name] = fn(args.repeat, Path(tmp))
            print(name, json.dumps({k: v for k, v in results[name].items() if k != "samples"}))
    if args.json_path:
        Path(args.json_path).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
