"""The sweep's table: one row per variant, written as results.csv, results.json and results.md together."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any

from ..io.writing import Outputs, strict_json

FILES = ("results.csv", "results.json", "results.md")
# The columns after the swept values, in the table's order; figures come after them (validation, test).
FIXED = ("status", "params", "trainable_params", "epochs", "monitor", "best", "best_epoch")
TAIL = ("seconds", "error")


def columns(rows: list[dict], labels: list[str]) -> list[str]:
    """id, the swept values, the fixed columns, every figure any row has (final validation, then test), wall time
    and the error line."""
    figures: list[str] = []
    for prefix in ("val_", "test_"):
        for row in rows:
            figures += [k for k in row if k.startswith(prefix) and k not in figures]
    trial = ["trial"] if any("trial" in row for row in rows) else []  # a search's trial numbers
    return ["id", *trial, *labels, *FIXED, *figures, *TAIL]


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (dict, list, bool)):
        import json

        return json.dumps(value)
    return str(value)


def _cells(row: dict, cols: list[str], labels: list[str]) -> list[str]:
    """A row's cells; a swept value of null is shown as null, not as an empty cell (a missing figure)."""
    return ["null" if c in labels and c in row and row[c] is None else _cell(row.get(c)) for c in cols]


def as_csv(rows: list[dict], cols: list[str], labels: list[str]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(cols)
    for row in rows:
        writer.writerow(_cells(row, cols, labels))
    return out.getvalue()


def as_markdown(rows: list[dict], cols: list[str], labels: list[str]) -> str:
    def escaped(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", " ")

    shown = [c for c in cols if c != "error"]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    lines += ["| " + " | ".join(escaped(cell) for cell in _cells(row, shown, labels)) + " |" for row in rows]
    failed = [row for row in rows if row.get("error")]
    if failed:
        lines += ["", *(f"- {row['id']}: {escaped(row['error'])}" for row in failed)]
    return "\n".join(lines) + "\n"


def write(folder: Path, rows: list[dict], labels: list[str], monitor: str | None, stopped: bool = False) -> None:
    """The three files, placed together (a reader never sees a csv newer than the json); ``stopped``: the table
    that records a stop, written after a SIGTERM too."""
    cols = columns(rows, labels)
    texts = {
        "results.csv": as_csv(rows, cols, labels),
        "results.json": strict_json({"monitor": monitor, "columns": cols, "variants": rows}) + "\n",
        "results.md": as_markdown(rows, cols, labels),
    }
    with Outputs(force=True) as outputs:
        for name, text in texts.items():
            outputs.stage(folder / name).write_text(text)
        outputs.commit(record_of_stop=stopped)
