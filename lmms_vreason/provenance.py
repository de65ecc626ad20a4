"""Where a run's numbers came from: package versions, source commit, devices, checkpoint identity.

Two users, one set of functions: the backend records what only the running process knows (its
host, GPU, CUDA, the package versions it imported, the checkpoint snapshot it loaded, the model
arguments with their defaults, the data root) in ``vreason_run_info_rank<R>.jsonl`` beside
lmms-eval's output at start-up, one row per run; ``vreason bundle`` reads those rows and adds what is
too slow to compute at start-up on every rank (sha256 of every file of a local checkpoint, of every
evaluation file read). Importing this module loads neither torch nor lmms-eval.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import socket
import subprocess
import sys
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from lmms_vreason.benchmarks import DATA_ROOT_ENV

RUN_INFO_GLOB = "vreason_run_info_rank*.jsonl"
PACKAGES: tuple[str, ...] = (
    "lmms-vreason",
    "torch",
    "transformers",
    "lmms-eval",
    "accelerate",
    "qwen-vl-utils",
    "decord",
    "av",
    "huggingface-hub",
    "tokenizers",
    "numpy",
    "pydantic",
)
"""Distributions whose versions a run records (the project, the stack under it, the media decoders)."""
ENV_VARS: tuple[str, ...] = (
    DATA_ROOT_ENV,
    "CUDA_VISIBLE_DEVICES",
    "DECORD_EOF_RETRY_MAX",
    "HF_HUB_OFFLINE",
    "SLURM_JOB_ID",
    "SLURM_NNODES",
    "SLURM_NODEID",
)
"""Environment variables that change what a run reads or where it ran."""
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks (checkpoint shards are many GB)."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """Installed version of each distribution (None when it is not installed), and Python's."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def source_commit(package_dir: str | Path | None = None) -> dict[str, Any]:
    """The git commit of this package's source checkout and whether it had uncommitted changes.

    ``{"commit": None}`` when the package is not a git checkout's top-level ``lmms_vreason/`` (a
    wheel installed into a venv that happens to sit inside some repository does not count) or git
    is absent: the version is then all there is.
    """
    where = Path(package_dir) if package_dir is not None else Path(__file__).resolve().parent
    try:
        top = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "--show-toplevel"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if top.returncode != 0 or Path(top.stdout.strip()).resolve() != where.resolve().parent:
            return {"commit": None}
        commit = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=30
        )
        if commit.returncode != 0:
            return {"commit": None}
        status = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return {"commit": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def device_info(device: Any = None) -> dict[str, Any]:
    """torch's build (CUDA, cuDNN), the GPUs this process sees and the one it runs on."""
    import torch

    info: dict[str, Any] = {
        "device": None if device is None else str(device),
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["cudnn"] = torch.backends.cudnn.version()
        if device is not None and torch.device(device).type == "cuda":
            info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _hub_snapshot(repo_id: str, revision: str | None = None) -> Path | None:
    """The local snapshot folder of a hub model (``.../snapshots/<commit>``), or None if not cached."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except Exception:  # not cached, not a valid repo id, hub library errors: no local snapshot
        return None


def checkpoint_identity(
    pretrained: str, *, hash_files: bool = False, revision: str | None = None
) -> dict[str, Any]:
    """What ``pretrained`` named: a local folder (its files, sizes and, with ``hash_files``, sha256)
    or a hub model (repo id, the commit of the local snapshot, and its files' sha256).

    A hub snapshot's large files are blobs named by their sha256 (git LFS), so their hashes cost
    nothing; the small ones (configs, tokenizer) are hashed with ``hash_files``. ``revision`` picks
    the snapshot of that commit (what a run recorded), else the one ``main`` points at.
    """
    local = Path(pretrained).expanduser()
    if local.is_dir():
        files = {}
        for file in sorted(p for p in local.rglob("*") if p.is_file()):
            entry: dict[str, Any] = {"size": file.stat().st_size}
            if hash_files:
                entry["sha256"] = sha256_file(file)
            files[file.relative_to(local).as_posix()] = entry
        return {"kind": "local", "pretrained": pretrained, "path": str(local.resolve()), "files": files}
    snapshot = _hub_snapshot(pretrained, revision)
    if snapshot is None:
        return {"kind": "hub", "pretrained": pretrained, "repo_id": pretrained, "commit": revision}
    files = {}
    for file in sorted(p for p in snapshot.rglob("*") if p.is_file()):
        blob = file.resolve()
        entry = {"size": blob.stat().st_size}
        if _SHA256.fullmatch(blob.name):
            entry["sha256"] = blob.name
        elif hash_files:
            entry["sha256"] = sha256_file(blob)
        files[file.relative_to(snapshot).as_posix()] = entry
    return {
        "kind": "hub",
        "pretrained": pretrained,
        "repo_id": pretrained,
        "commit": snapshot.name,
        "snapshot": str(snapshot),
        "files": files,
    }


def _env_value(name: str) -> str:
    """An environment variable as recorded: the data root as an absolute path (a bundle made later,
    from another folder, must find the same files)."""
    value = os.environ[name]
    if name == DATA_ROOT_ENV and value.strip():
        return str(Path(value.strip()).expanduser().absolute())
    return value


def run_info(
    *, rank: int, world_size: int, device: Any, pretrained: str, model_args: Mapping[str, Any], label: str
) -> dict[str, Any]:
    """The row a backend records at start-up (see the module docstring)."""
    return {
        "run": label,
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "rank": rank,
        "world_size": world_size,
        "argv": list(sys.argv),
        "env": {name: _env_value(name) for name in ENV_VARS if name in os.environ},
        "versions": package_versions(),
        "source": source_commit(),
        "device": device_info(device),
        "checkpoint": checkpoint_identity(pretrained),
        "model_args": dict(model_args),
    }


def write_run_info(directory: str | Path, row: Mapping[str, Any]) -> Path:
    """Append one run-info row to ``<directory>/vreason_run_info_rank<R>.jsonl``."""
    path = Path(directory) / f"vreason_run_info_rank{row['rank']}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(row, default=str) + "\n")
    return path


def read_run_info(directory: str | Path) -> list[dict[str, Any]]:
    """Every run-info row under a folder (all ranks, all runs), in file then line order."""
    rows = []
    for file in sorted(Path(directory).rglob(RUN_INFO_GLOB)):
        with file.open(encoding="utf-8") as handle:
            rows += [json.loads(line) for line in handle if line.strip()]
    return rows
