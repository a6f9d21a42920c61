"""Branches, merges and several outputs: named tensors, append from an earlier layer, merge, outputs."""

from __future__ import annotations

import numpy as np
import pytest

import surgery

from graph_helpers import assert_close, backbone, images, predict, run, spec
from helpers import SPECS

RESNET = backbone("resnet50")  # random init: these tests are about wiring, not weights
X = images((2, 32, 32, 3))


@pytest.mark.slow
def test_two_heads_saved_reloaded_and_exported_with_named_outputs(cli, tmp_path, keras, resnet50_notop_weights):
    """specs/resnet50_two_heads.json: one cut backbone, a classifier and an embedding head."""
    import onnx
    import onnxruntime as ort

    keras_path, onnx_path = tmp_path / "two.keras", tmp_path / "two.onnx"
    result = cli(
        "apply",
        SPECS / "resnet50_two_heads.json",
        "--weights",
        resnet50_notop_weights,
        "-o",
        keras_path,
        "--onnx",
        onnx_path,
    )
    assert result.exit_code == 0, result.stderr
    assert "outputs: 2 (classes (None, 10), embedding (None, 128))" in result.stdout

    model = keras.saving.load_model(str(keras_path), safe_mode=True)
    assert model.output_names == ["classes", "embedding"]
    assert [tuple(t.shape) for t in model.outputs] == [(None, 10), (None, 128)]
    assert not any(layer.name.startswith("conv5_") for layer in model.layers)
    trainable = {layer.name for layer in model.layers if layer.trainable_weights}
    assert trainable == {"classes", "embedding_dense"}  # the backbone is frozen, both heads learn

    x = images((2, 224, 224, 3), seed=1)
    classes, embedding = predict(model, x)
    np.testing.assert_allclose(classes.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1, rtol=1e-5)

    graph = onnx.load(str(onnx_path)).graph
    assert sorted(o.name for o in graph.output) == ["classes", "embedding"]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = dict(zip(["classes", "embedding"], session.run(["classes", "embedding"], {session.get_inputs()[0].name: x})))
    assert_close(got["classes"], classes, rel=1e-4)
    assert_close(got["embedding"], embedding, rel=1e-4)


@pytest.mark.slow
def test_branch_from_a_layer_and_from_a_named_tensor():
    state = run(
        spec(
            RESNET,
            {"op": "slice", "to": "conv4_block6_out", "as": "features"},
            {"op": "append", "layer": "GlobalAveragePooling2D", "as": "pooled"},
            {"op": "append", "layer": "Dense", "config": {"units": 10}, "name": "classes"},
            # from a layer inside the backbone, by its name
            {"op": "append", "input": "conv3_block4_out", "layer": "GlobalMaxPooling2D", "name": "early_pool"},
            # from a named tensor; "classes" was left behind by the branch above, and is still found by name
            {"op": "append", "input": "pooled", "layer": "Dense", "config": {"units": 16}, "name": "embedding"},
            {
                "op": "outputs",
                "tensors": ["classes", "embedding", "early_pool", {"tensor": "features", "name": "fmap"}],
            },
        )
    )
    model = state.model
    assert model.output_names == ["classes", "embedding", "early_pool", "fmap"]
    assert [tuple(t.shape) for t in model.outputs] == [(None, 10), (None, 16), (None, 512), (None, 2, 2, 1024)]
    assert 'append: Dense "embedding" on pooled' in state.notes[5]
    assert type(model.get_layer("fmap")).__name__ == "Identity"  # names the output, changes nothing
    classes, embedding, early, fmap = predict(model, X)
    pooled = fmap.mean(axis=(1, 2))
    dense = model.get_layer("embedding")
    assert_close(embedding, pooled @ dense.kernel.numpy() + dense.bias.numpy(), rel=1e-5)


@pytest.mark.slow
def test_merge_add_and_concatenate_compute_what_they_say():
    model = surgery.build(
        spec(
            RESNET,
            {"op": "slice", "to": "conv4_block6_out"},
            {"op": "append", "input": "conv3_block4_out", "layer": "GlobalAveragePooling2D", "as": "early"},
            {"op": "append", "input": "conv4_block6_out", "layer": "GlobalAveragePooling2D", "as": "late"},
            {
                "op": "append",
                "input": "early",
                "layer": "Dense",
                "config": {"units": 1024},
                "name": "lift",
                "as": "lifted",
            },
            {"op": "merge", "layer": "Add", "inputs": ["lifted", "late"], "name": "sum", "as": "sum"},
            {"op": "merge", "layer": "Concatenate", "inputs": ["early", "late"], "name": "both", "as": "both"},
            {"op": "outputs", "tensors": ["early", "late", "lifted", "sum", "both"]},
        )
    )
    early, late, lifted, total, both = predict(model, X)
    assert both.shape == (2, 512 + 1024)
    assert_close(total, lifted + late)
    assert_close(both, np.concatenate([early, late], axis=1))


@pytest.mark.slow
def test_edits_rewire_named_tensors_and_branches():
    """An insert inside the backbone after two heads were branched: both heads read through it."""
    state = run(
        spec(
            RESNET,
            {"op": "slice", "to": "conv4_block6_out", "as": "features"},
            {"op": "append", "layer": "GlobalAveragePooling2D", "as": "pooled"},
            {"op": "append", "layer": "Dense", "config": {"units": 10}, "name": "a", "as": "a"},
            {"op": "append", "input": "pooled", "layer": "Dense", "config": {"units": 4}, "name": "b", "as": "b"},
            {"op": "insert", "after": "conv4_block1_out", "layer": "Dropout", "config": {"rate": 0.5}, "name": "drop"},
            {"op": "replace", "target": "a", "config": {"units": 3}},
            {"op": "outputs", "tensors": ["a", "b"]},
        )
    )
    model = state.model
    assert "drop" in [layer.name for layer in model.layers]
    assert [tuple(t.shape) for t in model.outputs] == [(None, 3), (None, 4)]
    assert "new weights, the shapes differ" in state.notes[6]
    # The named tensors were re-wired too: each is computed through the inserted layer, "a" by the new layer.
    for name in ("features", "pooled", "a", "b"):
        assert "drop" in layers_behind(state.tensors[name]), name
    assert state.tensors["a"]._keras_history.operation is model.get_layer("a")


def layers_behind(tensor) -> set:
    """Names of the layers ``tensor`` is computed through."""
    from surgery.model.graph import walk_history

    return {node.operation.name for _, node in walk_history([tensor]) if node is not None}
