"""Layer kinds as the case stage knows them: one entry per kind, the only place that tells kinds apart.

An entry says which options a layer table of that kind accepts (with Keras's defaults and a check), the
weight arrays it owns as a function of (input width, units, options), the names of its states, and how it
is put together: a *cell* kind (lstm, gru, simple_rnn) is one recurrent layer; a *wrapper* (bidirectional,
branches) runs copies of any cell kind, named in the case data (bidirectional: ``layer = "gru"``, default
"lstm", its other options being that cell's; branches: ``layer = {type = "gru", ...}``); the others (dense,
time_distributed_dense) are not recurrent.
The truth stage (harness.truth.kinds) and the execute stage (harness.execute.kinds) key their own tables
by the same names. Nothing in this module imports Keras.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from reference.activations import ACTIVATIONS

if TYPE_CHECKING:
    from harness.case.schema import LayerSpec

OptionTable = dict[str, tuple[Any, Callable[[Any], str]]]
MERGE_MODES = ("concat", "sum", "ave", "mul", "none")
# The recurrent options that belong to the cell; the others are the RNN wrapper's (RNN(LSTMCell) takes them).
CELL_OPTIONS = ("units", "activation", "recurrent_activation", "use_bias", "dropout", "recurrent_dropout",
                "recurrent_initializer", "implementation", "reset_after")


def is_bool(value: Any) -> str:
    return "" if isinstance(value, bool) else "expected true or false"


def is_positive_int(value: Any) -> str:
    return "" if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else "expected a positive integer"


def is_rate(value: Any) -> str:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0.0 <= value < 1.0
    return "" if ok else "expected a number in [0, 1)"


def one_of(*accepted: Any) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        return "" if value in accepted and type(value) in {type(a) for a in accepted} else "accepted: " + ", ".join(
            str(a).lower() if isinstance(a, bool) else str(a) for a in accepted
        )

    return check


def is_activation(value: Any) -> str:
    return "" if value in ACTIVATIONS else "accepted: " + ", ".join(sorted(ACTIVATIONS))


@dataclass(frozen=True)
class WeightArray:
    """One weight array a layer owns: its gradient name, its shape, and the standard deviation of the seeded
    normal draw that fills it (harness.case.weights)."""

    name: str
    shape: tuple[int, ...]
    scale: float


# What a cell kind owns, as a function of (options, units, input width), in Keras's get_weights order.
CellWeights = Callable[[dict[str, Any], int, int], list[WeightArray]]


def recurrent_weights(gates: int, bias_shape: Callable[[dict[str, Any], int], tuple[int, ...]]) -> CellWeights:
    """kernel (fan_in, gates * units), recurrent_kernel (units, gates * units) and, with use_bias, a bias."""
    def weights(options: dict[str, Any], units: int, fan_in: int) -> list[WeightArray]:
        arrays = [WeightArray("kernel", (fan_in, gates * units), 1.0 / np.sqrt(fan_in)),
                  WeightArray("recurrent_kernel", (units, gates * units), 1.0 / np.sqrt(units))]
        if options["use_bias"]:
            arrays.append(WeightArray("bias", bias_shape(options, units), 0.5))
        return arrays

    return weights


def dense_weights(options: dict[str, Any], units: int, fan_in: int) -> list[WeightArray]:
    arrays = [WeightArray("kernel", (fan_in, units), 1.0 / np.sqrt(fan_in))]
    if options["use_bias"]:
        arrays.append(WeightArray("bias", (units,), 0.5))
    return arrays


@dataclass(frozen=True)
class LayerKind:
    """One layer kind of the case stage.

    role: "cell" (one recurrent layer: it carries states, can be stateful, can be written as RNN(cell)),
        "wrapper" (runs ``copies`` of the cell kind it wraps), or "feedforward" (acts on the last axis).
    options: option -> (default, check); a default of None means the option is required. A flat wrapper's
        (bidirectional's) are those it takes around its default cell; ``accepted_options`` gives them for the
        cell a table names.
    wraps: the cell kinds a wrapper may wrap: the first is the one a flat table means when its ``layer``
        option is left out (bidirectional's other options are its wrapped cell's, ``wrapper_options`` of
        that cell's table); a ``nested`` wrapper (branches) names its cell in its ``layer`` table.
    copies: the names of a wrapper's copies of its cell (bidirectional: forward, backward; branches: a, b).
    state_names: a cell's states in Keras's order (h and c for an LSTM); its state outputs bear these names.
    state_scales: the standard deviation of each seeded random initial state (h small, c larger).
    cell_weights: what a cell or a feedforward layer owns (``WeightArray``s).
    fused_path: for a cell kind with a fused (cuDNN) kernel, whether options let Keras try it on a GPU.
    """

    name: str
    role: str
    options: OptionTable
    wraps: tuple[str, ...] = ()
    nested: bool = False
    copies: tuple[str, ...] = ()
    state_names: tuple[str, ...] = ()
    state_scales: tuple[float, ...] = ()
    cell_weights: CellWeights | None = None
    fused_path: Callable[[dict[str, Any]], bool] | None = None
    needs_time_axis: bool = False  # a feedforward layer that takes a sequence (TimeDistributed)
    copies_go_backwards: tuple[bool, ...] = ()  # whether each copy of a flat wrapper reads backwards
    options_from: tuple[tuple[str, str], ...] = ()  # (option, the option whose value a flat wrapper gives it)
    # a flat wrapper's options around a cell kind's option table (bidirectional_options)
    wrapper_options: Callable[[OptionTable], OptionTable] | None = None

    @property
    def names_its_cell(self) -> bool:
        """Whether a table of this kind names the cell kind it wraps in a ``layer`` option of its own (a flat
        wrapper: bidirectional, ``layer = "gru"``); a nested one holds a whole layer table there instead."""
        return self.role == "wrapper" and not self.nested

    def accepted_options(self, wrapped: str | None = None) -> OptionTable:
        """The options a table of this kind accepts: for a flat wrapper, those around cell kind ``wrapped``
        (its default when None), its own ``layer`` option first."""
        if not self.names_its_cell:
            return self.options
        cell = kind_of(wrapped or self.wraps[0])
        return {"layer": self.options["layer"], **self.wrapper_options(cell.options)}

    @property
    def recurrent(self) -> bool:
        return self.role in ("cell", "wrapper")

    @property
    def is_cell(self) -> bool:
        return self.role == "cell"

    @property
    def is_wrapper(self) -> bool:
        return self.role == "wrapper"

    @property
    def takes_initial_state(self) -> bool:
        """Whether the layer accepts initial states (a nested wrapper's branches do not)."""
        return self.recurrent and not self.nested

    @property
    def single_chain(self) -> bool:
        """Whether a Sequential model can hold the layer (branches split the chain)."""
        return not self.nested

    @property
    def fact_options(self) -> tuple[str, ...]:
        """The options a known divergence's condition may name (everything but the sizes and the structure)."""
        return tuple(option for option in self.options if option not in ("units", "shared", "layer"))

    def cell_kind(self, spec: LayerSpec) -> LayerKind:
        """The cell kind that computes this layer's recurrence (itself for a cell)."""
        if self.role == "cell":
            return self
        if self.role != "wrapper":
            raise ValueError(f"a {self.name} layer has no recurrent cell")
        return kind_of(spec.inner.type if self.nested else spec.wrapped or self.wraps[0])

    def cell_spec_options(self, spec: LayerSpec) -> dict[str, Any]:
        """The options of the recurrent layer Keras builds for this layer (a branch's inner layer)."""
        return dict(spec.inner.options if self.nested else spec.options)

    def copy_options(self, spec: LayerSpec) -> list[dict[str, Any]]:
        """The effective options of every copy of the cell that runs (a Bidirectional's backward copy reads
        backwards and both return zeros at masked steps when they return sequences)."""
        options = self.cell_spec_options(spec)
        if self.role != "wrapper" or self.nested:
            return [options]
        taken = {target: options[source] for target, source in self.options_from}
        return [dict(options, go_backwards=backwards, **taken) for backwards in self.copies_go_backwards]

    def units(self, spec: LayerSpec) -> int:
        return int(self.cell_spec_options(spec)["units"])

    def returns_sequences(self, spec: LayerSpec) -> bool:
        if not self.recurrent:
            return True  # dense layers keep whatever time axis they are given
        return bool(self.cell_spec_options(spec)["return_sequences"])

    def output_width(self, spec: LayerSpec) -> int:
        """The size of the last axis of this layer's (main) output."""
        if self.nested:
            return len(self.copies) * self.units(spec)
        if self.role == "wrapper" and spec.options["merge_mode"] == "concat":
            return len(self.copies) * self.units(spec)
        return self.units(spec)

    def initial_state_names(self, spec: LayerSpec) -> tuple[str, ...]:
        """The states the layer's initial_state takes, in Keras's order."""
        if self.role == "cell":
            return self.state_names
        if self.role != "wrapper":
            return ()
        cell = self.cell_kind(spec)
        if self.nested:
            return cell.state_names
        return tuple(f"{state}_{copy}" for copy in self.copies for state in cell.state_names)

    def initial_state_scales(self, spec: LayerSpec) -> tuple[float, ...]:
        if self.role == "cell":
            return self.state_scales
        cell = self.cell_kind(spec)
        return cell.state_scales * (1 if self.nested else len(self.copies))

    def output_names(self, spec: LayerSpec) -> tuple[str, ...]:
        """The names of this layer's outputs, in Keras's order."""
        if self.role == "cell":
            return ("output",) + self.state_names if spec.options["return_state"] else ("output",)
        if self.role != "wrapper" or self.nested:
            return ("output",)
        main = self.copies if spec.options["merge_mode"] == "none" else ("output",)
        return main + (self.initial_state_names(spec) if spec.options["return_state"] else ())

    def weight_groups(self, spec: LayerSpec, fan_in: int) -> list[list[WeightArray]]:
        """The layer's weight arrays, one group per Keras layer that owns weights (in get_weights order): one
        for a cell or a dense layer, forward then backward for a Bidirectional (as one group), one per
        branch for separate branches."""
        if self.role != "wrapper":
            return [self.cell_weights(spec.options, self.units(spec), fan_in)]
        cell = self.cell_kind(spec)
        options = self.cell_spec_options(spec)
        per_copy = [[WeightArray(f"{copy}_{array.name}", array.shape, array.scale)
                     for array in cell.cell_weights(options, self.units(spec), fan_in)] for copy in self.copies]
        if not self.nested:
            return [[array for group in per_copy for array in group]]
        return per_copy[:1] if spec.options["shared"] else per_copy


def _lstm_fused_path(options: dict[str, Any]) -> bool:
    """tanh and sigmoid, a bias, not unrolled, use_cudnn not False, no recurrent dropout."""
    return (options["activation"] == "tanh" and options["recurrent_activation"] == "sigmoid" and options["use_bias"]
            and not options["unroll"] and options["use_cudnn"] is not False and not options["recurrent_dropout"])


_RNN_OPTIONS: OptionTable = {
    "units": (None, is_positive_int),
    "activation": ("tanh", is_activation),
    "recurrent_activation": ("sigmoid", is_activation),
    "use_bias": (True, is_bool),
    "return_sequences": (False, is_bool),
    "return_state": (False, is_bool),
    "go_backwards": (False, is_bool),
    "zero_output_for_mask": (False, is_bool),
    "unroll": (False, is_bool),
    "implementation": (2, one_of(1, 2)),
    "use_cudnn": ("auto", one_of("auto", True, False)),
    "dropout": (0.0, is_rate),
    "recurrent_dropout": (0.0, is_rate),
    # Weights are always loaded with set_weights; the initializers only matter when they fail.
    "recurrent_initializer": ("orthogonal", one_of("orthogonal", "glorot_uniform", "zeros")),
}
_DENSE_OPTIONS: OptionTable = {
    "units": (None, is_positive_int),
    "activation": ("linear", is_activation),
    "use_bias": (True, is_bool),
}


def bidirectional_options(cell: OptionTable) -> OptionTable:
    """A Bidirectional's options: its cell's (without go_backwards: the wrapper sets it per copy) and merge_mode."""
    return {**{k: v for k, v in cell.items() if k != "go_backwards"}, "merge_mode": ("concat", one_of(*MERGE_MODES))}


LSTM = LayerKind("lstm", "cell", _RNN_OPTIONS, state_names=("h", "c"), state_scales=(0.5, 1.0),
                 cell_weights=recurrent_weights(4, lambda options, units: (4 * units,)), fused_path=_lstm_fused_path)
# GRU: Keras's options (reset_after, default true, puts the recurrent bias apart: bias (2, 3 units)); no fused
# path is declared (its cuDNN path is not observed by harness.execute.kernels yet, so no fused_on_cpu variant).
_GRU_OPTIONS: OptionTable = {**_RNN_OPTIONS, "reset_after": (True, is_bool)}
# SimpleRNN: no gates, so no recurrent_activation, no implementation, no use_cudnn (no fused path in Keras).
_SIMPLE_RNN_OPTIONS: OptionTable = {key: value for key, value in _RNN_OPTIONS.items()
                                    if key not in ("recurrent_activation", "implementation", "use_cudnn")}
GRU = LayerKind("gru", "cell", _GRU_OPTIONS, state_names=("h",), state_scales=(0.5,),
                cell_weights=recurrent_weights(3, lambda options, units: (2, 3 * units) if options["reset_after"] else (3 * units,)))
SIMPLE_RNN = LayerKind("simple_rnn", "cell", _SIMPLE_RNN_OPTIONS, state_names=("h",), state_scales=(0.5,),
                       cell_weights=recurrent_weights(1, lambda options, units: (units,)))
# The cell kinds a wrapper may run copies of, its default (what a table without ``layer`` means) first.
_WRAPPABLE = tuple(kind.name for kind in (LSTM, GRU, SIMPLE_RNN))
BIDIRECTIONAL = LayerKind("bidirectional", "wrapper",
                          {"layer": (_WRAPPABLE[0], one_of(*_WRAPPABLE)), **bidirectional_options(_RNN_OPTIONS)},
                          wraps=_WRAPPABLE, copies=("forward", "backward"), copies_go_backwards=(False, True),
                          # Keras's Bidirectional sets zero_output_for_mask = return_sequences on both copies
                          # (documented in keras/src/layers/rnn/bidirectional.py).
                          options_from=(("zero_output_for_mask", "return_sequences"),),
                          wrapper_options=bidirectional_options)
BRANCHES = LayerKind("branches", "wrapper",
                     {"shared": (None, is_bool),
                      "layer": (None, lambda value: "" if isinstance(value, dict) else
                                "expected a recurrent layer table (" + ", ".join(_WRAPPABLE) + ")")},
                     wraps=_WRAPPABLE, nested=True, copies=("a", "b"))
DENSE = LayerKind("dense", "feedforward", _DENSE_OPTIONS, cell_weights=dense_weights)
TIME_DISTRIBUTED_DENSE = LayerKind("time_distributed_dense", "feedforward", _DENSE_OPTIONS, cell_weights=dense_weights,
                                   needs_time_axis=True)

KINDS: dict[str, LayerKind] = {kind.name: kind for kind in (LSTM, BIDIRECTIONAL, BRANCHES, DENSE, TIME_DISTRIBUTED_DENSE,
                                                             GRU, SIMPLE_RNN)}


def kind_of(name: str) -> LayerKind:
    """The entry of layer kind ``name``; ValueError naming the kinds when there is none."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"no layer kind {name!r}; accepted: {', '.join(KINDS)}") from None


def recurrent_kind_names() -> tuple[str, ...]:
    return tuple(name for name, kind in KINDS.items() if kind.recurrent)


def feedforward_kind_names() -> tuple[str, ...]:
    return tuple(name for name, kind in KINDS.items() if not kind.recurrent)


def wrapper_names(cell: str) -> tuple[str, ...]:
    """The wrapper kinds whose flat table (or nested layer) runs copies of cell kind ``cell``."""
    return tuple(name for name, kind in KINDS.items() if kind.role == "wrapper" and cell in kind.wraps)


def recurrent_fact_options() -> tuple[str, ...]:
    """Every option of a recurrent kind a condition may name, in table order, each once."""
    names: list[str] = []
    for kind in KINDS.values():
        if kind.recurrent:
            names += [option for option in kind.fact_options if option not in names]
    return tuple(names)
