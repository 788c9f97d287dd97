"""Which Keras the model builders run: Keras 3 (the ``keras`` package, every backend) or Keras 2 (the ``tf_keras``
package, TensorFlow only), and the few shims the builders need so that the same code runs on both.

The Keras API is chosen per process, like the backend: ``harness run --keras-api tf_keras`` (or the environment
variable ``KERAS_PARITY_KERAS_API=tf_keras``) makes ``harness.execute.backends.activate`` call ``select``, and
``harness.execute.models`` then builds every case with ``from harness.execute.keras_api import keras``: the Keras 3
package, or ``tf_keras`` in Keras-2 mode. Keras 3 itself is still imported (it selects and checks the backend);
only the models are built with Keras 2.

What Keras 2 lacks or spells differently, routed through here:

- ``convert_to_numpy`` and ``map_structure`` (Keras 3's ``keras.ops.convert_to_numpy`` and ``keras.tree``);
- ``use_cudnn``, which Keras 2's LSTM does not accept: dropped when it is ``"auto"`` (Keras 2 picks its kernel
  itself, like Keras 3's default); a case that asks for ``True`` or ``False`` (also ``kernel = "generic"``, which
  builds with ``use_cudnn=False``) cannot be expressed and is refused;
- ``kernel = "fused_on_cpu"`` drives Keras 3's fused-path code: refused on Keras 2;
- ``jit_compile = "auto"`` is Keras 3's; Keras 2's default is ``None`` (no XLA unless TensorFlow decides).

A case Keras 2 cannot express raises ``NotExpressible`` (one line: why) before anything is built; it is a
``KernelModeRefused`` (a configuration refused here by design), so the measure step records it as refused, not
as an error. Dtypes, masks and every other axis are measured
as they are: a difference there is a finding, not a refusal.
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType
from typing import Any, Callable

from harness.execute.backends import KernelModeRefused

KERAS_APIS = ("keras", "tf_keras")
KERAS_2 = "tf_keras"
ENV_VAR = "KERAS_PARITY_KERAS_API"
KERAS_2_BACKENDS = ("tensorflow",)
KERAS_2_INSTALL_HINT = ("install it with: pip install tensorflow-cpu==2.21.0 keras==3.15.1 && pip install --no-deps "
                        "tf-keras==2.21.0 (or run: nox -s \"parity(keras='tf_keras', backend='tensorflow')\")")


class NotExpressible(KernelModeRefused):
    """The case asks for something the selected Keras API cannot express; the message says what, in one line.
    Refused by design (harness.execute.measure records a KernelModeRefused as refused, not as an error)."""


def _check(name: str) -> str:
    if name not in KERAS_APIS:
        raise ValueError(f"unknown Keras API {name!r}; accepted: {', '.join(KERAS_APIS)}")
    return name


def selected() -> str:
    """The Keras API of this process: ``KERAS_PARITY_KERAS_API``, default ``keras`` (Keras 3)."""
    return _check(os.environ.get(ENV_VAR) or "keras")


def select(name: str) -> None:
    """Make this process build its models with ``name`` (``KERAS_APIS``); before harness.execute.models is imported."""
    os.environ[ENV_VAR] = _check(name)


def is_keras_2(api: str | None = None) -> bool:
    return (selected() if api is None else _check(api)) == KERAS_2


def package(api: str | None = None) -> ModuleType:
    """The module the builders use as ``keras``: Keras 3, or ``tf_keras`` in Keras-2 mode."""
    return importlib.import_module("tf_keras" if is_keras_2(api) else "keras")


def __getattr__(name: str) -> Any:
    # ``from harness.execute.keras_api import keras``: resolved when first asked for (after activation), so that
    # importing this module never imports a Keras.
    if name == "keras":
        return package()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --- what a case needs that Keras 2 cannot express ---------------------------------------------------


def refusal(case: Any, api: str | None = None) -> str | None:
    """Why ``case`` cannot be built with the Keras API ``api`` (default: the selected one), in one line; None when it can."""
    if not is_keras_2(api):
        return None
    if case.kernel == "fused_on_cpu":
        return ("Keras 2 (tf_keras) cannot express kernel = fused_on_cpu: it drives Keras 3's own fused-path code "
                "(keras.src.backend.*.rnn), which tf_keras does not run")
    if case.kernel == "generic":
        return ("Keras 2 (tf_keras) cannot express kernel = generic: it builds LSTM(use_cudnn=False), and Keras 2's "
                "LSTM has no use_cudnn argument (it picks its kernel itself)")
    for spec in _recurrent_specs(case.layers):
        value = spec.options.get("use_cudnn", "auto")
        if value != "auto":
            return (f"Keras 2 (tf_keras) cannot express use_cudnn={value}: its LSTM has no use_cudnn argument "
                    "(it picks its kernel itself, like Keras 3's default 'auto')")
    return None


def _recurrent_specs(layers: Any) -> list[Any]:
    found = []
    for spec in layers:
        if spec.inner is not None:
            found += _recurrent_specs([spec.inner])
        elif "use_cudnn" in spec.options:
            found.append(spec)
    return found


def activation_names(case: Any) -> list[str]:
    """Every activation a case's layers name (activation, recurrent_activation), in order, without repeats."""
    names: list[str] = []

    def visit(spec: Any) -> None:
        for key in ("activation", "recurrent_activation"):
            if isinstance(spec.options.get(key), str) and spec.options[key] not in names:
                names.append(spec.options[key])
        if spec.inner is not None:
            visit(spec.inner)

    for spec in case.layers:
        visit(spec)
    return names


def missing_activation(case: Any, known: Callable[[str], bool]) -> str | None:
    """Why a case cannot be built on Keras 2 because it names an activation ``known`` says Keras 2 lacks; None if none."""
    missing = [name for name in activation_names(case) if not known(name)]
    if not missing:
        return None
    return (f"Keras 2 (tf_keras) has no activation {', '.join(repr(name) for name in missing)} "
            "(added in Keras 3; tf_keras.activations.get raises)")


def _keras_2_knows(name: str) -> bool:
    try:
        package(KERAS_2).activations.get(name)
    except (ValueError, TypeError):
        return False
    return True


def check_expressible(case: Any, api: str | None = None) -> None:
    """Raise ``NotExpressible`` when ``case`` cannot be built with the selected Keras API (``refusal``, and on
    Keras 2 an activation tf_keras does not have: an activation it has under the same name is measured)."""
    reason = refusal(case, api)
    if reason is None and is_keras_2(api):
        reason = missing_activation(case, _keras_2_knows)
    if reason is not None:
        raise NotExpressible(reason)


def is_refusal(error: BaseException) -> bool:
    """Whether ``error`` (or what it wraps) is a ``NotExpressible``: a case refused by design, not an error."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, NotExpressible):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


# --- shims -------------------------------------------------------------------------------------------


def rnn_kwargs(kwargs: dict[str, Any], api: str | None = None) -> dict[str, Any]:
    """An LSTM's keyword arguments for the selected Keras: unchanged on Keras 3; on Keras 2 without use_cudnn
    when it is "auto" (any other value is refused, see ``refusal``)."""
    if not is_keras_2(api) or "use_cudnn" not in kwargs:
        return kwargs
    value = kwargs["use_cudnn"]
    if value != "auto":
        raise NotExpressible(f"Keras 2 (tf_keras) cannot express use_cudnn={value}: its LSTM has no use_cudnn argument")
    return {key: item for key, item in kwargs.items() if key != "use_cudnn"}


def jit_compile(value: Any, api: str | None = None) -> Any:
    """Model.compile's jit_compile: Keras 3's "auto" is Keras 2's default None; True and False are the same."""
    return None if is_keras_2(api) and value == "auto" else value


def convert_to_numpy(value: Any) -> Any:
    """keras.ops.convert_to_numpy on Keras 3; on Keras 2 the tensor's .numpy() (NumPy arrays pass through)."""
    if not is_keras_2():
        return package().ops.convert_to_numpy(value)
    import numpy as np

    numpy = getattr(value, "numpy", None)
    return np.asarray(numpy() if callable(numpy) else value)


def map_structure(function: Callable[[Any], Any], structure: Any) -> Any:
    """keras.tree.map_structure on Keras 3; on Keras 2 the same over lists, tuples and dicts (what models return)."""
    if not is_keras_2():
        return package().tree.map_structure(function, structure)
    return _map_plain(function, structure)


def _map_plain(function: Callable[[Any], Any], structure: Any) -> Any:
    if isinstance(structure, dict):
        return {key: _map_plain(function, value) for key, value in structure.items()}
    if isinstance(structure, (list, tuple)):
        mapped = [_map_plain(function, value) for value in structure]
        return type(structure)(mapped) if isinstance(structure, list) or type(structure) is tuple else type(structure)(*mapped)
    return function(structure)
