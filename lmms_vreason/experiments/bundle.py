"""One archive per run that a leaderboard can trust and re-create (``vreason bundle``).

``vreason bundle RUN_DIR [--out FILE]`` packs, as ``<name>/`` inside a ``.tar.gz`` (or a folder
when ``--out`` does not end in ``.tar.gz``/``.tgz``):

* ``run/``: lmms-eval's results and samples files, the config copy ``vreason run`` wrote, the
  run-info rows the backend recorded at start-up and any lr-grid responses, at their paths under
  RUN_DIR;
* ``data/``: the evaluation files the run's tasks read (``eval_*.json``), so the bundle can be
  scored again anywhere;
* ``provenance.json``: per results file the exact model and generation arguments, tasks, limit and
  seeds; package versions, source commit, host, GPU and CUDA as the run recorded them (else the
  bundling machine's, marked so); the checkpoint's identity (hub repo id + snapshot commit with its
  files' sha256, or sha256 of every file of a local folder); sha256 of each evaluation file and
  where it was read from; the telemetry summary (tokens, time, memory); the task pack's file hashes;
* ``MANIFEST.json``: size and sha256 of every other file of the bundle.

``vreason bundle --verify FILE`` checks every file against the manifest (edited, missing or extra
files fail, named), then recomputes every metric of every results file from the bundled samples
with the task pack's own scoring (lmms-eval's evaluator replaying the recorded responses on the
bundled evaluation files, :mod:`lmms_vreason.lmms.replay`) and compares it, sample by sample and
metric by metric, with the bundled samples and results. Any difference fails, naming the file.
Exit codes: 0 verified (or bundle written), 1 verification failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import shutil
import sys
import tarfile
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lmms_vreason.analysis.efficiency import summarize
from lmms_vreason.analysis.runs import (
    RESULTS_SUFFIX,
    SAMPLES_INFIX,
    SAMPLES_SUFFIX,
    RunInputError,
    load_traces,
)
from lmms_vreason.benchmarks import DATA_ROOT_ENV, HUB_DATASET
from lmms_vreason.cli import HelpFormatter, prog
from lmms_vreason.experiments.configs import CONFIG_COPY_NAME
from lmms_vreason.lmms.task_registry import task_dir
from lmms_vreason.provenance import (
    RUN_INFO_GLOB,
    checkpoint_identity,
    package_versions,
    read_run_info,
    sha256_file,
    source_commit,
)
from lmms_vreason.telemetry import GRID_RESPONSES_GLOB

BUNDLE_VERSION = 1
MANIFEST = "MANIFEST.json"
PROVENANCE = "provenance.json"
RUN = "run"
DATA = "data"
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")
RUN_FILE_GLOBS: tuple[str, ...] = (
    f"*{RESULTS_SUFFIX}",
    f"*{SAMPLES_INFIX}*{SAMPLES_SUFFIX}",
    CONFIG_COPY_NAME,
    RUN_INFO_GLOB,
    GRID_RESPONSES_GLOB,
)
"""What of a run folder goes into the bundle (telemetry goes in as its summary: it can be GBs)."""
ABS_TOL = REL_TOL = 1e-9
"""Tolerance of a recomputed metric: the same code on the same inputs, so only float noise."""


class BundleError(ValueError):
    """A run folder that cannot be bundled, or a path that is not a bundle."""


# ----------------------------------------------------------------------------- reading a run


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: not readable JSON ({exc})") from exc


def samples_files(results_path: Path) -> dict[str, Path]:
    """The samples files written with a results file: same folder, same ``<date_id>`` prefix."""
    date_id = results_path.name[: -len(RESULTS_SUFFIX)]
    prefix = f"{date_id}{SAMPLES_INFIX}"
    return {
        path.name[len(prefix) : -len(SAMPLES_SUFFIX)]: path
        for path in sorted(results_path.parent.glob(f"{prefix}*{SAMPLES_SUFFIX}"))
    }


def leaf_tasks(results: Mapping[str, Any]) -> list[str]:
    """The tasks that produced samples (``configs`` holds leaf tasks only, groups are aggregates)."""
    return sorted(results.get("configs") or {})


def read_samples(path: Path) -> list[dict[str, Any]]:
    """The rows of a samples file, each a JSON object (a broken line fails, naming the file)."""
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise BundleError(f"{path}: line {number} is not JSON ({exc})") from exc
        if not isinstance(row, dict) or "doc_id" not in row:
            raise BundleError(f"{path}: line {number} is not an lmms-eval sample (no doc_id)")
        rows.append(row)
    return rows


def _arg(model_args: str, key: str) -> str | None:
    for part in model_args.split(","):
        name, _, value = part.partition("=")
        if name.strip() == key:
            return value.strip()
    return None


def _run_summary(path: Path, run_dir: Path, data: Mapping[str, Any]) -> dict[str, Any]:
    """What one results file says about its run: arguments, tasks, seeds, lmms-eval's own records."""
    config = data.get("config") or {}
    configs = data.get("configs") or {}
    return {
        "results": (Path(RUN) / path.relative_to(run_dir)).as_posix(),
        "date": data.get("date"),
        "model": config.get("model"),
        "model_args": config.get("model_args"),
        "gen_kwargs": config.get("gen_kwargs"),
        "tasks": (config.get("resolved_cli_args") or {}).get("tasks"),
        "generation_kwargs": {task: cfg.get("generation_kwargs") for task, cfg in sorted(configs.items())},
        "eval_files": {
            task: (cfg.get("dataset_kwargs") or {}).get("eval_file") for task, cfg in sorted(configs.items())
        },
        "limit": config.get("limit"),
        "offset": config.get("offset"),
        "seeds": {
            "lmms_eval": {
                k: config.get(k) for k in ("random_seed", "numpy_seed", "torch_seed", "fewshot_seed")
            },
            "model_args_seed": _arg(str(config.get("model_args") or ""), "seed"),
        },
        "lmms_eval": {k: data.get(k) for k in ("lmms_eval_version", "git_hash", "date", "model_name")},
        "n_samples": data.get("n-samples"),
        "total_evaluation_time_seconds": data.get("total_evaluation_time_seconds"),
        "efficiency": data.get("efficiency"),
    }


def _telemetry_summary(run_dir: Path) -> dict[str, Any] | None:
    """Totals and per-benchmark means (``vreason efficiency``'s) of the run's telemetry, if any."""
    try:
        traces = load_traces(run_dir)
    except RunInputError:
        return None
    ok = [t for t in traces if t.error is None]
    peaks = [t.peak_mem_bytes for t in ok if t.peak_mem_bytes is not None]
    return {
        "samples": len(traces),
        "errors": len(traces) - len(ok),
        "input_tokens": sum(t.input_tokens for t in ok),
        "output_tokens": sum(t.output_tokens for t in ok),
        "prefill_s": sum(t.prefill_s for t in ok),
        "decode_s": sum(t.decode_s for t in ok),
        "opt_steps": sum(t.opt_steps for t in ok),
        "skipped_steps": sum(t.skipped_steps for t in ok),
        "peak_mem_bytes": max(peaks) if peaks else None,
        "ranks": sorted({t.rank for t in traces}),
        "per_benchmark": {bench: dataclasses.asdict(cost) for bench, cost in summarize(traces).items()},
    }


def _eval_file_source(eval_file: str, data_root: Path | None) -> tuple[Path, dict[str, Any]]:
    """Where an evaluation file is read from, as the task loader reads it: the data root, else the
    hub cache (with the dataset snapshot's commit)."""
    if data_root is not None:
        path = data_root / eval_file
        if not path.is_file():
            raise BundleError(f"{path}: the evaluation file is missing (data root {data_root})")
        return path, {"source": str(data_root)}
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(HUB_DATASET, eval_file, repo_type="dataset")
    if not isinstance(cached, str):
        raise BundleError(
            f"{eval_file}: no data root recorded or given and not in the hub cache; pass --data-root "
            f"(the folder the run's {DATA_ROOT_ENV} named)"
        )
    path = Path(cached)
    return path, {"source": f"hub:{HUB_DATASET}", "commit": path.parent.name}


def task_pack_hashes() -> dict[str, str]:
    """sha256 of every file of the installed task pack (YAMLs and the scoring code)."""
    root = task_dir()
    return {
        p.relative_to(root).as_posix(): sha256_file(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix in (".yaml", ".py")
    }


# ----------------------------------------------------------------------------- writing a bundle


def _manifest(root: Path) -> dict[str, Any]:
    files = {
        p.relative_to(root).as_posix(): {"size": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).as_posix() != MANIFEST
    }
    return {"bundle_version": BUNDLE_VERSION, "files": files}


def _latest_rank0(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    ranked = [row for row in rows if row.get("rank") == 0] or list(rows)
    return ranked[-1] if ranked else None


def build_bundle(run_dir: Path, folder: Path, data_root: Path | None = None) -> dict[str, Any]:
    """Write the bundle's files for ``run_dir`` into ``folder`` (which must not exist); returns the
    provenance record. Fails before writing anything when the run cannot be verified later."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise BundleError(f"run directory not found: {run_dir}")
    results_paths = sorted(run_dir.rglob(f"*{RESULTS_SUFFIX}"))
    if not results_paths:
        raise BundleError(f"{run_dir}: no lmms-eval results (*{RESULTS_SUFFIX}); is it an --output_path?")
    runs, eval_files = [], {}
    for path in results_paths:
        data = _read_json(path)
        if not isinstance(data, dict) or not isinstance(data.get("results"), dict):
            raise BundleError(f"{path}: not an lmms-eval results file (no 'results')")
        samples = samples_files(path)
        missing = [task for task in leaf_tasks(data) if task not in samples]
        if missing:
            raise BundleError(
                f"{path}: no samples file for {', '.join(missing)}; a bundle needs lmms-eval's "
                "--log_samples to be verifiable"
            )
        for task in leaf_tasks(data):
            read_samples(samples[task])  # a broken samples file fails now, not at verification
        summary = _run_summary(path, run_dir, data)
        eval_files.update({f: None for f in summary["eval_files"].values() if f})
        runs.append(summary)

    info_rows = read_run_info(run_dir)
    recorded = _latest_rank0(info_rows)
    if data_root is None and recorded is not None and recorded.get("env", {}).get(DATA_ROOT_ENV):
        data_root = Path(recorded["env"][DATA_ROOT_ENV])
    if data_root is None and os.environ.get(DATA_ROOT_ENV):
        data_root = Path(os.environ[DATA_ROOT_ENV])
    data_root = data_root.expanduser().absolute() if data_root is not None else None

    pretrained = (recorded or {}).get("model_args", {}).get("pretrained") or _arg(
        str(runs[-1]["model_args"] or ""), "pretrained"
    )
    checkpoint: dict[str, Any] | None = None
    if pretrained:
        commit = ((recorded or {}).get("checkpoint") or {}).get("commit")
        checkpoint = checkpoint_identity(pretrained, hash_files=True, revision=commit)
        if checkpoint["kind"] == "hub" and "files" not in checkpoint:
            print(f"warning: no local snapshot of {pretrained}: only its name is recorded", file=sys.stderr)

    sources = {eval_file: _eval_file_source(eval_file, data_root) for eval_file in sorted(eval_files)}

    folder.mkdir(parents=True)
    for pattern in RUN_FILE_GLOBS:
        for source in sorted(run_dir.rglob(pattern)):
            target = folder / RUN / source.relative_to(run_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    data_record = {}
    for eval_file, (source, where) in sources.items():
        (folder / DATA).mkdir(exist_ok=True)
        shutil.copy2(source, folder / DATA / eval_file)
        data_record[eval_file] = {**where, "size": source.stat().st_size, "sha256": sha256_file(source)}

    provenance = {
        "bundle_version": BUNDLE_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "run_dir": str(run_dir.absolute()),
        "runs": runs,
        "environment": (
            {
                "recorded": "at run time, rank 0 of the latest run",
                **{
                    k: recorded.get(k)
                    for k in (
                        "host",
                        "world_size",
                        "versions",
                        "source",
                        "device",
                        "env",
                        "argv",
                        "run",
                        "started",
                    )
                },
            }
            if recorded is not None
            else {
                "recorded": "at bundle time (the run recorded none: made without the V-Reason backend "
                "or before it recorded run info)",
                "versions": package_versions(),
                "source": source_commit(),
            }
        ),
        "ranks": sorted(
            {(row.get("rank"), row.get("host"), (row.get("device") or {}).get("gpu")) for row in info_rows},
            key=str,
        ),
        "model_args_resolved": (recorded or {}).get("model_args"),
        "checkpoint": checkpoint,
        "data": {"root": None if data_root is None else str(data_root), "files": data_record},
        "telemetry": _telemetry_summary(run_dir),
        "task_pack": task_pack_hashes(),
        "bundled_by": {"versions": package_versions(), "source": source_commit()},
    }
    (folder / PROVENANCE).write_text(json.dumps(provenance, indent=2, default=str) + "\n", encoding="utf-8")
    (folder / MANIFEST).write_text(json.dumps(_manifest(folder), indent=2) + "\n", encoding="utf-8")
    return provenance


def default_out(run_dir: Path) -> Path:
    """``<run_dir>.bundle.tar.gz`` beside the run folder."""
    resolved = Path(run_dir).absolute()
    return resolved.parent / f"{resolved.name}.bundle.tar.gz"


def is_archive(path: Path) -> bool:
    return path.name.endswith(ARCHIVE_SUFFIXES)


def bundle_name(out: Path) -> str:
    name = out.name
    for suffix in ARCHIVE_SUFFIXES:
        name = name.removesuffix(suffix)
    return name


def make_bundle(run_dir: Path, out: Path | None = None, data_root: Path | None = None) -> Path:
    """Bundle ``run_dir`` into ``out`` (archive or folder; an existing one is refused)."""
    out = Path(out) if out is not None else default_out(run_dir)
    if out.exists():
        raise BundleError(f"{out} exists; remove it or pass another --out")
    if not is_archive(out):
        try:
            build_bundle(run_dir, out, data_root)
        except BaseException:
            shutil.rmtree(out, ignore_errors=True)  # no half-written bundle left behind
            raise
        return out
    with tempfile.TemporaryDirectory(prefix="vreason-bundle-") as tmp:
        folder = Path(tmp) / bundle_name(out)
        build_bundle(run_dir, folder, data_root)
        out.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(out, "w:gz") as archive:
            archive.add(folder, arcname=folder.name)
    return out


# ----------------------------------------------------------------------------- reading a bundle


@contextlib.contextmanager
def opened_bundle(path: Path) -> Iterator[Path]:
    """The bundle's root folder: the folder itself, or an archive unpacked into a temporary one
    (regular files and folders only, no path may leave it)."""
    path = Path(path)
    if path.is_dir():
        yield path
        return
    if not path.is_file() or not is_archive(path):
        raise BundleError(f"not a bundle (a folder or a .tar.gz): {path}")
    with tempfile.TemporaryDirectory(prefix="vreason-verify-") as tmp:
        try:
            with tarfile.open(path, "r:gz") as archive:
                members = archive.getmembers()
                for member in members:
                    parts = Path(member.name).parts
                    if (
                        member.name.startswith("/")
                        or ".." in parts
                        or not (member.isfile() or member.isdir())
                    ):
                        raise BundleError(f"{path}: refusing archive member {member.name!r}")
                # members checked above; tarfile's own "data" filter too where this Python has it
                safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
                archive.extractall(tmp, members=members, **safe)
        except (tarfile.TarError, OSError, EOFError) as exc:
            raise BundleError(f"{path}: not a readable .tar.gz ({exc})") from exc
        roots = [p for p in Path(tmp).iterdir()]
        if len(roots) != 1 or not roots[0].is_dir():
            raise BundleError(f"{path}: a bundle archive holds exactly one top folder")
        yield roots[0]


def check_manifest(root: Path) -> list[str]:
    """Problems with the files against the manifest: missing, edited or unlisted files."""
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        return [f"{MANIFEST}: missing (not a bundle, or the manifest was removed)"]
    try:
        listed = json.loads(manifest_path.read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError) as exc:
        return [f"{MANIFEST}: unreadable ({exc})"]
    problems = []
    for name, entry in sorted(listed.items()):
        file = root / name
        if not file.is_file():
            problems.append(f"{name}: missing (listed in the manifest)")
        elif file.stat().st_size != entry.get("size") or sha256_file(file) != entry.get("sha256"):
            problems.append(f"{name}: its sha256 differs from the manifest's (the file was changed)")
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    for name in sorted(present - set(listed) - {MANIFEST}):
        problems.append(f"{name}: not in the manifest (added after bundling)")
    if PROVENANCE not in listed:
        problems.append(f"{PROVENANCE}: not in the manifest")
    return problems


# ----------------------------------------------------------------------------- recomputing metrics


def _response(row: Mapping[str, Any]) -> str:
    """The raw response lmms-eval logged for a single-request sample (``resps`` when the reasoning
    tags were stripped, else ``filtered_resps``)."""
    value = row.get("resps", row.get("filtered_resps"))
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, str):
        raise BundleError(f"doc {row.get('doc_id')}: not a single text response ({type(value).__name__})")
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _shown(value: Any) -> str:
    """A value as a message shows it (numpy scalars as plain numbers)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return repr(float(value))
    return "absent" if value is None else repr(value)


@contextlib.contextmanager
def _quiet(module: str) -> Iterator[None]:
    """Silence a library's loguru messages while it rescores (its errors still raise)."""
    from loguru import logger

    logger.disable(module)
    try:
        yield
    finally:
        logger.enable(module)


def _metric_keys(results: Mapping[str, Any], task: str) -> list[str]:
    metric_list = (results.get("configs") or {}).get(task, {}).get("metric_list") or []
    return [m["metric"] for m in metric_list if isinstance(m, dict) and "metric" in m]


@contextlib.contextmanager
def _data_root(folder: Path) -> Iterator[None]:
    """The task loader reads the bundled evaluation files while the replay runs."""
    before = os.environ.get(DATA_ROOT_ENV)
    os.environ[DATA_ROOT_ENV] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(DATA_ROOT_ENV, None)
        else:
            os.environ[DATA_ROOT_ENV] = before


def recompute(root: Path, results_name: str) -> list[str]:
    """Problems found by scoring one bundled results file's samples again with the task pack."""
    from lmms_vreason.lmms.replay import replay_evaluate

    results_path = root / results_name
    if not results_path.is_file():
        return [f"{results_name}: missing"]
    try:
        data = _read_json(results_path)
        samples = samples_files(results_path)
        bundled: dict[str, dict[int, dict[str, Any]]] = {}
        problems = []
        for task in leaf_tasks(data):
            if task not in samples:
                problems.append(f"{results_name}: the samples file of {task} is missing")
                continue
            rows = read_samples(samples[task])
            by_doc = {int(row["doc_id"]): row for row in rows}
            name = samples[task].relative_to(root).as_posix()
            if len(by_doc) != len(rows):
                problems.append(f"{name}: a doc_id appears more than once")
            bundled[task] = by_doc
        if problems:
            return problems
        responses = {
            task: {doc: _response(row) for doc, row in rows.items()} for task, rows in bundled.items()
        }
    except BundleError as exc:
        return [str(exc)]
    config = data.get("config") or {}
    missing: list[tuple[str, int]] = []
    try:
        with _data_root(root / DATA), _quiet("lmms_eval"):
            replayed = replay_evaluate(
                responses, config, model_args=str(config.get("model_args") or ""), missing=missing
            )
    except Exception as exc:  # reported as this results file's failure, with lmms-eval's reason
        return [f"{results_name}: lmms-eval could not score its samples again ({type(exc).__name__}: {exc})"]
    problems = []
    for task, doc in missing:
        name = samples[task].relative_to(root).as_posix()
        problems.append(f"{name}: no sample for doc_id {doc}, which the task's data holds")
    for task, rows in replayed["samples"].items():
        if task not in samples:
            problems.append(f"{results_name}: lmms-eval scored {task}, which has no samples file here")
            continue
        name = samples[task].relative_to(root).as_posix()
        seen = set()
        for new in rows:
            doc = int(new["doc_id"])
            seen.add(doc)
            old = bundled.get(task, {}).get(doc)
            if old is None:
                continue
            for key in ("target", "filtered_resps", *_metric_keys(data, task)):
                new_value = new.get(key)
                if key == "target":
                    new_value = str(new_value)
                if key == "filtered_resps" and isinstance(new_value, list) and len(new_value) == 1:
                    new_value = new_value[0]
                if not _same(old.get(key), new_value):
                    problems.append(
                        f"{name}: doc {doc} {key} is {_shown(old.get(key))}, "
                        f"the task pack gives {_shown(new_value)}"
                    )
        extra = sorted(set(bundled.get(task, {})) - seen)
        if extra:
            problems.append(f"{name}: doc_ids {extra[:5]} are not among the task's docs")
    for section in ("results", "groups"):
        recorded, fresh = data.get(section) or {}, replayed.get(section) or {}
        for task in sorted(set(recorded) | set(fresh)):
            old_entry, new_entry = recorded.get(task) or {}, fresh.get(task) or {}
            for key in sorted(set(old_entry) | set(new_entry)):
                if key == "alias" or "," not in key:
                    continue
                if not _same(old_entry.get(key), new_entry.get(key)):
                    problems.append(
                        f"{results_name}: {section}.{task}.{key} is {_shown(old_entry.get(key))}, "
                        f"recomputed from the samples: {_shown(new_entry.get(key))}"
                    )
    for task, counts in (replayed.get("n-samples") or {}).items():
        if not _same((data.get("n-samples") or {}).get(task), counts):
            problems.append(f"{results_name}: n-samples of {task} differ from the samples'")
    return problems


@dataclasses.dataclass(frozen=True)
class Verification:
    """What ``--verify`` found: problems (empty when the bundle holds), and what was checked."""

    problems: tuple[str, ...]
    files: int
    results: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_bundle(path: Path) -> Verification:
    """Check a bundle's files against its manifest and recompute every metric from its samples."""
    with opened_bundle(path) as root:
        problems = check_manifest(root)
        files = sum(1 for p in root.rglob("*") if p.is_file())
        try:
            provenance = json.loads((root / PROVENANCE).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return Verification((*problems, f"{PROVENANCE}: unreadable ({exc})"), files, ())
        listed = [run["results"] for run in provenance.get("runs", [])]
        present = sorted(p.relative_to(root).as_posix() for p in (root / RUN).rglob(f"*{RESULTS_SUFFIX}"))
        for name in sorted(set(present) - set(listed)):
            problems.append(f"{name}: a results file that {PROVENANCE} does not list")
        for eval_file, entry in sorted((provenance.get("data") or {}).get("files", {}).items()):
            file = root / DATA / eval_file
            if not file.is_file():
                problems.append(f"{DATA}/{eval_file}: missing (the run read it)")
            elif sha256_file(file) != entry.get("sha256"):
                problems.append(f"{DATA}/{eval_file}: its sha256 differs from {PROVENANCE}'s")
        for name in listed:
            problems += recompute(root, name)
        notes = []
        pack = provenance.get("task_pack") or {}
        changed = sorted(k for k, v in task_pack_hashes().items() if pack.get(k) != v)
        if changed:
            notes.append(
                "the installed task pack differs from the one that bundled the run in "
                + ", ".join(changed)
                + " (the metrics above were recomputed with the installed one)"
            )
        return Verification(tuple(problems), files, tuple(listed), tuple(notes))


# ----------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog("bundle"), description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "path", type=Path, help="RUN_DIR (an lmms-eval --output_path) or, with --verify, a bundle"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="archive (.tar.gz) or folder to write (default: RUN_DIR.bundle.tar.gz)",
    )
    parser.add_argument(
        "--data-root",
        type=Path,
        default=None,
        help=f"folder of the evaluation files the run read (default: the {DATA_ROOT_ENV} the run recorded, "
        f"else ${DATA_ROOT_ENV}, else the hub cache)",
    )
    parser.add_argument("--verify", action="store_true", help="verify the bundle PATH instead of writing one")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.verify:
            if args.out is not None or args.data_root is not None:
                raise BundleError("--verify takes only the bundle: --out and --data-root are for writing one")
            result = verify_bundle(args.path)
        else:
            out = make_bundle(args.path, args.out, args.data_root)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.verify:
        digest = f"; sha256 {sha256_file(out)}" if out.is_file() else ""
        print(f"bundle written: {out}{digest}")
        return 0
    for note in result.notes:
        print(f"note: {note}")
    if not result.ok:
        for problem in result.problems:
            print(f"FAILED: {problem}", file=sys.stderr)
        print(
            f"bundle verification FAILED: {len(result.problems)} problem(s) in {args.path}", file=sys.stderr
        )
        return 1
    print(
        f"bundle OK: {result.files} files match the manifest; every metric of {len(result.results)} results "
        f"file(s) recomputed from the samples with the task pack equals the bundled one"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
