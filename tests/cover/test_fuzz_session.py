"""A fuzzing session's bookkeeping, without processes: signatures, when a failure is new,
steering away from a dominating one, shrinking without slippage, unique names, and how a
violation the reference shows too or a known finding is reported."""

from dataclasses import replace
from pathlib import Path

import pytest

from mwsim import fuzz, runtimes
from mwsim.checks import FAIL, PASS, Verdict
from mwsim.errors import RuntimeNotFound
from mwsim.events import Kind
from mwsim.findings import known_finding
from mwsim.fuzz import oneshot, shrinking
from mwsim.fuzz import session as sessions
from mwsim.scenario import load_scenario
from mwsim.testing import scenario

STALL = Verdict("progress", FAIL, "world1: no op", "world1", evidence=("no op while healthy",))
LOST = Verdict(
    "integrity", FAIL, "world2: op 3 lost", "world2", evidence=("lost while healthy",), at=2.0
)
BASE = scenario(
    """
    name: found
    runtime: mutant-two-bugs
    topology: {generator: fan_in, workers: 3}
    duration_s: 9
    events:
      - {at: 1.0, do: crash, target: w1}
      - {at: 2.0, do: add_world, world: x, members: [w2, w3]}
    """
)


def test_a_signature_has_no_names_and_leaves_out_expected_and_passing_verdicts():
    other_world = Verdict("progress", FAIL, "world7: no op", "world7", evidence=STALL.evidence)
    expected = Verdict("detection", FAIL, "d", "world1", expected=True, evidence=("x",))
    assert fuzz.signature([STALL, LOST, expected, Verdict("errors", PASS, "ok")]) == {
        ("progress", "no op while healthy"),
        ("integrity", "lost while healthy"),
    }
    assert fuzz.signature([STALL]) == fuzz.signature([other_world])


def test_an_example_showing_only_covered_signatures_goes_on_and_is_counted():
    heard = []
    covered = fuzz.signature([STALL, LOST])
    assert oneshot.new_or_known([STALL], covered, heard.append) is False
    assert heard == [fuzz.signature([STALL])]
    assert oneshot.new_or_known(
        [STALL, Verdict("errors", FAIL, "e", evidence=("boom",))], covered, heard.append
    )


def failure(kinds, hits, examples_at=0):
    events = "".join(
        f"\n  - {{at: {1.0 + i}, do: {k}, target: w{i + 1}}}" for i, k in enumerate(kinds)
    )
    s = scenario(f"topology: {{generator: fan_in, workers: 3}}\nduration_s: 9\nevents:{events}")
    violation = fuzz.Violation(s, [STALL], Path("x.yaml"))
    found = fuzz.Failure(fuzz.signature([STALL]), violation, "stateful", 1.0, examples_at)
    found.hits = hits
    return found


def test_a_dominating_failures_trigger_is_left_out_of_every_other_batch():
    pool = (Kind.CRASH, Kind.HANG, Kind.JOIN)
    crash = failure(["crash"], hits=6, examples_at=2)  # 6 of the 8 examples since
    assert crash.trigger == {Kind.CRASH} and crash.dominates(10)
    assert fuzz.steer(pool, [crash], 10, turn=0) == pool
    assert fuzz.steer(pool, [crash], 10, turn=1) == (Kind.HANG, Kind.JOIN)
    rare = failure(["hang"], hits=1, examples_at=2)
    assert not rare.dominates(10)
    assert fuzz.steer(pool, [rare], 10, turn=1) == pool
    everything = failure(["crash", "hang"], hits=9)
    assert fuzz.steer((Kind.CRASH,), [everything], 10, turn=1) == (Kind.CRASH,)  # never empty


def test_shrinking_keeps_the_run_as_long_as_the_failure_needs():
    violation = fuzz.Violation(BASE, [LOST], Path("x.yaml"))
    until = fuzz.failure_time(violation, ("integrity", "lost while healthy"))
    assert until == 2.0 + fuzz.FAILURE_TAIL_S
    shorter = shrinking._without(BASE, 1, until)
    assert shorter is not None and len(shorter.events) == 1 and shorter.duration_s >= until
    assert shrinking._without(BASE, 1, 8.5).duration_s == 8.5  # the failure came late
    assert shrinking._without(BASE, 1, 20).duration_s == 9  # never longer than it was


def test_a_shrink_step_needs_the_same_signature_on_any_world_and_no_new_known_finding(
    tmp_path, monkeypatch
):
    replays = []

    def replay_violates(candidate, wanted, out, zygote=None, reference=None, cluster=None):
        replays.append(len(candidate.events))
        # the same kind of evidence, but on another world: still the same failure
        moved = Verdict("integrity", FAIL, "x: op lost", "x", evidence=LOST.evidence, at=2.5)
        return [moved] if wanted == {("integrity", "lost while healthy")} else None

    monkeypatch.setattr(shrinking, "replay_violates", replay_violates)
    violation = fuzz.Violation(BASE, [LOST], tmp_path / "found.yaml")
    shrunk = fuzz.minimize(violation, tmp_path, wanted=("integrity", "lost while healthy"))
    assert shrunk is not None and shrunk.scenario.events == []
    assert shrunk.verdicts[0].world == "x" and shrunk.path == tmp_path / "found.yaml"

    # without the removal, the crash of w3 would come 0.6 s after x formed: known finding 3
    # (a member lost before its first heartbeat); that step must not be taken, so the
    # failure cannot slide onto the finding
    slide = scenario(
        "topology: {generator: fan_in, workers: 3}\nduration_s: 9\nevents:\n"
        "  - {at: 2.0, do: add_world, world: x, members: [w2, w3]}\n"
        "  - {at: 2.3, do: remove_world, world: x}\n"
        "  - {at: 2.6, do: crash, target: w3}\n"
    )
    assert fuzz.findings_in(slide, known_finding) == []
    without_removal = slide.model_copy(update={"events": [slide.events[0], slide.events[2]]})
    assert fuzz.findings_in(without_removal, known_finding) == [3]
    tried = []

    def needs_the_crash(candidate, wanted, out, zygote=None, reference=None, cluster=None):
        tried.append([e.kind for e in candidate.events])
        return [LOST] if any(e.kind is Kind.CRASH for e in candidate.events) else None

    monkeypatch.setattr(shrinking, "replay_violates", needs_the_crash)
    violation = fuzz.Violation(slide, [LOST], tmp_path / "f2.yaml")
    shrunk = fuzz.minimize(violation, tmp_path, known=known_finding)
    assert shrunk is not None and len(shrunk.scenario.events) == 3
    assert [Kind.ADD_WORLD, Kind.CRASH] not in tried  # never even replayed


def test_the_reference_restricts_a_failure_to_the_runtimes_own_evidence():
    both = Verdict("integrity", FAIL, "d", "w", evidence=("lost while healthy", "wrong data"))
    mine = shrinking.only(both, frozenset({("integrity", "wrong data")}))
    assert mine.verdict == FAIL and mine.evidence == ("wrong data",)
    theirs = shrinking.only(both, frozenset())
    assert theirs.verdict == PASS and "reference runtime fails it too" in theirs.detail


def session(tmp_path, known=None, reference=None):
    result = fuzz.FuzzResult()
    options = fuzz.Options(tmp_path, "mutant-two-bugs", reference, known=known)
    return result, fuzz.Session(result, options, 0.0)


def test_each_new_failure_gets_a_unique_file_its_report_and_full_reproduce_lines(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(sessions, "minimize", lambda v, *a, **k: v)
    result, s = session(tmp_path, reference="multiworld")
    monkeypatch.setattr(s, "_reference_shows", lambda v: frozenset())
    s.record(fuzz.Violation(BASE, [STALL], tmp_path / "scratch.yaml"), "stateful", real=True)
    s.record(fuzz.Violation(BASE, [STALL], tmp_path / "scratch.yaml"), "stateful", real=True)
    s.record(fuzz.Violation(BASE, [LOST], tmp_path / "scratch.yaml"), "stateful", real=True)
    first, second = result.failures
    assert first.hits == 2 and second.hits == 1  # the second stall is the same failure
    assert first.path != second.path and first.path.exists() and second.path.exists()
    assert first.path.name.startswith(s.stamp) and first.report.exists()
    assert first.reproduce == [
        f"mwsim run {first.path} --real --runtime mutant-two-bugs",
        f"mwsim run {first.path} --real --runtime multiworld  # the reference passes it",
    ]
    # a second session in the same directory and second does not overwrite them
    _, again = session(tmp_path)
    again.stamp = s.stamp
    assert again._name("mutant-two-bugs") not in {first.path, second.path}


def test_what_the_reference_shows_too_is_upstream_and_no_longer_stops_examples(
    tmp_path, monkeypatch
):
    result, s = session(tmp_path, reference="multiworld")
    monkeypatch.setattr(s, "_reference_shows", lambda v: fuzz.signature([STALL]))
    s.record(fuzz.Violation(BASE, [STALL], tmp_path / "scratch.yaml"), "stateful", real=True)
    assert not result.failures and len(result.upstream) == 1
    assert fuzz.signature([STALL]) <= s.covered


def test_a_shrunk_failure_that_is_a_known_finding_is_reported_as_that_finding(
    tmp_path, monkeypatch
):
    early = scenario(
        "runtime: mutant-two-bugs\ntopology: {generator: fan_in, workers: 3}\n"
        "duration_s: 9\nevents: [{at: 0.2, do: crash, target: w2}]\n"
    )
    monkeypatch.setattr(sessions, "minimize", lambda v, *a, **k: v)
    result, s = session(tmp_path, known=known_finding)
    s.record(fuzz.Violation(early, [STALL], tmp_path / "scratch.yaml"), "stateful", real=True)
    assert not result.failures and [k.finding for k in result.known] == [3]


def test_a_failure_found_flaky_twice_is_no_longer_pursued(tmp_path, monkeypatch):
    monkeypatch.setattr(sessions, "minimize", lambda *a, **k: None)
    result, s = session(tmp_path)
    for _ in range(fuzz.MAX_FLAKY):
        s.record(fuzz.Violation(BASE, [STALL], tmp_path / "scratch.yaml"), "stateful", real=True)
    assert len(result.flaky) == fuzz.MAX_FLAKY and not result.failures
    assert fuzz.signature([STALL]) <= s.covered


def test_a_runtimes_known_findings_are_what_the_fuzzer_steers_around():
    assert fuzz.known_for("torch") is None  # the baseline declares none
    assert fuzz.known_for("torch", "multiworld") is not None
    assert fuzz.known_for("mutant-two-bugs") is not None  # upstream's, inherited


def test_an_adapter_for_an_interface_this_mwsim_does_not_run_is_refused(monkeypatch):
    class Future(runtimes.Runtime):
        name = "future"
        interface = runtimes.INTERFACE + 1

    class EntryPoint:
        name, value = "future", "somewhere:Future"

        def load(self):
            return Future

    monkeypatch.setattr(runtimes, "entry_points", lambda group: [EntryPoint()])
    with pytest.raises(RuntimeNotFound, match="written for mwsim runtime interface 3"):
        runtimes.load("future")


def test_a_runtime_says_which_operations_it_lacks():
    lacking = runtimes.load("mutant-no-allreduce")
    assert runtimes.missing_operations(lacking, "stream", [Kind.LEAVE]) is None
    assert runtimes.missing_operations(lacking, "allreduce", []) == (
        "it does not support all_reduce, which this scenario needs"
    )
    assert runtimes.needed_operations("stream", [Kind.REMOVE_WORLD]) == {
        "send",
        "recv",
        "remove_world",
    }


def test_gpu_faults_are_proposed_only_where_workers_have_gpus():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from mwsim.strategies import FUZZ_KINDS, Proposer

    assert not any(k.info.gpu for k in FUZZ_KINDS)  # the fuzzers draw gloo deployments
    gloo = scenario("topology: {generator: fan_in, workers: 2}").membership()
    nccl = scenario("topology: {generator: fan_in, workers: 2}\nbackend: nccl").membership()

    @settings(max_examples=20, database=None, derandomize=True)
    @given(st.data())
    def proposals(data):
        for kind in (Kind.GPU_HANG, Kind.GPU_ERROR, Kind.GPU_SLOW):
            assert Proposer(data.draw, gloo)(kind) is None
            fields = Proposer(data.draw, nccl)(kind)
            assert fields is not None and fields["do"] == kind.value
            assert fields["target"] in ("leader", "w1", "w2")

    proposals()


def test_the_finds_of_a_session_sit_together_in_one_folder_and_run_as_they_are(
    tmp_path, monkeypatch
):
    from click.testing import CliRunner

    from mwsim import cli
    from mwsim.history import Mode
    from mwsim.sim import MODELS
    from mwsim.testing import parse_inline

    monkeypatch.setattr(sessions, "minimize", lambda v, *a, **k: v)
    result, s = session(tmp_path)
    s.record(fuzz.Violation(BASE, [STALL], tmp_path / "scratch.yaml"), "stateful", real=True)
    s.record(fuzz.Violation(BASE, [LOST], tmp_path / "scratch.yaml"), "stateful", real=True)
    # a model find under way, in the session's scratch folder (a watchdog too slow)
    hang = parse_inline(
        "topology: {generator: fan_in, workers: 2}\nduration_s: 30\n"
        "events: [{at: 2.0, do: hang, target: w1}]\n",
        "hang",
    )
    slow = replace(MODELS["multiworld"], check_every=100)
    with pytest.raises(fuzz.Violation) as found:
        fuzz.check_model(hang, tmp_path, model=slow)
    scratch = found.value.path
    assert scratch.parent.name == ".scratch" and scratch.exists()
    assert f"reproduce with: mwsim run {scratch} --sim" in str(found.value)
    assert found.value.mode is Mode.SIM
    names = [f.path.stem for f in result.failures]
    assert [load_scenario(f.path).name for f in result.failures] == names
    done = CliRunner().invoke(cli.main, ["validate", str(tmp_path)])
    assert done.exit_code == 0, done.output
    assert sorted(line.split()[-1] for line in done.output.splitlines()) == sorted(
        str(f.path) for f in result.failures
    )
