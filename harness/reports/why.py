"""WHY.md: why two "identical" LSTM models give different numbers, rendered from the report model.

Every number and every conclusion comes from the model (harness.reports.model), which read the run,
verdict and probe records: a statement such as "the APIs agree bitwise" appears only when every API
comparison in every record is bitwise equal, and a "nothing to fix" only when the probe measured
nothing (or only rounding) on every backend. The texts below describe what each probe compares and
the fix when it does differ; they assert nothing about the outcome.
"""

from __future__ import annotations

from harness.reports.model import PROBES_SCHEMA, CaseResult, Report, format_judged, format_number, format_short, format_tolerance

__all__ = ["PROBES_SCHEMA", "render_why"]

# Probe id -> (cause, what the probe compares, the fix when the two differ).
CAUSES: dict[str, tuple[str, str, str]] = {
    "identical_weights": (
        "The model-building API itself",
        "Sequential vs Functional, same weights (set_weights)",
        "Report it: with the same weights the APIs should give the same numbers.",
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
        "Compare with a tolerance, or predict with the same batch size.",
    ),
    "mixed_precision_policy": (
        "Dtype policy",
        "mixed_float16 vs float32, same weights",
        "Use the same dtype policy in both models (keras.config.set_dtype_policy or dtype=).",
    ),
    "kernel_path_all_true_mask": (
        "Backend kernel path",
        "no mask vs an all-true mask (some backends switch to another LSTM implementation)",
        "Compare with a tolerance: the two paths round differently.",
    ),
    "eager_call_versus_predict": (
        "Eager call versus predict",
        "model(x) vs model.predict(x), float32",
        "Compare like with like: call and predict run different code paths.",
    ),
}

SEED_CLAIMS = (
    ("seed_example1_stateful", "Example 1 (stateful Sequential vs Functional with copied weights) gives identical outputs."),
    ("seed_example2_separate_instances", "Example 2: two separate LSTM instances give 'different outputs' because each has its own weights and state."),
    ("seed_example3_shared_instance", "Example 3: reusing one instance is 'incorrect weight sharing' that 'drastically alters the dynamics'."),
)


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _plural(number: int, word: str) -> str:
    return f"{number} {word}" if number == 1 else f"{number} {word}s"


def _api_section(report: Report) -> list[str]:
    why = report.why
    title = {
        "bitwise": "With the same weights, the API changes nothing (bitwise)",
        "within": "With the same weights, the APIs agree within their bound, not always bitwise",
        "outside": "With the same weights, the APIs disagree in some cases",
        "none": "APIs: no case was built and compared in more than one API",
    }[why.api_outcome]
    lines = [f"## {title}", ""]
    for s in why.api:
        line = f"- {s.backend}: {s.bitwise} of {s.cases} cases built in several APIs are bitwise equal across APIs"
        if s.not_bitwise:
            line += f"; {s.within} within their bound; not bitwise: {', '.join(s.not_bitwise[:8])}" + (" ..." if len(s.not_bitwise) > 8 else "")
        lines.append(line + ".")
    return lines


def _probe_cell(report: Report, probe: str, backend: str) -> str:
    row = next((r for r in report.why.probes if r.probe == probe), None)
    cell = row.cells.get(backend) if row else None
    if cell is None or not cell.ran:
        return "not run"
    if cell.error:
        return f"error: {_cell(cell.error)}"
    return "0 (bitwise equal)" if cell.bitwise else format_short(cell.max_abs_diff)


def _conclusion(report: Report, probe: str, fix: str) -> str:
    row = next((r for r in report.why.probes if r.probe == probe), None)
    if row is None or row.outcome == "not run":
        return "Not measured."
    if row.outcome == "error":
        return "Not measured: the probe raised."
    if row.outcome == "bitwise":
        return "Nothing to fix: bitwise equal on every backend probed."
    if row.outcome == "rounding":
        worst = max((c.max_abs_diff or 0.0) for c in row.cells.values() if c.ran and c.error is None)
        return (f"Rounding only: at most {format_short(worst)}, within the float32 output atol "
                f"({format_tolerance(report.why.float32_atol)}); compare with a tolerance, not bitwise.")
    return fix


def _causes(report: Report) -> list[str]:
    why = report.why
    backends = why.probe_backends
    lines = ["## Causes, measured", ""]
    if not backends:
        return lines + ["Not measured: no probe records (python -m harness probe --backend NAME --out DIR)."]
    lines += [
        "Largest absolute difference between the two models' outputs, per backend (the probe models are built by "
        "harness/studies/probes.py). The last column follows from the numbers: \"nothing to fix\" only when every backend "
        "probed was bitwise equal.", "",
        "| cause | what was compared | " + " | ".join(backends) + " | what to do |",
        "|---|---|" + "---|" * len(backends) + "---|",
    ]
    measured = [row.probe for row in why.probes]
    for probe in [*(p for p in CAUSES if p in measured), *(p for p in measured if p not in CAUSES)]:
        cause, compared, fix = CAUSES.get(probe, (probe, "see harness/studies/probes.py", "Compare with a tolerance."))
        cells = [_probe_cell(report, probe, b) for b in backends]
        lines.append(f"| {cause} | {compared} | " + " | ".join(cells) + f" | {_cell(_conclusion(report, probe, fix))} |")
    return lines


def _seeds(report: Report) -> list[str]:
    pairs = report.why.seed_weights
    lines = ["## The same seed does not give the same weights on different backends", ""]
    if not pairs:
        return lines + ["Not measured: fewer than two backends recorded their seeded initial weights."]
    identical = all(difference == 0 for _, _, difference in pairs)
    if identical:
        lines[0] = "## The same seed gives the same weights on different backends"
    lines += [
        "keras.utils.set_random_seed(42), then the same model on each backend: the largest difference between the recorded "
        "initial weights." + ("" if identical else " Fix: generate weights once (NumPy) and load them with set_weights, or "
                              "save them on one backend and load them on the others."), "",
        "| backends | max weight difference |", "|---|---|",
    ]
    lines += [f"| {a} vs {b} | {format_short(d)} |" for a, b, d in pairs]
    return lines


def _impact_cell(report: Report, claim_id: str, backend: str) -> str:
    claim = next(c for c in report.claims if c.id == claim_id)
    impact = claim.impact(backend)
    if not impact.cases:
        return "-"
    if impact.raised == impact.cases:
        return f"raises ({_plural(impact.cases, 'case')})"
    raised = f", {impact.raised} raise" if impact.raised else ""
    return f"ratio up to {format_judged(impact.worst)} ({_plural(impact.cases, 'case')}{raised})"


def _bugs(report: Report) -> list[str]:
    seen = [c for c in report.claims if c.seen]
    lines = ["## Keras bugs that make numbers differ (found by the matrix)", ""]
    if not seen:
        return lines + ["No documented divergence explained a case in this run."]
    lines += [
        "Per backend, the cases each documented divergence explained (checked against its claim), and the layer kinds of "
        "those cases (`gru+lstm`: a stack of both): the largest ratio of "
        "error to tolerance against the float64 reference, with the absolute error; \"raises\" when the backend fails "
        "instead of computing. REPORT.md gives the details and upstream links.", "",
        "| divergence | layer kinds | " + " | ".join(report.backends) + " | reproducer |",
        "|---|---|" + "---|" * len(report.backends) + "---|",
    ]
    for claim in seen:
        cells = [_impact_cell(report, claim.id, b) for b in report.backends]
        kinds = ", ".join(claim.kinds)
        lines.append(f"| {claim.id} | {kinds} | " + " | ".join(cells) + f" | `{claim.reproducer or 'n/a'}` |")
    return lines


def _seed_cell(result: CaseResult | None) -> str:
    if result is None:
        return "not run"
    text = f"{result.verdict} against the reference"
    if result.items:
        text += f" (ratio {format_judged(result.judged)})"
    elif result.error is not None:
        text += f" (raised {result.error.type})"
    if result.api_agreement:
        text += "; APIs " + ("bitwise equal" if all(r.bitwise_equal for r in result.api_agreement)
                             else "within their bound" if all(r.within for r in result.api_agreement) else "disagree")
    if result.explained_by:
        text += f"; known: {', '.join(result.explained_by)}"
    return text


def _seed_article(report: Report) -> list[str]:
    present = [name for name, _ in SEED_CLAIMS if any(name in per_case for per_case in report.results.values())]
    if not present:
        return []
    lines = [
        "## The seed article's claims, decided", "",
        "The article in `../shared/seed/` explains Sequential/Functional differences with statefulness and instantiation. "
        "Its examples, rewritten in valid Keras 3 (its `batch_input_shape` does not exist in Keras 3), are run as cases:", "",
        "| claim | " + " | ".join(report.backends) + " |", "|---|" + "---|" * len(report.backends),
    ]
    for name, claim in SEED_CLAIMS:
        if name in present:
            lines.append(f"| {claim} | " + " | ".join(_cell(_seed_cell(report.results[b].get(name))) for b in report.backends) + " |")
    lines += [""] + _seed_conclusions(report)
    return lines


def _all_pass(report: Report, name: str) -> bool:
    results = [report.results[b].get(name) for b in report.backends]
    results = [r for r in results if r is not None]
    return bool(results) and all(r.verdict == "pass" for r in results)


def _seed_conclusions(report: Report) -> list[str]:
    sentences = []
    if _all_pass(report, "seed_example2_separate_instances"):
        sentences.append("With their weights loaded, example 2's separate instances match the reference of two independent "
                         "LSTMs on every backend run: they differ only because their weights differ.")
    if _all_pass(report, "seed_example3_shared_instance"):
        sentences.append("A shared instance (example 3) matches the reference of ordinary weight sharing on every backend run.")
    sentences += _shared_gradient_sentences(report)
    stateful = report.why.stateful
    counted = {b: n for b, n in stateful.items() if n[0]}
    if counted and all(bitwise == total for total, bitwise in counted.values()):
        known = sorted({
            f"{r.backend}: {', '.join(r.explained_by)}" for per_case in report.results.values() for r in per_case.values()
            if r.stateful and r.verdict == "known" and r.explained_by and r.api_agreement
        })
        sentence = ("Neither API handles statefulness differently: every stateful case built in several APIs is bitwise "
                    "equal across APIs (" + "; ".join(f"{b} {t} of {t}" for b, (t, _) in counted.items()) + ")")
        sentences.append(sentence + (f", including where a known divergence applies ({'; '.join(known)})." if known else "."))
    elif counted:
        sentences.append("Stateful cases bitwise equal across APIs: " + "; ".join(f"{b} {w} of {t}" for b, (t, w) in counted.items()) + ".")
    return [" ".join(sentences), ""] if sentences else []


def _shared_gradient_sentences(report: Report) -> list[str]:
    """The claim that a layer shared between two branches behaves differently 'due to the accumulation of gradients
    from distinct branches', against the gradient study (python -m harness gradients)."""
    data = report.gradients
    pairs = data.shared_pairs if data is not None else ()
    if not pairs:
        return []
    if not all(pair[3] for pair in pairs):
        failing = ", ".join(p[0] for p in pairs if not p[3])
        return [f"A shared layer's gradient is NOT the sum of two separate instances' gradients on {failing}: see REPORT.md."]
    ratios = [p[4] for p in pairs if p[4] is not None]
    shares = [p[5] for p in pairs if p[5] is not None]
    grads = {row.backend: row.verdict for row in data.rows if row.case == pairs[0][1]}
    return [
        "On the claim that the shared layer behaves differently 'due to the accumulation of gradients from distinct branches': "
        f"measured on {', '.join(p[0] for p in pairs)}, the shared layer's gradient (each backend's own autodiff) is the sum of the "
        "gradients of two separate instances holding the same weights"
        + (f", within {max(ratios):.2g} of the gradient tolerance" if ratios else "")
        + (f"; the two branches contribute different gradients (their norms split {min(shares):.0%} / {1 - min(shares):.0%})" if shares else "")
        + (f", and the shared model's gradients match the NumPy backward pass ({', '.join(f'{b} {v}' for b, v in sorted(grads.items()))})"
           if grads else "")
        + ". Accumulating the branches' gradients is what weight sharing means, on every backend alike: a shared model and a "
        "two-instance model differ in training because the separate instances receive separate updates (and start from "
        "different weights), not because of how gradients accumulate."
    ]


def render_why(report: Report) -> str:
    """WHY.md for a built report model."""
    why = report.why
    runs = ", ".join(f"{b} ({why.devices.get(b, '?')})" for b in why.backends)
    lines = [
        "# Why do two \"identical\" recurrent models (LSTM, GRU, SimpleRNN) give different numbers?", "",
        f"Generated by `python -m harness report` from the records in `{report.folder}/` (keras {', '.join(why.keras_versions) or '?'}; "
        f"backends and devices: {runs}). Every number below was measured; see REPORT.md for the full matrix.", "",
    ]
    for section in (_api_section, _causes, _seeds, _bugs, _seed_article):
        part = section(report)
        if part:
            lines += part + [""]
    return "\n".join(lines)
