"""Score recorded responses with lmms-eval's own evaluator, as if a model had just produced them.

``simple_evaluate`` runs with a model that answers every request with the response recorded for its
(task, doc_id), so filters, reasoning-tag stripping, ``process_results``, aggregation, groups and
standard errors are exactly those of a real run: nothing of the tasks' scoring is re-implemented.
Two users: ``vreason grid-score`` scores every lr of a one-pass lr-grid run, ``vreason bundle
--verify`` recomputes a bundled run's metrics from its samples files.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

LMMS_EVAL_REASONING_TAGS = '[["<think>", "</think>"], ["<analysis>", "</analysis>"]]'
"""lmms-eval's command-line default, used when the run's results do not record its arguments."""

Responses = Mapping[str, Mapping[int, str]]
"""``{task: {doc_id: response}}``: the raw response of every request of a run."""


def replay_model(responses: Responses, missing: list[tuple[str, int]] | None = None) -> Any:
    """An lmms-eval model that returns the recorded response of each request.

    A request without one fails, naming its (task, doc_id); with a ``missing`` list it is answered
    with an empty response and recorded there instead, so a caller can name every gap at once.
    """
    import torch
    from lmms_eval.api.model import lmms

    class ReplayModel(lmms):
        """Answers every request with the response recorded for it."""

        is_simple = False

        def __init__(self) -> None:
            super().__init__()
            self._device = torch.device("cpu")

        @property
        def device(self) -> torch.device:
            return self._device

        def generate_until(self, requests: list) -> list[str]:
            gaps = [(r.args[4], r.args[3]) for r in requests if r.args[3] not in responses.get(r.args[4], {})]
            if gaps and missing is None:
                raise KeyError(f"no recorded response for (task, doc_id) {gaps[:5]}")
            if missing is not None:
                missing.extend(gaps)
            return [responses.get(r.args[4], {}).get(r.args[3], "") for r in requests]

        def generate_until_multi_round(self, requests: list) -> list[str]:
            raise NotImplementedError("replayed runs are single-round")

        def loglikelihood(self, requests: list) -> list:
            raise NotImplementedError("replayed runs only generate")

    return ReplayModel()


def replay_evaluate(
    responses: Responses,
    run_config: Mapping[str, Any],
    *,
    model_args: str,
    output_path: str | None = None,
    tracker: Any = None,
    datetime_str: str | None = None,
    missing: list[tuple[str, int]] | None = None,
) -> dict[str, Any]:
    """lmms-eval's results (with ``samples``) for ``responses``, evaluated with the settings the
    run recorded in its results' ``config`` (tasks, ``--limit``/``--offset``, seeds, CLI args).
    ``missing``: see :func:`replay_model`."""
    from lmms_eval import evaluator
    from lmms_eval.tasks import TaskManager

    from lmms_vreason.lmms.task_registry import register_task_dir

    ours = register_task_dir()
    resolved = dict(run_config.get("resolved_cli_args") or {})
    cli_args = argparse.Namespace(
        **{
            "reasoning_tags": LMMS_EVAL_REASONING_TAGS,
            "process_with_media": False,
            "agentic_trace_mode": "basic",
            **resolved,
            "model_args": model_args,
            "output_path": output_path,
        }
    )
    tasks = str(resolved.get("tasks") or ",".join(sorted(responses))).split(",")
    # Indexing lmms-eval's ~2000 own tasks takes seconds to minutes; the pack's tasks need only ours.
    manager = TaskManager("WARNING", include_path=str(ours), include_defaults=False)
    if not all(task in manager.all_tasks for task in tasks):
        manager = TaskManager("WARNING")
    limit = run_config.get("limit")
    seeds = {
        "random_seed": run_config.get("random_seed", 0),
        "numpy_random_seed": run_config.get("numpy_seed", 1234),
        "torch_random_seed": run_config.get("torch_seed", 1234),
        "fewshot_random_seed": run_config.get("fewshot_seed", 1234),
    }
    extra = {"datetime_str": datetime_str} if datetime_str else {}
    results = evaluator.simple_evaluate(
        model=replay_model(responses, missing),
        model_args=model_args,
        tasks=tasks,
        task_manager=manager,
        limit=None if limit in (None, -1) else limit,
        offset=int(run_config.get("offset") or 0),
        bootstrap_iters=int(run_config.get("bootstrap_iters", 100000)),
        log_samples=True,
        evaluation_tracker=tracker,
        cli_args=cli_args,
        **seeds,
        **extra,
    )
    if results is None:
        raise RuntimeError("lmms-eval returned no results for the replayed responses")
    return results
