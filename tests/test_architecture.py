"""The structure stays as designed: layers that import downwards only, plugins that use only the public API,
a public API that is what it says, small modules, and a README whose layout matches the tree."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT

SRC = ROOT / "src" / "surgery"
PLUGIN_DIRS = [ROOT / "plugins" / "surgery_plugins", ROOT / "plugins" / "surgery-tinynet" / "surgery_tinynet"]
MAX_LINES = 400


def _modules(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def test_import_contracts_hold():
    """import-linter's contracts in pyproject.toml: layers, the core without the plugins, independent plugins."""
    done = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports")], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert done.stdout.count("KEPT") == 3, done.stdout


def _surgery_imports(path: Path):
    """(line, kind, detail) for every import of surgery in a file: "submodule" or "name"."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("surgery.") and not alias.name.startswith("surgery_"):
                    yield node.lineno, "submodule", alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.startswith("surgery."):
                yield node.lineno, "submodule", node.module
            elif node.module == "surgery":
                for alias in node.names:
                    yield node.lineno, "name", alias.name


@pytest.mark.parametrize("folder", PLUGIN_DIRS, ids=lambda p: p.name)
def test_plugins_import_only_the_public_api(folder):
    import surgery

    wrong = []
    for path in _modules(folder):
        for line, kind, detail in _surgery_imports(path):
            if kind == "submodule" or detail not in surgery.__all__:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {detail}")
    assert not wrong, "plugins may import only names in surgery.__all__:\n" + "\n".join(wrong)


def test_no_built_in_plugin_imports_another():
    """A plugin that is a package (hub/) may import its own modules; nothing else in surgery_plugins."""
    wrong = []
    for path in _modules(PLUGIN_DIRS[0]):
        own_package = path.parent != PLUGIN_DIRS[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (
                (node.level > (1 if own_package else 0)) or (node.module or "").startswith("surgery_plugins")
            ):
                wrong.append(f"{path.name}:{node.lineno}")
    assert not wrong, f"a helper several ops share belongs in the core API: {wrong}"


def test_the_public_api_is_what_all_says():
    import surgery

    init = (SRC / "__init__.py").read_text(encoding="utf-8")
    checked = set()
    for node in ast.walk(ast.parse(init)):
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            for stmt in node.body:
                checked |= {alias.asname or alias.name for alias in stmt.names}
    assert checked == set(surgery.__all__), "the TYPE_CHECKING imports must list exactly __all__"
    missing = [name for name in surgery.__all__ if getattr(surgery, name, None) is None]
    assert not missing
    with pytest.raises(AttributeError):
        surgery.graph_internals_that_do_not_exist  # noqa: B018


def test_docs_put_every_public_name_in_one_tier():
    """docs/plugins.md's tables (the pipeline, the plugin contract, the author's toolkit) name exactly
    __all__, each once, so a new public name must be placed in a tier."""
    import surgery

    section = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8").split("## The public API", 1)[1]
    rows = [line.split("|")[2] for line in section.splitlines() if line.startswith("| ") and "---" not in line]
    named = [n for row in rows[1:] for n in re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)[`(]", row) if n != "names"]
    twice = sorted({n for n in named if named.count(n) > 1})
    assert not twice, f"named in two tiers: {twice}"
    assert set(named) == set(surgery.__all__), (
        f"public but in no tier: {sorted(set(surgery.__all__) - set(named))}; "
        f"in a tier but not public: {sorted(set(named) - set(surgery.__all__))}"
    )


def test_every_built_in_op_types_its_register():
    """With ``register: RegisterOp``, mypy checks each op's apply and check against OpApply and OpCheck."""
    untyped = []
    for path in _modules(PLUGIN_DIRS[0]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef) and node.name == "surgery_register_ops":
                annotation = node.args.args[0].annotation
                if getattr(annotation, "id", None) != "RegisterOp":
                    untyped.append(path.name)
    assert not untyped, f"surgery_register_ops(register) without RegisterOp: {untyped}"


def test_no_public_name_is_also_a_submodule():
    """Importing a submodule sets it as an attribute of the package: a public function of the same name
    would turn into the module after the first import (surgery.plan once did)."""
    submodules = {p.stem for p in SRC.glob("*.py")} | {p.name for p in SRC.iterdir() if (p / "__init__.py").exists()}
    import surgery

    assert not set(surgery.__all__) & submodules
    code = "import surgery, surgery.report.planning, surgery.api; print(callable(surgery.plan))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "True", done.stderr


def test_importing_the_public_api_imports_no_tensorflow():
    code = (
        "import sys, surgery\n"
        "[getattr(surgery, n) for n in surgery.__all__]\n"
        "print(','.join(m for m in ('tensorflow', 'keras', 'onnx', 'onnxruntime') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_no_core_module_imports_the_package_root():
    """The root re-exports everything; a module importing it would import upwards (and could cycle)."""
    wrong = []
    for path in _modules(SRC):
        if path.name == "__init__.py" and path.parent == SRC:
            continue
        package_depth = len(path.relative_to(SRC).parts) - 1  # 0: surgery/x.py, 1: surgery/training/x.py
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            from_root = isinstance(node, ast.ImportFrom) and (
                (node.level == package_depth + 1 and node.module is None)
                or (node.level == 0 and node.module == "surgery")
            )
            # `from .. import preprocessing` names a submodule, which is fine; a re-exported name is not.
            if from_root and not all((SRC / a.name).is_dir() or (SRC / f"{a.name}.py").exists() for a in node.names):
                wrong.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not wrong, wrong


def test_no_module_is_over_400_lines():
    long = {
        str(p.relative_to(ROOT)): n
        for p in _modules(SRC) + _modules(PLUGIN_DIRS[0])
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, long


def test_the_readme_layout_names_every_module():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    layout = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"[A-Za-z_]+\.py|[A-Za-z_]+/", layout))
    expected = {p.name for p in _modules(SRC) if p.name != "__init__.py"}
    expected |= {f"{p.name}/" for p in SRC.iterdir() if p.is_dir() and p.name != "__pycache__"}
    missing = sorted(expected - named)
    assert not missing, f"the README's Layout section does not mention {missing}"
    stale = sorted(
        n
        for n in named
        if n.endswith(".py") and not any(list((ROOT / d).rglob(n)) for d in ("src", "plugins", "tests"))
    )
    assert not stale, f"the README's Layout section names modules that do not exist: {stale}"


def test_pruning_reaches_the_rest_of_surgery_only_through_deps():
    """docs and pruning/deps.py promise one door: a rename in the core then touches one file of the package."""
    wrong = []
    for path in _modules(SRC / "pruning"):
        if path.name == "deps.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            outside = isinstance(node, ast.ImportFrom) and (
                node.level > 1 or (node.level == 0 and (node.module or "").split(".")[0] == "surgery")
            )
            if outside or (isinstance(node, ast.Import) and any(a.name.startswith("surgery") for a in node.names)):
                wrong.append(f"{path.name}:{node.lineno}")
    assert not wrong, wrong


MAX_FUNCTION_LINES = 60


def test_no_function_is_over_60_lines():
    """A function that fits a screen is read whole; a longer one says where it splits."""
    long = []
    for path in _modules(SRC) + _modules(PLUGIN_DIRS[0]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, long
