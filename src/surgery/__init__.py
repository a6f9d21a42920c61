"""surgery: model surgery and transfer learning for Keras 3, from JSON specs.

This module is the public API: the pipeline (``build``, ``apply``, ``plan``, ``export``, ...) and
everything a plugin needs. Plugins, the built-in ones included, import only the names in ``__all__``.

Importing it is cheap: each name is imported from its module on first use (PEP 562), and TensorFlow
only when a model is built, never by validation, listing or the command line's help.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# name -> (module, attribute in it); the attribute is the name unless given.
_EXPORTS: dict[str, tuple[str, str]] = {}


def _export(module: str, *names: str, **renamed: str) -> None:
    for name in names:
        _EXPORTS[name] = (module, name)
    for public, attribute in renamed.items():
        _EXPORTS[public] = (module, attribute)


# The pipeline.
_export(
    "api",
    "build",
    "load",
    "apply",
    "plan",
    "export",
    "train",
    "evaluate",
    "features",
    "predict",
    "bench",
    "sweep",
    "Applied",
)
_export("version", "__version__")
# Errors and messages.
_export("errors", "SurgeryError", "SpecError", "OpError", "PluginError", "did_you_mean", "counted", "shown", "one_line")
_export("spec.loading", "StepContext", "schema_error")
# Plugins: the hook marker, the state ops transform, loading and conformance.
_export("hookspecs", "hookimpl", "OpApply", "OpCheck", "RegisterOp", "Exporter")
_export("model.state", "State")
_export("plugins.loading", "load_plugins", "Candidate", "builtin_candidates")
_export("plugins.application_options", "APPLICATION_OPTIONS")
_export("testing", "check_plugin", "probe_model")
# Keras, imported lazily and quietly.
_export("keras_env", "keras", "seeded", "native_stderr_muted", "is_quiet", "keras_cache_dir")
# Choosing layers and what trains.
_export(
    "spec.selectors",
    "SELECTOR_PROPERTIES",
    "FREEZE_SCHEMA",
    "UNFREEZE_SCHEMA",
    "parse_slice",
    "freeze_layers",
    "unfreeze_layers",
    select_layers="resolve",
)
# Layers from a class name and a config.
_export(
    "model.layers",
    "NAME_PATTERN",
    "LAYER_PROPERTIES",
    "check_layer_config",
    "check_new_layer",
    "make_layer",
    "call_layer",
    "new_layer_name",
    "keras_reason",
)
_export("spec.layer_catalog", "layer_names")
# The functional graph.
_export(
    "model.graph", "make_model", "model_nodes", "cut_map", "output_tensor_of", "retrace", "find_layer", "layer_nodes"
)
# Files from someone else.
_export("io.files", "check_regular", "read_json")
_export(
    "io.model_files",
    "check_model_file",
    "check_model_config",
    "load_model",
    "check_weights_file",
    "check_weights_content",
)
_export("io.keras_state", "save_model", "register_config_mends", "mend_configs")
_export("model.lora", add_lora="add")
_export("model.preprocessing", preprocess_modes="MODES", preprocess_function="function")
_export("model.preprocess_layers", preprocess_into_model="into_model")
# Exporters: the graph to export and the check that it computes what Keras does.
_export(
    "exporting.export_check",
    "ExportError",
    "converting",
    ExportTarget="Target",
    read_export_options="read_options",
    prepare_export="prepare",
    compare_export="compare",
    export_progress="progress",
)
_export("exporting.onnx_file", "finish_onnx", "verify_onnx")
_export("exporting.runtimes", "onnx_runner", "litert_runner")
_export(
    "exporting.quantized",
    "Calibration",
    read_quantize_options="read_options",
    check_quantized="check",
    time_alternating="latencies",
    speed_note="speed_note",
)
# Reports.
_export("report.summary", "layer_rows")
# Structural pruning.
_export(
    "pruning",
    "masked_twin",
    analyze_channels="analyze",
    select_channels="select",
    prune_channels="prune",
    count_flops="flops",
    pruning_criteria="CRITERIA",
)
_export("pruning.rules", ChannelRule="Rule", ChannelRole="Role", unknown_channels="unknown")
_export("pruning.layer_rules", ChannelSite="Site")

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'surgery' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    value = getattr(importlib.import_module(f".{module}", __name__), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # the same names, for type checkers and editors (tests/test_public_api.py keeps them equal)
    from .api import Applied, apply, bench, build, evaluate, export, features, load, plan, predict, sweep, train
    from .errors import OpError, PluginError, SpecError, SurgeryError, counted, did_you_mean, one_line, shown
    from .exporting.export_check import ExportError, converting
    from .exporting.export_check import Target as ExportTarget
    from .exporting.export_check import compare as compare_export
    from .exporting.export_check import prepare as prepare_export
    from .exporting.export_check import progress as export_progress
    from .exporting.export_check import read_options as read_export_options
    from .exporting.onnx_file import finish_onnx, verify_onnx
    from .exporting.quantized import Calibration, speed_note
    from .exporting.quantized import check as check_quantized
    from .exporting.quantized import latencies as time_alternating
    from .exporting.quantized import read_options as read_quantize_options
    from .exporting.runtimes import litert_runner, onnx_runner
    from .hookspecs import Exporter, OpApply, OpCheck, RegisterOp, hookimpl
    from .io.files import check_regular, read_json
    from .io.keras_state import mend_configs, register_config_mends, save_model
    from .io.model_files import (
        check_model_config,
        check_model_file,
        check_weights_content,
        check_weights_file,
        load_model,
    )
    from .keras_env import is_quiet, keras, keras_cache_dir, native_stderr_muted, seeded
    from .model.graph import cut_map, find_layer, layer_nodes, make_model, model_nodes, output_tensor_of, retrace
    from .model.layers import (
        LAYER_PROPERTIES,
        NAME_PATTERN,
        call_layer,
        check_layer_config,
        check_new_layer,
        keras_reason,
        make_layer,
        new_layer_name,
    )
    from .model.lora import add as add_lora
    from .model.preprocess_layers import into_model as preprocess_into_model
    from .model.preprocessing import MODES as preprocess_modes
    from .model.preprocessing import function as preprocess_function
    from .model.state import State
    from .plugins.application_options import APPLICATION_OPTIONS
    from .plugins.loading import Candidate, builtin_candidates, load_plugins
    from .pruning import CRITERIA as pruning_criteria
    from .pruning import analyze as analyze_channels
    from .pruning import flops as count_flops
    from .pruning import masked_twin
    from .pruning import prune as prune_channels
    from .pruning import select as select_channels
    from .pruning.layer_rules import Site as ChannelSite
    from .pruning.rules import Role as ChannelRole
    from .pruning.rules import Rule as ChannelRule
    from .pruning.rules import unknown as unknown_channels
    from .report.summary import layer_rows
    from .spec.layer_catalog import layer_names
    from .spec.loading import StepContext, schema_error
    from .spec.selectors import (
        FREEZE_SCHEMA,
        SELECTOR_PROPERTIES,
        UNFREEZE_SCHEMA,
        freeze_layers,
        parse_slice,
        unfreeze_layers,
    )
    from .spec.selectors import resolve as select_layers
    from .testing import check_plugin, probe_model
    from .version import __version__
