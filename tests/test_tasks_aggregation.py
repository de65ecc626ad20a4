"""The task YAMLs as lmms-eval loads them: the metric contract, sampling settings and Table 1's averages.

The averages are checked twice through lmms-eval's own group code: from Table 1's published
per-benchmark numbers (they must give the published Avg columns), and on a real in-process run with
lmms-eval's ``dummy`` model on the fixture benchmark.
"""

from __future__ import annotations

import collections
import json
import statistics
from pathlib import Path

import pytest
from lmms_eval.api.group import ConfigurableGroup
from lmms_eval.evaluator import simple_evaluate
from lmms_eval.evaluator_utils import consolidate_group_results, get_task_list
from lmms_eval.tasks import TaskManager, get_task_dict
from lmms_vreason.tasks import utils

from lmms_vreason.benchmarks import (
    AVG_METRIC,
    AVG_WO_MRA_METRIC,
    DATA_ROOT_ENV,
    GROUP_TASK,
    MEDIA_ERROR_METRIC,
    NUMERIC_ERROR_METRIC,
    PARSE_FAILURE_METRIC,
    TABLE1_COLUMNS,
    VIDEOMME_DURATION_METRICS,
    VSI_GROUP_TASK,
)
from lmms_vreason.lmms.task_registry import task_dir
from lmms_vreason.testing.fixtures import make_fixture_bench


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_fixture_bench(tmp_path_factory.mktemp("bench"), seed=0)


@pytest.fixture(scope="module")
def manager() -> TaskManager:
    """Our folder only (lmms-eval's ~2,000 built-in YAMLs are not needed here)."""
    original = getattr(TaskManager.initialize_tasks, "__wrapped__", TaskManager.initialize_tasks)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TaskManager, "initialize_tasks", original)
        return TaskManager(include_path=str(task_dir()), include_defaults=False)


@pytest.fixture(scope="module")
def task_dict(bench: Path, manager: TaskManager) -> dict:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(DATA_ROOT_ENV, str(bench))
        return get_task_dict([GROUP_TASK], manager, "chat")


@pytest.fixture(scope="module")
def tasks(task_dict: dict) -> dict:
    return {output.task_name: output.task for output in get_task_list(task_dict)}


def records(bench: Path, eval_file: str) -> list[dict]:
    return json.loads((bench / eval_file).read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------- contract


def test_the_group_holds_the_seven_table1_tasks(tasks: dict) -> None:
    assert sorted(tasks) == sorted(column.task for column in TABLE1_COLUMNS)


@pytest.mark.parametrize("column", TABLE1_COLUMNS, ids=lambda c: c.key)
def test_each_task_reports_its_table1_metric_and_the_averages(tasks: dict, column) -> None:
    metrics = set(tasks[column.task].aggregation())
    assert {
        column.metric,
        AVG_METRIC,
        PARSE_FAILURE_METRIC,
        MEDIA_ERROR_METRIC,
        NUMERIC_ERROR_METRIC,
    } <= metrics
    assert (AVG_WO_MRA_METRIC in metrics) == column.in_avg_wo_mra
    assert tasks[column.task].config.dataset_kwargs["eval_file"] == column.eval_file
    assert all(
        tasks[column.task].higher_is_better()[m] is False
        for m in (PARSE_FAILURE_METRIC, MEDIA_ERROR_METRIC, NUMERIC_ERROR_METRIC)
    )


def test_videomme_reports_accuracy_by_duration(tasks: dict) -> None:
    assert set(VIDEOMME_DURATION_METRICS) <= set(tasks["vreason_videomme"].aggregation())


@pytest.mark.parametrize("column", TABLE1_COLUMNS, ids=lambda c: c.key)
def test_sampling_is_video_r1s(tasks: dict, column) -> None:
    kwargs = tasks[column.task].config.generation_kwargs
    assert kwargs == {
        "max_new_tokens": 1024,
        "do_sample": True,
        "temperature": 0.1,
        "top_p": 0.001,
        "until": [],
    }


def test_vsibench_is_split_by_problem_type(tasks: dict, bench: Path) -> None:
    rows = records(bench, "eval_vsibench.json")
    mc, mra = tasks["vreason_vsibench_mc"].eval_docs, tasks["vreason_vsibench_mra"].eval_docs
    assert len(mc) + len(mra) == len(rows)
    assert set(mc["problem_type"]) == {"multiple choice"} and set(mra["problem_type"]) == {"regression"}


def test_docs_carry_the_prompt_and_the_video(tasks: dict, bench: Path) -> None:
    task = tasks["mmvu"]
    row = records(bench, "eval_mmvu.json")[0]
    messages = task.doc_to_messages(task.eval_docs[0])
    assert messages[0]["content"][0] == {"type": "video", "url": str(bench / row["path"])}
    assert messages[0]["content"][1]["text"] == utils.build_prompt(
        row["problem"], row["problem_type"], row["options"]
    )


# ------------------------------------------------------------------------------------ Table 1 averages

# docs/method.md §4 (the paper's Table 1): the seven numbers (VSI Acc, VSI MRA, VideoMMMU, MMVU, MVBench,
# TempCompass, VideoMME), then Avg and Avg (wo mra).
TABLE1_ROWS = {
    "Qwen2.5-VL-7B": ((33.8, 22.3, 45.8, 61.3, 60.7, 72.4, 53.7), 50.0, 54.6),
    "V-Reason-7B (Lite)": ((37.3, 23.7, 47.4, 65.0, 60.6, 72.4, 53.5), 51.4, 56.0),
    "Video-R1-7B": ((30.9, 39.2, 48.8, 64.0, 64.1, 73.3, 58.7), 54.1, 56.6),
}
# Benchmark sizes differ a lot; a size-weighted mean would not reproduce the table.
SIZES = (2000, 3100, 900, 625, 4000, 1200, 2700)


@pytest.mark.parametrize("row", sorted(TABLE1_ROWS))
def test_group_reproduces_the_published_averages(task_dict: dict, tasks: dict, row: str) -> None:
    scores, avg, avg_wo_mra = TABLE1_ROWS[row]
    results: dict = collections.defaultdict(dict)
    for column, score, size in zip(TABLE1_COLUMNS, scores, SIZES, strict=True):
        for metric in tasks[column.task].aggregation():
            rate = metric in (PARSE_FAILURE_METRIC, MEDIA_ERROR_METRIC, NUMERIC_ERROR_METRIC)
            results[column.task][f"{metric},none"] = 0.0 if rate else score
            results[column.task][f"{metric}_stderr,none"] = "N/A"
        results[column.task]["samples"] = size

    results, _, _, _ = consolidate_group_results(results, collections.defaultdict(dict), task_dict)
    assert round(results[GROUP_TASK][f"{AVG_METRIC},none"], 1) == avg
    assert round(results[GROUP_TASK][f"{AVG_WO_MRA_METRIC},none"], 1) == avg_wo_mra
    assert results[GROUP_TASK][f"{AVG_METRIC},none"] == pytest.approx(statistics.fmean(scores))
    assert results[VSI_GROUP_TASK][f"{utils.VSI_MEAN_METRIC},none"] == pytest.approx(
        (scores[0] + scores[1]) / 2
    )
    assert (
        results[VSI_GROUP_TASK]["accuracy,none"] == scores[0]
        and results[VSI_GROUP_TASK]["mra,none"] == scores[1]
    )


def test_groups_are_configurable_groups(task_dict: dict) -> None:
    (group,) = task_dict
    assert isinstance(group, ConfigurableGroup) and group.group_name == GROUP_TASK
    assert [g.group_name for g in task_dict[group] if isinstance(g, ConfigurableGroup)] == [VSI_GROUP_TASK]


# ----------------------------------------------------------------------------------- a real lmms-eval run


@pytest.mark.parametrize("answer", ["B", "8"])
def test_dummy_model_run_through_lmms_eval(
    bench: Path, manager: TaskManager, monkeypatch: pytest.MonkeyPatch, answer: str
) -> None:
    """Every sample gets the same response; the expected numbers follow from the fixture's records."""
    response = f"<answer>{answer}</answer>"
    monkeypatch.setenv(DATA_ROOT_ENV, str(bench))
    out = simple_evaluate(
        model="dummy",
        model_args=f"response={response}",
        tasks=[GROUP_TASK],
        task_manager=manager,
        log_samples=True,
        bootstrap_iters=0,
    )
    results = out["results"]

    def keep(column, row: dict) -> bool:
        if column.task == "vreason_vsibench_mc":
            return row["problem_type"] != "regression"
        if column.task == "vreason_vsibench_mra":
            return row["problem_type"] == "regression"
        return True

    per_task, parse_failures, total = [], 0, 0
    for column in TABLE1_COLUMNS:
        rows = [row for row in records(bench, column.eval_file) if keep(column, row)]
        scores = [utils.score_response(response, row["problem_type"], row["solution"]) for row in rows]
        expected = statistics.fmean(score.value for score in scores)
        assert results[column.task][f"{column.metric},none"] == pytest.approx(expected), column.task
        assert results[column.task][f"{AVG_METRIC},none"] == pytest.approx(expected)
        assert len(out["samples"][column.task]) == len(rows)
        per_task.append(expected)
        parse_failures += sum(not score.parsed for score in scores)
        total += len(rows)

    group = results[GROUP_TASK]
    assert group[f"{AVG_METRIC},none"] == pytest.approx(statistics.fmean(per_task))
    assert group[f"{AVG_WO_MRA_METRIC},none"] == pytest.approx(statistics.fmean(per_task[:1] + per_task[2:]))
    assert group[f"{PARSE_FAILURE_METRIC},none"] == pytest.approx(100 * parse_failures / total)
    assert group[f"{MEDIA_ERROR_METRIC},none"] == 0.0
    assert results[VSI_GROUP_TASK][f"{utils.VSI_MEAN_METRIC},none"] == pytest.approx(
        statistics.fmean(per_task[:2])
    )

    videomme = records(bench, "eval_videomme.json")
    for duration in ("short", "medium", "long"):
        rows = [row for row in videomme if row["duration"] == duration]
        expected = statistics.fmean(
            utils.score_response(response, "multiple choice", r["solution"]).value for r in rows
        )
        assert results["vreason_videomme"][f"accuracy_{duration},none"] == pytest.approx(expected)
