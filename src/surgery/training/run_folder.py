"""The output folder of a training run, and what ``--resume`` reads back from it (no TensorFlow).

    DIR/<name>.keras          the final model (written when the run ends)
    DIR/best.keras            the best epoch by the monitored validation metric
    DIR/classes.json          class names and the input preprocessing, read by ``surgery predict``
    DIR/log.csv               one row per epoch, numbered across stages
    DIR/tensorboard/          TensorBoard logs
    DIR/checkpoints/          the latest epoch and the last epoch of each stage, and state.json

Every file is written under a temporary name and renamed. ``state.json`` is
written after the checkpoint it names, and older checkpoints are deleted after
that, so a run killed at any point leaves a state that names a complete file.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import SurgeryError
from ..writing import remove, temporary_sibling

STATE_VERSION = 1


class RunFolderError(SurgeryError):
    """The output folder does not fit what was asked (a finished or foreign run, nothing to resume)."""


@dataclass
class RunState:
    fingerprint: dict
    epochs_done: int = 0
    checkpoint: str | None = None  # file name under checkpoints/
    best: float | None = None
    best_epoch: int | None = None
    finished: bool = False
    version: int = STATE_VERSION


def write_json(path: Path, data) -> None:
    tmp = temporary_sibling(path)
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


class RunFolder:
    def __init__(self, folder: Path, model_name: str):
        self.folder = folder
        self.final = folder / f"{model_name}.keras"
        self.best = folder / "best.keras"
        self.classes = folder / "classes.json"
        self.log = folder / "log.csv"
        self.tensorboard = folder / "tensorboard"
        self.checkpoints = folder / "checkpoints"
        self.state_file = self.checkpoints / "state.json"

    def outputs(self) -> list[Path]:
        return [self.final, self.best, self.classes, self.log, self.tensorboard, self.checkpoints]

    def check_fresh(self, force: bool, created_default: bool) -> None:
        """A new run: the folder can be made, and holds no earlier run unless --force (which clears it)."""
        parent = self.folder.parent
        if not self.folder.exists():
            if not (created_default or parent.is_dir()):
                raise RunFolderError(f"the folder {parent} does not exist; create it or choose another -o",
                                     file=str(self.folder), where="-o")
            return
        if not self.folder.is_dir():
            raise RunFolderError("exists and is not a folder", file=str(self.folder), where="-o")
        if not os.access(self.folder, os.W_OK):
            raise RunFolderError("is not writable", file=str(self.folder), where="-o")
        present = [p for p in self.outputs() if p.exists()]
        if present and not force:
            hint = "pass --resume to continue it, or" if self.state_file.exists() else "pass"
            raise RunFolderError(f"already holds a training run ({present[0].name}); {hint} --force to start over",
                                 file=str(self.folder), where="-o")

    def clear(self) -> None:
        for p in self.outputs():
            remove(p)

    def read_state(self, fingerprint: dict) -> RunState:
        if not self.state_file.is_file():
            raise RunFolderError("nothing to resume: no checkpoints/state.json; run without --resume",
                                 file=str(self.folder), where="--resume")
        try:
            state = RunState(**json.loads(self.state_file.read_text()))
        except (ValueError, TypeError) as e:
            raise RunFolderError(f"checkpoints/state.json is not a surgery run state ({e})",
                                 file=str(self.folder), where="--resume") from None
        if state.fingerprint != fingerprint:
            raise RunFolderError("the spec or the training options differ from those of the run in this folder; "
                                 "resume with the same ones, or start over with --force",
                                 file=str(self.folder), where="--resume")
        if state.checkpoint and not (self.checkpoints / state.checkpoint).is_file():
            raise RunFolderError(f"the checkpoint checkpoints/{state.checkpoint} is missing",
                                 file=str(self.folder), where="--resume")
        return state

    def write_state(self, state: RunState) -> None:
        write_json(self.state_file, asdict(state))

    def checkpoint_path(self, epochs_done: int) -> Path:
        return self.checkpoints / f"epoch-{epochs_done:04d}.keras"

    def prune(self, keep: set[str]) -> None:
        for p in self.checkpoints.glob("epoch-*.keras"):
            if p.name not in keep:
                remove(p)

    def trim_log(self, epochs_done: int) -> None:
        """Drop rows of epochs after the checkpoint, which a resumed run trains again."""
        if not self.log.is_file():
            return
        with self.log.open(newline="") as f:
            rows = list(csv.reader(f))
        if not rows:
            return
        kept = [rows[0]] + [r for r in rows[1:] if r and int(r[0]) < epochs_done]
        tmp = temporary_sibling(self.log)
        with tmp.open("w", newline="") as f:
            csv.writer(f).writerows(kept)
        os.replace(tmp, self.log)
