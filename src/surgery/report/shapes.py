"""Pictures made of rectangles and text (the confusion matrix, a sweep's chart): SVG written here, PNG through
Pillow, placed atomically."""

from __future__ import annotations

import html
from pathlib import Path

from ..errors import SpecError
from ..io.writing import atomic_output

SUFFIXES = (".svg", ".png")
# ("rect", x, y, width, height, fill) or ("text", x, y, text, font size): what a picture is made of.
Shape = tuple


def check_suffix(path: str) -> Path:
    target = Path(path)
    if target.suffix.lower() not in SUFFIXES:
        raise SpecError(f"cannot plot to {target.name}: give a file ending in .svg or .png", where="--plot")
    return target


def _svg(shapes, width: int, height: int) -> str:
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'font-family="DejaVu Sans Mono, monospace"><rect width="{width}" height="{height}" fill="#ffffff"/>'
    ]
    for s in shapes:
        if s[0] == "rect":
            _, x, y, w, h, fill = s
            parts.append(f'<rect x="{x}" y="{y}" width="{w}" height="{h}" fill="{fill}" stroke="#808080"/>')
        else:
            _, x, y, text, size = s
            parts.append(f'<text x="{x}" y="{y}" font-size="{size}">{html.escape(text)}</text>')
    return "\n".join(parts + ["</svg>"]) + "\n"


def _png(shapes, width: int, height: int, path: Path) -> None:
    try:
        from PIL import Image, ImageDraw, ImageFont
    except ImportError:
        raise SpecError(
            "writing a PNG needs Pillow (pip install pillow); or plot to a .svg file", where="--plot"
        ) from None
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    for s in shapes:
        if s[0] == "rect":
            _, x, y, w, h, fill = s
            draw.rectangle([x, y, x + w, y + h], fill=fill, outline="#808080")
        else:
            _, x, y, text, size = s
            try:
                font = ImageFont.load_default(size=size)
            except TypeError:  # Pillow < 10.1
                font = ImageFont.load_default()
            draw.text((x, y - size), text, fill="black", font=font)
    image.save(str(path), format="PNG")


def write_shapes(shapes: list[Shape], width: int, height: int, path: Path, force: bool) -> None:
    """The picture at ``path``, SVG or PNG by its suffix, written whole or not at all."""
    with atomic_output(path, force) as tmp:
        if path.suffix.lower() == ".svg":
            Path(tmp).write_text(_svg(shapes, width, height), encoding="utf-8")
        else:
            _png(shapes, width, height, Path(tmp))
