"""The CI workflows: valid GitHub Actions workflows (checked against the schema that
check-jsonschema vendors, offline), the CPU one running the README's test command, the GPU
one running the GPU tier on a self-hosted GPU runner and keeping what it wrote."""

import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"


def load(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def test_the_workflows_pass_the_github_workflow_schema():
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    assert len(files) == 2
    lint = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows"]
    done = subprocess.run([*lint, *files], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_cpu_workflow_runs_the_readme_test_command():
    steps = load("ci.yml")["jobs"]["test"]["steps"]
    assert any(".ci/run" in step.get("run", "") for step in steps)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_the_gpu_workflow_runs_the_gpu_tier_on_a_gpu_runner_and_keeps_its_output():
    job = load("gpu.yml")["jobs"]["nccl"]
    assert {"self-hosted", "gpu"} <= set(job["runs-on"])
    runs = [step.get("run", "") for step in job["steps"]]
    assert "make test-gpu" in runs
    (upload,) = [s for s in job["steps"] if s.get("uses", "").startswith("actions/upload-artifact")]
    assert upload["if"] == "always()" and upload["with"]["path"] == "out/gpu/"
    makefile = (ROOT / "Makefile").read_text()
    target = makefile.split("\ntest-gpu:", 1)[1].split("\n\n", 1)[0]
    assert "gpu_tests" in target and "--mwsim-backend=nccl" in target
    assert target.count("--junitxml=out/gpu/") == 2
