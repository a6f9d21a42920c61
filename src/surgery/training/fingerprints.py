"""Comparing a run's recorded fingerprint with the one a --resume asks for.

A fingerprint is the spec's steps and training options as JSON; a resume must match it except for each stage's
epochs (a run started with ``--epochs N`` is resumed without it), and a refusal names the first path that differs.
"""

from __future__ import annotations

import json


def stage_epochs(fingerprint: dict) -> list[int] | None:
    """The epochs of each stage a run fingerprint records; None when it records no such list."""
    stages = fingerprint.get("train", {}).get("stages") if isinstance(fingerprint.get("train"), dict) else None
    if not isinstance(stages, list) or not all(isinstance(s, dict) for s in stages):
        return None
    epochs = [s.get("epochs") for s in stages]
    if not all(isinstance(e, int) and not isinstance(e, bool) and e >= 1 for e in epochs):
        return None
    return epochs


def without_epochs(fingerprint: dict) -> dict:
    train = dict(fingerprint.get("train", {}))
    train["stages"] = [{k: v for k, v in stage.items() if k != "epochs"} for stage in train.get("stages", [])]
    return {**fingerprint, "train": train}


def differing(recorded: dict, asked: dict) -> str:
    """Which option differs between a run and its --resume, said in one line with both values in full."""
    if recorded.get("steps") != asked.get("steps"):
        return (
            "the spec's steps differ from those of the run in this folder; resume with the same spec, "
            "or start over with --force"
        )
    found = _first_difference(without_epochs(recorded).get("train"), without_epochs(asked).get("train"), "")
    if found is None:
        return (
            "the spec or the training options differ from those of the run in this folder; resume with the same "
            "ones, or start over with --force"
        )
    path, then, now = found
    option = path.split(".")[-1].split("[")[0]
    return (
        f"{path} differs from the run in this folder ({then} then, {now} now); resume with the same {option}, "
        "or start over with --force"
    )


def _first_difference(old, new, path: str) -> tuple[str, str, str] | None:
    """The first place (``stages[1].learning_rate``) where two JSON values differ, and both values there."""
    if old == new:
        return None
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else key)
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return path, f"{len(old)} entries", f"{len(new)} entries"
        for i, (a, b) in enumerate(zip(old, new)):
            if a != b:
                return _first_difference(a, b, f"{path}[{i}]")
    return path, json.dumps(old), json.dumps(new)
