"""History: JSON-lines write/read, validation with path:line, streaming reads."""

import json
import threading

import pytest

from mwsim import History, HistoryWriter, ProblemError, event, read_history, write_history
from mwsim.history import follow, parse_line


def test_round_trip_keeps_fields_and_orders_by_time(tmp_path):
    path = tmp_path / "h.jsonl"
    events = [
        event(3.1, "fault", do="crash", target="w2", confirmed=True),
        event(3.012, "op", world="world1", worker="leader", seq=152, ok=True, peer="w1"),
        event(-0.5, "joined", world="world1", worker="w1"),
        event(9.0, "exit", worker="w1", code=None),
        event(4.0, "custom_kind", anything=[1, 2]),
    ]
    write_history(path, events)
    history = read_history(path)
    assert [e.kind for e in history] == ["joined", "op", "fault", "custom_kind", "exit"]
    op = history.of_kind("op")[0]
    assert (op.t, op["seq"], op.get("peer"), op.get("missing", 7)) == (3.012, 152, "w1", 7)
    assert history.of_kind("custom_kind")[0]["anything"] == [1, 2]
    first_line = path.read_text().splitlines()[0]
    assert json.loads(first_line) == {
        "t": 3.1,
        "kind": "fault",
        "do": "crash",
        "target": "w2",
        "confirmed": True,
    }


BAD_LINES = [
    ("not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"kind": "op"}', "'t'"),
    ('{"t": "soon", "kind": "op"}', "'t'"),
    ('{"t": 1.0}', "'kind'"),
    ('{"t": 1.0, "kind": "op", "world": "a", "worker": "b", "seq": 1}', "op event without 'ok'"),
    (
        '{"t": 1.0, "kind": "op", "world": "a", "worker": "b", "seq": true, "ok": true}',
        "'seq' must be int",
    ),
    ('{"t": 1.0, "kind": "broken", "world": "a", "worker": "b"}', "without 'reason'"),
    ('{"t": 1.0, "kind": "exit", "worker": "b", "code": "x"}', "'code' must be int or null"),
    ('{"t": 1.0, "kind": "fault", "do": "crash"}', "without 'target'"),
]


@pytest.mark.parametrize(("line", "words"), BAD_LINES)
def test_bad_line_is_located(tmp_path, line, words):
    path = tmp_path / "h.jsonl"
    path.write_text('{"t": 0.0, "kind": "phase", "name": "start"}\n\n' + line + "\n")
    with pytest.raises(ProblemError) as info:
        read_history(path)
    problem = info.value.problems[0]
    assert (problem.path, problem.line) == (str(path), 3)
    assert words in problem.message


def test_nan_time_is_refused():
    with pytest.raises(ProblemError, match="'t'"):
        parse_line('{"t": NaN, "kind": "phase", "name": "x"}')


def test_history_can_be_read_while_it_is_written(tmp_path):
    path = tmp_path / "live.jsonl"
    writer = HistoryWriter(path)
    done = threading.Event()
    seen: list = []
    reader = threading.Thread(target=lambda: seen.extend(follow(path, done.is_set, poll_s=0.01)))
    reader.start()
    for seq in range(50):
        writer.write(event(seq * 0.01, "op", world="w", worker="leader", seq=seq, ok=True))
    # a torn last line is not taken until it is complete
    writer._stream.write('{"t": 1.0, "kind": "phase", ')
    writer._stream.flush()
    done.set()
    reader.join(timeout=10)
    writer.close()
    assert not reader.is_alive()
    assert [e["seq"] for e in seen] == list(range(50))


def test_follow_takes_the_lines_written_just_before_stop_held(tmp_path):
    path = tmp_path / "live.jsonl"
    with HistoryWriter(path) as writer:
        writer.write(event(0.0, "op", world="w", worker="leader", seq=0, ok=True))

        def stop():  # the last line lands after the reader found nothing, before stop holds
            writer.write(event(0.01, "op", world="w", worker="leader", seq=1, ok=True))
            return True

        assert [e["seq"] for e in follow(path, stop, poll_s=0.01)] == [0, 1]


def test_history_meta_and_jsonl():
    h = History([event(0, "run", scenario="s", mode="sim"), event(1, "phase", name="stop")])
    assert h.meta["mode"] == "sim"
    assert h.to_jsonl().count("\n") == 2


def test_the_fast_json_encoder_says_what_the_standard_library_says():
    import types

    import numpy as np

    from mwsim.internal import jsonout

    value = {
        "t": np.float64(1.25),
        "n": np.int64(3),
        2: ["é", None, True, (1, 2.5)],
        "attrs": types.MappingProxyType({"x": 1}),
    }
    plain = {"t": 1.25, "n": 3, 2: ["é", None, True, [1, 2.5]], "attrs": {"x": 1}}
    assert json.loads(jsonout.dumps(value)) == json.loads(json.dumps(plain))
    assert json.loads(jsonout.dumps(value, indent=True)) == json.loads(json.dumps(plain))
    with pytest.raises(TypeError, match="not JSON serializable"):
        jsonout.dumps({"s": {1, 2}})
