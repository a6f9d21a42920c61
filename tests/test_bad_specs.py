"""The bad-spec corpus: every file in tests/bad_specs/ holds one mistake, and NAME.err the exact line it gives.

Each runs through `surgery apply` (in this process, so TensorFlow starts once) from
the repository root, as a user would type it. SURGERY_REGENERATE=1 rewrites the
.err files from what the CLI prints now; read the diff before committing it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from helpers import ROOT, assert_one_error_line

CORPUS = ROOT / "tests" / "bad_specs"
CASES = sorted(p.name for p in CORPUS.glob("*.json"))


def test_corpus_is_large_enough():
    assert len(CASES) >= 40
    missing = [c for c in CASES if not (CORPUS / c).with_suffix(".err").exists()]
    assert not missing, f"cases without an expected line: {missing}"


@pytest.mark.parametrize("case", CASES)
def test_bad_spec_gives_its_line(case, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    # Built-in plugins only: the lines that list what is valid must not depend on what else is installed.
    monkeypatch.setenv("SURGERY_LOAD_PLUGINS", "")
    spec = Path("tests/bad_specs") / case
    out = tmp_path / "out"
    result = cli("apply", spec, "-o", out)
    expected_file = (CORPUS / case).with_suffix(".err")
    if os.environ.get("SURGERY_REGENERATE"):
        expected_file.write_text(result.stderr.strip() + "\n")
    assert result.exit_code == 2, result.stdout + result.stderr
    line = assert_one_error_line(result.stderr, f"error: {spec}")
    assert line == expected_file.read_text().strip()
    assert not out.exists()
