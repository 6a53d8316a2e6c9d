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
