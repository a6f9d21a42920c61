"""The three hooks a plugin may implement.

Each is a collector: the host passes a ``register`` callback it owns, so the
host checks names, clashes and schemas in one place and knows which plugin
registered what. Registering must be cheap and must not import TensorFlow.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pluggy

if TYPE_CHECKING:
    from .model.state import State
    from .spec.loading import StepContext

hookspec = pluggy.HookspecMarker("surgery")
hookimpl = pluggy.HookimplMarker("surgery")


class OpApply(Protocol):
    """``apply(state, params, ctx) -> State``: builds the step (may import Keras).

    A source op is called with ``state=None``: it annotates ``state: State | None``, which fits here too.
    """

    def __call__(self, state: State, params: dict[str, Any], ctx: StepContext) -> State: ...


class OpCheck(Protocol):
    """``check(params, ctx)``: what can be known without a model or TensorFlow; raises ``OpError``."""

    def __call__(self, params: dict[str, Any], ctx: StepContext) -> None: ...


class Exporter(Protocol):
    """``export(model, path, options) -> str | None``: writes ``path`` (the host places it) and returns a report."""

    def __call__(self, model: Any, path: Path, options: dict[str, Any]) -> str | None: ...


Register = Callable[..., None]


class RegisterOp(Protocol):
    """The ``register`` that ``surgery_register_ops`` receives; annotating it lets mypy check an op's
    ``apply`` and ``check`` against ``OpApply`` and ``OpCheck``."""

    def __call__(
        self,
        name: str,
        schema: dict[str, Any],
        apply: OpApply,
        *,
        check: OpCheck | None = None,
        description: str = "",
        examples: Sequence[dict[str, Any]] = (),
        source: bool = False,
        weights: Callable[..., dict[str, Any] | None] | None = None,
        backbone: Callable[[dict[str, Any]], str | None] | None = None,
        editor_schema: Callable[..., dict[str, Any]] | None = None,
    ) -> None: ...


@hookspec
def surgery_register_ops(register: RegisterOp) -> None:
    """Register spec operations.

    ``register(name, schema, apply, *, check=None, description="", examples=(), source=False,
    weights=None, backbone=None, editor_schema=None)``

    - ``name``: the ``op`` value in a spec step (lowercase, ``[a-z][a-z0-9_]*``).
    - ``schema``: JSON Schema (draft 2020-12) of the step's params, ``op`` excluded.
    - ``apply(state, params, ctx) -> State``: builds; may import Keras (``OpApply``).
    - ``check(params, ctx)``: optional checks that need no model and no TensorFlow,
      run by ``surgery validate`` and before every build (``OpCheck``).
    - ``description``: one line for ``surgery ops``.
    - ``examples``: params that must validate (the conformance helper tries them).
    - ``source``: the op starts a model (it must be the first step).
    - ``weights(params, value, registry) -> params | None``: a source op's step with ``--weights``
      applied (``value``: None for random init, "imagenet", or a file path); None if it takes no weights.
    - ``backbone(params) -> str | None``: the registered backbone a source op's step builds.
    - ``editor_schema(registry) -> dict``: the params schema editors get from ``surgery schema``.
    """


@hookspec
def surgery_register_backbones(register: Register) -> None:
    """Register backbones for the ``backbone`` op.

    ``register(name, build, *, options=None, preprocess=None, input_shape=None,
    min_input_size=None, description="", check=None, presets=None)``

    - ``build(**options) -> keras.Model``: imports Keras only when called.
    - ``options``: JSON Schema ``properties`` of the options the backbone takes;
      ``None`` means the keras.applications options (weights, include_top,
      input_shape, pooling, classes, classifier_activation).
    - ``preprocess``: dotted path (or callable) of its ``preprocess_input``.
    - ``input_shape``: default input shape; ``min_input_size``: smallest side.
    - ``check(options)``: optional checks that need no TensorFlow (a file's contents),
      run by ``surgery validate`` and before every build.
    - ``presets()``: optional, the named configurations the backbone builds (dicts with ``name``,
      ``family``, ``params``, ``image_size``, ``description``), listed by ``surgery backbones --presets``;
      it must not import TensorFlow.
    """


@hookspec
def surgery_register_exporters(register: Register) -> None:
    """Register output formats.

    ``register(format, export, *, suffix, description="")``

    - ``export(model, path, options) -> str | None``: writes ``path`` (the host
      handles temporary names and renaming) and returns a one-line report.
    """


@hookspec
def surgery_register_channel_rules(register: Register) -> None:
    """Declare how a plugin's own layer class passes channels, so that ``prune`` (and ``plan --groups``)
    can remove channels through it instead of keeping every channel it touches.

    ``register(layer, rule, *, description="")``

    - ``layer``: the class as ``"module.ClassName"`` (``type(layer).__module__`` and ``__qualname__``):
      no class is imported to register it.
    - ``rule(layer, site) -> surgery.ChannelRule``: reads one call of such a layer (``site.node``,
      ``site.label``, ``site.rank``, ``site.channels``) and says what it does to channels: passes them
      (``"pass"``, with per-channel weights as ``surgery.ChannelRole("name", "out", axis)``), makes new ones
      (``"producer"``), blocks them (``"block"`` with a reason), or cannot say (``surgery.unknown_channels
      (reason)``). Every weight of the layer must be named by a role, or it stays unprunable.
    """
