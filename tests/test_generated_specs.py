"""Mutated specs never crash the CLI: every run ends in success (0) or one clear error line (2).

Hypothesis takes valid specs and drops, duplicates, retypes and renames keys, and
reorders steps. An uncaught exception would surface as exit 1 ("internal error")
or a traceback. Built with weights null at small input sizes to stay fast.
"""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import write_spec

BASES = [
    {
        "surgery": 1,
        "name": "a",
        "seed": 0,
        "steps": [
            {"op": "backbone", "name": "vgg16", "weights": None, "include_top": False, "input_shape": [32, 32, 3]},
            {"op": "slice", "layers": ":11"},
            {"op": "append", "layer": "Conv2D", "config": {"filters": 4, "kernel_size": [3, 3], "activation": "relu"}},
            {"op": "append", "layer": "Flatten"},
            {"op": "append", "layer": "Dense", "config": {"units": 2, "activation": "softmax"}},
            {"op": "freeze", "layers": "8:"},
        ],
    },
    {
        "surgery": 1,
        "name": "b",
        "steps": [
            {
                "op": "backbone",
                "name": "mobilenetv2",
                "weights": None,
                "include_top": False,
                "input_shape": [32, 32, 3],
                "pooling": "avg",
                "alpha": 0.35,
            },
            {"op": "freeze", "types": ["BatchNormalization"], "names": ["block_1*"]},
            {"op": "unfreeze", "layers": "-10:", "batchnorm": "train"},
            {"op": "append", "layer": "Dropout", "config": {"rate": 0.5}},
            {"op": "append", "layer": "Dense", "config": {"units": 3}},
        ],
    },
]

# Values of every JSON type, plausible and not, for retyping.
VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 300),
    st.floats(-2, 2, allow_nan=False),
    st.sampled_from(["", ":11", "vgg16", "Dense", "block1_conv1", "imagenet", "8:", "x" * 3, "-1:"]),
    st.lists(st.integers(-1, 64), max_size=4),
    st.just({}),
    st.just({"units": 2}),
)
KEYS = st.sampled_from(
    [
        "op",
        "name",
        "layers",
        "to",
        "layer",
        "config",
        "names",
        "types",
        "weights",
        "input_shape",
        "units",
        "surgery",
        "steps",
        "seed",
        "unknown",
        "as",
        "batchnorm",
    ]
)


def _containers(node, path=()):
    """Every dict or list in the spec, with its path."""
    if isinstance(node, (dict, list)):
        yield path, node
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in items:
            yield from _containers(value, path + (key,))


@st.composite
def mutated_specs(draw):
    spec = copy.deepcopy(draw(st.sampled_from(BASES)))
    for _ in range(draw(st.integers(1, 3))):
        containers = list(_containers(spec))
        _, node = draw(st.sampled_from(containers))
        kind = draw(st.sampled_from(["drop", "duplicate", "retype", "rename", "reorder"]))
        if kind == "reorder":
            if isinstance(spec.get("steps"), list):
                spec["steps"] = draw(st.permutations(spec["steps"]))
            continue
        if not node:
            continue
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        key = draw(st.sampled_from(keys))
        if kind == "drop":
            del node[key]
        elif kind == "duplicate":
            if isinstance(node, list):
                node.insert(key, copy.deepcopy(node[key]))
            else:
                node[draw(KEYS)] = copy.deepcopy(node[key])
        elif kind == "retype":
            node[key] = draw(VALUES)
        elif kind == "rename" and isinstance(node, dict):
            node[draw(KEYS)] = node.pop(key)
    return spec


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(spec=mutated_specs())
@pytest.mark.slow
def test_mutated_specs_end_cleanly(cli, spec):
    with tempfile.TemporaryDirectory() as tmp:
        path = write_spec(Path(tmp), spec)
        result = cli("apply", path, "-o", Path(tmp) / "out", "--force")
        assert result.exit_code in (0, 2), result.stderr
        assert "Traceback" not in result.stderr
        if result.exit_code == 2:
            lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("warning:")]
            assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
            assert not (Path(tmp) / "out").exists()
        else:
            assert (Path(tmp) / "out").exists()
