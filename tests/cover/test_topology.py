"""Topology model: generators, blast radius, healthy worlds, serving paths."""

from itertools import pairwise, product

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mwsim import topology as topo
from mwsim.strategies import faults, pipeline_topologies, topologies
from mwsim.topology import Fault


def test_fan_in_shape():
    t = topo.fan_in(3)
    assert t.hosts() == ["h0"]
    assert t.workers() == ["leader", "w1", "w2", "w3"]
    assert t.worlds() == ["world1", "world2", "world3"]
    assert t.members("world2") == ("leader", "w2")
    assert t.rank("world2", "leader") == 0 and t.rank("world2", "w2") == 1
    assert t.worlds_of("leader") == ["world1", "world2", "world3"]
    assert t.worlds_of("w3") == ["world3"]


def test_fan_in_spreads_round_robin_with_leader_on_h0():
    t = topo.fan_in(4, hosts=2)
    assert t.host_of("leader") == "h0"
    assert [t.host_of(w) for w in ("w1", "w2", "w3", "w4")] == ["h1", "h0", "h1", "h0"]
    assert t.workers_on("h1") == ["w1", "w3"]
    # one GPU per worker on its host
    assert t.gpus_of("h0") == 3 and t.gpus_of("h1") == 2
    assert sorted(t.gpu_of(w) for w in t.workers_on("h0")) == [0, 1, 2]


def test_fan_in_blast_radius():
    t = topo.fan_in(3)
    assert t.blast_radius(Fault("crash", "w2")) == {"world2"}
    assert t.blast_radius(Fault("hang", "w3")) == {"world3"}
    assert t.blast_radius(Fault("leave", "w1")) == {"world1"}
    assert t.blast_radius(Fault("crash", "leader")) == {"world1", "world2", "world3"}
    assert t.blast_radius(Fault("slow", "w1")) == set()
    assert t.healthy_worlds([Fault("crash", "w2")]) == {"world1", "world3"}


def test_fan_in_host_crash_takes_every_worker_of_the_host():
    t = topo.fan_in(4, hosts=2)
    assert t.blast_radius(Fault("crash_host", "h1")) == {"world1", "world3"}
    assert t.blast_radius(Fault("crash_host", "h0")) == {"world1", "world2", "world3", "world4"}


def test_unknown_targets_are_rejected():
    t = topo.fan_in(2)
    with pytest.raises(KeyError):
        t.blast_radius(Fault("crash", "nobody"))
    with pytest.raises(KeyError):
        t.blast_radius(Fault("crash_host", "h9"))
    with pytest.raises(ValueError):
        Fault("explode", "w1")


def test_pipeline_shape_and_world_direction():
    t = topo.pipeline([2, 3])
    assert t.stages == [["s0r0", "s0r1"], ["s1r0", "s1r1", "s1r2"]]
    # leader feeds stage 0, full bipartite between stages, last stage feeds the leader
    assert len(t.worlds()) == 2 + 2 * 3 + 3
    assert t.members("leader-s0r1") == ("s0r1", "leader")  # receiver is rank 0
    assert t.members("s0r0-s1r2") == ("s1r2", "s0r0")
    assert t.members("s1r1-leader") == ("leader", "s1r1")
    assert t.serving_paths() == topo.total_paths([2, 3]) == 6


def test_pipeline_host_crash_takes_replicas_of_two_stages():
    t = topo.pipeline([2, 2], hosts=2)
    on_h1 = t.workers_on("h1")
    assert on_h1 == ["s0r0", "s1r0"]  # one replica of each stage
    fault = Fault("crash_host", "h1")
    assert t.blast_radius(fault) == {
        "leader-s0r0",
        "s0r0-s1r0",
        "s0r0-s1r1",
        "s0r1-s1r0",
        "s1r0-leader",
    }
    assert t.serving_paths([fault]) == 1
    assert t.has_serving_path([fault])
    assert not t.has_serving_path([fault, Fault("hang", "s1r1")])


def test_pipeline_paths_after_worker_faults():
    t = topo.pipeline([3, 2, 2])
    assert t.serving_paths() == 12
    assert t.serving_paths([Fault("crash", "s1r0")]) == 6
    assert t.serving_paths([Fault("leave", "s0r0"), Fault("hang", "s2r1")]) == 4
    assert t.serving_paths([Fault("slow", "s0r0")]) == 12  # slow breaks nothing
    assert t.serving_paths([Fault("crash", "leader")]) == 0


def test_serving_paths_only_for_pipelines():
    with pytest.raises(ValueError):
        topo.fan_in(2).serving_paths()


def test_explicit_and_its_errors():
    t = topo.explicit({"h0": 2, "h1": 0}, {"a": ("h0", 1), "b": ("h1", None)}, {"ab": ["a", "b"]})
    assert t.gpu_of("a") == 1 and t.gpu_of("b") is None
    assert t.blast_radius(Fault("crash_host", "h1")) == {"ab"}
    with pytest.raises(ValueError, match="no GPU 0"):
        topo.explicit({"h0": 0}, {"a": ("h0", 0)}, {})
    with pytest.raises(ValueError, match="at least 2"):
        topo.explicit({"h0": 0}, {"a": ("h0", None)}, {"x": ["a"]})
    with pytest.raises(ValueError, match="twice"):
        topo.explicit({"h0": 0}, {"a": ("h0", None), "b": ("h0", None)}, {"x": ["a", "a"]})
    with pytest.raises(ValueError, match="no worker"):
        topo.explicit({"h0": 0}, {"a": ("h0", None)}, {"x": ["a", "z"]})


def test_removing_a_worker_removes_its_worlds_and_copy_is_independent():
    t = topo.fan_in(3)
    snapshot = t.copy()
    assert t.remove_worker("w2") == {"world2"}
    assert not t.has_world("world2") and not t.has_worker("w2")
    assert snapshot.has_world("world2")


@given(st.data())
def test_a_world_is_broken_iff_a_member_is_faulty(data):
    t = data.draw(topologies())
    drawn = data.draw(faults(t))
    faulty = t.faulty_workers(drawn)
    healthy = t.healthy_worlds(drawn)
    for world in t.worlds():
        assert (world not in healthy) == any(m in faulty for m in t.members(world))


@given(pipeline_topologies(), st.data())
def test_serving_paths_match_brute_force(t, data):
    drawn = data.draw(faults(t))
    healthy, dead = t.healthy_worlds(drawn), t.faulty_workers(drawn)
    count = 0
    for path in product(*t.stages):
        hops = ["leader", *path, "leader"]
        if "leader" in dead or any(w in dead for w in path):
            continue
        if all(topo.pipeline_world(a, b) in healthy for a, b in pairwise(hops)):
            count += 1
    assert t.serving_paths(drawn) == count
    assert t.has_serving_path(drawn) == (count > 0)
