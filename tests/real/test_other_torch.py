"""mwsim beside a torch other than 2.4.0: ``pip install --no-deps -e .`` into an environment
that already has torch 2.13 (as a GPU machine would) gives a working ``mwsim run --sim``
and ``--real --runtime torch``, and the multiworld runtime says why it cannot run there."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
OTHER_TORCH = "2.13.0"
QUIET = ["--quiet", "--disable-pip-version-check"]


def _pip(venv: Path, *args: str) -> subprocess.CompletedProcess:
    command = [str(venv / "bin" / "python"), "-m", "pip", "install", *QUIET, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def other_torch(tmp_path_factory) -> Path:
    """A fresh environment with torch 2.13 and mwsim's other dependencies (the versions
    mwsim is tested with), then mwsim itself with ``--no-deps``."""
    venv = tmp_path_factory.mktemp("other-torch") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    got = _pip(venv, f"torch=={OTHER_TORCH}")
    if got.returncode != 0:
        pytest.skip(f"torch {OTHER_TORCH} cannot be installed here: {got.stderr.strip()[-300:]}")
    pinned = [
        line.strip()
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    wanted = ("simpy", "networkx", "hypothesis", "pytest", "pydantic", "PyYAML", "click")
    wanted += ("rich", "matplotlib", "psutil", "numpy", "orjson")
    deps = [p for p in pinned if p.split("==")[0] in wanted]
    got = _pip(venv, *deps)
    assert got.returncode == 0, got.stderr[-2000:]
    got = _pip(venv, "--no-deps", "-e", str(ROOT))
    assert got.returncode == 0, got.stderr[-2000:]
    return venv


def mwsim(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    command = [str(venv / "bin" / "mwsim"), *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=cwd)


NO_FAULTS = """\
mwsim: 1
name: other-torch
topology: {generator: fan_in, workers: 2}
duration_s: 3
"""


def test_mwsim_runs_beside_another_torch(other_torch, tmp_path):
    version = subprocess.run(
        [str(other_torch / "bin" / "python"), "-c", "import torch; print(torch.__version__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert version.startswith(OTHER_TORCH), version
    (tmp_path / "s.yaml").write_text(NO_FAULTS)
    sim = mwsim(other_torch, "run", "s.yaml", "--sim", cwd=tmp_path)
    assert sim.returncode == 0, sim.stdout[-2000:] + sim.stderr[-2000:]
    real = mwsim(
        other_torch,
        "run",
        "s.yaml",
        "--real",
        "--runtime",
        "torch",
        "--json",
        "r.json",
        cwd=tmp_path,
    )
    assert real.returncode == 0, real.stdout[-3000:] + real.stderr[-2000:]
    assert (
        '"torch": "2.13.0'
        in (tmp_path / "out" / "other-torch" / "real" / "history.jsonl").read_text()
    )
    upstream = mwsim(other_torch, "run", "s.yaml", "--real", cwd=tmp_path)
    assert upstream.returncode == 3
    said = " ".join(upstream.stdout.split())
    assert "runtime multiworld: the multiworld package is not installed" in said
    assert "torch 2.4.0" in said
