"""Meta-tests: the plugin interface, its documentation and its tests cannot drift apart.

For every hookspec in surgery.hookspecs: the loader calls it, docs/plugins.md
has a heading with its exact signature and documents its ``register``
callback with the exact signature the host implements (and each argument),
and some test is named after it.
"""

from __future__ import annotations

import ast
import inspect
import re

import pytest

from surgery import hookspecs
from surgery.plugins.loading import CALLBACKS
from surgery.plugins.registry import Registration

from helpers import ROOT

DOCS = ROOT / "docs" / "plugins.md"
HOOKSPECS = sorted(
    name for name, fn in inspect.getmembers(hookspecs, inspect.isfunction) if hasattr(fn, "surgery_spec")
)


def _flat(text: str) -> str:
    return " ".join(text.split())


def sections() -> dict[str, str]:
    """Heading line -> the text up to the next heading of the same or a higher level."""
    text = DOCS.read_text(encoding="utf-8")
    found = list(re.finditer(r"^(#{1,4}) (.+)$", text, re.M))
    out = {}
    for i, m in enumerate(found):
        level = len(m.group(1))
        end = next((n.start() for n in found[i + 1 :] if len(n.group(1)) <= level), len(text))
        out[m.group(2)] = text[m.end() : end]
    return out


def hook_section(hook: str) -> str:
    # The heading names the hook and its arguments; their types are in hookspecs.py.
    signature = f"{hook}({', '.join(inspect.signature(getattr(hookspecs, hook)).parameters)})"
    matches = [body for heading, body in sections().items() if signature in heading]
    assert len(matches) == 1, f"docs/plugins.md needs one heading with `{signature}`"
    return matches[0]


def register_signature(hook: str) -> str:
    """``register(...)`` as the host implements it: the Registration method, less ``self``."""
    sig = inspect.signature(getattr(Registration, CALLBACKS[hook]))
    sig = sig.replace(parameters=list(sig.parameters.values())[1:])
    return "register" + str(sig).replace("'", '"')


def test_hookspecs_exist_and_the_loader_calls_every_one():
    assert HOOKSPECS == [
        "surgery_register_backbones",
        "surgery_register_channel_rules",
        "surgery_register_exporters",
        "surgery_register_ops",
    ]
    assert sorted(CALLBACKS) == HOOKSPECS


@pytest.mark.parametrize("hook", HOOKSPECS)
def test_hookspec_docstring_states_the_register_signature_the_host_implements(hook):
    doc = _flat(inspect.getdoc(getattr(hookspecs, hook)))
    assert f"``{register_signature(hook)}``" in doc


@pytest.mark.parametrize("hook", HOOKSPECS)
def test_docs_have_a_heading_per_hook_with_its_exact_signatures_and_arguments(hook):
    body = hook_section(hook)
    assert register_signature(hook) in _flat(body), f"the {hook} section must show `{register_signature(hook)}`"
    params = list(inspect.signature(getattr(Registration, CALLBACKS[hook])).parameters)[1:]
    # each argument gets a list item of its own: "- `name`: ..." or "- `apply(state, ...)`: ..."
    undocumented = [p for p in params if not re.search(rf"^- `{p}[`(]", body, re.M)]
    assert not undocumented, f"the {hook} section does not describe: {undocumented}"


@pytest.mark.parametrize("hook", HOOKSPECS)
def test_every_hookspec_has_a_test_named_after_it(hook):
    names = set()
    for path in (ROOT / "tests").glob("test_*.py"):
        if path.name != "test_hookspecs_documented.py":
            names |= {
                n.name for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(n, ast.FunctionDef)
            }
    assert any(n.startswith(f"test_{hook}_") for n in names), f"no test_{hook}_* test in tests/"


def test_the_register_op_protocol_takes_what_the_host_takes():
    """RegisterOp is what a plugin's mypy checks against; the host's register_op is what runs."""
    protocol = inspect.signature(hookspecs.RegisterOp.__call__).parameters
    host = inspect.signature(Registration.register_op).parameters
    assert [(p.name, p.kind, p.default) for p in list(protocol.values())[1:]] == [
        (p.name, p.kind, p.default) for p in list(host.values())[1:]
    ]
