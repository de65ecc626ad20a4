"""The one reader of run folders: lmms-eval's results and samples files and V-Reason's telemetry.

lmms-eval writes ``<output_path>/<model_name_sanitized>/<date_id>_results.json`` and, with
``--log_samples``, one ``<date_id>_samples_<task>.jsonl`` per task beside it (``date_id`` is
``YYYYMMDD_HHMMSS``). V-Reason's telemetry (``vreason_telemetry_rank<R>.jsonl``) goes to the
output path itself by default. Everything here searches a run folder recursively, so callers may
pass the output path or the model subfolder. The launcher (resume), the Table 1 collation and the
analysis tools all read runs through this module, so they agree on which file is the newest, what
counts as a metric and which ``--limit`` a result was made with.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lmms_vreason.telemetry import TELEMETRY_GLOB, SampleTrace, read_traces

RESULTS_SUFFIX = "_results.json"
SAMPLES_INFIX = "_samples_"
SAMPLES_SUFFIX = ".jsonl"


class RunInputError(ValueError):
    """Bad analysis input: a missing run directory, no telemetry or samples, mismatched tasks or docs."""


def require_dir(path: str | Path) -> Path:
    """The path as a directory, or a :class:`RunInputError` saying what is wrong with it."""
    path = Path(path)
    if not path.exists():
        raise RunInputError(f"run directory not found: {path}")
    if not path.is_dir():
        raise RunInputError(f"not a run directory (expected an lmms-eval --output_path): {path}")
    return path


# ----------------------------------------------------------------------------- results files


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class ResultsFile:
    """One lmms-eval results JSON: per-task metrics and the run settings lmms-eval recorded."""

    path: Path
    results: Mapping[str, Any]
    config: Mapping[str, Any]

    @property
    def limit(self) -> float | None:
        """The run's ``--limit``; None when it evaluated all samples (lmms-eval records None or -1)."""
        recorded = self.config.get("limit")
        return None if recorded in (None, -1, -1.0) else float(recorded)

    def metric(self, task: str, metric: str) -> tuple[float | None, float | None]:
        """(value, stderr) of ``metric`` for ``task`` (keys ``"<metric>,<filter>"``), else Nones.

        The ``none`` filter is preferred; with several other filters the first (sorted) is taken.
        """
        entry = self.results.get(task)
        if not isinstance(entry, Mapping):
            return None, None
        keys = [k for k in entry if isinstance(k, str) and "," in k and k.split(",", 1)[0] == metric]
        if not keys:
            return None, None
        key = f"{metric},none" if f"{metric},none" in keys else sorted(keys)[0]
        stderr = entry.get(f"{metric}_stderr,{key.split(',', 1)[1]}")
        return _number(entry.get(key)), _number(stderr)

    def tasks_with_metrics(self) -> set[str]:
        """Tasks that have at least one numeric metric (a task entry can exist without results)."""
        return {
            task
            for task, entry in self.results.items()
            if isinstance(entry, Mapping)
            and any(
                isinstance(key, str) and "," in key and "_stderr" not in key and _number(value) is not None
                for key, value in entry.items()
            )
        }


def read_results(path: str | Path) -> list[ResultsFile]:
    """Every readable results JSON under a run folder, oldest first; none for a missing folder.

    lmms-eval names them ``<date>_results.json``; the date prefix orders them (file times do not
    survive copies), the modification time only breaks ties. A file that is not JSON or has no
    ``results`` mapping (a run killed while writing) is skipped: it holds no usable results.
    """
    root = Path(path)
    if not root.is_dir():
        return []
    paths = sorted(root.rglob(f"*{RESULTS_SUFFIX}"), key=lambda p: (p.name, p.stat().st_mtime))
    files = []
    for file in paths:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(data, dict) and isinstance(data.get("results"), dict):
            config = data.get("config")
            files.append(ResultsFile(file, data["results"], config if isinstance(config, dict) else {}))
    return files


# ----------------------------------------------------------------------------- samples files


@dataclass(frozen=True)
class RunDir:
    """The lmms-eval files of one run; ``samples`` maps task name to its (latest) samples file."""

    path: Path
    samples: Mapping[str, Path]

    @property
    def label(self) -> str:
        """A default display name: the directory's own name."""
        return self.path.resolve().name


def _samples_task(file: Path) -> tuple[str, str]:
    """(date_id, task) from ``<date_id>_samples_<task>.jsonl``; task names may contain underscores."""
    stem = file.name[: -len(SAMPLES_SUFFIX)]
    date_id, _, task = stem.partition(SAMPLES_INFIX)
    return date_id, task


def open_run(path: str | Path) -> RunDir:
    """Locate the samples files of a run, for per-doc analysis.

    When a task was evaluated several times into the same directory, the newest ``date_id`` wins
    (that is what lmms-eval's own loaders do). Outputs of several models under one output path are
    refused rather than silently mixed.
    """
    root = require_dir(path)
    results = sorted(root.rglob(f"*{RESULTS_SUFFIX}"))
    sample_files = sorted(root.rglob(f"*{SAMPLES_INFIX}*{SAMPLES_SUFFIX}"))
    parents = sorted({f.parent for f in (*results, *sample_files)})
    if len(parents) > 1:
        listed = ", ".join(str(p) for p in parents)
        raise RunInputError(f"{root} holds outputs of several models/runs ({listed}); pass one of them")
    latest: dict[str, tuple[str, Path]] = {}
    for file in sample_files:
        date_id, task = _samples_task(file)
        if task and (task not in latest or date_id > latest[task][0]):
            latest[task] = (date_id, file)
    return RunDir(path=root, samples={t: f for t, (_, f) in sorted(latest.items())})


# ----------------------------------------------------------------------------- telemetry


def load_traces(path: str | Path, tasks: Iterable[str] | None = None) -> list[SampleTrace]:
    """All telemetry rows of a run, one per (task, doc_id), optionally only for some tasks.

    Telemetry files are appended to, so a rerun into the same directory repeats docs; the last row
    of a (task, doc_id) wins so that means are not weighted by how often a doc was rerun.
    """
    root = require_dir(path)
    folders = sorted({f.parent for f in root.rglob(TELEMETRY_GLOB)})
    if len(folders) > 1:
        listed = ", ".join(str(f) for f in folders)
        raise RunInputError(f"{root} holds telemetry of several runs ({listed}); pass one of them")
    try:
        rows = list(read_traces(root))
    except (json.JSONDecodeError, TypeError) as exc:
        raise RunInputError(f"malformed telemetry under {root}: {exc}") from exc
    if not rows:
        raise RunInputError(
            f"no telemetry ({TELEMETRY_GLOB}) under {root}; run the model with telemetry=True in --model_args"
        )
    wanted = set(tasks) if tasks is not None else None
    unique: dict[tuple[str, int], SampleTrace] = {}
    for row in rows:
        if wanted is None or row.task in wanted:
            unique[(row.task, row.doc_id)] = row
    if not unique:
        raise RunInputError(f"telemetry under {root} has no rows for tasks {sorted(wanted or [])}")
    return [unique[k] for k in sorted(unique)]


def trace_label(path: str | Path, traces: Iterable[SampleTrace]) -> str:
    """The run label recorded in the telemetry when it is unique, else the directory name."""
    names = {t.run for t in traces if t.run}
    return names.pop() if len(names) == 1 else Path(path).resolve().name
