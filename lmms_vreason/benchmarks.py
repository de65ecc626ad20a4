"""The six Video-R1 evaluation benchmarks: task names, data files, metric names, Table 1 columns.

One place for the contract between the task pack (``tasks/``), the configs (``model_configs/``)
and the report tools: a task named here reports the metric named here, in percent (0-100), under
the display name and in the column order given here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

HUB_DATASET = "Video-R1/Video-R1-eval"
DATA_ROOT_ENV = "VREASON_EVAL_ROOT"
"""Environment variable naming a local copy of the evaluation files and videos (overrides the hub)."""
DATA_CHECK_COMMAND = "vreason data check"
"""The project's command that checks a data folder (every missing-data message names it)."""


def data_download_command(local_dir: str) -> str:
    """The project's command that fetches the evaluation data into ``local_dir`` (every missing-data
    message names it, so the fix is one copy-paste away)."""
    import shlex

    return f"vreason data download --local-dir {shlex.quote(str(local_dir))}"


GROUP_TASK = "vreason_bench"
AVG_METRIC = "avg"
AVG_WO_MRA_METRIC = "avg_wo_mra"
PARSE_FAILURE_METRIC = "parse_failure_rate"
MEDIA_ERROR_METRIC = "media_error_rate"


@dataclass(frozen=True)
class Column:
    """One of the seven numbers of Table 1 (VSI-Bench contributes two)."""

    key: str
    label: str
    task: str
    metric: str
    eval_file: str
    in_avg_wo_mra: bool = True


TABLE1_COLUMNS: tuple[Column, ...] = (
    Column("vsi_acc", "VSI-Bench Acc", "vreason_vsibench_mc", "accuracy", "eval_vsibench.json"),
    Column(
        "vsi_mra", "VSI-Bench MRA", "vreason_vsibench_mra", "mra", "eval_vsibench.json", in_avg_wo_mra=False
    ),
    Column("videommmu", "VideoMMMU", "vreason_videommmu", "accuracy", "eval_videommmu.json"),
    Column("mmvu", "MMVU (mc)", "mmvu", "accuracy", "eval_mmvu.json"),
    Column("mvbench", "MVBench", "vreason_mvbench", "accuracy", "eval_mvbench.json"),
    Column("tempcompass", "TempCompass", "vreason_tempcompass", "accuracy", "eval_tempcompass.json"),
    Column("videomme", "VideoMME (wo sub)", "vreason_videomme", "accuracy", "eval_videomme.json"),
)

OPT_IN_TASKS: tuple[str, ...] = ("vreason_videommmu_lenient",)
"""Tasks of the pack that are not part of Table 1 (not in any group): variants scored otherwise than
Video-R1 scores, run only when named (``vreason_videommmu_lenient``: the lenient numerical rule)."""

VSI_GROUP_TASK = "vreason_vsibench"
"""Group over the two VSI-Bench tasks; reports accuracy, mra and their mean (``vsi_mean``)."""

VIDEOMME_DURATION_METRICS = ("accuracy_short", "accuracy_medium", "accuracy_long")

MEDIA_ERROR_PREFIX = "[vreason media error] "
"""A response that starts with this marks a sample whose video could not be read.

The backend returns it (followed by the reason, naming the file) instead of failing the run; the
task pack scores such a sample as wrong and counts it in ``media_error_rate``.
"""

NUMERIC_ERROR_PREFIX = "[vreason numeric error] "
"""A response that starts with this marks a sample whose logits became NaN/inf (broken weights, a
dtype overflow): decoding stopped there. Scored as wrong and counted in ``numeric_error_rate``."""
NUMERIC_ERROR_METRIC = "numeric_error_rate"

VSI_LABEL = "VSI-Bench"
"""Report-table column of both VSI-Bench tasks (Tables 5 and 6 show VSI-Bench as one benchmark)."""

TASK_TO_BENCHMARK: dict[str, str] = {
    col.task: VSI_LABEL if col.key.startswith("vsi_") else col.label for col in TABLE1_COLUMNS
}
BENCHMARK_ORDER: tuple[str, ...] = tuple(dict.fromkeys(TASK_TO_BENCHMARK.values()))


def benchmark_of(task: str) -> str:
    """The report column a task's samples go under; tasks not named here (tiny test tasks, other
    lmms-eval tasks) keep their own name."""
    return TASK_TO_BENCHMARK.get(task, task)


def ordered(benchmarks: Iterable[str]) -> list[str]:
    """Paper order for known benchmarks, then the others alphabetically."""
    names = set(benchmarks)
    known = [b for b in BENCHMARK_ORDER if b in names]
    return known + sorted(names - set(known))


def metric_of(task: str) -> str | None:
    """The Table 1 metric a known task reports (``accuracy`` or ``mra``), else ``None``."""
    return next((col.metric for col in TABLE1_COLUMNS if col.task == task), None)
