"""``surgery sweep``: a grid of spec variants trained into run folders and compared in one table.

- ``grid``: the grid file, places in a spec, the variants and their ids (no TensorFlow);
- ``prepare``: every variant validated, checked and built before any trains;
- ``run``: the variants trained one after another, their rows, the interruption;
- ``pool``: ``--jobs N``, variants in worker processes;
- ``cluster``: ``--ray ADDRESS``, variants as tasks on a Ray cluster;
- ``search``: ``--search optuna``, variants Optuna draws;
- ``table``: results.csv, results.json and results.md; ``plot``: ``--plot``.
"""
