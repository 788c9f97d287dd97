"""The cases whose verdict needs attention, with everything the records say about why."""

from __future__ import annotations

from dataclasses import dataclass

from harness.reports.case_results import ATTENTION_VERDICTS, ApiAgreement, CaseResult, Item
from harness.reports.sections.cross_backend import CrossBackend, CrossRow


@dataclass(frozen=True)
class Failure:
    """A case on one backend whose verdict needs attention, with everything the records say about why."""

    result: CaseResult
    failing_items: tuple[Item, ...]
    other_problems: tuple[str, ...]  # problem lines that are not a failing item's message
    api_disagreements: tuple[ApiAgreement, ...]
    cross_distances: tuple[CrossRow, ...]  # this case's distance to the other backends (measurements)


def build_failures(results: dict[str, dict[str, CaseResult]], cross: CrossBackend) -> tuple[Failure, ...]:
    failures = []
    for backend, per_case in results.items():
        failing = [r for r in per_case.values() if r.verdict in ATTENTION_VERDICTS]
        failing.sort(key=lambda r: (ATTENTION_VERDICTS.index(r.verdict), -r.judged.key, r.case))
        for result in failing:
            items = tuple(sorted((i for i in result.items if not i.passed), key=lambda i: -i.judged.key))
            messages = {item.message for item in items}
            failures.append(Failure(
                result=result, failing_items=items,
                other_problems=tuple(p for p in result.problems if p not in messages),
                api_disagreements=tuple(row for row in result.api_agreement if not row.within),
                cross_distances=tuple(row for row in cross.rows if row.case == result.case and backend in row.backends),
            ))
    return tuple(failures)
