#!/bin/bash
# keras-parity on the lent GPU machine (no nox, no network there): Keras 3.15.1, namex and optree travel as wheels
# (.whl); the machine's own CUDA builds of JAX and PyTorch are measured. Everything runs at once on its 16 cores.
# Usage: bash .gpu/run2.sh PY WORK LIMIT_S    (PY the interpreter, WORK the results folder)
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${1:-python3}; WORK=${2:-/tmp/gpu}; LIMIT=${3:-420}
mkdir -p "$WORK/logs"
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
{
  date -u; nvidia-smi -L 2>&1; nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1; nproc
  KERAS_BACKEND=torch $PY -c 'import sys, numpy, keras; print(sys.version); print("numpy", numpy.__version__, "keras", keras.__version__)'
  for b in jax torch; do
    KERAS_BACKEND=$b $PY "$HERE/gpu_check.py" build $b; KERAS_BACKEND=$b $PY "$HERE/gpu_check.py" devices $b
  done
  echo "commit $(cat "$HERE/commit.txt")"
} > "$WORK/environment.txt" 2>&1
cat "$WORK/environment.txt"
launch() {  # name, backend, harness arguments...   (env CPU_ONLY=1: hide the GPU from the backend)
  local name=$1 backend=$2; shift 2
  local hide=()
  [ -n "${CPU_ONLY:-}" ] && hide=(env JAX_PLATFORMS=cpu CUDA_VISIBLE_DEVICES=)
  ( "${hide[@]}" env KERAS_BACKEND=$backend timeout -s TERM "$LIMIT" $PY -m harness "$@" > "$WORK/logs/$name.log" 2>&1; echo "exit $?" >> "$WORK/logs/$name.log" ) &
}
for p in default highest; do
  for k in 1 2 3 4 5; do launch run-jax-$p-$k jax run --backend jax --precision $p --out "$WORK/run-$p-jax-$k" --shard $k/5 --case-timeout 120 --quiet; done
  for k in 1 2; do launch run-torch-$p-$k torch run --backend torch --precision $p --out "$WORK/run-$p-torch-$k" --shard $k/2 --case-timeout 120 --quiet; done
  for b in jax torch; do
    launch gradients-$b-$p $b gradients --backend $b --precision $p --out "$WORK/studies-$p"
    launch training-$b-$p $b training --backend $b --precision $p --out "$WORK/studies-$p"
    launch faults-$b-$p $b faults --backend $b --precision $p --out "$WORK/studies-$p"
  done
done
if $PY -m harness training-mode --help > /dev/null 2>&1; then
  for b in jax torch; do launch training-mode-$b-default $b training-mode --backend $b --precision default --out "$WORK/studies-default"; done
fi
# The same versions on this machine's CPU: which findings come with the GPU, which with jax 0.11.2 / torch 2.11.0.
for k in 1 2 3 4; do CPU_ONLY=1 launch cpu-run-jax-$k jax run --backend jax --out "$WORK/cpu-run-jax-$k" --shard $k/4 --case-timeout 120 --quiet; done
CPU_ONLY=1 launch cpu-run-torch torch run --backend torch --out "$WORK/cpu-run-torch-1" --case-timeout 120 --quiet
for b in jax torch; do CPU_ONLY=1 launch cpu-gradients-$b $b gradients --backend $b --out "$WORK/cpu-studies"; done
# Reproducers of the GPU findings, on the GPU.
( for script in jax_gpu_fused_float64_wrong jax_gpu_fused_half_precision_unknown_output_type jax_gpu_gradients_against_cpu jax_fused_go_backwards_sequence_flipped half_precision_lstm_cannot_be_built; do
    echo "==== $script"; KERAS_BACKEND=jax timeout 120 $PY "$HERE/repro/$script.py" 2>&1 | tail -n 12; echo "exit ${PIPESTATUS[0]}"
  done > "$WORK/logs/repro-jax.log" 2>&1 ) &
wait
tail -n 2 "$WORK"/logs/*.log
date -u
