"""The output folder of a training run, and what ``--resume`` reads back from it (no TensorFlow).

    DIR/.surgery              marks the folder as a surgery run (what --force may clear), names the model file
    DIR/<name>.keras          the final model (written when the run ends)
    DIR/best.keras            the best epoch by the monitored validation metric
    DIR/classes.json          class names and the input preprocessing, read by ``surgery predict``
    DIR/log.csv               one row per epoch, numbered across stages
    DIR/tensorboard/          TensorBoard logs
    DIR/checkpoints/          the latest epoch and the last epoch of each stage, and state.json

Every file is written under a temporary name and renamed. ``state.json`` is
written after the checkpoint it names, and older checkpoints are deleted after
that, so a run killed at any point leaves a state that names a complete file.

A run folder may come from someone else (a colleague's run to resume or
predict with), so what is read back is checked: bounded reads, field types,
and a checkpoint name that stays inside ``checkpoints/``. ``--force`` removes
only what a run wrote, and only in a folder that carries the marker.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import stat
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ..errors import SurgeryError
from ..io.files import MIB, read_bounded, read_json, same_file
from ..io.writing import MARKER, is_surgery_folder, mark_folder, remove, strict_json, temporary_sibling
from .fingerprints import differing, stage_epochs, without_epochs

STATE_VERSION = 2  # 2: stages end where they actually ended (early stopping), and a run can be extended
STATE_LIMIT = 16 * MIB
LOG_LIMIT = 256 * MIB
CHECKPOINT_RE = re.compile(r"epoch-\d{4,9}\.keras")
EVENTS_RE = re.compile(r"events\.out\.tfevents\..*")


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
    stage_ends: list = field(default_factory=list)  # epochs done when each finished stage ended
    last_stage_end: int | None = None  # --resume --epochs N: the run's last stage ends at N


# What each field of state.json must hold: an int is not a bool, a number may be an int.
_STATE_TYPES = {
    "fingerprint": (dict,),
    "epochs_done": (int,),
    "checkpoint": (str, type(None)),
    "best": (int, float, type(None)),
    "best_epoch": (int, type(None)),
    "finished": (bool,),
    "version": (int,),
    "stage_ends": (list,),
    "last_stage_end": (int, type(None)),
}


def _unwritable(path: Path) -> str:
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return "on a read-only file system"
    except (OSError, AttributeError):
        pass
    return "not writable"


def write_json(path: Path, data) -> None:
    tmp = temporary_sibling(path)
    tmp.write_text(strict_json(data) + "\n")
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

    def _error(self, message: str, where: str = "-o") -> RunFolderError:
        return RunFolderError(message, file=str(self.folder), where=where)

    def check_contents(self, where: str = "-o") -> None:
        """Refuse a folder whose run files are not what a run writes, before anything is written or removed.

        A symbolic link anywhere among them (a colleague's tarball can hold one) would lead the run's writes
        and --force's removals out of the folder; a folder where a run writes a file (or the reverse) would
        only be found after training.
        """
        expected = [(p, False) for p in (self.final, self.best, self.classes, self.log, self.folder / MARKER)]
        if is_surgery_folder(self.folder, "run"):
            expected.append((self.folder / self._marked_model(), False))
        expected += [(self.tensorboard, True), (self.checkpoints, True)]
        for path, is_folder in expected:
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            except OSError as e:
                raise self._error(f"{path.name} cannot be read: {e.strerror}", where) from None
            if stat.S_ISLNK(st.st_mode):
                raise self._link_error(path, where)
            if stat.S_ISDIR(st.st_mode) != is_folder:
                kind = "a folder" if stat.S_ISDIR(st.st_mode) else "not a folder"
                writes = "a folder" if is_folder else "a file"
                raise self._error(
                    f"{path.name} is {kind}, where a run writes {writes}; move it away or choose another -o", where
                )
        for top in (self.checkpoints, self.tensorboard):
            for root, dirs, files in os.walk(top):
                for name in dirs + files:
                    if os.path.islink(os.path.join(root, name)):
                        raise self._link_error(Path(root) / name, where)

    def _link_error(self, path: Path, where: str) -> RunFolderError:
        return self._error(
            f"{path.relative_to(self.folder)} is a symbolic link; nothing in a run folder may point out of it "
            "(the run would write and remove files where it points): remove the link, or choose another -o",
            where,
        )

    def check_inputs(self, inputs, data_folders=()) -> None:
        """Refuse a run whose files would replace one of its inputs, or that would be written into its data."""
        for path in (self.final, self.best, self.classes, self.log):
            for source in inputs:
                if same_file(path, source):
                    raise RunFolderError(
                        f"is also an input of this command ({source}); the run would write over it, so choose "
                        "another -o (or rename the spec)",
                        file=str(path),
                        where="-o",
                    )
        out = Path(os.path.abspath(self.folder))
        for data in data_folders:
            top = Path(os.path.abspath(data))
            if out == top or top in out.parents:
                raise self._error(
                    f"is inside the data folder {data}, whose subfolders are its classes: the run would become "
                    "part of the data; choose an -o outside it"
                )

    def check_fresh(self, force: bool, created_default: bool) -> None:
        """A new run: the folder can be made, and holds no earlier run unless --force (which clears it)."""
        parent = self.folder.parent
        if not self.folder.exists():
            if not (created_default or parent.is_dir()):
                raise self._error(f"the folder {parent} does not exist; create it or choose another -o")
            existing = next((p for p in [parent, *parent.parents] if p.exists()), None)
            if existing is not None and not os.access(existing, os.W_OK):
                raise self._error(f"cannot create the run folder: {existing} is {_unwritable(existing)}")
            return
        if not self.folder.is_dir():
            raise self._error("exists and is not a folder")
        if not os.access(self.folder, os.W_OK):
            raise self._error(f"is {_unwritable(self.folder)}")
        present = [p for p in self.outputs() if p.exists()]
        if not present:
            return
        if not is_surgery_folder(self.folder, "run"):
            raise self._error(
                f"holds {present[0].name}, and surgery did not make this folder (it has no {MARKER} "
                "marker): --force removes only what a surgery run wrote; choose another -o, or move "
                "those files away"
            )
        if not force:
            hint = "pass --resume to continue it, or" if self.state_file.exists() else "pass"
            raise self._error(f"already holds a training run ({present[0].name}); {hint} --force to start over")
        marked = self._marked_model()
        if self.final.exists() and marked != self.final.name:
            raise self._error(
                f"holds {self.final.name}, which the run in this folder did not write (its model is {marked}): "
                "--force removes only what a run wrote; choose another -o, or move the file away"
            )

    def start(self) -> None:
        """Clear an earlier run's files (check_fresh allowed it) and mark the folder as this run's."""
        self.clear()
        self.checkpoints.mkdir(parents=True, exist_ok=True)  # kept when someone else's files are in it
        mark_folder(self.folder, "run", model=self.final.name)

    def clear(self) -> None:
        """Remove what an earlier run in this folder wrote, and nothing else.

        The earlier model file is the one the marker names (the spec's name may
        have changed); in checkpoints/ and tensorboard/ only the files a run
        writes go, and the folders only if nothing else is left in them.
        """
        if not is_surgery_folder(self.folder, "run"):
            return
        for path in (self.best, self.classes, self.log, self.final, self.folder / self._marked_model()):
            if path.is_file() and not path.is_symlink():
                remove(path)
        self._clear_tree(
            self.checkpoints, lambda name: CHECKPOINT_RE.fullmatch(name) or name == "state.json" or ".partial-" in name
        )
        self._clear_tree(self.tensorboard, lambda name: EVENTS_RE.fullmatch(name) is not None)

    def _marked_model(self) -> str:
        try:
            name = json.loads((self.folder / MARKER).read_text()).get("model", "")
        except (OSError, ValueError, AttributeError):
            return self.final.name
        # A plain file name in this folder, nothing else: the marker is data like the rest.
        return (
            name
            if isinstance(name, str) and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*\.keras", name)
            else self.final.name
        )

    @staticmethod
    def _clear_tree(top: Path, ours) -> None:
        if not top.is_dir() or top.is_symlink():
            return
        for root, dirs, files in os.walk(top, topdown=False):
            for name in files:
                path = Path(root) / name
                if ours(name) and not path.is_symlink():
                    remove(path)
            for name in dirs:
                path = Path(root) / name
                if not path.is_symlink():
                    try:
                        path.rmdir()  # only if empty: someone else's files keep their folder
                    except OSError:
                        pass
        try:
            top.rmdir()
        except OSError:
            pass

    def read_state(self, fingerprint: dict) -> RunState:
        where = "--resume"
        if not self.state_file.is_file():
            raise self._error("nothing to resume: no checkpoints/state.json; run without --resume", where)
        found = read_json(self.state_file, STATE_LIMIT, where, what="state.json", error=RunFolderError)
        if not isinstance(found, dict):
            raise self._error("checkpoints/state.json is not a surgery run state (not a JSON object)", where)
        known = {f.name for f in fields(RunState)}
        unknown = sorted(set(found) - known)
        if unknown or "fingerprint" not in found:
            key = unknown[0] if unknown else "fingerprint"
            what = "unknown key" if unknown else "missing key"
            raise self._error(f'checkpoints/state.json is not a surgery run state ({what} "{key}")', where)
        for key, value in found.items():
            types = _STATE_TYPES[key]
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                raise self._error(f"checkpoints/state.json: {key} has the wrong type ({type(value).__name__})", where)
        if found.get("version") != STATE_VERSION:
            raise self._error(
                f"checkpoints/state.json was written by an earlier surgery (state version {found.get('version')}, "
                f"this one reads {STATE_VERSION}); start over with --force",
                where,
            )
        state = RunState(**found)
        if not all(isinstance(e, int) and not isinstance(e, bool) for e in state.stage_ends):
            raise self._error("checkpoints/state.json: stage_ends must be a list of epoch counts", where)
        if state.epochs_done < 0:
            raise self._error("checkpoints/state.json: epochs_done is negative", where)
        recorded_epochs = stage_epochs(state.fingerprint)
        if recorded_epochs is None:
            raise self._error("checkpoints/state.json: its stages must each hold an epoch count", where)
        # The stages' epochs are the run's own (`--epochs N` may have set them when it started, and with
        # --resume it means the total to extend to): the run goes on with them, so they are not compared.
        if without_epochs(state.fingerprint) != without_epochs(fingerprint):
            raise self._error(differing(state.fingerprint, fingerprint), where)
        if state.checkpoint is not None:
            if not CHECKPOINT_RE.fullmatch(state.checkpoint):
                raise self._error(
                    f"checkpoints/state.json names the checkpoint {json.dumps(state.checkpoint)[:80]}, "
                    "which is not a checkpoint file name (epoch-NNNN.keras in checkpoints/)",
                    where,
                )
            if not (self.checkpoints / state.checkpoint).is_file():
                raise self._error(f"the checkpoint checkpoints/{state.checkpoint} is missing", where)
        return state

    def write_state(self, state: RunState) -> None:
        write_json(self.state_file, asdict(state))

    def checkpoint_path(self, epochs_done: int) -> Path:
        return self.checkpoints / f"epoch-{epochs_done:04d}.keras"

    def prune(self, keep: set[str]) -> None:
        for p in self.checkpoints.glob("epoch-*.keras"):
            if p.name not in keep:
                remove(p)

    def log_rows(self) -> list[list[str]] | None:
        """log.csv's rows, header first, checked to be a surgery log (None when there is none): --resume
        appends to it and the history is read from it, so a damaged one is refused before training."""
        if not self.log.exists():
            return None
        raw = read_bounded(self.log, LOG_LIMIT, "--resume", what="log.csv", error=RunFolderError)
        try:
            rows = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
            if not rows:
                return None  # killed before the first epoch ended: Keras had not written the header yet
            header = rows[0]
            if not header or header[0] != "epoch" or len(set(header)) != len(header):
                raise ValueError(f"its first row must be the header epoch,<metric>,..., not {','.join(header)!r}")
            for number, row in enumerate(rows[1:], 2):
                if len(row) != len(header):
                    raise ValueError(f"row {number} has {len(row)} columns, the header {len(header)}")
                if not _is_number(row[0], int) or not all(v in ("NA", "") or _is_number(v, float) for v in row[1:]):
                    raise ValueError(f"row {number} holds {','.join(row)[:60]!r}: an epoch number and figures")
        except (UnicodeDecodeError, ValueError, csv.Error) as e:
            raise RunFolderError(
                f"log.csv is not the log of a surgery run ({e})", file=str(self.log), where="--resume"
            ) from None
        return rows

    def trim_log(self, epochs_done: int) -> None:
        """Drop rows of epochs after the checkpoint, which a resumed run trains again."""
        rows = self.log_rows()
        if not rows:
            return
        kept = [rows[0]] + [r for r in rows[1:] if int(r[0]) <= epochs_done]
        tmp = temporary_sibling(self.log)
        with tmp.open("w", newline="") as f:
            csv.writer(f).writerows(kept)
        os.replace(tmp, self.log)


def _is_number(text: str, kind) -> bool:
    try:
        kind(text)
    except ValueError:
        return False
    return True
