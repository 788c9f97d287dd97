"""Generate results/WHY.md: why two "identical" LSTM models give different numbers, from measurements.

Reads the run records (<backend>.json) and the probe records (<backend>.probes.json) in a results
folder; every number in WHY.md comes from them.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from harness.records import store as records
from harness.case.divergences import load_divergences

PROBES_SCHEMA = "keras-parity/probes"

# Probe id -> (cause, how it shows, the one-line fix). The numbers come from the probe records.
CAUSES: dict[str, tuple[str, str, str]] = {
    "identical_weights": (
        "The model-building API itself",
        "Sequential vs Functional, same weights (set_weights)",
        "Nothing to fix: with the same weights the API does not change the numbers.",
    ),
    "separately_initialized_weights": (
        "Separately initialized weights",
        "Sequential vs Functional, each with Keras's random initializers",
        "Copy the weights: functional.set_weights(sequential.get_weights()).",
    ),
    "same_seed_same_backend": (
        "Seeding does not make two builds equal",
        "keras.utils.set_random_seed(42) before each of two builds (Sequential, then Functional)",
        "Do not rely on seeds for equal weights: copy them with set_weights.",
    ),
    "stateful_carry_over": (
        "Stateful carry-over between calls",
        "a stateful model called twice on the same batch",
        "Call layer.reset_states() (every stateful LSTM) before each independent sequence.",
    ),
    "dropout_in_training_mode": (
        "Dropout in training mode",
        "LSTM(dropout=0.3, recurrent_dropout=0.3): training=True vs inference",
        "Compare in inference mode: model(x, training=False) or model.predict(x).",
    ),
    "shared_versus_separate_instances": (
        "Shared versus separate layer instances",
        "one LSTM instance on two branches vs two instances with their own weights",
        "Reuse the instance for shared weights; give separate instances the same weights if they must agree.",
    ),
    "predict_batch_size": (
        "Batch size",
        "predict(x, batch_size=1) vs predict(x) on the whole batch",
        "Nothing to fix beyond float32 rounding; compare with a tolerance, not bitwise.",
    ),
    "mixed_precision_policy": (
        "Dtype policy",
        "mixed_float16 vs float32, same weights",
        "Use the same dtype policy in both models (keras.config.set_dtype_policy or dtype=).",
    ),
    "kernel_path_all_true_mask": (
        "Backend kernel path",
        "no mask vs an all-true mask (some backends switch to another LSTM implementation)",
        "Nothing to fix beyond rounding; expect float32-rounding differences between paths.",
    ),
    "eager_call_versus_predict": (
        "Eager call versus predict",
        "model(x) vs model.predict(x), float32",
        "Nothing to fix in float32; in float64, predict rounds inputs to float32 (see below).",
    ),
}


def _fmt(value: float | None) -> str:
    if value is None or value != value:
        return "n/a"
    return "0 (bitwise equal)" if value == 0 else f"{value:.2g}"


def load_probe_records(folder: Path) -> dict[str, dict[str, Any]]:
    return records.read_backend_records(folder, "probes", PROBES_SCHEMA)


def _probe_cell(probes: dict[str, Any], name: str) -> str:
    entry = probes.get("probes", {}).get(name)
    if entry is None:
        return "not run"
    if entry.get("error"):
        return f"error: {entry['error']}"
    return _fmt(entry["max_abs_diff"])


def _seed_rows(probe_records: dict[str, dict[str, Any]]) -> list[str]:
    weights = {
        backend: data["probes"].get("seeded_initial_weights", {}).get("weights")
        for backend, data in probe_records.items()
    }
    weights = {backend: w for backend, w in weights.items() if w}
    rows = []
    for first, second in itertools.combinations(sorted(weights), 2):
        difference = max(
            float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(weights[first], weights[second])
        )
        rows.append(f"| {first} vs {second} | {_fmt(difference)} |")
    return rows


def _case(run_records: dict[str, dict[str, Any]], backend: str, name: str) -> dict[str, Any] | None:
    for case in run_records.get(backend, {}).get("cases", []):
        if case["case"] == name:
            return case
    return None


def _api_summary(run_records: dict[str, dict[str, Any]]) -> list[str]:
    lines = []
    for backend in sorted(run_records):
        cases = [c for c in run_records[backend]["cases"] if len(c["apis"]) > 1]
        bitwise = [c for c in cases if c["api_agreement"] and all(row["bitwise_equal"] for row in c["api_agreement"])]
        differing = [c["case"] for c in cases if c not in bitwise]
        tail = f"; not bitwise: {', '.join(differing[:8])}" if differing else ""
        lines.append(f"- {backend}: {len(bitwise)} of {len(cases)} cases built in several APIs are bitwise equal across APIs{tail}.")
    return lines


def _seed_claims(run_records: dict[str, dict[str, Any]]) -> list[str]:
    claims = [
        ("seed_example1_stateful", "Example 1 (stateful Sequential vs Functional with copied weights) gives identical outputs."),
        ("seed_example2_separate_instances", "Example 2: two separate LSTM instances give 'different outputs' because each has its own weights and state."),
        ("seed_example3_shared_instance", "Example 3: reusing one instance is 'incorrect weight sharing' that 'drastically alters the dynamics'."),
    ]
    lines = ["| claim | " + " | ".join(sorted(run_records)) + " |", "|---|" + "---|" * len(run_records)]
    for name, claim in claims:
        cells = []
        for backend in sorted(run_records):
            case = _case(run_records, backend, name)
            if case is None:
                cells.append("not run")
                continue
            agreement = case["api_agreement"]
            bitwise = bool(agreement) and all(row["bitwise_equal"] for row in agreement)
            cells.append(
                f"{case['status']} against the reference (max error {_fmt(records.worst_item(case, 'max_abs_error'))}); APIs "
                + ("bitwise equal" if bitwise else "differ")
                + (f"; known: {', '.join(case.get('known_divergences', []))}" if case["status"] == "known" else "")
            )
        lines.append(f"| {claim} | " + " | ".join(cells) + " |")
    return lines


def _count(number: int) -> str:
    return f"{number} case" if number == 1 else f"{number} cases"


def _divergence_rows(run_records: dict[str, dict[str, Any]]) -> list[str]:
    backends = sorted(run_records)
    lines = ["| divergence | " + " | ".join(backends) + " | reproducer |", "|---|" + "---|" * (len(backends) + 1)]
    for divergence in load_divergences():
        cells = []
        for backend in backends:
            hits = [c for c in run_records[backend]["cases"] if divergence.id in c.get("known_divergences", []) and c["status"] == "known"]
            if not hits:
                cells.append("-")
            elif any(c.get("measured_status") == "error" for c in hits):
                cells.append(f"raises ({_count(len(hits))})")
            else:
                worst = max((v for v in (records.worst_item(c, "max_abs_error") for c in hits) if v is not None), default=None)
                cells.append(f"up to {_fmt(worst)} ({_count(len(hits))})")
        lines.append(f"| {divergence.id} | " + " | ".join(cells) + f" | `{divergence.reproducer}` |")
    return lines


def render_why(folder: Path, run_records: dict[str, dict[str, Any]]) -> str:
    probe_records = load_probe_records(folder)
    backends = sorted(set(run_records) | set(probe_records))
    versions = next(iter(run_records.values()))["versions"] if run_records else {}
    lines = [
        "# Why do two \"identical\" LSTM models give different numbers?",
        "",
        f"Generated by `python -m harness report` from the records in `results/` (keras {versions.get('keras', '?')}, "
        f"backends: {', '.join(backends)}, CPU). Every number below was measured; see REPORT.md for the full matrix.",
        "",
        "## With the same weights, the API changes nothing",
        "",
    ]
    lines += _api_summary(run_records)
    lines += [
        "",
        "## Causes, measured",
        "",
        "Largest absolute difference between the two models' outputs (probe models: batch 4, 10 steps, 3 features, "
        "LSTM(16) and Dense(1), float32).",
        "",
        "| cause | what was compared | " + " | ".join(backends) + " | fix |",
        "|---|---|" + "---|" * len(backends) + "---|",
    ]
    for name, (cause, compared, fix) in CAUSES.items():
        cells = [_probe_cell(probe_records.get(b, {}), name) for b in backends]
        lines.append(f"| {cause} | {compared} | " + " | ".join(cells) + f" | {fix} |")
    lines += [
        "",
        "## The same seed does not give the same weights on different backends",
        "",
        "keras.utils.set_random_seed(42), then the same model on each backend: the largest difference between the "
        "initial weights (first 64 values of each weight). Fix: generate weights once (NumPy) and load them with set_weights, "
        "or save them on one backend and load them on the others.",
        "",
        "| backends | max weight difference |",
        "|---|---|",
    ]
    lines += _seed_rows(probe_records) or ["| n/a | fewer than two backends probed |"]
    lines += [
        "",
        "## Keras bugs that make numbers differ (found by the matrix)",
        "",
        "Largest error against the float64 reference among the cases each divergence explains; \"raises\" when the "
        "backend fails instead of computing. Each has a standalone reproducer; REPORT.md gives the details and upstream links.",
        "",
    ]
    lines += _divergence_rows(run_records)
    lines += [
        "",
        "## The seed article's claims, decided",
        "",
        "The article in `../shared/seed/` explains Sequential/Functional differences with statefulness and instantiation. "
        "Its examples, rewritten in valid Keras 3 (its `batch_input_shape` does not exist in Keras 3), are run as cases:",
        "",
    ]
    lines += _seed_claims(run_records)
    lines += [
        "",
        "Separate instances differ only because their weights differ: with their weights loaded, example 2 matches the "
        "reference of two independent LSTMs, and a shared instance (example 3) is ordinary weight sharing that the reference "
        "reproduces exactly. Neither API handles statefulness differently: the stateful cases are bitwise equal across APIs "
        "on every backend, including where JAX fails to carry the state at all.",
        "",
    ]
    return "\n".join(lines)
