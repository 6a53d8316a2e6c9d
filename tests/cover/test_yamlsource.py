"""Loading YAML: the fast construction gives exactly what PyYAML's safe loader gives."""

import math

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mwsim.internal.yamlsource import load_source

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**12), 10**12)
    | st.floats(allow_nan=False)
    | st.text(max_size=12)
)
documents = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(data=st.dictionaries(st.text(min_size=1, max_size=6), documents, min_size=1, max_size=4))
def test_what_is_dumped_loads_back_as_pyyaml_loads_it(data):
    for style in (False, True, None):
        text = yaml.safe_dump(data, default_flow_style=style, allow_unicode=True)
        assert load_source(text, "x.yaml").data == yaml.safe_load(text)


def test_yaml_1_1_oddities_and_references_are_left_to_pyyaml():
    text = """
    octal: 010
    hex: 0x1F
    under: 1_000
    sexagesimal: 1:30
    big: 1e5
    exp: 1.5e+3
    plain: 1.5e3
    inf: .inf
    when: 2026-11-22
    yes: yes
    set: !!set {a, b}
    base: &base {x: 1, y: [1, 2]}
    merged: {<<: *base, y: 3}
    again: *base
    """
    got = load_source(text, "x.yaml").data
    assert got == yaml.safe_load(text)
    assert got["octal"] == 8 and got["big"] == "1e5" and got["exp"] == 1500.0
    assert got["plain"] == "1.5e3"  # YAML 1.1: an exponent needs its sign
    assert math.isinf(got["inf"]) and got["merged"] == {"x": 1, "y": 3}


def test_a_recursive_alias_is_built_as_pyyaml_builds_it():
    got = load_source("a: &a [1, *a]\n", "x.yaml").data
    assert got["a"][0] == 1 and got["a"][1] is got["a"]
