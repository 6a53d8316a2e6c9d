"""The ``mwsim`` console script, run as a user runs it."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
MWSIM = [sys.executable, "-m", "mwsim.cli"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*MWSIM, *args], capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_validate_library_exits_0():
    result = run("validate", "scenarios")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("ok  ") >= 12


def test_validate_bad_file_exits_2_without_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("mwsim: 1\nname: x\ntopology: {generator: fan_in, workers: -1}\n")
    result = run("validate", str(bad))
    assert result.returncode == 2
    assert result.stderr.strip() == f"{bad}:3: topology.workers: must be >= 1, got -1"


def test_usage_error_exits_2():
    assert run("validate").returncode == 2
    assert run("no-such-command").returncode == 2


def test_fuzz_on_the_model_runs_its_budget_and_exits_0(tmp_path):
    result = run("fuzz", "--budget", "3", "--seed", "1", "--out", str(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no violation found" in result.stdout
    examples = int(result.stdout.split("(")[-1].split()[0])
    assert examples >= 50


def test_fuzz_can_be_kept_to_some_kinds_of_event(tmp_path):
    result = run(
        "fuzz",
        "--budget",
        "2",
        "--seed",
        "1",
        "--kind",
        "partition",
        "--kind",
        "crash",
        "--out",
        str(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no violation found" in result.stdout


def test_fuzz_usage_errors_exit_2(tmp_path):
    for args in (
        ["--runtime", "no-such-runtime"],
        ["--fuzzer", "stateful"],  # needs --real
        ["--real", "--fuzzer", "model"],
        ["--budget", "0"],
        ["--kind", "explode"],
    ):
        result = run("fuzz", *args, "--out", str(tmp_path))
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr


def test_a_library_with_two_scenarios_of_one_name_is_refused_at_the_second_name(tmp_path):
    text = (ROOT / "scenarios" / "fanin-crash-one.yaml").read_text()
    (tmp_path / "a.yaml").write_text(text)
    (tmp_path / "b.yaml").write_text("# a copy\n" + text)
    line = (
        1 + 1 + text.splitlines().index(next(x for x in text.splitlines() if x.startswith("name:")))
    )
    for command in (["validate"], ["run", "--sim", "--out", str(tmp_path / "out")]):
        result = run(*command, str(tmp_path))
        assert result.returncode == 2, result.stdout + result.stderr
        assert result.stderr.strip().splitlines() == [
            f"{tmp_path / 'b.yaml'}:{line}: name: 'fanin-crash-one' is already the name of "
            f"{tmp_path / 'a.yaml'}"
        ]
    assert not (tmp_path / "out").exists()  # nothing started


def test_a_failure_of_mwsim_itself_is_inconclusive_with_the_log_of_its_traceback(monkeypatch):
    from click.testing import CliRunner

    from mwsim import cli, runs

    def broken(*_args, **_kwargs):
        raise ZeroDivisionError("a bug in mwsim")

    monkeypatch.setattr(runs, "run_scenario", broken)
    result = CliRunner().invoke(cli.main, ["run", str(ROOT / "scenarios" / "fanin-crash-one.yaml")])
    assert result.exit_code == 3
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("mwsim run: internal error, inconclusive (ZeroDivisionError: a bug")
    log = Path(line.rsplit("traceback in ", 1)[1])
    assert "raise ZeroDivisionError" in log.read_text()
    log.unlink()
