"""``mwsim run --sim``, ``check``, ``generate``: exit statuses and outputs (no real processes)."""

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from mwsim.cli import main

GOOD = """\
mwsim: 1
name: good
topology: {generator: fan_in, workers: 2}
duration_s: 5
events: [{at: 2.0, do: crash, target: w1}]
"""


def invoke(*args):
    return CliRunner().invoke(main, list(args))


def test_run_sim_passes_and_writes_everything(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    result = invoke(
        "run",
        str(path),
        "--sim",
        "--out",
        str(tmp_path / "out"),
        "--json",
        str(tmp_path / "r.json"),
    )
    assert result.exit_code == 0, result.output
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["verdict"] == "pass" and data["mode"] == "sim"
    out = tmp_path / "out" / "good"
    assert (out / "sim" / "history.jsonl").exists()
    assert (out / "timeline.png").exists() and (out / "trace.json").exists()
    assert "timeline:" in result.output


def test_bad_file_exits_2_before_anything_runs(tmp_path):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(GOOD)
    bad.write_text(GOOD + "extra: 1\n")
    result = invoke("run", str(good), str(bad), "--sim", "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert f"{bad}:6: unknown key 'extra'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_override_that_makes_the_scenario_invalid_exits_2(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(
        "mwsim: 1\nname: x\ntopology:\n  generator: explicit\n  hosts: {h0: {gpus: 0}}\n"
        "  workers: {a: {host: h0}, b: {host: h0}}\n  worlds: {ab: [a, b]}\n"
    )
    result = invoke("run", str(path), "--sim", "--backend", "nccl", "--out", str(tmp_path / "o"))
    assert result.exit_code == 2 and "backend nccl needs a GPU" in result.stderr


def test_an_unknown_runtime_on_the_command_line_is_a_usage_error(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    result = invoke(
        "run", str(path), "--real", "--runtime", "no-such-runtime", "--out", str(tmp_path / "o")
    )
    assert result.exit_code == 2
    assert "Invalid value for --runtime: choose one of" in result.output


def test_check_gives_the_verdicts_of_the_run_and_flags_tampering(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    invoke(
        "run",
        str(path),
        "--sim",
        "--out",
        str(tmp_path / "out"),
        "--json",
        str(tmp_path / "run.json"),
    )
    history = tmp_path / "out" / "good" / "sim" / "history.jsonl"
    result = invoke(
        "check", str(history), "--scenario", str(path), "--json", str(tmp_path / "check.json")
    )
    assert result.exit_code == 0
    ran = json.loads((tmp_path / "run.json").read_text())["properties"]
    checked = json.loads((tmp_path / "check.json").read_text())["properties"]
    assert ran == checked
    lines = [line for line in history.read_text().splitlines() if '"broken"' not in line]
    history.write_text("\n".join(lines) + "\n")
    result = invoke("check", str(history), "--scenario", str(path))
    assert result.exit_code == 1 and "detection" in result.output


def test_check_refuses_a_history_of_another_scenario(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    invoke("run", str(path), "--sim", "--out", str(tmp_path / "out"))
    other = tmp_path / "other.yaml"
    other.write_text(GOOD.replace("name: good", "name: other"))
    history = tmp_path / "out" / "good" / "sim" / "history.jsonl"
    result = invoke("check", str(history), "--scenario", str(other))
    assert result.exit_code == 2 and "this history is of scenario 'good'" in result.stderr


def test_check_of_a_corrupt_history_exits_2(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(GOOD)
    broken = tmp_path / "h.jsonl"
    broken.write_text('{"t": 0, "kind": "phase", "name": "x"}\n{"t": 1, "kind": "op"}\n')
    result = invoke("check", str(broken), "--scenario", str(path))
    assert result.exit_code == 2 and f"{broken}:2: op event without 'world'" in result.stderr


def test_generate_writes_valid_files(tmp_path):
    result = invoke(
        "generate", "--family", "swarm", "--seed", "5", "--count", "3", "--out", str(tmp_path)
    )
    assert result.exit_code == 0
    files = sorted(tmp_path.glob("*.yaml"))
    assert [f.stem for f in files] == ["swarm-5", "swarm-6", "swarm-7"]
    assert invoke("validate", *map(str, files)).exit_code == 0
    assert yaml.safe_load(files[0].read_text())["seed"] == 5
    assert invoke("run", str(files[1]), "--sim", "--out", str(tmp_path / "o")).exit_code == 0


def test_generate_unknown_family_exits_2(tmp_path):
    result = invoke("generate", "--family", "nope", "--out", str(tmp_path))
    assert result.exit_code == 2 and "choose one of" in result.output


PARTITIONED = """\
mwsim: 1
name: partitioned
topology: {generator: fan_in, workers: 2, hosts: 2}
duration_s: 5
events: [{at: 2.0, do: partition, groups: [[h0], [h1]]}]
"""


def test_network_faults_without_emulated_hosts_are_inconclusive_before_anything_starts(
    tmp_path,
):
    path = tmp_path / "p.yaml"
    path.write_text(PARTITIONED)
    out = tmp_path / "o"
    result = invoke("run", str(path), "--real", "--network", "loopback", "--out", str(out))
    assert result.exit_code == 3
    assert "partitioned: inconclusive: the scenario has network faults" in result.output
    assert not (out / "partitioned" / "real").exists()


def test_gpu_faults_without_gpus_are_inconclusive_before_anything_starts(tmp_path):
    from mwsim.runtimes import cuda_devices

    if cuda_devices() >= 4:
        pytest.skip("this machine has the GPUs: the run would happen")  # a GPU runner
    path = Path(__file__).parents[2] / "scenarios" / "gpu-faults.yaml"
    out = tmp_path / "o"
    result = invoke("run", str(path), "--real", "--out", str(out))
    assert result.exit_code == 3
    said = " ".join(result.output.split())
    assert "gpu-faults: inconclusive: runtime multiworld: backend nccl needs 4 CUDA" in said
    assert not out.exists()


def skipped_items(path, *options: str):
    """Run scenario items through pytest (the plugin) in a fresh interpreter; its output."""
    import subprocess
    import sys

    command = [sys.executable, "-m", "pytest", str(path), "--mwsim-mode=real", *options]
    done = subprocess.run(
        [*command, "-rs", "-p", "no:cacheprovider"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 skipped" in done.stdout
    return done.stdout


def test_pytest_items_with_network_faults_skip_with_the_reason_without_emulated_hosts(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(PARTITIONED)
    said = skipped_items(path, "--mwsim-network=loopback")
    assert "the scenario has network faults, but --network loopback was asked" in said


def test_pytest_items_that_cannot_run_on_the_backend_asked_for_skip_with_the_reason():
    """`make test-gpu` runs the library with --mwsim-backend=nccl: a scenario whose hosts
    have no GPUs cannot, and says so."""
    path = Path(__file__).parents[2] / "scenarios" / "allreduce-lose-member.yaml"
    said = skipped_items(path, "--mwsim-backend=nccl")
    assert "this scenario cannot run as asked:" in said
    assert "nccl" in said.split("cannot run as asked:", 1)[1].splitlines()[0]
