"""The same spec gives the same layer names in any process, whatever the process built before.

Keras 3 makes automatic names unique with a global counter per prefix, so a second build in a
notebook would name its input "input_layer_1" and InceptionV3's layer 249 "conv2d_174" instead of
"conv2d_80". surgery builds with fresh counters (executor.fresh_names) and gives the caller's back
afterwards, raised past the built model's names, so what the caller makes next does not clash.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import surgery
from surgery import plan

from helpers import ROOT

VGG16_APPEND = {
    "surgery": 1,
    "name": "vgg16_append",
    "seed": 0,
    "steps": [
        {"op": "backbone", "name": "vgg16", "weights": None, "include_top": False, "input_shape": [32, 32, 3]},
        {"op": "slice", "to": "block3_pool"},
        {"op": "append", "layer": "Conv2D", "config": {"filters": 8, "kernel_size": 1}},
        {"op": "append", "layer": "Flatten"},
        {"op": "append", "layer": "Dense", "config": {"units": 2}},
    ],
}
INCEPTION = {
    "surgery": 1,
    "name": "inception",
    "steps": [
        {"op": "backbone", "name": "inceptionv3", "weights": None, "include_top": False, "input_shape": [75, 75, 3]}
    ],
}


def names(spec) -> list[str]:
    return [layer.name for layer in surgery.build(spec).layers]


def _what_a_notebook_does_between_builds(keras):
    """Auto-named Keras objects that move the counters Keras names layers with."""
    x = keras.Input((4,))
    keras.Model(x, keras.layers.Dense(3)(keras.layers.Dense(2)(x)))
    keras.layers.Conv2D(1, 1)
    keras.layers.Flatten()


def test_two_builds_in_one_process_name_vgg16_and_appended_layers_alike(keras):
    first = names(VGG16_APPEND)
    _what_a_notebook_does_between_builds(keras)
    second = names(VGG16_APPEND)
    assert second == first
    assert first[0] == "input_layer" and first[-3:] == ["conv2d", "flatten", "dense"]
    assert plan(VGG16_APPEND).state.model.layers[0].name == "input_layer"  # plan builds the same way


def test_the_callers_next_layers_are_not_named_like_the_models(keras):
    keras.utils.clear_session(free_memory=False)  # a fresh notebook: the caller's next Dense would be "dense"
    model = surgery.build(VGG16_APPEND)
    taken = {layer.name for layer in model.layers}
    x = keras.Input((4,))  # Keras names this one "input_layer" too unless the build's names are reserved
    head = keras.layers.Dense(3)  # and this one "dense", the name surgery gave the appended Dense
    assert {x._keras_history.operation.name, head.name, keras.layers.Conv2D(1, 1).name}.isdisjoint(taken)
    combined = keras.Model(model.inputs, head(model.outputs[0]))  # Keras refuses two layers of one name
    assert len(combined.layers) == len(model.layers) + 1


@pytest.mark.slow  # InceptionV3 twice (a few seconds each) and a fresh process
def test_inceptionv3_names_match_a_fresh_process(keras):
    _what_a_notebook_does_between_builds(keras)
    first = names(INCEPTION)
    _what_a_notebook_does_between_builds(keras)
    second = names(INCEPTION)
    assert second == first
    code = (
        "import json, sys, surgery; print(json.dumps([l.name for l in surgery.build(json.loads(sys.argv[1])).layers]))"
    )
    fresh = subprocess.run(
        [sys.executable, "-c", code, json.dumps(INCEPTION)], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads(fresh.stdout.strip().splitlines()[-1]) == first
    assert first[0] == "input_layer" and first[249] == "conv2d_80"
