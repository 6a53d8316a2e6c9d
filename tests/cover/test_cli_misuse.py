"""Ways a CI job could go green, or a user be misled, by mistake: each is a usage error
(exit 2) or the right status, said in one line."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from mwsim import cli

ROOT = Path(__file__).parents[2]
CRASH = ROOT / "scenarios" / "fanin-crash-one.yaml"


def mwsim(*args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "mwsim.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_a_folder_without_scenarios_is_bad_input_not_a_pass(tmp_path):
    for command in (["validate"], ["run", "--sim", "--out", str(tmp_path / "o")]):
        result = mwsim(*command, str(tmp_path))
        assert result.returncode == 2, result
        assert result.stderr.strip() == f"{tmp_path}: no scenario file in this folder " + (
            "(*.yaml, *.yml with mwsim: 1)"
        )
    assert not (tmp_path / "o").exists()  # nothing ran


def test_other_yaml_in_a_folder_is_skipped_and_named(tmp_path):
    (tmp_path / "crash.yaml").write_text(CRASH.read_text())
    (tmp_path / "ci.yml").write_text("jobs: {test: {}}\n")
    result = mwsim("validate", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"ok  {tmp_path / 'crash.yaml'}"
    skipped = f"{tmp_path / 'ci.yml'}: skipped: not a scenario (no top-level mwsim: key)"
    assert result.stderr.strip() == skipped
    # named on its own it is a scenario with a problem
    assert mwsim("validate", str(tmp_path / "ci.yml")).returncode == 2


def test_sim_and_real_together_are_refused():
    result = CliRunner().invoke(cli.main, ["run", str(CRASH), "--sim", "--real"])
    assert result.exit_code == 2
    assert "--sim and --real exclude each other" in result.output


def test_an_unknown_runtime_is_refused_in_every_mode(tmp_path):
    for mode in ("--sim", "--real"):
        result = CliRunner().invoke(
            cli.main, ["run", str(CRASH), mode, "--runtime", "nosuch", "--out", str(tmp_path)]
        )
        assert result.exit_code == 2, result.output
        assert "Invalid value for --runtime: choose one of multiworld" in result.output
    assert not list(tmp_path.iterdir())  # nothing ran, nothing was recorded


def test_json_into_a_folder_that_does_not_exist_is_written_there(tmp_path):
    target = tmp_path / "reports" / "ci" / "crash.json"
    result = CliRunner().invoke(
        cli.main, ["run", str(CRASH), "--sim", "--out", str(tmp_path / "o"), "--json", str(target)]
    )
    assert result.exit_code == 0, result.output
    assert '"verdict": "pass"' in target.read_text()


def test_json_where_no_folder_can_be_made_is_refused_before_anything_runs(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = tmp_path / "o"
    result = CliRunner().invoke(
        cli.main, ["run", str(CRASH), "--sim", "--out", str(out), "--json", str(blocker / "r.json")]
    )
    assert result.exit_code == 2 and "Invalid value for --json: cannot write" in result.output
    assert not out.exists()


def test_a_reader_that_goes_away_ends_the_run_as_sigpipe_would(tmp_path):
    command = [sys.executable, "-m", "mwsim.cli", "run", "scenarios", "--sim"]
    command += ["--out", str(tmp_path)]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as p:
        assert p.stdout is not None and p.stderr is not None
        p.stdout.readline()
        p.stdout.close()  # like `| head -1`
        errors = p.stderr.read().decode()
        assert p.wait(timeout=120) == 141
    assert "internal error" not in errors and "Traceback" not in errors


def test_an_interrupt_at_any_moment_is_130_never_the_violated_status(monkeypatch, tmp_path):
    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_load_all", interrupted)
    result = CliRunner().invoke(cli.main, ["run", str(CRASH), "--sim", "--out", str(tmp_path)])
    assert result.exit_code == 130
    assert "Aborted!" not in result.output


def _ran(tmp_path: Path) -> tuple[Path, Path]:
    """A scenario file of the user's, run on the model; it and its history."""
    mine = tmp_path / "mine.yaml"
    mine.write_text(CRASH.read_text())
    out = tmp_path / "o"
    assert (
        CliRunner().invoke(cli.main, ["run", str(mine), "--sim", "--out", str(out)]).exit_code == 0
    )
    return mine, out / "fanin-crash-one" / "sim" / "history.jsonl"


def test_check_refuses_a_history_of_the_scenario_as_it_was_before_an_edit(tmp_path):
    mine, history = _ran(tmp_path)
    mine.write_text(mine.read_text().replace("at: 3.0", "at: 4.0"))  # an event moved
    result = CliRunner().invoke(cli.main, ["check", str(history), "--scenario", str(mine)])
    assert result.exit_code == 2
    assert "this history is of another version of scenario 'fanin-crash-one'" in result.output
    # its free text, and what the command line may override, may change
    edited = mine.read_text().replace("at: 4.0", "at: 3.0").replace("A leader", "A leader (edited)")
    mine.write_text(edited + "runtime: torch\n")
    result = CliRunner().invoke(cli.main, ["check", str(history), "--scenario", str(mine)])
    assert result.exit_code == 0, result.output


def test_check_of_a_history_cut_short_is_inconclusive_not_a_violation(tmp_path):
    mine, history = _ran(tmp_path)
    lines = history.read_text().splitlines()
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join(lines[: len(lines) // 3]) + "\n")
    result = CliRunner().invoke(cli.main, ["check", str(cut), "--scenario", str(mine)])
    assert result.exit_code == 3
    assert "without the record a finished run ends with (hygiene)" in result.output


def test_fuzz_without_a_terminal_says_how_it_goes_in_plain_lines(monkeypatch, tmp_path):
    monkeypatch.setattr(cli, "PROGRESS_LINE_S", 0.0)  # every batch (else every 10 s)
    result = CliRunner().invoke(cli.main, ["fuzz", "--budget", "2", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("fuzz the model: ")]
    assert len(lines) >= 2 and "examples" in lines[-1] and "failure(s)" in lines[-1]


def test_a_problem_an_override_causes_names_the_files_line_and_the_option():
    gpu = ROOT / "scenarios" / "gpu-faults.yaml"
    result = mwsim("run", str(gpu), "--sim", "--backend", "gloo")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines
    events_at = next(
        i for i, line in enumerate(gpu.read_text().splitlines(), 1) if "events:" in line
    )
    for line in lines:
        where, _, what = line.partition(": ")
        path, _, number = where.rpartition(":")
        assert path == str(gpu) and int(number) > events_at, line
        assert what.endswith("(with --backend gloo)"), line


def test_a_failed_scenario_item_says_why_in_pytests_summary(tmp_path):
    failing = tmp_path / "failing.yaml"
    failing.write_text(
        "mwsim: 1\nname: failing\ntopology: {generator: fan_in, workers: 2}\nduration_s: 6\n"
        "events: [{at: 2.0, do: crash, target: w1}]\nexpect: {detect_within_s: {crash: 0.001}}\n"
    )
    pytest_ = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider"]
    command = [*pytest_, str(failing), "--mwsim-mode=sim", "-q", "-rf"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 1, done.stdout
    summary = [line for line in done.stdout.splitlines() if line.startswith("FAILED ")]
    assert len(summary) == 1, done.stdout
    assert summary[0].startswith("FAILED failing.yaml::failing[sim] - fail detection: world1: ")
    helped = subprocess.run([*pytest_, "--help"], capture_output=True, text=True, timeout=120)
    assert "the default sim,real starts real processes" in " ".join(helped.stdout.split())


def test_a_run_of_many_scenarios_is_a_line_each_failures_in_full_and_a_count(tmp_path):
    (tmp_path / "a-pass.yaml").write_text(CRASH.read_text())
    (tmp_path / "b-fail.yaml").write_text(
        "mwsim: 1\nname: failing\ntopology: {generator: fan_in, workers: 2}\nduration_s: 6\n"
        "events: [{at: 2.0, do: crash, target: w1}]\nexpect: {detect_within_s: {crash: 0.001}}\n"
    )
    result = mwsim("run", str(tmp_path), "--sim", "--out", str(tmp_path / "o"))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert (
        lines[0]
        == f"PASS fanin-crash-one (sim)  {tmp_path / 'o' / 'fanin-crash-one' / 'report.json'}"
    )
    assert any("failing (sim): FAIL" in line for line in lines)  # the table of the failure
    assert any(line.startswith("│ detection") for line in lines)
    assert lines[-1] == "2 scenarios: 1 pass, 1 fail, 0 inconclusive"


FAILING = (
    "mwsim: 1\nname: failing\ntopology: {generator: fan_in, workers: 4}\nduration_s: 6\n"
    "events: [{at: 2.0, do: crash, target: w1}, {at: 2.5, do: crash, target: w2},\n"
    "         {at: 3.0, do: crash, target: w3}]\n"
    "expect: {detect_within_s: {crash: 0.001}}\n"
)


def test_the_json_report_has_one_shape_for_one_scenario_and_for_several(tmp_path):
    (tmp_path / "a-pass.yaml").write_text(CRASH.read_text())
    (tmp_path / "b-fail.yaml").write_text(FAILING)
    both, one = tmp_path / "both.json", tmp_path / "one.json"
    out = str(tmp_path / "o")
    runner = CliRunner()
    assert (
        runner.invoke(
            cli.main, ["run", str(tmp_path), "--sim", "--out", out, "--json", str(both)]
        ).exit_code
        == 1
    )
    assert (
        runner.invoke(
            cli.main, ["run", str(CRASH), "--sim", "--out", out, "--json", str(one)]
        ).exit_code
        == 0
    )
    several, single = json.loads(both.read_text()), json.loads(one.read_text())
    for data in (several, single):  # what a reader of either can rely on
        assert isinstance(data, dict) and data["mode"] == "sim"
        assert all(
            {"scenario", "verdict", "properties", "runs"} <= set(r) for r in data["scenarios"]
        )
    assert [r["scenario"] for r in several["scenarios"]] == ["fanin-crash-one", "failing"]
    assert several["verdict"] == "fail" and "properties" not in several  # no scenario's own
    (only,) = single["scenarios"]
    assert {k: v for k, v in single.items() if k != "scenarios"} == only  # and at the top
    assert only["scenario"] == "fanin-crash-one" and only["verdict"] == "pass"


def test_every_problem_behind_and_n_more_can_be_listed(tmp_path):
    (tmp_path / "f.yaml").write_text(FAILING)
    args = ["run", str(tmp_path / "f.yaml"), "--sim", "--out", str(tmp_path / "o")]
    plain = CliRunner().invoke(cli.main, [*args, "--json", str(tmp_path / "r.json")])
    assert plain.exit_code == 1
    assert "(and 2 more)" in plain.output and "-v lists every problem" in plain.output
    (detection,) = [
        p
        for p in json.loads((tmp_path / "r.json").read_text())["properties"]
        if p["name"] == "detection"
    ]
    assert len(detection["problems"]) == 3
    assert detection["detail"].startswith(detection["problems"][0])
    listed = CliRunner().invoke(cli.main, [*args, "-v"], terminal_width=400)
    assert listed.exit_code == 1 and "(and 2 more)" not in listed.output
    for problem in detection["problems"]:  # each world's line, in the table
        assert problem.split(":")[0] in listed.output
    assert sum(problem[:40] in listed.output for problem in detection["problems"]) == 3


def test_validation_reports_schema_and_timeline_problems_in_one_pass(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "mwsim: 1\nname: bad\ntopology: {generator: fan_in, workers: 3}\nduration_s: 10\n"
        "events:\n"
        "  - {at: 1.0, do: crash, target: w7}\n"  # line 6: a timeline problem
        "  - {at: 3.0, do: crash, target: w2, colour: red}\n"  # line 7: a schema problem
        "  - {at: 4.0, do: join, worker: w1, worlds: {x: [leader, w1]}}\n"  # after it: not judged
    )
    result = mwsim("validate", str(bad))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"{bad}:6: events[0].target: no worker named 'w7' (running at 1 s: leader, w1, w2, w3)",
        f"{bad}:7: unknown key 'colour'",
    ]


def test_a_ctrl_c_while_the_command_still_imports_is_130_without_a_traceback():
    # the interrupt lands inside the import of the command's modules
    code = (
        "import sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, *args):\n"
        "        if name == 'mwsim.cli':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "from mwsim.__main__ import main\n"
        "main()\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 130 and "Traceback" not in done.stderr, done.stderr


def test_a_signal_reaches_an_agent_forked_before_it_leads_its_own_group():
    from mwsim.replay import processes

    # a child still in our group, as an agent is between its fork and its setsid
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert os.getpgid(child.pid) != child.pid
        assert processes.signal_group(child.pid, signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        child.kill()
    assert not processes.signal_group(child.pid, signal.SIGKILL)  # reaped: nothing to signal


def test_every_commands_help_gives_its_exit_statuses():
    runner = CliRunner()
    commands = [[name] for name in cli.main.commands]
    commands += [["cluster", name] for name in cli.main.commands["cluster"].commands]
    for command in commands:
        helped = runner.invoke(cli.main, [*command, "--help"])
        assert helped.exit_code == 0 and "Exit status" in helped.output, command
