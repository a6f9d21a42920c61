"""The ``layers_json`` exporter: the layer table as JSON, so a model can be reviewed in a diff."""

from __future__ import annotations

import json

FIELDS = ("index", "name", "class", "output_shape", "params", "trainable")


def export(model, path, options):
    # The same rows `surgery apply` prints, so the file and the terminal agree.
    from surgery import layer_rows

    table = [dict(zip(FIELDS, row)) for row in layer_rows(model)]
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"model": model.name, "layers": table}, f, indent=1)
        f.write("\n")
    return f"{len(table)} layer{'s' * (len(table) != 1)}"
