"""Layer kinds as the execute stage knows them: each kind -> the Keras layers that build it and how a built layer is
called; each cell kind -> its Keras layer and cell classes and the functions its kernel paths go through
(harness.execute.kernels, the backends' kernel hooks). The only place in this stage that tells kinds apart; keyed
by the names of the case stage's table (harness.case.kinds).

Importing it imports no Keras: the builders ask harness.execute.keras_api for the Keras the process builds with
(Keras 3, or tf_keras in Keras-2 mode), so harness.execute.kernels can read the cell table before activation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from harness.case.kinds import CELL_OPTIONS
from harness.case.schema import Case, LayerSpec
from harness.execute import keras_api


@dataclass(frozen=True)
class KerasCell:
    """A cell kind in Keras: its layer class (``keras.layers.LSTM``), its cell class (``keras.layers.LSTMCell``),
    the backend functions of its fused path (``keras.src.backend.<b>.rnn.lstm`` and the Bidirectional one), and
    per backend the (module, attribute, role) of the kernels inside them (harness.execute.kernels)."""

    layer: str
    cell: str
    fused_entry_points: tuple[str, ...] = ()
    kernel_hooks: dict[str, tuple[tuple[str, str, str], ...]] = field(default_factory=dict)
    # the Keras source file of the layer class, where its inner_loop refuses use_cudnn=True (harness.execute.measure)
    source: str = ""


KERAS_CELLS: dict[str, KerasCell] = {
    "lstm": KerasCell(
        "LSTM", "LSTMCell", ("lstm", "bidirectional_lstm"),
        {
            # the cuDNN kernel inside TensorFlow's ``lstm`` (it builds the CudnnRNNV3 op)
            "tensorflow": (("keras.src.backend.tensorflow.rnn", "_cudnn_lstm", "cudnn"),),
            # the cuDNN kernel JAX's ``lstm`` and ``bidirectional_lstm`` import at call time
            # (``from jax.experimental.rnn import lstm``)
            "jax": (("jax.experimental.rnn", "lstm", "cudnn"),),
            # inside PyTorch's ``lstm``: the cuDNN kernel (whose exceptions ``lstm`` swallows) and the loop it runs
            # whenever cuDNN does not
            "torch": (("keras.src.backend.torch.rnn", "_cudnn_lstm", "cudnn"),
                      ("keras.src.backend.torch.rnn", "_fallback_lstm", "fallback_loop")),
        },
        "keras/src/layers/rnn/lstm.py",
    ),
}
# GRU: Keras's GRU.inner_loop tries ``backend.gru`` first (Bidirectional: ``backend.bidirectional_gru``). Keras 3.15.1,
# read from its source and observed on CPU: TensorFlow's ``gru`` runs only its cuDNN kernel (``_cudnn_gru``) and
# declines without a GPU; PyTorch's runs ``_cudnn_gru`` on CUDA, else its own loop ``_fallback_gru`` (reset_after and no
# mask, unroll ignored), so it computes GRUs on CPU; JAX's ``gru`` is its own lax.scan, no cuDNN (reset_after, no mask, not
# unrolled), which returns with no hooked kernel inside and so reads as ``fused``: the backend's fused entry point
# computed the numbers. The bidirectional ones decline on CPU (PyTorch's is cuDNN only; TensorFlow's and JAX's always).
KERAS_CELLS["gru"] = KerasCell(
    "GRU", "GRUCell", ("gru", "bidirectional_gru"),
    {
        "tensorflow": (("keras.src.backend.tensorflow.rnn", "_cudnn_gru", "cudnn"),),
        "torch": (("keras.src.backend.torch.rnn", "_cudnn_gru", "cudnn"),
                  ("keras.src.backend.torch.rnn", "_fallback_gru", "fallback_loop")),
    },
    "keras/src/layers/rnn/gru.py",
)
KERAS_CELLS["simple_rnn"] = KerasCell("SimpleRNN", "SimpleRNNCell", source="keras/src/layers/rnn/simple_rnn.py")
GENERIC_LOOP = "rnn"  # keras.src.backend.<b>.rnn: Keras's generic loop over any cell


def keras_cell(spec: LayerSpec) -> KerasCell:
    """The Keras classes of the cell that computes ``spec``'s recurrence."""
    return KERAS_CELLS[spec.kind.cell_kind(spec).name]


def entry_points() -> tuple[str, ...]:
    """Every backend function a recurrent layer's call can reach: each cell's fused entry points, then the generic loop."""
    names: list[str] = []
    for cell in KERAS_CELLS.values():
        names += [name for name in cell.fused_entry_points if name not in names]
    return tuple(names) + (GENERIC_LOOP,)


def kernel_hooks(backend: str) -> list[tuple[str, str, str]]:
    """(module, attribute, role) of every kernel inside ``backend``'s fused entry points, over the cell kinds."""
    return [hook for cell in KERAS_CELLS.values() for hook in cell.kernel_hooks.get(backend, ())]


# --- building -----------------------------------------------------------------------------------------


def _rnn_kwargs(options: dict[str, Any], case: Case) -> dict[str, Any]:
    kwargs = {key: value for key, value in options.items() if key not in ("merge_mode",)}
    if case.kernel == "generic" and "use_cudnn" in kwargs:
        kwargs["use_cudnn"] = False  # the generic loop over the cell, whatever the device
    return keras_api.rnn_kwargs(kwargs)


def cell_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in options.items() if key in CELL_OPTIONS}


def wrapper_kwargs(options: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in options.items() if key not in CELL_OPTIONS + ("merge_mode", "use_cudnn")}


def recurrent_layer(spec: LayerSpec, options: dict[str, Any], case: Case, name: str, stateful: bool = False) -> Any:
    """One recurrent layer of ``spec``'s cell in the case's layer form: keras.layers.LSTM, or
    keras.layers.RNN(keras.layers.LSTMCell(...))."""
    cell = keras_cell(spec)
    if case.layer_form == "layer":
        return getattr(_layers(), cell.layer)(dtype=case.dtype, name=name, stateful=stateful, **_rnn_kwargs(options, case))
    built = getattr(_layers(), cell.cell)(dtype=case.dtype, name=f"{name}_cell", **cell_kwargs(options))
    return _layers().RNN(built, dtype=case.dtype, name=name, stateful=stateful, **wrapper_kwargs(options))


def stacked_cell(spec: LayerSpec, case: Case, index: int) -> Any:
    """The cell of case layer ``index`` inside one RNN(StackedRNNCells([...]))."""
    return getattr(_layers(), keras_cell(spec).cell)(dtype=case.dtype, name=f"{spec.type}_{index}_cell",
                                                          **cell_kwargs(spec.options))


# A builder: (spec, case, name) -> (the layers that own the weights, in CaseData.layer_weights order; the single
# layer a Sequential model can hold, None for a layer that is not one chain).
Built = tuple[list[Any], Any]


def _layers() -> Any:
    """``keras.layers`` of the Keras this process builds with (harness.execute.keras_api)."""
    return keras_api.package().layers


def _build_cell(spec: LayerSpec, case: Case, name: str) -> Built:
    layer = recurrent_layer(spec, spec.options, case, name, stateful=case.stateful)
    return [layer], layer


def _build_bidirectional(spec: LayerSpec, case: Case, name: str) -> Built:
    merge_mode = spec.options["merge_mode"]
    inner = recurrent_layer(spec, spec.options, case, f"{name}_{spec.kind.cell_kind(spec).name}")
    layer = _layers().Bidirectional(inner, merge_mode=None if merge_mode == "none" else merge_mode, dtype=case.dtype, name=name)
    return [layer], layer


def _build_branches(spec: LayerSpec, case: Case, name: str) -> Built:
    first = recurrent_layer(spec, spec.inner.options, case, f"{name}_a")
    owners = [first] if spec.options["shared"] else [first, recurrent_layer(spec, spec.inner.options, case, f"{name}_b")]
    return owners, None


def _build_dense(spec: LayerSpec, case: Case, name: str) -> Built:
    layer = _layers().Dense(dtype=case.dtype, name=name, **dict(spec.options))
    return [layer], layer


def _build_time_distributed_dense(spec: LayerSpec, case: Case, name: str) -> Built:
    dense = _layers().Dense(dtype=case.dtype, name=f"{name}_dense", **dict(spec.options))
    layer = _layers().TimeDistributed(dense, dtype=case.dtype, name=name)
    return [layer], layer


def _call_single(owners: list[Any], layer: Any, x: Any, kwargs: dict[str, Any]) -> Any:
    return layer(x, **kwargs)


def _call_branches(owners: list[Any], layer: Any, x: Any, kwargs: dict[str, Any]) -> Any:
    first = owners[0](x, **kwargs)
    second = owners[-1](x, **kwargs)
    return _layers().Concatenate(axis=-1, name=f"{owners[0].name}_concat")([first, second])


@dataclass(frozen=True)
class ExecuteKind:
    """build: the Keras layers of one case layer (``Built``); call: how the built layer is applied to x."""

    build: Callable[[LayerSpec, Case, str], Built]
    call: Callable[[list, Any, Any, dict[str, Any]], Any] = _call_single
    # the built layer's recurrent layers, one per copy of its cell (harness.case.kinds' copies; itself for a cell)
    copy_layers: Callable[[Any], list[Any]] = lambda layer: [layer]


EXECUTE_KINDS: dict[str, ExecuteKind] = {
    "lstm": ExecuteKind(_build_cell),
    "bidirectional": ExecuteKind(_build_bidirectional, copy_layers=lambda layer: [layer.forward_layer, layer.backward_layer]),
    "branches": ExecuteKind(_build_branches, _call_branches),
    "dense": ExecuteKind(_build_dense),
    "time_distributed_dense": ExecuteKind(_build_time_distributed_dense),
    "gru": ExecuteKind(_build_cell),
    "simple_rnn": ExecuteKind(_build_cell),
}


def execute_kind(spec: LayerSpec) -> ExecuteKind:
    try:
        return EXECUTE_KINDS[spec.type]
    except KeyError:
        raise ValueError(f"no Keras layer for layer type {spec.type!r}") from None
