"""The membership plan: world and worker lives along the timeline."""

import pytest

from mwsim import parse_scenario
from mwsim.errors import PlanError
from mwsim.events import Crash

BASE = "mwsim: 1\nname: m\ntopology: {generator: fan_in, workers: 3, hosts: 2}\nduration_s: 20\n"


def planned(events: str):
    return parse_scenario(BASE + "events:\n" + events).plan


def test_crash_ends_the_worlds_of_the_worker():
    p = planned("  - {at: 3.0, do: crash, target: w2}\n")
    world2 = p.lives_of("world2")[0]
    assert (world2.end, world2.end_cause, world2.end_worker) == (3.0, "crash", "w2")
    assert p.life_at("world2", 2.9) is world2 and p.life_at("world2", 3.0) is None
    assert p.life_at("world1", 15.0).end is None
    assert p.steps[0].workers == ("w2",) and p.steps[0].worlds == ("world2",)
    assert p.worker("w2").end_cause == "crash"


def test_host_crash_acts_on_each_worker_of_the_host():
    p = planned("  - {at: 1.0, do: crash_host, target: h1}\n")
    assert p.steps[0].workers == ("w1", "w3")
    assert set(p.steps[0].worlds) == {"world1", "world3"}
    assert {w.name for w in p.workers if w.end_cause == "crash_host"} == {"w1", "w3"}


def test_hang_marks_worlds_without_ending_them():
    p = planned(
        "  - {at: 2.0, do: hang, target: w1, for_s: 4.0}\n  - {at: 7.0, do: leave, target: w1}\n"
    )
    world1 = p.lives_of("world1")[0]
    assert [(s.kind, s.start, s.end) for s in world1.spans] == [("hang", 2.0, 6.0)]
    assert (world1.end, world1.end_cause) == (7.0, "leave")


def test_crash_cuts_an_open_hang_short():
    p = planned("  - {at: 2.0, do: hang, target: w1}\n  - {at: 5.0, do: crash, target: w1}\n")
    (hang,) = p.lives_of("world1")[0].spans
    assert (hang.kind, hang.end) == ("hang", 5.0)


def test_rejoin_creates_a_new_incarnation():
    p = planned(
        "  - {at: 1.0, do: crash, target: w1}\n"
        "  - {at: 4.0, do: join, worker: w1, host: h0, worlds: {world1: [leader, w1]}}\n"
        "  - {at: 6.0, do: add_world, world: x, members: [w1, w2]}\n"
        "  - {at: 8.0, do: remove_world, world: x}\n"
    )
    first, second = p.lives_of("world1")
    assert (first.end, second.start, second.origin) == (1.0, 4.0, "join")
    assert [w.host for w in p.workers if w.name == "w1"] == ["h1", "h0"]
    x = p.lives_of("x")[0]
    assert (x.start, x.end, x.end_cause, x.origin) == (6.0, 8.0, "remove_world", "add_world")


def test_slow_spans_carry_into_worlds_formed_while_slow():
    p = planned(
        "  - {at: 1.0, do: slow, target: w1, delay_ms: 50, for_s: 5}\n"
        "  - {at: 2.0, do: add_world, world: x, members: [w1, w2]}\n"
    )
    assert [s.kind for s in p.lives_of("x")[0].spans] == ["slow"]


def test_plan_of_an_invalid_timeline_raises():
    scenario = parse_scenario(BASE)
    bad = scenario.model_copy(update={"events": [Crash(at=1.0, do="crash", target="nobody")]})
    with pytest.raises(PlanError, match="no worker named 'nobody'"):
        bad.plan  # noqa: B018
