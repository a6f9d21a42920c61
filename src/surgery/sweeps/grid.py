"""A sweep's grid: places in a spec (``steps[5].layers``), the values each takes, and the variants they make.

The grid file is someone else's data like a spec: read bounded and strictly, every problem one line naming
the file and the place. No TensorFlow here.
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from dataclasses import dataclass
from typing import Any

from ..errors import SpecError
from ..io.files import read_json

MAX_GRID_BYTES = 1 << 20
MAX_VARIANTS = 1000  # each trains a model: more is a grid written by mistake
MODES = ("product", "zip")
_STEP = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9._=+-]+")
MAX_ID = 80


def parse_place(place: str, file: str) -> tuple[str | int, ...]:
    """``train.stages[0].learning_rate`` -> ("train", "stages", 0, "learning_rate"), as error lines write places."""
    keys: list[str | int] = []
    pos = 0
    while pos < len(place):
        m = _STEP.match(place, pos)
        if m is None or (pos == 0 and place.startswith(".")) or (pos > 0 and m.group(1) and place[pos] != "."):
            raise SpecError(
                f'"{place}" is not a place in a spec: write it as error messages do, e.g. steps[5].layers or '
                "train.stages[0].learning_rate",
                file=file,
            )
        keys.append(m.group(1) if m.group(1) else int(m.group(2)))
        pos = m.end()
    if not keys or not isinstance(keys[0], str):
        raise SpecError(f'"{place}" is not a place in a spec: it starts with a key such as steps or train', file=file)
    return tuple(keys)


def _place(keys) -> str:
    return "".join(f"[{k}]" if isinstance(k, int) else (f".{k}" if i else k) for i, k in enumerate(keys))


def set_at(data: dict, keys: tuple, value: Any, file: str) -> None:
    """Put ``value`` at ``keys`` in ``data``: every place up to the last must exist; the last key may be new
    in an object (the variant's schema check then says whether it is a key the spec takes)."""
    node: Any = data
    for depth, key in enumerate(keys):
        last = depth == len(keys) - 1
        where = _place(keys[: depth + 1])
        if isinstance(key, int):
            if not isinstance(node, list):
                raise SpecError(
                    f"{_place(keys[:depth]) or 'the spec'} is not a list; {where} is no place in it", file=file
                )
            if key >= len(node):
                raise SpecError(
                    f"{where} does not exist: {_place(keys[:depth])} has {len(node)} item"
                    + ("s" if len(node) != 1 else ""),
                    file=file,
                )
        elif not isinstance(node, dict):
            raise SpecError(f"{_place(keys[:depth])} is not an object; {where} is no place in it", file=file)
        elif not last and key not in node:
            raise SpecError(f"{where} does not exist in the spec", file=file)
        if last:
            node[key] = copy.deepcopy(value)
        else:
            node = node[key]


@dataclass(frozen=True)
class Variant:
    """One point of the grid: its id, the value at each place, and its spec."""

    id: str
    values: dict  # place (as written in the grid) -> value
    data: dict


@dataclass(frozen=True)
class Grid:
    axes: dict  # place -> list of values, in the grid file's order
    mode: str = "product"

    def points(self) -> list[dict]:
        """Each variant's values: place -> (the value's position in its list, the value)."""
        axes = [list(enumerate(values)) for values in self.axes.values()]
        rows = zip(*axes) if self.mode == "zip" else itertools.product(*axes)
        return [dict(zip(self.axes, row)) for row in rows]

    def labels(self, file: str) -> dict:
        """Place -> its short name in ids and the table's columns."""
        return _labels({place: parse_place(place, file) for place in self.axes})

    def variants(self, spec_data: dict, file: str) -> list[Variant]:
        """Every variant's spec, each value put at its place; ids from the values, unique."""
        seen: set[str] = set()
        return [self.variant(spec_data, point, file, seen) for point in self.points()]

    def variant(self, spec_data: dict, point: dict, file: str, seen: set) -> Variant:
        """The variant at ``point`` (place -> (position in its list, value)); ``seen`` holds the ids taken."""
        labels = self.labels(file)
        data = copy.deepcopy(spec_data)
        for place, (_, value) in point.items():
            try:
                set_at(data, parse_place(place, file), value, file)
            except SpecError as e:
                raise e.located(where=place) from None
        base = "_".join(f"{labels[place]}={_id_value(value, i)}" for place, (i, value) in point.items())
        base = _ID_UNSAFE.sub("-", base)[:MAX_ID]
        vid, n = base, 2
        while vid in seen:
            vid, n = f"{base}-{n}", n + 1
        seen.add(vid)
        return Variant(vid, {place: value for place, (_, value) in point.items()}, data)

    def corners(self) -> list[dict]:
        """For a search: the points at every range's low and every list's first value, and at the highs and
        last values (what is checked before the first trial)."""
        low = {p: (0, v[0]) if isinstance(v, list) else (0, v["low"]) for p, v in self.axes.items()}
        high = {p: (len(v) - 1, v[-1]) if isinstance(v, list) else (0, v["high"]) for p, v in self.axes.items()}
        return [low, high] if high != low else [low]


def _labels(parsed: dict) -> dict:
    """Each place's short name in ids and table columns: the shortest tail of it that starts at a key and no
    other place ends with (``learning_rate``, else ``stages[1].learning_rate``)."""

    def tails(keys) -> list[str]:
        return [_place(keys[j:]) for j in range(len(keys) - 1, -1, -1) if isinstance(keys[j], str)]

    labels = {}
    for place, keys in parsed.items():
        others = [p for p in parsed if p != place]
        labels[place] = next((t for t in tails(keys) if not any(o == t or o.endswith("." + t) for o in others)), place)
    return labels


def _id_value(value: Any, index: int) -> str:
    """A value as ids show it: numbers and words as written (":" as ".."), an object or list by its position in
    the grid's list (v1, v2, ...), which the table's column spells out."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, str):
        return value.replace(":", "..") or "empty"
    if isinstance(value, (int, float)):
        return str(value)
    return f"v{index + 1}"


def grid_of(data: Any, file: str, search: bool = False) -> Grid:
    """The grid in ``data``; with ``search``, a place may take a range (``{"low": 1e-5, "high": 1e-2, "log": true}``)
    as well as a list of choices."""
    if not isinstance(data, dict):
        raise SpecError("a grid is an object: places in the spec mapped to lists of values", file=file)
    data = dict(data)
    mode = data.pop("mode", "product")
    if mode not in MODES or (search and mode != "product"):
        valid = "product (a search draws its own points)" if search else ", ".join(MODES)
        raise SpecError(f"mode must be {'one of ' * (not search)}{valid}, not {mode!r}", file=file, where="mode")
    if not data:
        raise SpecError('the grid names no place to vary (e.g. "steps[5].layers": [...])', file=file)
    for place, values in data.items():
        parse_place(place, file)
        if search and isinstance(values, dict):
            _check_range(values, file, place)
        elif not isinstance(values, list) or not values:
            what = "a non-empty list of the values to try" + (', or a range {"low": ..., "high": ...}' * search)
            raise SpecError(f"expected {what}", file=file, where=place)
    if mode == "zip" and len({len(v) for v in data.values()}) > 1:
        sizes = ", ".join(f"{p} {len(v)}" for p, v in data.items())
        raise SpecError(f"zip pairs the lists, so they must have one length; they have {sizes}", file=file)
    grid = Grid(data, mode)
    if search:
        return grid
    n = len(next(iter(data.values()))) if mode == "zip" else math.prod(len(v) for v in data.values())
    if n > MAX_VARIANTS:
        raise SpecError(f"the grid makes {n:,} variants; at most {MAX_VARIANTS:,} train in one sweep", file=file)
    return grid


def _check_range(found: dict, file: str, place: str) -> None:
    unknown = sorted(set(found) - {"low", "high", "log", "step"})
    if unknown or "low" not in found or "high" not in found:
        raise SpecError(
            'a range is {"low": ..., "high": ..., "log": true|false, "step": ...}; '
            + (f'unknown key "{unknown[0]}"' if unknown else "it needs low and high"),
            file=file,
            where=place,
        )
    low, high = found["low"], found["high"]
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high, found.get("step", 1)))
    if not numbers or not low < high:
        raise SpecError(
            f"low and high must be numbers with low < high, got {low!r} and {high!r}", file=file, where=place
        )
    if not isinstance(found.get("log", False), bool) or (found.get("log") and low <= 0):
        raise SpecError("log is true or false, and a log range needs low > 0", file=file, where=place)
    if found.get("log") and "step" in found:
        raise SpecError("a range takes log or step, not both", file=file, where=place)


def read_grid(path: str, search: bool = False) -> Grid:
    """A grid file: ``{"steps[5].layers": [...], "train.stages[0].learning_rate": [...], "mode": "zip"}``."""
    data = read_json(path, MAX_GRID_BYTES, "--grid", what="grid file", error=SpecError)
    return grid_of(data, str(path), search)
