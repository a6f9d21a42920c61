"""Structural pruning of every keras.applications backbone: exactness, saving, ONNX, size and speed.

Each backbone (random weights with random BatchNormalization statistics and
biases, include_top=False, its smallest input: 32, 75 for Inception*, 71 for
Xception) is pruned at ratio 0.3, global scope, l1, in a fresh process with a
time limit, so one that fails is a row saying so and the rest go on. Each
step is tried on its own, so a failing ONNX export does not hide the rest.
Where the random weights make the numbers unstable (the unpruned model's own
float32 and float64 outputs differ by more than 1e-4 of their scale, or
onnxruntime cannot match Keras), the backbone is measured again with every
kernel halved (``damp_kernels``), and the row says why.

Columns: whether it builds; the largest difference between the pruned model
and the masked twin (the original with the removed channels zeroed), relative
to the output's scale; whether the pruned .keras file loads with
safe_mode=True and gives the same outputs; whether both models export to ONNX
(the exporter checks parity in onnxruntime itself and raises on failure);
params and FLOPs (2 x multiply-accumulates, batch 1) before and after;
onnxruntime latency at batch 1 before and after (median of --repeats runs,
alternating); prunable / unprunable groups.

Latency: at the smallest inputs a run takes a few milliseconds, so the
shared machine's noise is a large part of it; and onnxruntime's fast CPU
convolutions (NCHWc) want channel counts that are multiples of 8 or 16, so
with --round-to 1 (the default) depthwise-heavy models (MobileNetV2,
EfficientNet) can get *slower* after pruning; --round-to 16 avoids that.

There is no plain-Keras baseline to compare with: Keras has no structural
pruning (keras.applications models cannot be slimmed by any Keras API, and
tensorflow-model-optimization's pruning zeroes weights without removing
channels, and does not support Keras 3).

    python bench/prune.py                          # all 40 backbones (hours on 2 CPU cores)
    python bench/prune.py --round-to 8             # the table in docs/pruning.md
    python bench/prune.py --only resnet50,mobilenetv2
    python bench/prune.py --only convnexttiny --size 64 --no-onnx
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Not this folder on sys.path: bench/onnx.py would shadow the onnx package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(ROOT / "plugins"))


def _load(name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_measure = _load("_measure")
median, table = _measure.median, _measure.table
RATIO, CRITERION, SCOPE = 0.3, "l1", "global"
FLOAT32_SUSPECT = 1e-4  # relative difference above which float64 is asked whether it is rounding
# onnxruntime vs Keras: the exporter's 1e-4 absolute, or 1e-5 of the output's scale where random weights
# make outputs large (NASNetLarge's reach 200 at 32x32: float32 rounding alone is then above 1e-4).
ONNX_ATOL, ONNX_RTOL = 1e-4, 1e-5


def backbones() -> list:
    """(class name, smallest input side) of every keras.applications backbone."""
    from surgery_plugins.applications import TABLE

    return [(name, min_side) for name, _module, _side, min_side, _extra in TABLE]


def randomize(model, seed: int = 0) -> None:
    """BN statistics, gammas, betas and biases a fresh model lacks (zero, one), so channels differ and matter."""
    import numpy as np

    rng = np.random.default_rng(seed)

    def layers(m):
        for layer in m.layers:
            yield from (layers(layer) if hasattr(layer, "layers") else [layer])

    for layer in layers(model):
        values = []
        for v, w in zip(layer.weights, layer.get_weights()):
            if type(layer).__name__ == "BatchNormalization":
                w = {
                    "gamma": rng.uniform(0.5, 1.5, w.shape),
                    "beta": rng.normal(0, 0.2, w.shape),
                    "moving_mean": rng.normal(0, 0.2, w.shape),
                    "moving_variance": rng.uniform(0.5, 1.5, w.shape),
                }.get(v.name, w)
            elif v.name == "bias":
                w = rng.normal(0, 0.1, w.shape)
            values.append(np.asarray(w, dtype=v.dtype))
        if values:
            layer.set_weights(values)


def _step(result: dict, key: str, fn):
    """Run one step; on failure record its error under ``key`` and return None."""
    try:
        return fn()
    except Exception as e:  # noqa: BLE001 - every failure is a result here
        result[key] = "FAILED: " + " ".join(str(e).split())[:200]
        return None


def damp_kernels(model, factor: float = 0.5) -> None:
    """Scale every kernel by ``factor``: tamer random weights for networks that amplify rounding.

    With these random weights some deep networks (EfficientNetV2S/M/L) grow their activations block
    after block, until float32 rounding alone moves their outputs by more than a pruning error would
    and onnxruntime cannot match Keras on the unpruned model either. Exactness does not depend on the
    weights, so the comparison is made again with halved kernels, where the outputs stay near 1 and
    the removed channels still change them by a third of that.
    """

    def layers(m):
        for layer in m.layers:
            yield from (layers(layer) if hasattr(layer, "layers") else [layer])

    kernels = ("kernel", "depthwise_kernel", "pointwise_kernel")
    for layer in layers(model):
        if any(v.name in kernels for v in layer.weights):
            values = zip(layer.weights, layer.get_weights())
            layer.set_weights([w * factor if v.name in kernels else w for v, w in values])


def measure(name: str, side: int, repeats: int, onnx: bool, round_to: int = 1, damp: bool = False) -> dict:
    """In the child process: build, prune, compare, save, export, time."""
    import numpy as np

    from surgery import keras
    from surgery.pruning import analyze, flops, masked_twin, prune, select

    k = keras()
    r: dict = {"backbone": name, "input": side, "round_to": round_to}
    started = time.perf_counter()
    k.utils.set_random_seed(0)
    model = getattr(k.applications, name)(weights=None, include_top=False, input_shape=(side, side, 3))
    randomize(model)
    if damp:
        damp_kernels(model)
        r["kernels_halved"] = True
    r["build"] = "ok"
    try:
        a = analyze(model)
        r["prunable"] = len(a.prunable_groups)
        r["unprunable"] = len(a.groups) - r["prunable"]
        removal = select(a, model, RATIO, criterion=CRITERION, scope=SCOPE, round_to=round_to)
        pruned, report = prune(model, removal)
        r.update(
            params_before=report.params_before,
            params_after=report.params_after,
            flops_before=flops(model),
            flops_after=flops(pruned),
        )
        x = np.random.default_rng(1).standard_normal((2, side, side, 3)).astype("float32")
        y_pruned = np.asarray(pruned(x, training=False))
    except Exception as e:  # noqa: BLE001 - a row that says so
        r["error"] = f"pruning: {type(e).__name__}: " + " ".join(str(e).split())[:200]
        return r

    def twin():
        y = np.asarray(masked_twin(model, removal)(x, training=False))
        return float(np.abs(y_pruned - y).max()), float(np.abs(y).max())

    diff = _step(r, "twin", twin)
    if diff is not None:
        r["twin_diff"], r["output_scale"] = diff
        if r["twin_diff"] > FLOAT32_SUSPECT * (r["output_scale"] or 1):
            more = _step(r, "float64", lambda: _float64_check(name, side, model, removal, x))
            if more is not None:
                r["float32_floor"], r["twin_diff_float64"], r["output_scale_float64"] = more

    def round_trip():
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / f"{name}.keras"
            pruned.save(path)
            loaded = k.saving.load_model(path, safe_mode=True)
            return float(np.abs(np.asarray(loaded(x, training=False)) - y_pruned).max())

    rt = _step(r, "keras", round_trip)
    if rt is not None:
        r["keras"] = "ok" if rt == 0 else f"differs by {rt:.1e}"
    if onnx:
        with tempfile.TemporaryDirectory() as folder:
            files = {}
            for which, m in (("after", pruned), ("before", model)):
                scale = float(np.abs(np.asarray(m(x, training=False))).max())
                path = Path(folder) / f"{name}_{which}.keras"
                if _step(r, f"onnx_{which}", lambda m=m, path=path: m.save(path) or "ok"):
                    files[which] = (path, max(ONNX_ATOL, ONNX_RTOL * scale))
            # The export runs in a fresh process per model: it peaks at about 110 bytes per parameter
            # (ConvNeXtLarge: 21 GB), so this process lets go of its models first.
            model = pruned = a = removal = None
            k.backend.clear_session()
            gc.collect()
            _onnx(r, name, files, side, repeats)
    r["seconds"] = time.perf_counter() - started
    return r


def _float64_check(name: str, side: int, model, removal, x) -> tuple:
    """(the original's own float32-vs-float64 difference, pruned vs twin in float64, float64 output scale).

    Random weights can make a deep network amplify rounding enormously
    (EfficientNetV2M's outputs reach 5e3 here): there a float32 difference
    between two exact computations in a different order is large, and only
    float64 tells pruning errors from rounding.
    """
    import numpy as np

    from surgery import keras
    from surgery.pruning import Removal, analyze, masked_twin, prune

    k = keras()
    k.mixed_precision.set_global_policy("float64")
    try:
        m64 = getattr(k.applications, name)(weights=None, include_top=False, input_shape=(side, side, 3))
    finally:
        k.mixed_precision.set_global_policy("float32")
    m64.set_weights([w.astype("float64") for w in model.get_weights()])
    a64 = analyze(m64)
    r64 = Removal(a64, frozenset(removal.classes))  # the same graph walked in the same order: the same ids
    x64 = x.astype("float64")
    y64 = np.asarray(m64(x64, training=False))
    floor = float(np.abs(np.asarray(model(x, training=False)) - y64).max())
    pruned64, _ = prune(m64, r64)
    diff64 = float(
        np.abs(np.asarray(pruned64(x64, training=False)) - np.asarray(masked_twin(m64, r64)(x64, training=False))).max()
    )
    return floor, diff64, float(np.abs(y64).max())


def _onnx(r: dict, name: str, files: dict, side: int, repeats: int) -> None:
    """``surgery export --to onnx`` (which checks parity itself) on each saved model, then onnxruntime latency."""
    import numpy as np
    import onnxruntime as ort

    sessions = {}
    for which, (path, atol) in files.items():
        if atol > ONNX_ATOL:
            r[f"onnx_atol_{which}"] = atol
        target = path.with_suffix(".onnx")
        cmd = [sys.executable, "-m", "surgery", "export", str(path), "--to", "onnx", "-o", str(target)]
        proc = subprocess.run(
            cmd + ["--atol", repr(atol)],
            check=False,
            capture_output=True,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
        if proc.returncode == 0:
            sessions[which] = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
        elif proc.returncode < 0:
            r[f"onnx_{which}"] = f"FAILED: killed by signal {-proc.returncode}" + (
                " (out of memory?)" if proc.returncode == -9 else ""
            )
        else:
            r[f"onnx_{which}"] = "FAILED: " + (proc.stderr.strip().splitlines() or ["no output"])[-1][:300]
    r["onnx"] = (
        "ok"
        if len(sessions) == 2
        else "; ".join(f"{w}: {r.get(f'onnx_{w}', 'not exported')}" for w in ("before", "after") if w not in sessions)
    )
    x = np.random.default_rng(2).standard_normal((1, side, side, 3)).astype("float32")
    feeds = {w: {s.get_inputs()[0].name: x} for w, s in sessions.items()}
    for w, s in sessions.items():  # warm-up
        for _ in range(3):
            s.run(None, feeds[w])
    times: dict = {w: [] for w in sessions}
    for _ in range(repeats if len(sessions) == 2 else 0):  # latency is a comparison: both or neither
        for w, s in sessions.items():
            t = time.perf_counter()
            s.run(None, feeds[w])
            times[w].append(time.perf_counter() - t)
    for w, t in times.items():
        if t:
            r[f"ort_ms_{w}"] = 1000 * median(t)


def _fmt_change(before, after, scale=1.0, digits=2) -> str:
    if before is None or after is None:
        return ""
    return f"{before / scale:.{digits}f} -> {after / scale:.{digits}f} ({after / before - 1:+.0%})"


def _onnx_cell(r: dict, which: str) -> str:
    """ "ok", "ok (atol ...)" where the output's scale raised it, or the parity failure in short."""
    failure = r.get(f"onnx_{which}")
    if failure is None:
        atol = r.get(f"onnx_atol_{which}")
        return "ok" + (f" (atol {atol:.0e})" if atol else "")
    found = re.search(r"differ by up to (\S+) .* more than atol (\S+?);", failure)
    return f"FAILED: differs by {float(found[1]):.1e} > atol {float(found[2]):.0e}" if found else failure[:60]


def _unstable(r: dict) -> str | None:
    """Why the random model's numbers are too unstable to compare (then it is measured with halved kernels)."""
    scale = r.get("output_scale_float64") or r.get("output_scale") or 1
    if r.get("float32_floor", 0) > FLOAT32_SUSPECT * scale:
        floor = r["float32_floor"]
        return f"its own float32 and float64 outputs differ by {floor:.1e} ({floor / scale:.0e} rel)"
    for which in ("before", "after"):
        found = re.search(r"differ by up to (\S+) ", r.get(f"onnx_{which}", ""))
        if found:
            model = "unpruned" if which == "before" else "pruned"
            return f"onnxruntime and Keras differ by {float(found[1]):.1e} on the {model} model"
    return None


def _row(r: dict) -> list:
    if "error" in r and "build" not in r:
        return [r["backbone"], r.get("input", ""), "FAILED", "", "", "", "", "", "", "", r["error"][:100]]
    twin = r.get("twin") or (
        f"{r['twin_diff']:.1e} ({r['twin_diff'] / (r['output_scale'] or 1):.0e} rel)" if "twin_diff" in r else ""
    )
    if "twin_diff_float64" in r:
        twin += (
            f"; float32 noise {r['float32_floor']:.1e}, in float64 {r['twin_diff_float64']:.1e}"
            f" ({r['twin_diff_float64'] / (r['output_scale_float64'] or 1):.0e} rel)"
        )
    elif "float64" in r:
        twin += "; float64 check " + r["float64"]
    if r.get("kernels_halved"):
        twin += "; kernels halved" + (f" ({r['undamped']})" if "undamped" in r else "")
    onnx = _onnx_cell(r, "after") + "; unpruned " + _onnx_cell(r, "before") if "onnx" in r else "skipped"
    latency = _fmt_change(r.get("ort_ms_before"), r.get("ort_ms_after"), 1.0, 1)
    notes = [r[key] for key in ("error",) if key in r]
    return [
        r["backbone"],
        r["input"],
        r.get("build", ""),
        twin,
        r.get("keras", ""),
        onnx,
        _fmt_change(r.get("params_before"), r.get("params_after"), 1e6),
        _fmt_change(r.get("flops_before"), r.get("flops_after"), 1e9, 3),
        latency,
        f"{r.get('prunable', '')}/{r.get('unprunable', '')}",
        "; ".join(notes)[:100],
    ]


HEADER = [
    "backbone",
    "input",
    "builds",
    "pruned vs twin (max abs diff)",
    ".keras round trip",
    "ONNX: pruned; unpruned (parity vs Keras)",
    "params (M)",
    "GFLOPs",
    "ORT ms, batch 1",
    "groups prunable/unprunable",
    "error",
]


def _run_child(name: str, side: int, args, damp: bool = False) -> dict:
    cmd = [sys.executable, __file__, "--child", name, "--size", str(side), "--repeats", str(args.repeats)]
    if args.no_onnx:
        cmd.append("--no-onnx")
    cmd += ["--round-to", str(args.round_to)]
    if damp:
        cmd.append("--damp-kernels")
    try:
        proc = subprocess.run(
            cmd,
            check=False,
            capture_output=True,
            text=True,
            timeout=args.timeout,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
    except subprocess.TimeoutExpired:
        return {"backbone": name, "input": side, "error": f"no result within {args.timeout} s"}
    lines = [line for line in proc.stdout.strip().splitlines() if line.startswith("{")]
    if proc.returncode == 0 and lines:
        return json.loads(lines[-1])
    if proc.returncode < 0:
        return {
            "backbone": name,
            "input": side,
            "error": f"killed by signal {-proc.returncode}" + (" (out of memory?)" if proc.returncode == -9 else ""),
        }
    return {"backbone": name, "input": side, "error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated backbones (class names, any case): default all 40")
    parser.add_argument("--size", type=int, help="input side (raised to each backbone's minimum)")
    parser.add_argument("--repeats", type=int, default=20, help="onnxruntime runs per model for the median")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per backbone")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX export and latency")
    parser.add_argument(
        "--round-to",
        type=int,
        default=1,
        help="kept channels per group a multiple of this (16 suits onnxruntime on AVX-512)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here, one JSON object a line")
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="FILE",
        help="print the table of results saved with --json (a later line for a backbone replaces an earlier one)",
    )
    parser.add_argument(
        "--damp-kernels",
        action="store_true",
        help="halve every kernel of every backbone (default: only where the random weights make the numbers unstable)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        r = measure(args.child, args.size, args.repeats, not args.no_onnx, args.round_to, args.damp_kernels)
        print(json.dumps(r))
        return
    if args.from_json:
        saved = {}
        for text in args.from_json.read_text().splitlines():
            if text.strip():
                r = json.loads(text)
                saved[r["backbone"]] = r
        order = [name for name, _ in backbones()]
        _summary(sorted(saved.values(), key=lambda r: order.index(r["backbone"])), args.round_to)
        return
    every = backbones()
    chosen = every
    if args.only:
        wanted = [w.strip().lower() for w in args.only.split(",") if w.strip()]
        by_name = {name.lower(): (name, side) for name, side in every}
        unknown = [w for w in wanted if w not in by_name]
        if unknown:
            parser.error(f"unknown backbone(s) {', '.join(unknown)}; known: {', '.join(n for n, _ in every)}")
        chosen = [by_name[w] for w in wanted]
    rows = []
    for name, min_side in chosen:
        side = max(args.size or min_side, min_side)
        r = _run_child(name, side, args, args.damp_kernels)
        why = None if args.damp_kernels else _unstable(r)
        if why:
            print(f"{name}: {why}; again with halved kernels", file=sys.stderr)
            r = {**_run_child(name, side, args, True), "undamped": why}
        rows.append(r)
        print(" | ".join(map(str, _row(r))), file=sys.stderr, flush=True)
        if args.json:
            with args.json.open("a") as f:
                f.write(json.dumps(r) + "\n")
    _summary(rows, args.round_to)


def _summary(rows: list, round_to: int) -> None:
    print(table(HEADER, [_row(r) for r in rows]))
    ok = [r for r in rows if "twin_diff" in r]
    print(
        f"\nratio {RATIO}, {SCOPE}, {CRITERION}, round_to {', '.join(sorted({str(r.get('round_to', round_to)) for r in rows}))}; "
        f"{len(ok)}/{len(rows)} pruned and compared; "
        f"{sum(r.get('keras') == 'ok' for r in rows)} round-tripped; "
        f"ONNX with parity: {sum('onnx' in r and 'onnx_after' not in r for r in rows)} pruned, "
        f"{sum('onnx' in r and 'onnx_before' not in r for r in rows)} unpruned; {os.cpu_count()} CPUs."
    )
    print("No plain-Keras baseline: Keras has no structural (channel) pruning to compare with.")


if __name__ == "__main__":
    main()
