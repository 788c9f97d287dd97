"""Why a performance target of issue 16 is not met: what the records show the time is spent on.

Each function returns sentences built only from measured figures (never from prose written by hand), for the
target kinds of ``bench_model``:

- ``main_job_why``: the sessions' CPU time over the machine's CPUs, the least wall time any packing of the
  sessions could reach (a CPU-bound job cannot be fixed by more parallelism on the same machine), and which
  backend's sessions use that CPU;
- ``parity_why``: the run record's per-case durations (the median case, the slowest cases by name and their share)
  and, when the overhead benchmark ran, how a case's time splits between Keras (build and run, which hold the
  tracing and compiling) and the harness's own parts;
- ``overhead_why``: the harness's own parts by their median share of a case;
- ``reference_why``: the reference forward against its own float64 matrix products (the floor under it), those
  products against float32 ones, and the load the record was measured under.

A figure a record does not hold is said to be not measured, never guessed.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the model imports this module; the types are only annotations here
    from harness.reports.bench_model import Kernels, KernelShape, Overhead, RunTiming
    from harness.reports.bench_sessions import MainJob, SessionTiming

KERAS_PARTS = ("build", "run")  # a case's parts that are Keras's own work (tracing and compiling happen in run)
HARNESS_PARTS = ("isolate", "data", "reference", "compare", "verdict", "write")


def _minutes(seconds: float) -> str:
    return f"{seconds / 60.0:.1f} min"


def main_job_why(main_job: MainJob | None, sessions: tuple[SessionTiming, ...], bound_min: float) -> list[str]:
    if main_job is None:
        return []
    timed = [session for session in sessions if session.slug in main_job.sessions]
    if not timed:
        return ["No session of the main job was timed: where its time went is not measured."]
    cpu_s = sum(session.cpu_s for session in timed)
    cpus = max(main_job.cpu_count, 1)
    floor_s = cpu_s / cpus
    lines = []
    if floor_s / 60.0 > bound_min:
        lines.append(f"The job is CPU-bound: its {len(timed)} timed sessions used {_minutes(cpu_s)} of CPU on {cpus} CPUs, so no "
                     f"packing of them on this machine takes less than {_minutes(floor_s)} ({floor_s / 60.0 / bound_min:.2f}x "
                     f"the {bound_min:g}-min target); more parallelism cannot reach it, only less work per case.")
    else:
        lines.append(f"The job is not CPU-bound: its {len(timed)} timed sessions used {_minutes(cpu_s)} of CPU on {cpus} CPUs "
                     f"(at least {_minutes(floor_s)} of wall time), against {_minutes(main_job.wall_s)} of wall time: the rest is "
                     f"waiting (sessions ordered by `requires`, installs, idle CPUs).")
    by_backend: dict[str, float] = {}
    for session in timed:
        key = session.parameter("backend") or "no backend"
        by_backend[key] = by_backend.get(key, 0.0) + session.cpu_s
    if cpu_s > 0:
        shares = ", ".join(f"{backend} {_minutes(seconds)} ({seconds / cpu_s:.0%})"
                           for backend, seconds in sorted(by_backend.items(), key=lambda item: -item[1]))
        lines.append(f"CPU time by backend: {shares}.")
    longest = max(timed, key=lambda session: session.wall_s)
    lines.append(f"The longest session, `{longest.session}`, took {_minutes(longest.wall_s)} of wall time alone.")
    return lines


def _share(overhead: Overhead, parts: tuple[str, ...]) -> float | None:
    shares = dict(overhead.shares)
    values = [shares.get(part) for part in parts]
    if any(value is None or not math.isfinite(value) for value in values):
        return None
    return sum(values)


def parity_why(run: RunTiming | None, overhead: Overhead | None) -> list[str]:
    lines = []
    if run is None or run.median_case_s is None or run.summed_durations_s <= 0:
        lines.append("No run record with per-case durations: which cases the time goes to is not measured.")
    else:
        lines.append(f"{run.cases} cases; the median case takes {run.median_case_s:.2f} s, and the cases' durations sum to "
                     f"{_minutes(run.summed_durations_s)}.")
        if run.slowest_cases:
            slowest_s = sum(seconds for _, seconds in run.slowest_cases)
            named = ", ".join(f"`{name}` {seconds:.1f} s" for name, seconds in run.slowest_cases)
            lines.append(f"The {len(run.slowest_cases)} slowest cases take {slowest_s / run.summed_durations_s:.0%} of that: {named}.")
    if overhead is None or overhead.quick:
        lines.append("How a case's time splits between Keras and the harness is not measured in this run (no full "
                     "`harness bench-overhead` record for this backend).")
    else:
        keras_share, harness_share = _share(overhead, KERAS_PARTS), _share(overhead, HARNESS_PARTS)
        if keras_share is not None and harness_share is not None:
            lines.append(f"In the {overhead.cases_ran} cases the overhead benchmark sampled, building and running the models in "
                         f"Keras (tracing and compiling happen in the first run) is {keras_share:.0%} of a case's time, and the "
                         f"harness's own parts ({', '.join(HARNESS_PARTS)}) {harness_share:.0%} (sums of median shares).")
        if overhead.import_keras_s is not None:
            lines.append(f"Importing Keras with this backend takes {overhead.import_keras_s:.1f} s, once per process.")
    return lines


def overhead_why(overhead: Overhead) -> list[str]:
    shares = [(part, share) for part, share in overhead.shares
              if part in HARNESS_PARTS and share is not None and math.isfinite(share)]
    if not shares:
        return ["The record holds no part shares: where the harness's time goes is not measured."]
    listed = ", ".join(f"{part} {share:.0%}" for part, share in sorted(shares, key=lambda item: -item[1]))
    return [f"The harness's own parts, by median share of a case: {listed}."]


def _worst_shape(part: str, kernels: tuple[Kernels, ...], dims: tuple[int, int, int, int]) -> tuple[Kernels, KernelShape] | None:
    found = []
    for record in kernels:
        for shape in record.shapes:
            ratio = shape.forward_ratio if part == "forward" else shape.backward_ratio
            if shape.dims == dims and ratio is not None and math.isfinite(ratio):
                found.append((ratio, record.backend, record, shape))
    if not found:
        return None
    _, _, record, shape = max(found, key=lambda item: (item[0], item[1]))
    return record, shape


def _seconds(timing: object) -> float | None:
    value = getattr(timing, "median_s", None)
    return value if value is not None and math.isfinite(value) and value > 0 else None


def reference_why(part: str, kernels: tuple[Kernels, ...], dims: tuple[int, int, int, int]) -> list[str]:
    worst = _worst_shape(part, kernels, dims)
    if worst is None:
        return []
    record, shape = worst
    forward, backward = _seconds(shape.reference_forward), _seconds(shape.reference_backward)
    matmuls64, matmuls32 = _seconds(shape.reference_matmuls_float64), _seconds(shape.reference_matmuls_float32)
    against = shape.forward_against if part == "forward" else shape.backward_against
    lines = []
    if matmuls64 is None or matmuls32 is None or forward is None:
        lines.append(f"The {record.backend} record holds no timing of the reference's matrix products alone: how much of the "
                     "reference is its floor is not measured.")
    else:
        lines.append(f"On {record.backend}'s record, the reference forward is {forward / matmuls64:.2f}x its own float64 matrix "
                     f"products alone (the rest is the time loop and the element-wise gate work), and those products are "
                     f"{matmuls64 / matmuls32:.2f}x the same products in float32 NumPy: the float64 precision alone costs that "
                     "much on this machine.")
        entry = next((item for item in shape.entries if item.entry == against), None)
        entry_s = _seconds(entry.timing) if entry is not None else None
        if part == "forward" and entry_s is not None:
            lines.append(f"{record.backend}'s `{against}` takes {entry_s / matmuls32:.2f}x NumPy's float32 products of the same "
                         "shapes (it fuses the step into compiled code).")
    if part == "backward" and forward is not None and backward is not None:
        lines.append(f"The reference backward is {backward / forward:.2f}x its forward (it runs the forward once, keeping "
                     "its gates, then steps back through time).")
    start, end = record.load_average
    cpus = record.cpu_count
    loads = [load for load in (start, end) if load is not None]
    if cpus and loads and max(loads) > cpus:
        lines.append(f"The record was measured under a load average of {max(loads):.2f} on {cpus} CPUs: the threads of the "
                     "matrix products competed with other work, and the ratio carries that.")
    return lines
