"""Synthetic images for the four transfer scenarios, made from a seed with numpy only (no download).

Every image is one shape on a noisy background, filled with stripes of some frequency and angle, in some
colour. A task says which of those the class is:

- the source task: 8 shapes (colour, stripes and placement random): what a source CNN learns;
- the similar target: 4 other shapes from the same generator (new classes, the same kind of cue);
- the different target: 4 stripe frequencies on any shape (a cue the source never had to separate).
"""

from __future__ import annotations

import numpy as np

SIZE = 32
SOURCE_SHAPES = ["disc", "square", "triangle", "ring", "cross", "diamond", "bar", "plus_ring"]
SIMILAR_SHAPES = ["half_disc", "hollow_square", "x", "corner"]
FREQUENCIES = [2.0, 3.5, 6.0, 10.0]  # stripes across the image: the different target's classes


def _mask(shape: str, rng, size: int = SIZE) -> np.ndarray:
    """A boolean mask of ``shape``, at a random place and scale."""
    yy, xx = np.mgrid[0:size, 0:size].astype("float32")
    r = rng.uniform(0.22, 0.36) * size
    cy, cx = rng.uniform(r, size - r, 2)
    dy, dx = (yy - cy) / r, (xx - cx) / r
    d = np.hypot(dy, dx)
    masks = {
        "disc": d < 1,
        "ring": (d < 1) & (d > 0.6),
        "square": (abs(dy) < 0.8) & (abs(dx) < 0.8),
        "hollow_square": (abs(dy) < 0.85) & (abs(dx) < 0.85) & ~((abs(dy) < 0.5) & (abs(dx) < 0.5)),
        "triangle": (dy < 0.8) & (dy > -0.9) & (abs(dx) < (dy + 0.9) * 0.55),
        "cross": ((abs(dy) < 0.25) | (abs(dx) < 0.25)) & (d < 1),
        "x": ((abs(dy - dx) < 0.35) | (abs(dy + dx) < 0.35)) & (d < 1.1),
        "diamond": abs(dy) + abs(dx) < 1,
        "bar": (abs(dy) < 0.3) & (abs(dx) < 1),
        "plus_ring": ((d < 1) & (d > 0.75)) | (abs(dy) < 0.15) & (d < 1),
        "half_disc": (d < 1) & (dy > 0),
        "corner": ((abs(dx + 0.5) < 0.3) & (abs(dy) < 0.9)) | ((abs(dy - 0.6) < 0.3) & (abs(dx) < 0.9)),
    }
    return masks[shape]


def image(shape: str, frequency: float, rng, size: int = SIZE) -> np.ndarray:
    """One uint8 (size, size, 3) image: ``shape`` filled with stripes of ``frequency`` at a random angle."""
    yy, xx = np.mgrid[0:size, 0:size].astype("float32") / size
    angle = rng.uniform(0, np.pi)
    phase = rng.uniform(0, 2 * np.pi)
    stripes = 0.5 + 0.5 * np.sin(2 * np.pi * frequency * (xx * np.cos(angle) + yy * np.sin(angle)) + phase)
    colour = rng.uniform(0.35, 1.0, 3)
    background = rng.uniform(0.0, 0.3, 3)
    mask = _mask(shape, rng, size)[..., None]
    pixels = np.where(mask, colour * (0.35 + 0.65 * stripes[..., None]), background)
    pixels = pixels + rng.normal(0, 0.06, pixels.shape)
    return (np.clip(pixels, 0, 1) * 255).astype("uint8")


def task(name: str, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(x, y, class names) of ``source``, ``similar`` or ``different``, ``per_class`` images each."""
    rng = np.random.default_rng(seed)
    if name == "different":
        names = [f"stripes_{f:g}" for f in FREQUENCIES]
        make = [lambda r, f=f: image(str(r.choice(SOURCE_SHAPES + SIMILAR_SHAPES)), f, r) for f in FREQUENCIES]
    else:
        names = SOURCE_SHAPES if name == "source" else SIMILAR_SHAPES
        make = [lambda r, s=s: image(s, float(r.uniform(1.5, 12)), r) for s in names]
    x = np.stack([make[c](rng) for c in range(len(names)) for _ in range(per_class)])
    y = np.repeat(np.arange(len(names)), per_class)
    return x, y, names
