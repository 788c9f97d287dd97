"""PyTorch, jit_compile=True: one pre-existing dict mutated inside the compiled predict step breaks Keras's graph.

Under torch.compile (Keras's jit_compile=True on PyTorch), once traced code has mutated a dict that existed before
tracing, dynamo graph-breaks at the next read of a mappingproxy ("mapping proxy affected by dictionary mutation",
torch/_dynamo/variables/dicts.py). Keras reads one on every layer call: Layer.__call__ builds a CallSpec, which calls
inspect.Signature.bind, which iterates Signature.parameters (a mappingproxy). The break falls inside Keras's
name_scope context manager, where dynamo cannot resume, so the whole frame runs eagerly and dynamo compiles the frames
it enters one by one (Layer.forward, Operation.__call__, Layer._setattr_hook, ...), recompiling them per layer type.
Without the dict mutation Keras's predict step compiles as one graph with no break.

Any call counter that does ``counts[name] += 1`` around a Keras backend function does this; keras-parity's kernel-path
observation did (harness.execute.kernels): measured on 2 shared CPU cores, its four jit_compile cases took 51-144 s
each, 14-72 s with a list instead. A counter that appends to a list is traced without a break. The outputs are
bitwise the same either way here. (The list run compiles the same graph as the first run and can hit inductor's
cache, so its time is not a compile time; the dict run's graphs differ.)

Run:  KERAS_BACKEND=torch python torch_compile_dict_mutation_breaks_keras_graph.py   (exits 1 while the break happens)
"""

import importlib
import importlib.util
import os
import sys

# Where this reproducer can run; elsewhere it exits 2 with one line (keras-parity's tests read REQUIRES).
REQUIRES = {"backends": ["torch"], "modules": ["keras"], "gpu": False, "x64": False}
backend = os.environ.get("KERAS_BACKEND", "tensorflow")
missing = [name for name in REQUIRES["modules"] + [backend] if importlib.util.find_spec(name) is None]
if backend not in REQUIRES["backends"] or missing:
    print(f"cannot run here: needs KERAS_BACKEND in {REQUIRES['backends']} with {REQUIRES['modules']} installed"
          f"; found KERAS_BACKEND={backend}, missing {missing or 'nothing'}")
    sys.exit(2)

import logging
import time

import keras
import numpy as np
import torch
from torch._dynamo.utils import counters

batch, steps, features = 3, 8, 5
rng = np.random.default_rng(20261202)
x = rng.normal(size=(batch, steps, features)).astype("float32")
weights = None  # drawn once, for the first model's shapes, and loaded into every model


def build() -> keras.Model:
    global weights
    model = keras.Sequential([keras.Input((steps, features)), keras.layers.LSTM(6, return_sequences=True),
                              keras.layers.LSTM(4)])
    if weights is None:
        weights = [rng.normal(scale=0.5, size=w.shape).astype("float32") for w in model.get_weights()]
    model.set_weights(weights)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse", jit_compile=True)
    return model


class RecompileCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Recompiling function"):
            self.count += 1


torch._logging.set_logs(recompiles=True)
recompile_log = logging.getLogger("torch._dynamo.guards.__recompiles")
recompile_log.propagate = False  # counted here, not printed
recompiles = RecompileCounter()
recompile_log.addHandler(recompiles)

# A call counter around Keras's lstm where Keras looks it up (backend.lstm, and its aliases).
lstm_modules = [importlib.import_module(name) for name in
                ("keras.src.backend", "keras.src.backend.torch", "keras.src.backend.torch.rnn")]
original_lstm = lstm_modules[-1].lstm
counts_dict: dict[str, int] = {"lstm": 0}  # exists before tracing: mutating it is the trigger
counts_list: list[str] = []


def counted_in_dict(*args, **kwargs):
    counts_dict["lstm"] += 1
    return original_lstm(*args, **kwargs)


def counted_in_list(*args, **kwargs):
    counts_list.append("lstm")
    return original_lstm(*args, **kwargs)


def measure(label: str, wrapper) -> tuple[np.ndarray, int]:
    torch._dynamo.reset()
    counters.clear()
    recompiles.count = 0
    for module in lstm_modules:
        module.lstm = wrapper or original_lstm
    try:
        model = build()
        started = time.perf_counter()
        output = model.predict(x, batch_size=batch, verbose=0)
        seconds = time.perf_counter() - started
    finally:
        for module in lstm_modules:
            module.lstm = original_lstm
    breaks = sum(counters["graph_break"].values())
    print(f"{label:34s} first predict {seconds:5.1f} s; graph breaks {breaks:2d}; frames compiled "
          f"{counters['frames']['total']:3d}; graphs {counters['stats']['unique_graphs']:2d}; recompiles {recompiles.count:2d}")
    return output, breaks


print("backend:", keras.backend.backend(), torch.__version__, "keras", keras.__version__)
plain, plain_breaks = measure("no counter", None)
listed, list_breaks = measure("counter appending to a list", counted_in_list)
dicted, dict_breaks = measure("counter mutating an existing dict", counted_in_dict)
print(f"lstm calls counted: list {len(counts_list)}, dict {counts_dict['lstm']}")
print("outputs bitwise equal to the uncounted run:",
      f"list {plain.tobytes() == listed.tobytes()}, dict {plain.tobytes() == dicted.tobytes()}")
if dict_breaks > 0 and plain_breaks == 0:
    reasons = sorted({reason.splitlines()[0] for reason in counters["graph_break"]})
    print(f"BUG: the dict mutation broke Keras's compiled graph {dict_breaks} times: {reasons[:2]}")
    sys.exit(1)
print("no graph break from the dict mutation")
