"""``surgery sweep --plot``: the monitored metric of each variant as a bar, the variants numbered and listed
under the chart with their values (ids are too long to stand under a bar)."""

from __future__ import annotations

import math
from pathlib import Path

from ..report.shapes import Shape, write_shapes

BAR, GAP, HEIGHT, MARGIN, FONT = 28, 14, 200, 16, 12


def shapes(rows: list[dict], monitor: str | None) -> tuple[list[Shape], int, int]:
    """(what to draw, width, height): one bar per finished variant, from zero to its best monitored value."""
    done = [r for r in rows if r.get("status") == "ok" and isinstance(r.get("best"), (int, float))]
    values = [float(r["best"]) for r in done if math.isfinite(float(r["best"]))]
    top = max(values, default=1.0) or 1.0
    left, base = MARGIN + 48, MARGIN + 28 + HEIGHT
    found: list[Shape] = [("text", MARGIN, MARGIN + 14, f"best {monitor or 'monitored value'} by variant", 13)]
    for tick in (0.0, 0.5, 1.0):
        y = round(base - tick * HEIGHT)
        found += [("rect", left - 4, y, 4, 1, "#808080"), ("text", MARGIN, y + 4, f"{tick * top:.3g}", FONT - 2)]
    for i, row in enumerate(done):
        value = float(row["best"])
        x, h = left + GAP + i * (BAR + GAP), max(1, round(HEIGHT * value / top)) if math.isfinite(value) else 1
        found += [
            ("rect", x, base - h, BAR, h, "#7da7d9"),
            ("text", x, base - h - 4, f"{value:.3g}", FONT - 2),
            ("text", x + BAR // 3, base + 16, str(i + 1), FONT),
        ]
    width = max(left + GAP + len(done) * (BAR + GAP) + MARGIN, 420)
    y = base + 40
    for i, row in enumerate(done):
        found.append(("text", MARGIN, y, f"{i + 1}  {row['id']}", FONT))
        y += FONT + 6
    longest = max((len(f"{i + 1}  {r['id']}") for i, r in enumerate(done)), default=0)
    return found, max(width, MARGIN * 2 + int(0.62 * FONT * longest)), y + MARGIN


def draw(rows: list[dict], monitor: str | None, path: Path) -> str:
    found, width, height = shapes(rows, monitor)
    write_shapes(found, width, height, path, force=True)
    return f"{sum(r.get('status') == 'ok' for r in rows)} variants"
