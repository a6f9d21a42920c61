"""The model as it stands between steps."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class State:
    """Carried through the steps; each op returns a new one.

    ``model`` is a functional ``keras.Model``; its layers are shared with the
    models of earlier steps, so kept layers keep their weights by construction.
    ``notes`` are the one-line reports of what each step did, in order.
    ``tensors`` maps the names given with a step's ``"as"`` to that step's output
    tensor, which later steps can branch from. ``preprocess`` is what the input
    data still needs before the model (the backbone's ``preprocess_input``);
    ``None`` once a step has put the preprocessing into the graph.
    """

    model: Any
    backbone: str | None = None
    preprocess: Any = None
    notes: tuple = field(default_factory=tuple)
    tensors: dict = field(default_factory=dict)

    def evolve(self, note: str | None = None, **changes) -> State:
        if note:
            changes["notes"] = self.notes + (note,)
        return replace(self, **changes)

    @property
    def output(self):
        """The single current output tensor (ops that extend the model start here)."""
        outputs = self.model.outputs
        if len(outputs) != 1:
            from ..errors import OpError

            raise OpError(f"the model has {len(outputs)} outputs; this op needs exactly one")
        return outputs[0]

    def tensor(self, name: str):
        """A named tensor, or the output of the layer of that name in any branch (OpError if neither)."""
        from .graph import find_tensor

        return find_tensor(self.model, self.tensors, name)

    def workspace(self):
        """One model over the current outputs and the named tensors: every branch, to search or draw."""
        from .graph import workspace

        return workspace(self.model, self.tensors)

    def retraced(self, note: str | None = None, *, around=None, inputs=None, feeds=None) -> State:
        """The model and its named tensors re-traced (see ``graph.rebuild``), as a new state."""
        from .graph import rebuild

        model, tensors = rebuild(self.model, self.tensors, around=around, inputs=inputs, feeds=feeds)
        return self.evolve(note, model=model, tensors=tensors)

    def with_outputs(self, note: str | None, outputs) -> State:
        """The model with new outputs; old outputs they do not use stay reachable by their layers' names."""
        from .graph import left_behind, make_model

        tensors = left_behind(self.model, self.tensors, outputs)
        return self.evolve(note, model=make_model(self.model.inputs, outputs), tensors=tensors)
