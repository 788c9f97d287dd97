"""Measure one case's gradients on the active backend, in-process: build it in every API (the same builds
as the forward measure step, ``harness.execute.models.build_model``), take the gradient of a seeded MSE
loss with the backend's own autodiff (``loss_and_gradients`` of the backend's module: TensorFlow's
GradientTape, ``jax.value_and_grad`` over ``stateless_call``, ``torch.autograd``), and judge each gradient
against the float64 NumPy reference (``harness.truth.expected_gradients``) with the one comparison
(``harness.truth.compare``), through the forward pass's own measure step (``measure_builds``: ``judge_outputs``,
``measured_status``, ``api_agreement``): a gradient is an output like any other, judged by the
``gradients`` rows of the tolerance table.

Keras's weights are mapped to the reference's keys by layer: each block's owners hold the arrays of
``CaseData.layer_weights`` in order (exactly what ``build_model`` loaded with set_weights), so the i-th
trainable variable of a block's owners is the i-th key of its layers (``gradient_keys``). A layer shared
between two branches is one variable, so its gradient is the sum over both calls, as in the reference.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from harness.case.schema import Case
from harness.case.tolerances import Tolerances
from harness.case.weights import CaseData
from harness.execute.measure import measure_builds
from harness.truth.expected_gradients import expected_gradients, gradient_keys, input_keys

LOSS_KEY = "loss"


def mse_loss_fn(case: Case, targets: dict[str, np.ndarray]) -> Callable[[Any], Any]:
    """The loss as Keras ops on the model's outputs: sum over outputs of mean((y - t)^2), the targets in the
    case's compute dtype (they were rounded to it before the reference saw them)."""
    import keras

    names = list(case.output_names)
    dtype = case.compute_dtype

    def loss_fn(outputs: Any) -> Any:
        values = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        if len(values) != len(names):
            raise ValueError(f"model returned {len(values)} outputs; expected {len(names)} ({names})")
        total = None
        for name, value in zip(names, values):
            target = keras.ops.convert_to_tensor(targets[name].astype(dtype))
            term = keras.ops.mean(keras.ops.square(keras.ops.subtract(value, target)))
            total = term if total is None else total + term
        return total

    return loss_fn


def weight_keys(model: Any, blocks: list[Any], case: Case) -> list[str]:
    """The reference key of each of ``model.trainable_weights``, by layer (see the module docstring)."""
    keys = gradient_keys(case)
    key_of: dict[int, str] = {}
    for block in blocks:
        block_keys = [key for index in block.weight_layers for group in keys[index] for key in group]
        variables = [variable for owner in block.owners for variable in owner.trainable_weights]
        if len(block_keys) != len(variables):
            raise ValueError(f"{case.name}: block {block.spec.type} has {len(variables)} trainable variables; "
                             f"the reference has {len(block_keys)} arrays ({block_keys})")
        key_of.update({id(variable): key for variable, key in zip(variables, block_keys)})
    missing = [variable.path for variable in model.trainable_weights if id(variable) not in key_of]
    if missing:
        raise ValueError(f"{case.name}: trainable variables {missing} belong to no layer of the case")
    return [key_of[id(variable)] for variable in model.trainable_weights]


def model_gradients(model: Any, blocks: list[Any], case: Case, data: CaseData, targets: dict[str, np.ndarray],
                    backend_gradients: Callable | None = None) -> dict[str, np.ndarray]:
    """{key: gradient} (and the loss under ``LOSS_KEY``) of one built model, from the active backend's autodiff."""
    import keras

    from harness.execute.backends import backend_module

    compute = backend_gradients or backend_module(keras.backend.backend()).loss_and_gradients
    inputs = data.model_inputs(case)
    differentiable = [np.issubdtype(np.asarray(value).dtype, np.floating) or np.asarray(value).dtype.name == "bfloat16"
                      for value in inputs]
    loss, weight_grads, input_grads = compute(model, inputs, mse_loss_fn(case, targets), differentiable)
    result = {key: np.asarray(keras.ops.convert_to_numpy(grad)) for key, grad in zip(weight_keys(model, blocks, case), weight_grads)}
    for key, grad in zip(input_keys(case), [grad for grad in input_grads if grad is not None]):
        result[key] = np.asarray(keras.ops.convert_to_numpy(grad))
    result[LOSS_KEY] = np.asarray(keras.ops.convert_to_numpy(loss))
    return result


def rounded_targets(case: Case, data: CaseData, seed: int) -> tuple[float, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """(loss, expected gradients, targets): the seeded targets rounded to the compute dtype, so that the
    reference and the backend see the same numbers."""
    from harness.case.weights import numpy_dtype

    _, _, _, targets = expected_gradients(case, data, seed=seed)
    dtype = numpy_dtype(case.compute_dtype)
    targets = {name: value.astype(dtype).astype(np.float64) for name, value in targets.items()}
    loss, expected, _, _ = expected_gradients(case, data, targets=targets)
    return loss, expected, targets


def run_gradient_case(case: Case, seed: int, tolerances: Tolerances, raw_outputs: dict[tuple[str, str], np.ndarray],
                      timeout_s: int = 0, backend_gradients: Callable | None = None) -> dict[str, Any]:
    """Measure one case's gradients on the active backend through the one measure step
    (``harness.execute.measure.measure_builds``): per API the judged items (every gradient key and the loss),
    the API agreement, the status and its problems; never raises. Raw gradients go into ``raw_outputs`` keyed
    by (api, key). ``backend_gradients`` replaces the backend's ``loss_and_gradients`` (a fault study's wrong
    gradient)."""
    from harness.execute import models
    from harness.execute.backends import kernel_mode

    targets: dict[str, np.ndarray] = {}

    def expected_of(data: CaseData) -> dict[str, np.ndarray]:
        loss, expected, rounded = rounded_targets(case, data, seed)
        targets.update(rounded)
        return dict(expected, **{LOSS_KEY: np.asarray(loss)})

    def run_build(api: str, data: CaseData, result: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        with kernel_mode(case.kernel):
            model, blocks = models.build_model(api, case, data)
            return model_gradients(model, blocks, case, data, targets, backend_gradients), {}

    return measure_builds(case, seed, tolerances, raw_outputs, timeout_s, "gradient", expected_of, run_build)


# --- faults: a wrong gradient and a wrong optimizer step, injected into Keras to show they are caught ----------

GRADIENT_FAULTS = {
    "recurrent_term_dropped": "the backward pass drops the term through the recurrent kernel (dL/dh_prev from "
                              "z = x W + h_prev U + b is lost: Keras's LSTMCell and PyTorch's fused loop read h_prev "
                              "through stop_gradient); the forward pass is unchanged",
    "recurrent_kernel_gradient_scaled": "the recurrent kernels' gradients come back scaled by 1 + 1e-4 (a wrong "
                                        "gradient returned by the backend's autodiff)",
}
OPTIMIZER_FAULTS = {
    "adam_without_bias_correction": "keras.optimizers.Adam's step without bias correction (alpha = learning_rate "
                                    "instead of learning_rate * sqrt(1 - beta_2^t) / (1 - beta_1^t))",
}
SCALE = 1.0 + 1e-4


@dataclass
class InjectedFault:
    """A fault in force: its name, how often the patched code ran, and the gradient function to use (None: the
    backend's own)."""

    name: str
    calls: int = 0
    backend_gradients: Callable | None = None


def counting_calls(fault: InjectedFault, function: Callable) -> Callable:
    """``function`` with every call counted in ``fault.calls`` (a fault whose patch is never called is not judged)."""
    def counted(*args, **kwargs):
        fault.calls += 1
        return function(*args, **kwargs)

    return counted


@contextlib.contextmanager
def injected(name: str) -> Iterator[InjectedFault]:
    """Patch ``name`` (GRADIENT_FAULTS or OPTIMIZER_FAULTS) into Keras for the block; the originals come back after."""
    import importlib

    import keras

    from harness.execute.backends import backend_module, patch_attributes, with_gate_opened

    fault = InjectedFault(name)
    if name == "recurrent_term_dropped":
        original_call = keras.layers.LSTMCell.call

        def call(self, inputs, states, training=False):
            fault.calls += 1
            return original_call(self, inputs, [keras.ops.stop_gradient(states[0])] + list(states[1:]), training=training)

        replacements = [(keras.layers.LSTMCell, "call", call)]
        if keras.backend.backend() == "torch":
            torch_rnn = importlib.import_module("keras.src.backend.torch.rnn")
            detached = with_gate_opened(torch_rnn._fallback_lstm, "torch.matmul(h, recurrent_kernel)",
                                        "torch.matmul(h.detach(), recurrent_kernel)")
            replacements.append((torch_rnn, "_fallback_lstm", counting_calls(fault, detached)))
        with patch_attributes(replacements):
            yield fault
        return
    if name == "recurrent_kernel_gradient_scaled":
        compute = backend_module(keras.backend.backend()).loss_and_gradients

        def scaled(model, inputs, loss_fn, differentiable):
            loss, weight_grads, input_grads = compute(model, inputs, loss_fn, differentiable)
            paths = [variable.path for variable in model.trainable_weights]
            fault.calls += 1
            return loss, [grad * SCALE if path.endswith("recurrent_kernel") else grad
                          for path, grad in zip(paths, weight_grads)], input_grads

        fault.backend_gradients = scaled
        yield fault
        return
    if name == "adam_without_bias_correction":
        # Keras's own update code with its one bias-correction line replaced (Adam.update_step, and on PyTorch
        # the _parallel_update_step of Keras's torch Adam, which runs instead).
        correction = "alpha = lr * ops.sqrt(1 - beta_2_power) / (1 - beta_1_power)"
        targets = [(keras.optimizers.Adam, "update_step")]
        if keras.backend.backend() == "torch":
            torch_adam = importlib.import_module("keras.src.backend.torch.optimizers.torch_adam").Adam
            targets.append((torch_adam, "_parallel_update_step"))
        replacements = [(owner, attribute, counting_calls(fault, with_gate_opened(getattr(owner, attribute), correction, "alpha = lr")))
                        for owner, attribute in targets]
        with patch_attributes(replacements):
            yield fault
        return
    raise ValueError(f"unknown fault {name!r}; accepted: {', '.join(list(GRADIENT_FAULTS) + list(OPTIMIZER_FAULTS))}")
