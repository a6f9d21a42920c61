"""Rewrite tests/bad_specs/*.err from what `surgery apply` prints now: `python tests/regenerate_golden.py`.

Run it from anywhere; it runs each case from the repository root with the built-in plugins only, as
tests/test_bad_specs.py does, and prints the cases whose line changed. Read `git diff tests/bad_specs`
before committing: each line is a promise to users.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    os.chdir(ROOT)
    os.environ["SURGERY_LOAD_PLUGINS"] = ""
    from surgery.cli import main as cli

    changed = 0
    out = Path(tempfile.mkdtemp(prefix="surgery-golden-")) / "out"  # a folder that may be created, as in the test
    for spec in sorted(Path("tests/bad_specs").glob("*.json")):
        result = CliRunner().invoke(cli, ["apply", str(spec), "-o", str(out)])
        line = result.stderr.strip()
        expected = spec.with_suffix(".err")
        if not expected.exists() or expected.read_text().strip() != line:
            expected.write_text(line + "\n")
            print(f"{spec.name}: {line}")
            changed += 1
    print(f"{changed} of {len(list(Path('tests/bad_specs').glob('*.json')))} lines changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
