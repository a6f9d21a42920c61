"""The graph ops pass the conformance helper plugin authors use: schemas, examples applied, no TensorFlow at import."""

from __future__ import annotations

import importlib

import pytest

from surgery.testing import check_plugin

OPS = {
    "op_edit": ["insert", "replace", "remove"],
    "op_merge": ["merge"],
    "op_outputs": ["outputs"],
    "op_adapt": ["adapt_input"],
    "op_preprocess": ["preprocess"],
    "op_append": ["append"],
}


@pytest.mark.parametrize("module", sorted(OPS))
def test_graph_op_plugin_conforms(module):
    checked = check_plugin(importlib.import_module(f"surgery_plugins.{module}"))
    assert checked.ops == OPS[module]
