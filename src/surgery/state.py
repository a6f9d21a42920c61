"""The model as it stands between steps."""

from __future__ import annotations

from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class State:
    """Carried through the steps; each op returns a new one.

    ``model`` is a functional ``keras.Model``; its layers are shared with the
    models of earlier steps, so kept layers keep their weights by construction.
    ``notes`` are the one-line reports of what each step did, in order.
    ``tensors`` maps the names given with a step's ``"as"`` to that step's output
    tensor, which later steps can branch from.
    """

    model: object
    backbone: str | None = None
    preprocess: object = None
    notes: tuple = field(default_factory=tuple)
    tensors: dict = field(default_factory=dict)

    def evolve(self, note: str | None = None, **changes) -> "State":
        if note:
            changes["notes"] = self.notes + (note,)
        return replace(self, **changes)

    @property
    def output(self):
        """The single current output tensor (ops that extend the model start here)."""
        outputs = self.model.outputs
        if len(outputs) != 1:
            from .errors import OpError

            raise OpError(f"the model has {len(outputs)} outputs; this op needs exactly one")
        return outputs[0]
