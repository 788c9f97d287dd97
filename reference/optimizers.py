"""Keras 3's SGD and Adam update rules (keras/src/optimizers/sgd.py and adam.py, Keras 3.15.1) in float64.

Each optimizer is two plain functions: ``*_init(params)`` gives the initial state (all zeros, like the
optimizer variables Keras builds) and ``*_step(params, grads, state, step, ...)`` applies one update to
every parameter and returns ``(new_params, new_state)`` without modifying its arguments. ``params`` and
``grads`` are dicts name -> array with the same keys. ``step`` is the 1-based number of this update,
Keras's ``optimizer.iterations + 1`` before the update (SGD ignores it).

The operations are written in the order Keras writes them, so float64 results agree with Keras on a
float64 variable to the last bit or two. Keras keeps ``learning_rate`` in a variable of dtype
``keras.config.floatx()`` (float32 by default): to reproduce a float32-floatx Keras optimizer exactly,
pass ``float(np.float32(learning_rate))``. Not covered: weight_decay, clipnorm/clipvalue/
global_clipnorm, use_ema, gradient accumulation, loss scaling, learning-rate schedules.
"""

from __future__ import annotations

import math

import numpy as np

Arrays = dict[str, np.ndarray]


def _check(params: Arrays, grads: Arrays) -> None:
    if set(params) != set(grads):
        raise ValueError(f"params and grads name different arrays: {sorted(params)} vs {sorted(grads)}")
    for name in params:
        if np.shape(params[name]) != np.shape(grads[name]):
            raise ValueError(f"grads[{name!r}] has shape {np.shape(grads[name])}; expected {np.shape(params[name])}")


def sgd_init(params: Arrays, momentum: float = 0.0) -> dict[str, Arrays]:
    """SGD's state: one zero ``momentums`` array per parameter when momentum != 0, else none."""
    return {"momentums": {name: np.zeros(np.shape(value)) for name, value in params.items()} if momentum != 0 else {}}


def sgd_step(
    params: Arrays,
    grads: Arrays,
    state: dict[str, Arrays],
    step: int,
    *,
    learning_rate: float = 0.01,
    momentum: float = 0.0,
    nesterov: bool = False,
) -> tuple[Arrays, dict[str, Arrays]]:
    """One Keras SGD update (``step`` is unused: SGD has no step-dependent term)::

        momentum == 0:  w <- w - g * lr
        momentum != 0:  m <- m * momentum - g * lr
                        w <- w + m                             (nesterov=False)
                        w <- w + (m * momentum - g * lr)       (nesterov=True, with the new m)
    """
    _check(params, grads)
    new_params: Arrays = {}
    new_momentums: Arrays = {}
    for name, value in params.items():
        w = np.asarray(value, np.float64)
        g = np.asarray(grads[name], np.float64)
        if momentum != 0:
            m = np.asarray(state["momentums"][name], np.float64) * momentum - g * learning_rate
            new_momentums[name] = m
            w = w + (m * momentum - g * learning_rate) if nesterov else w + m
        else:
            w = w - g * learning_rate
        new_params[name] = w
    return new_params, {"momentums": new_momentums}


def adam_init(params: Arrays, amsgrad: bool = False) -> dict[str, Arrays]:
    """Adam's state: zero ``momentums`` (m) and ``velocities`` (v), plus ``velocity_hats`` with amsgrad."""
    state = {
        "momentums": {name: np.zeros(np.shape(value)) for name, value in params.items()},
        "velocities": {name: np.zeros(np.shape(value)) for name, value in params.items()},
    }
    if amsgrad:
        state["velocity_hats"] = {name: np.zeros(np.shape(value)) for name, value in params.items()}
    return state


def adam_step(
    params: Arrays,
    grads: Arrays,
    state: dict[str, Arrays],
    step: int,
    *,
    learning_rate: float = 0.001,
    beta_1: float = 0.9,
    beta_2: float = 0.999,
    epsilon: float = 1e-7,
    amsgrad: bool = False,
) -> tuple[Arrays, dict[str, Arrays]]:
    """One Keras Adam update, ``step`` = t (1-based)::

        alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)      (bias correction folded into the rate)
        m <- m + (g - m) * (1 - beta_1)
        v <- v + (g^2 - v) * (1 - beta_2)
        v_hat <- max(v_hat, v); v := v_hat                    (amsgrad only)
        w <- w - (m * alpha) / (sqrt(v) + epsilon)            (epsilon outside the square root,
                                                               added to the uncorrected sqrt(v))
    """
    _check(params, grads)
    if step < 1:
        raise ValueError(f"step is {step}; it counts updates from 1 (Keras's iterations + 1)")
    beta_1_power = beta_1 ** float(step)
    beta_2_power = beta_2 ** float(step)
    alpha = learning_rate * math.sqrt(1.0 - beta_2_power) / (1.0 - beta_1_power)
    new_params: Arrays = {}
    new_state: dict[str, Arrays] = {"momentums": {}, "velocities": {}}
    if amsgrad:
        new_state["velocity_hats"] = {}
    for name, value in params.items():
        w = np.asarray(value, np.float64)
        g = np.asarray(grads[name], np.float64)
        m = state["momentums"][name] + (g - state["momentums"][name]) * (1.0 - beta_1)
        v = state["velocities"][name] + (np.square(g) - state["velocities"][name]) * (1.0 - beta_2)
        new_state["momentums"][name] = m
        new_state["velocities"][name] = v
        if amsgrad:
            v = np.maximum(state["velocity_hats"][name], v)
            new_state["velocity_hats"][name] = v
        new_params[name] = w - (m * alpha) / (np.sqrt(v) + epsilon)
    return new_params, new_state
