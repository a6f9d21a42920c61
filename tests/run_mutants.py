"""Run mutmut's mutants in one process that imports TensorFlow once (a developer's tool, not a test).

mutmut 3 makes the mutants (``mutmut run`` writes ``mutants/``, with a trampoline in each mutated
function) and maps each function to the tests that call it (``mutants/mutmut-stats.json``). Its own
runner then forks a child per mutant from a process in which the tests have already used TensorFlow;
TensorFlow's thread pools do not survive a fork, so every mutant whose tests build a model hangs and
is reported as a timeout, not as killed or survived. This script runs the same mutants with the same
tests, one after another in this process, switching the mutant through mutmut's own trampoline switch
(``set_mutant_under_test``): a mutant is killed when one of its tests fails.

    .venv/bin/mutmut run --max-children 2      # makes mutants/ and the stats (stop it once mutants run)
    .venv/bin/python tests/run_mutants.py [GLOB ...]   # e.g. 'surgery.spec.selectors.*'; all by default

It prints each survivor's name (``mutmut show NAME`` prints its change) and the killed/survived
counts per module, and writes them to mutants/run_mutants.json.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import signal
import sys
from collections import Counter
from pathlib import Path

TIMEOUT_S = 120  # a mutant that makes a loop endless


class _TimedOut(BaseException):
    pass


def _mutants(root: Path, globs: list[str]) -> list[str]:
    names = []
    for meta in sorted(root.rglob("*.py.meta")):
        try:
            names += json.loads(meta.read_text())["exit_code_by_key"]
        except ValueError:  # mutmut stopped while rewriting it: the mutants are the mutated file's functions
            source = meta.with_suffix("")
            module = ".".join(source.relative_to(root / "src").with_suffix("").parts)
            names += [
                f"{module}.{name}" for name in re.findall(r"^\s*def (x\S+?__mutmut_\d+)\(", source.read_text(), re.M)
            ]
    return sorted(n for n in names if not globs or any(fnmatch.fnmatch(n, g) for g in globs))


def _function(mutant: str) -> str:
    return mutant.rpartition("__mutmut_")[0]


def main(globs: list[str]) -> int:
    root = Path("mutants").resolve()
    stats = json.loads((root / "mutmut-stats.json").read_text())["tests_by_mangled_function_name"]
    os.chdir(root)
    sys.path[:0] = [str(root / "src"), str(root / "plugins"), str(root / "tests")]
    import pytest
    from mutmut.mutation.trampoline import set_mutant_under_test

    def alarm(*_):
        raise _TimedOut

    signal.signal(signal.SIGALRM, alarm)
    results: dict[str, str] = {}
    for name in _mutants(root, globs):
        tests = sorted(stats.get(_function(name), []))
        if not tests:
            results[name] = "no tests"
            continue
        set_mutant_under_test(name)
        signal.alarm(TIMEOUT_S)
        try:
            code = pytest.main(["-q", "-x", "-p", "no:cacheprovider", "-p", "no:randomly", "--no-header", *tests])
            results[name] = "survived" if code == 0 else "killed"
        except _TimedOut:
            results[name] = "timeout"
        finally:
            signal.alarm(0)
            set_mutant_under_test(None)
            os.environ.pop("MUTANT_UNDER_TEST", None)
        if results[name] == "survived":
            print(f"SURVIVED {name}", file=sys.stderr, flush=True)
    (root / "run_mutants.json").write_text(json.dumps(results, indent=1))
    by_module = Counter((re.split(r"\.xǁ|\.x_", n)[0], r) for n, r in results.items())  # functions, methods
    for module in sorted({m for m, _ in by_module}):
        counts = ", ".join(f"{r} {by_module[module, r]}" for r in ("killed", "survived", "timeout", "no tests"))
        print(f"{module}: {counts}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
