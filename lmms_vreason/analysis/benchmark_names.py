"""Display names and order of benchmarks for the report tables.

Tables 5 and 6 of the paper have one column per benchmark, with VSI-Bench as a single column even
though this task pack splits it into a multiple-choice and a regression task. Tasks this module
does not know (tiny test tasks, other lmms-eval tasks) keep their task name and go last.
"""

from __future__ import annotations

from collections.abc import Iterable

from lmms_vreason.benchmarks import TABLE1_COLUMNS

VSI_LABEL = "VSI-Bench"


def _known() -> dict[str, str]:
    names: dict[str, str] = {}
    for col in TABLE1_COLUMNS:
        names[col.task] = VSI_LABEL if col.key.startswith("vsi_") else col.label
    return names


TASK_TO_BENCHMARK: dict[str, str] = _known()
BENCHMARK_ORDER: tuple[str, ...] = tuple(dict.fromkeys(TASK_TO_BENCHMARK.values()))


def benchmark_of(task: str) -> str:
    """The benchmark column a task's samples are reported under."""
    return TASK_TO_BENCHMARK.get(task, task)


def ordered(benchmarks: Iterable[str]) -> list[str]:
    """Paper order for known benchmarks, then the others alphabetically."""
    names = set(benchmarks)
    known = [b for b in BENCHMARK_ORDER if b in names]
    return known + sorted(names - set(known))


def metric_of(task: str) -> str | None:
    """The Table 1 metric a known task reports (``accuracy`` or ``mra``), else ``None``."""
    for col in TABLE1_COLUMNS:
        if col.task == task:
            return col.metric
    return None
