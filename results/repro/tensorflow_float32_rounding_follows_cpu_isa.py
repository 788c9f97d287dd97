"""TensorFlow's float32 LSTM output on CPU depends on the vector instruction set its matmul kernels use.

TensorFlow's CPU matmuls (Eigen's contraction, built on oneDNN's sgemm) pick their kernel by the widest instruction set
the CPU has (SSE4.1, AVX, AVX2 + FMA, AVX-512), and each kernel orders and fuses its multiply-adds differently. The
results are all valid float32, but not the same bits, so one model moved between CPUs (an Intel Xeon with AVX-512 and
an AMD EPYC with AVX2, say) gives different numbers. An LSTM whose gate activation is linear (unbounded gates, the
carry amplified at every step) amplifies the difference: with this script's data (seed 11) the three runs differ by
up to 3e-7 at outputs of order 1 on an AMD EPYC with AVX2 (2.4e-7, 2.5e-7 and 3.0e-7 from float64).

keras-parity's recact_linear case (keras 3.15.1, TensorFlow 2.21.0, CPU) measured, at its worst element of |0.098|:
2.05e-6 from the float64 reference on an AMD EPYC with AVX2 + FMA, 1.45e-6 with ONEDNN_MAX_CPU_ISA=AVX and 1.35e-6
with SSE41 on the same machine, 5.6e-7 on an Intel Xeon. This script runs one such LSTM three times in fresh
processes, with oneDNN's instruction set as the CPU has it, limited to AVX and limited to SSE4.1, and prints each
output's largest difference from a float64 NumPy LSTM. Not a bug: float32 promises no particular rounding; but a
tolerance measured on one CPU model does not hold on another (keras-parity's linear_gates row was re-derived from both).

Run with keras and TensorFlow installed:
    KERAS_BACKEND=tensorflow python tensorflow_float32_rounding_follows_cpu_isa.py
Exits 1 when the three runs' outputs are not bitwise the same (the rounding follows the instruction set), 0 when they
are (a CPU with no AVX, or a TensorFlow whose kernels do not depend on it).
"""

import importlib.util
import json
import os
import subprocess
import sys

# Where this reproducer can run; elsewhere it exits 2 with one line (keras-parity's tests read REQUIRES).
REQUIRES = {"backends": ["tensorflow"], "modules": ["keras"], "gpu": False, "x64": False}
backend = os.environ.get("KERAS_BACKEND", "tensorflow")
missing = [name for name in REQUIRES["modules"] + [backend] if importlib.util.find_spec(name) is None]
if backend not in REQUIRES["backends"] or missing:
    print(f"cannot run here: needs KERAS_BACKEND in {REQUIRES['backends']} with {REQUIRES['modules']} installed"
          f"; found KERAS_BACKEND={backend}, missing {missing or 'nothing'}")
    sys.exit(2)

import numpy as np

batch, time, features, units = 3, 6, 5, 4
rng = np.random.default_rng(11)
x = rng.normal(size=(batch, time, features)).astype("float32")
kernel = rng.normal(0.0, 0.5, size=(features, 4 * units)).astype("float32")
recurrent = rng.normal(0.0, 0.5, size=(units, 4 * units)).astype("float32")
bias = rng.normal(0.0, 0.1, size=(4 * units,)).astype("float32")


def reference() -> np.ndarray:
    """Keras's LSTM in float64, gates in Keras's order i, f, c, o, recurrent_activation linear, activation tanh."""
    W, U, b = (np.asarray(a, np.float64) for a in (kernel, recurrent, bias))
    h = np.zeros((batch, units))
    c = np.zeros((batch, units))
    outputs = []
    for t in range(time):
        z = x[:, t].astype(np.float64) @ W + h @ U + b
        i, f, g, o = np.split(z, 4, axis=1)
        c = f * c + i * np.tanh(g)
        h = o * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs, axis=1)


def keras_output() -> list:
    import keras

    model = keras.Sequential([keras.Input((time, features)),
                              keras.layers.LSTM(units, recurrent_activation="linear", return_sequences=True)])
    model.layers[0].set_weights([kernel, recurrent, bias])
    return np.asarray(model.predict(x, verbose=0), np.float64).tolist()


if __name__ == "__main__" and os.environ.get("REPRO_CHILD") == "1":
    print(json.dumps(keras_output()))
    sys.exit(0)

expected = reference()
outputs = {}
for label, limit in [("as the CPU has it", None), ("ONEDNN_MAX_CPU_ISA=AVX", "AVX"), ("ONEDNN_MAX_CPU_ISA=SSE41", "SSE41")]:
    env = dict(os.environ, REPRO_CHILD="1", CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="3")
    env.pop("ONEDNN_MAX_CPU_ISA", None)
    if limit is not None:
        env["ONEDNN_MAX_CPU_ISA"] = limit
    child = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True)
    if child.returncode != 0:
        print(f"the run with oneDNN {label} failed:\n{child.stderr[-2000:]}")
        sys.exit(2)
    outputs[label] = np.asarray(json.loads(child.stdout.strip().splitlines()[-1]))
    error = np.abs(outputs[label] - expected)
    worst = np.unravel_index(np.argmax(error), error.shape)
    print(f"oneDNN {label:26s} max |keras - float64| {error.max():.3g} at {tuple(int(i) for i in worst)} "
          f"(expected {expected[worst]:.10f}, got {outputs[label][worst]:.10f})")

runs = list(outputs.values())
differ = any(not np.array_equal(runs[0], other) for other in runs[1:])
spread = max(float(np.max(np.abs(run - runs[0]))) for run in runs[1:])
print(f"largest difference between the runs: {spread:.3g} "
      f"({sum(int(np.sum(run != runs[0])) for run in runs[1:])} of {2 * runs[0].size} elements differ from the first run)")
print("the outputs differ between instruction sets" if differ else "the outputs are bitwise the same")
sys.exit(1 if differ else 0)
