"""Topology model: generators, placement, blast radius."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mwsim import topology as topo
from mwsim.strategies import topologies


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
    assert t.blast_radius(["w2"]) == ["world2"]
    assert t.blast_radius(["leader"]) == ["world1", "world2", "world3"]
    assert t.blast_radius([]) == []


def test_fan_in_host_crash_takes_every_worker_of_the_host():
    t = topo.fan_in(4, hosts=2)
    assert t.blast_radius(t.workers_on("h1")) == ["world1", "world3"]
    assert t.blast_radius(t.workers_on("h0")) == ["world1", "world2", "world3", "world4"]


def test_pipeline_shape_and_world_direction():
    t = topo.pipeline([2, 3])
    assert t.workers() == ["leader", "s0r0", "s0r1", "s1r0", "s1r1", "s1r2"]
    # leader feeds stage 0, full bipartite between stages, last stage feeds the leader
    assert len(t.worlds()) == 2 + 2 * 3 + 3
    assert t.members("leader-s0r1") == ("s0r1", "leader")  # receiver is rank 0
    assert t.members("s0r0-s1r2") == ("s1r2", "s0r0")
    assert t.members("s1r1-leader") == ("leader", "s1r1")


def test_pipeline_host_crash_takes_replicas_of_two_stages():
    t = topo.pipeline([2, 2], hosts=2)
    on_h1 = t.workers_on("h1")
    assert on_h1 == ["s0r0", "s1r0"]  # one replica of each stage
    assert t.blast_radius(on_h1) == [
        "leader-s0r0",
        "s0r0-s1r0",
        "s0r0-s1r1",
        "s0r1-s1r0",
        "s1r0-leader",
    ]


def test_explicit_and_its_errors():
    t = topo.explicit({"h0": 2, "h1": 0}, {"a": ("h0", 1), "b": ("h1", None)}, {"ab": ["a", "b"]})
    assert t.gpu_of("a") == 1 and t.gpu_of("b") is None
    assert t.blast_radius(t.workers_on("h1")) == ["ab"]
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


@settings(deadline=None)  # a shared CI machine has no steady speed
@given(st.data())
def test_a_world_is_in_the_blast_radius_iff_a_member_fails(data):
    t = data.draw(topologies())
    failing = data.draw(st.sets(st.sampled_from(t.workers())))
    radius = set(t.blast_radius(failing))
    for world in t.worlds():
        assert (world in radius) == any(m in failing for m in t.members(world))


def test_a_cut_separates_the_worlds_with_members_on_two_sides():
    t = topo.explicit(
        {"h0": 0, "h1": 0, "h2": 0},
        {"a": ("h0", None), "b": ("h1", None), "c": ("h2", None)},
        {"trio": ["a", "b", "c"], "ab": ["a", "b"]},
    )
    assert t.cut([["h1"], ["h2"]]) == {"trio": {"b": ["c"], "c": ["b"]}}
    assert t.cut([["h0"], ["h1", "h2"]]) == {
        "ab": {"a": ["b"], "b": ["a"]},
        "trio": {"a": ["b", "c"], "b": ["a"], "c": ["a"]},
    }
    assert t.cut([["h2"], ["h0"]], one_way=True) == {"trio": {"a": ["c"], "c": ["a"]}}
    assert t.cut([["h0"], ["h0"]]) == {}  # a host with itself cuts nothing


def test_the_host_graph_weighs_shared_worlds_and_bridges_are_articulation_points():
    t = topo.fan_in(4, hosts=3)  # leader and w3 on h0, w1 and w4 on h1, w2 on h2
    graph = t.host_graph()
    assert graph["h0"]["h1"]["weight"] == 2 and graph["h0"]["h2"]["weight"] == 1
    assert not graph.has_edge("h1", "h2")
    assert t.bridge_workers() == ["leader"]
    chain = topo.explicit(
        {"h0": 0},
        {n: ("h0", None) for n in "abcd"},
        {"ab": ["a", "b"], "bc": ["b", "c"], "cd": ["c", "d"]},
    )
    assert chain.bridge_workers() == ["b", "c"]
