"""The bad-spec corpus: every file in tests/bad_specs/ holds one mistake, and NAME.err the exact line it gives.

Each runs through `surgery apply` (in this process, so TensorFlow starts once) from the repository root,
as a user would type it. Where a line quotes Keras' own reason for refusing a value ("Keras refused it: ..."),
only surgery's part is compared, so the corpus holds for every Keras version pyproject.toml allows.
`python tests/regenerate_golden.py` rewrites the .err files from what the CLI prints now; read the diff
before committing it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import ROOT, assert_one_error_line

CORPUS = ROOT / "tests" / "bad_specs"
CASES = sorted(p.name for p in CORPUS.glob("*.json"))
KERAS_REASON = "Keras refused it: "


def run_case(cli, case: str, out: Path):
    """The CLI's result for one corpus case, run as the golden lines were made."""
    return cli("apply", Path("tests/bad_specs") / case, "-o", out)


def test_corpus_is_large_enough():
    assert len(CASES) >= 70
    missing = [c for c in CASES if not (CORPUS / c).with_suffix(".err").exists()]
    assert not missing, f"cases without an expected line: {missing}"


@pytest.mark.parametrize("case", CASES)
def test_bad_spec_gives_its_line(case, cli, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    # Built-in plugins only: the lines that list what is valid must not depend on what else is installed.
    monkeypatch.setenv("SURGERY_LOAD_PLUGINS", "")
    out = tmp_path / "out"
    result = run_case(cli, case, out)
    assert result.exit_code == 2, result.stdout + result.stderr
    line = assert_one_error_line(result.stderr, f"error: tests/bad_specs/{case}")
    expected = (CORPUS / case).with_suffix(".err").read_text().strip()
    if KERAS_REASON in expected:
        ours = expected.split(KERAS_REASON)[0] + KERAS_REASON
        assert line.startswith(ours) and len(line) > len(ours), line
    else:
        assert line == expected
    assert not out.exists()
