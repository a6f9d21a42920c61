"""A confusion matrix as a picture (``surgery evaluate --plot``): SVG written here, PNG through Pillow.

Cells are shaded by the share of their row (the true class), so a class the model confuses stands out
whatever the class sizes; each cell shows its count.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import SpecError
from ..report.shapes import check_suffix, write_shapes

CELL, MARGIN, FONT = 44, 16, 12


def check_target(path: str, force: bool, data: str | None = None) -> Path:
    """The plot's path, checked before evaluating: never one of the images, nor a new file among them (the
    next run would read it as data)."""
    from ..io.writing import check_output

    target = check_suffix(path)
    if data is not None and Path(data).is_dir() and target.resolve().is_relative_to(Path(data).resolve()):
        raise SpecError(
            f"is inside the data folder {data}, where it would be read as an image; plot somewhere else",
            file=str(target),
            where="--plot",
        )
    check_output(target, force, "--plot", inputs=[data] if data is not None else [])
    return target


def _cells(evaluation) -> tuple[list, int, int, int]:
    """(rectangles and texts to draw, width, height, left edge of the grid)."""
    names, matrix = evaluation.class_names, evaluation.confusion
    label_w = 8 + int(0.62 * FONT * max(len(n) for n in names))
    left, top = MARGIN + label_w, MARGIN + 40
    shapes: list[tuple] = [("text", MARGIN, MARGIN + 14, "rows: true class, columns: predicted", 13)]
    for j, name in enumerate(names):
        shapes.append(("text", left + j * CELL + 4, top - 8, name[:6], FONT - 2))
    for i, (name, row) in enumerate(zip(names, matrix)):
        total = max(sum(row), 1)
        shapes.append(("text", MARGIN, top + i * CELL + CELL // 2 + 4, name, FONT))
        for j, count in enumerate(row):
            share = count / total
            shade = int(255 - 200 * share)
            fill = f"#{shade:02x}{shade:02x}ff" if i == j else f"#ff{shade:02x}{shade:02x}"
            shapes.append(("rect", left + j * CELL, top + i * CELL, CELL, CELL, fill if count else "#ffffff"))
            shapes.append(("text", left + j * CELL + 6, top + i * CELL + CELL // 2 + 4, str(count), FONT))
    n = len(names)
    return shapes, left + n * CELL + MARGIN, top + n * CELL + MARGIN, left


def write(evaluation, path: Path, force: bool) -> str:
    shapes, width, height, _ = _cells(evaluation)
    write_shapes(shapes, width, height, path, force)
    return f"{len(evaluation.class_names)} x {len(evaluation.class_names)} confusion matrix"
