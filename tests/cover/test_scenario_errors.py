"""Malformed scenario files: each is refused with exit 2 and ``path:line: message``."""

import textwrap

import pytest
from click.testing import CliRunner

from mwsim.cli import main

HEAD = """\
mwsim: 1
name: bad
topology: {generator: fan_in, workers: 3}
duration_s: 10
"""

NCCL = """\
mwsim: 1
name: bad
topology: {generator: fan_in, workers: 3}
backend: nccl
duration_s: 10
"""

# (id, file text, line of the problem, words the message must contain)
CASES = [
    ("not-yaml", "mwsim: 1\nname: [unclosed\n", 3, "not valid YAML"),
    ("tab-indent", "mwsim: 1\n\tname: x\n", 2, "not valid YAML"),
    ("empty", "", 1, "empty file"),
    ("comments-only", "# nothing here\n\n", 1, "empty file"),
    ("top-level-list", "- 1\n- 2\n", 1, "top level, got list"),
    ("two-documents", HEAD + "---\nmwsim: 1\n", 5, "not valid YAML"),
    ("duplicate-key", HEAD + "duration_s: 12\n", 5, "duplicate key 'duration_s' (first at line 4)"),
    (
        "missing-version",
        "name: x\ntopology: {generator: fan_in, workers: 1}\n",
        1,
        "missing required key 'mwsim'",
    ),
    ("wrong-version", HEAD.replace("mwsim: 1", "mwsim: 2"), 1, "unsupported format version 2"),
    (
        "missing-name",
        "mwsim: 1\ntopology: {generator: fan_in, workers: 1}\n",
        1,
        "missing required key 'name'",
    ),
    ("missing-topology", "mwsim: 1\nname: x\n", 1, "missing required key 'topology'"),
    ("bad-name", HEAD.replace("name: bad", "name: 'has space'"), 2, "not a valid name"),
    ("unknown-key", HEAD + "duraton: 5\n", 5, "unknown key 'duraton' (did you mean 'duration_s'?)"),
    (
        "unknown-topology-key",
        HEAD.replace("workers: 3}", "workers: 3, leaders: 2}"),
        3,
        "unknown key 'leaders'",
    ),
    ("unknown-generator", HEAD.replace("fan_in", "ring"), 3, "unknown value 'ring'"),
    (
        "workers-not-int",
        HEAD.replace("workers: 3", "workers: three"),
        3,
        "must be an integer, got 'three'",
    ),
    (
        "workers-bool",
        HEAD.replace("workers: 3", "workers: true"),
        3,
        "must be an integer, got True",
    ),
    ("workers-zero", HEAD.replace("workers: 3", "workers: 0"), 3, "must be >= 1, got 0"),
    ("negative-duration", HEAD.replace("duration_s: 10", "duration_s: -4"), 4, "must be > 0"),
    ("nan-duration", HEAD.replace("duration_s: 10", "duration_s: .nan"), 4, "finite number"),
    (
        "negative-time",
        HEAD + "events:\n  - {at: -1.0, do: crash, target: w1}\n",
        6,
        "must be >= 0, got -1.0",
    ),
    (
        "infinite-time",
        HEAD + "events:\n  - {at: .inf, do: crash, target: w1}\n",
        6,
        "finite number",
    ),
    ("time-as-text", HEAD + "events:\n  - {at: 1e3, do: crash, target: w1}\n", 6, "write 1.0e+3"),
    (
        "event-after-duration",
        HEAD + "events:\n  - {at: 11.0, do: crash, target: w1}\n",
        6,
        "after the end of the run",
    ),
    (
        "unknown-event",
        HEAD + "events:\n  - {at: 1.0, do: explode, target: w1}\n",
        6,
        "unknown value 'explode'",
    ),
    (
        "event-without-do",
        HEAD + "events:\n  - {at: 1.0, target: w1}\n",
        6,
        "missing required key 'do'",
    ),
    ("event-not-mapping", HEAD + "events:\n  - crash w1\n", 6, "must be a mapping"),
    (
        "event-unknown-field",
        HEAD + "events:\n  - {at: 1.0, do: crash, target: w1, signal: 9}\n",
        6,
        "unknown key 'signal'",
    ),
    (
        "slow-without-delay",
        HEAD + "events:\n  - {at: 1.0, do: slow, target: w1}\n",
        6,
        "missing required key 'events[0].delay_ms'",
    ),
    (
        "hang-zero-duration",
        HEAD + "events:\n  - {at: 1.0, do: hang, target: w1, for_s: 0}\n",
        6,
        "must be > 0",
    ),
    (
        "no-such-worker",
        HEAD + "events:\n  - {at: 1.0, do: crash, target: w9}\n",
        6,
        "no worker named 'w9'",
    ),
    (
        "crash-a-host",
        HEAD + "events:\n  - {at: 1.0, do: crash, target: h0}\n",
        6,
        "is a host, not a worker",
    ),
    (
        "no-such-host",
        HEAD + "events:\n  - {at: 1.0, do: crash_host, target: h3}\n",
        6,
        "no host named 'h3'",
    ),
    (
        "worker-gone",
        HEAD
        + "events:\n  - {at: 1.0, do: crash, target: w1}\n  - {at: 2.0, do: leave, target: w1}\n",
        7,
        "worker 'w1' is gone at 2 s",
    ),
    (
        "hang-crashed",
        HEAD
        + "events:\n  - {at: 1.0, do: crash, target: w2}\n  - {at: 2.0, do: hang, target: w2}\n",
        7,
        "gone at 2 s: it ended by crash",
    ),
    (
        "hang-twice",
        HEAD
        + "events:\n  - {at: 1.0, do: hang, target: w2}\n  - {at: 2.0, do: hang, target: w2}\n",
        7,
        "is hung at 2 s",
    ),
    (
        "leave-while-hung",
        HEAD
        + "events:\n  - {at: 1.0, do: hang, target: w2, for_s: 5}\n  - {at: 2.0, do: leave, target: w2}\n",
        7,
        "cannot leave gracefully",
    ),
    (
        "not-yet-joined",
        HEAD
        + "events:\n  - {at: 1.0, do: crash, target: w4}\n  - {at: 2.0, do: join, worker: w4, worlds: {world4: [leader, w4]}}\n",
        6,
        "does not exist yet at 1 s (it joins at 2 s)",
    ),
    (
        "join-name-alive",
        HEAD + "events:\n  - {at: 1.0, do: join, worker: w2, worlds: {}}\n",
        6,
        "'w2' is already running",
    ),
    (
        "join-world-without-joiner",
        HEAD + "events:\n  - {at: 1.0, do: join, worker: w4, worlds: {x: [leader, w1]}}\n",
        6,
        "does not list it",
    ),
    (
        "join-with-dead-member",
        HEAD
        + "events:\n  - {at: 1.0, do: crash, target: w1}\n  - {at: 2.0, do: join, worker: w4, worlds: {x: [w1, w4]}}\n",
        7,
        "worker 'w1' is gone",
    ),
    (
        "join-unknown-host",
        HEAD + "events:\n  - {at: 1.0, do: join, worker: w4, host: h5, worlds: {}}\n",
        6,
        "no host named 'h5'",
    ),
    (
        "world-of-one",
        HEAD + "events:\n  - {at: 1.0, do: add_world, world: x, members: [w1]}\n",
        6,
        "needs at least 2 members",
    ),
    (
        "duplicate-member",
        HEAD + "events:\n  - {at: 1.0, do: add_world, world: x, members: [w1, w1]}\n",
        6,
        "lists 'w1' twice",
    ),
    (
        "world-name-in-use",
        HEAD + "events:\n  - {at: 1.0, do: add_world, world: world1, members: [w1, w2]}\n",
        6,
        "world 'world1' already exists",
    ),
    (
        "world-with-hung-member",
        HEAD
        + "events:\n  - {at: 1.0, do: hang, target: w2}\n  - {at: 2.0, do: add_world, world: x, members: [w1, w2]}\n",
        7,
        "is hung at 2 s",
    ),
    (
        "remove-unknown-world",
        HEAD + "events:\n  - {at: 1.0, do: remove_world, world: nope}\n",
        6,
        "no world named 'nope'",
    ),
    (
        "remove-broken-world",
        HEAD
        + "events:\n  - {at: 1.0, do: crash, target: w1}\n  - {at: 2.0, do: remove_world, world: world1}\n",
        7,
        "world 'world1' is gone at 2 s",
    ),
    (
        "host-without-workers",
        "mwsim: 1\nname: x\ntopology: {generator: fan_in, workers: 1, hosts: 2}\nevents:\n  - {at: 1.0, do: crash, target: w1}\n  - {at: 2.0, do: crash_host, target: h1}\n",
        6,
        "has no running worker",
    ),
    ("bad-backend", HEAD + "backend: mpi\n", 5, "must be 'gloo' or 'nccl', got 'mpi'"),
    (
        "bad-workload-kind",
        HEAD + "workload: {kind: broadcast}\n",
        5,
        "must be 'stream', 'request', 'allreduce' or 'serve'",
    ),
    ("tiny-tensor", HEAD + "workload: {tensor_bytes: 8}\n", 5, "must be >= 64"),
    ("unknown-violation", HEAD + "expect: {violations: [speed]}\n", 5, "must be 'progress'"),
    (
        "explicit-unknown-host",
        "mwsim: 1\nname: x\ntopology:\n  generator: explicit\n  hosts: {h0: {gpus: 0}}\n  workers:\n    a: {host: h0}\n    b: {host: h7}\n  worlds: {ab: [a, b]}\n",
        8,
        "no host named 'h7'",
    ),
    (
        "explicit-unknown-member",
        "mwsim: 1\nname: x\ntopology:\n  generator: explicit\n  hosts: {h0: {}}\n  workers: {a: {host: h0}}\n  worlds:\n    ab:\n      - a\n      - zed\n",
        10,
        "no worker named 'zed'",
    ),
    (
        "nccl-without-gpu",
        "mwsim: 1\nname: x\nbackend: nccl\ntopology:\n  generator: explicit\n  hosts: {h0: {gpus: 0}}\n  workers:\n    a: {host: h0}\n    b: {host: h0}\n  worlds: {ab: [a, b]}\n",
        8,
        "backend nccl needs a GPU",
    ),
    (
        "pipeline-bad-stage",
        "mwsim: 1\nname: x\ntopology: {generator: pipeline, stages: [2, 0]}\n",
        3,
        "must be >= 1",
    ),
    # block style: every error names the line of the offending value, not of its parent
    (
        "block-unknown-generator",
        "mwsim: 1\nname: x\ntopology:\n  generator: torus\n  workers: 3\n",
        4,
        "topology.generator: unknown value 'torus'",
    ),
    (
        "block-bad-count",
        "mwsim: 1\nname: x\ntopology:\n  generator: fan_in\n  workers: 0\n",
        5,
        "topology.workers: must be >= 1",
    ),
    (
        "value-on-the-next-line",
        HEAD.replace("duration_s: 10", "duration_s:\n  -4"),
        5,
        "duration_s: must be > 0",
    ),
    (
        "block-unknown-event",
        HEAD + "events:\n  - at: 1.0\n    target: w1\n    do: explode\n",
        8,
        "events[0].do: unknown value 'explode'; expected one of 'crash', 'hang'",
    ),
    (
        "block-event-target",
        HEAD + "events:\n  - at: 1.0\n    do: crash\n    target: w9\n",
        8,
        "events[0].target: no worker named 'w9'",
    ),
    (
        "gpu-fault-on-gloo",
        HEAD + "events:\n  - {at: 1.0, do: gpu_hang, target: w1}\n",
        6,
        "events[0].do: gpu_hang acts on a worker's GPU, but this scenario runs on backend gloo",
    ),
    (
        "gpu-slow-factor",
        NCCL + "events:\n  - {at: 1.0, do: gpu_slow, target: w1, factor: 1}\n",
        7,
        "events[0].factor: must be > 1",
    ),
    (
        "gpu-fault-on-a-failed-gpu",
        NCCL
        + "events:\n  - {at: 1.0, do: gpu_error, target: w1}\n"
        + "  - {at: 2.0, do: gpu_hang, target: w1}\n",
        8,
        "events[1].target: worker 'w1': its GPU has failed at 2 s (since 1 s, for good)",
    ),
    (
        "world-with-a-hung-gpu",
        NCCL
        + "events:\n  - {at: 1.0, do: gpu_hang, target: w1, for_s: 5}\n"
        + "  - {at: 2.0, do: add_world, world: x, members: [w1, w2]}\n",
        8,
        "worker 'w1': its GPU is hung at 2 s (since 1 s, until 6 s) and cannot form a world",
    ),
]


@pytest.mark.parametrize(
    ("text", "line", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_malformed_file_is_refused_with_its_line(tmp_path, text, line, words):
    path = tmp_path / "scenario.yaml"
    path.write_text(text)
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{path}:{line}: "), result.stderr
    assert words in first, result.stderr


def test_binary_file_is_refused(tmp_path):
    path = tmp_path / "blob.yaml"
    path.write_bytes(b"mwsim: 1\n\xff\xfe\x00\x01binary")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{path}:2: not a text file")


def test_nul_bytes_are_refused(tmp_path):
    path = tmp_path / "nul.yaml"
    path.write_bytes(b"mwsim: 1\nname: x\x00\n")
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"{path}:2: not a text file: contains NUL bytes")


def test_missing_file_is_refused(tmp_path):
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "nope.yaml:1: cannot read" in result.stderr


def test_every_problem_is_listed_one_per_line(tmp_path):
    path = tmp_path / "many.yaml"
    path.write_text(
        textwrap.dedent(
            """\
            mwsim: 1
            name: many
            topology: {generator: fan_in, workers: 2}
            events:
              - {at: 1.0, do: crash, target: w7}
              - {at: 2.0, do: hang, target: w8}
              - {at: 3.0, do: remove_world, world: zz}
            """
        )
    )
    result = CliRunner().invoke(main, ["validate", str(path)])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert [line.split(": ")[0] for line in lines] == [f"{path}:5", f"{path}:6", f"{path}:7"]


def test_valid_and_invalid_together_exit_2(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(HEAD)
    bad = tmp_path / "bad.yaml"
    bad.write_text(HEAD + "oops: 1\n")
    result = CliRunner().invoke(main, ["validate", str(good), str(bad)])
    assert result.exit_code == 2
    assert f"ok  {good}" in result.stdout
    assert f"{bad}:5: unknown key 'oops'" in result.stderr
