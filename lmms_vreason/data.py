"""Get the evaluation data and check it before any GPU time is spent.

``vreason data download --local-dir DIR`` (or ``python -m lmms_vreason.data ...``) fetches the Hugging Face dataset
``Video-R1/Video-R1-eval`` (the six ``eval_*.json`` files and what the dataset ships beside them)
with ``huggingface_hub.snapshot_download``: a rerun resumes, and every file it could not fetch is
printed. ``vreason data check [ROOT]`` (``ROOT`` defaults to ``$VREASON_EVAL_ROOT``)
lists, per benchmark, the records found, the videos missing and the videos that cannot be decoded
(decord opens each one and reads its first frame, as the backend will), and exits 1 when anything is
missing or unreadable. Paths resolve exactly as the task loader and the backend resolve them
(:func:`lmms_vreason.media.files.record_video`, with its same-stem fallback to webm/mkv/avi).

:func:`main` takes ``argv``: it is the ``vreason data`` subcommand.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lmms_vreason.benchmarks import (
    DATA_CHECK_COMMAND,
    DATA_ROOT_ENV,
    HUB_DATASET,
    TABLE1_COLUMNS,
    data_download_command,
)
from lmms_vreason.cli import HelpFormatter, prog
from lmms_vreason.media.files import record_video

EVAL_FILES: tuple[str, ...] = tuple(dict.fromkeys(column.eval_file for column in TABLE1_COLUMNS))
"""The six Video-R1 evaluation files, in Table 1's order."""
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
SHOWN = 5
"""How many missing/unreadable paths are printed per benchmark (all of them with --verbose)."""


@dataclass
class BenchmarkCheck:
    """What ``check`` found for one evaluation file."""

    eval_file: str
    found: bool = False
    records: int = 0
    media: int = 0
    """Distinct media files the records name."""
    other_container: int = 0
    """Videos present only as a same-stem webm/mkv/avi file (read from that file)."""
    missing: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None

    @property
    def name(self) -> str:
        return self.eval_file.removeprefix("eval_").removesuffix(".json")

    @property
    def ok(self) -> bool:
        return self.found and self.error is None and not self.missing and not self.unreadable


def _probe(path: Path, data_type: str) -> str | None:
    """Why ``path`` cannot be read as the backend would read it, or ``None`` if it can."""
    from lmms_vreason.media.reader import MediaError, probe_video

    if data_type == "image":
        from PIL import Image

        try:
            with Image.open(path) as image:
                image.convert("RGB")
        except Exception as exc:  # PIL raises several types for broken files
            return f"cannot read image: {exc}"
        return None
    try:
        probe_video(path)
    except MediaError as exc:
        return str(exc)
    return None


def check_benchmark(root: Path, eval_file: str, *, decode: bool = True) -> BenchmarkCheck:
    """Records, missing and unreadable media of one evaluation file under ``root``."""
    report = BenchmarkCheck(eval_file)
    path = root / eval_file
    if not path.is_file():
        return report
    report.found = True
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
        media = {}
        for record in records:
            named = Path(record["path"]).expanduser()
            media[str(named if named.is_absolute() else root / named)] = (
                record_video(record["path"], root),
                str(record.get("data_type") or "video"),
            )
    except (ValueError, KeyError, TypeError) as exc:
        report.error = f"cannot read the records: {type(exc).__name__}: {exc}"
        return report
    report.records, report.media = len(records), len(media)
    for named, (resolved, data_type) in sorted(media.items()):
        if not resolved.is_file():
            report.missing.append(named)
            continue
        if str(resolved) != named:
            report.other_container += 1
        if decode and (reason := _probe(resolved, data_type)) is not None:
            report.unreadable.append((str(resolved), reason))
    return report


def check(
    root: Path,
    *,
    decode: bool = True,
    eval_files: Sequence[str] = EVAL_FILES,
    progress: Callable[[BenchmarkCheck], None] | None = None,
) -> list[BenchmarkCheck]:
    """:func:`check_benchmark` for every evaluation file."""
    reports = []
    for eval_file in eval_files:
        report = check_benchmark(root, eval_file, decode=decode)
        if progress is not None:
            progress(report)
        reports.append(report)
    return reports


def format_check(reports: Sequence[BenchmarkCheck], *, decode: bool = True, shown: int | None = SHOWN) -> str:
    """The table ``check`` prints, then the paths at fault (``shown`` per benchmark; ``None``: all)."""
    unreadable_head = "unreadable" if decode else "unreadable (not decoded)"
    lines = [
        f"| benchmark | eval file | records | media | missing | {unreadable_head} |",
        "|---|---|---|---|---|---|",
    ]
    for r in reports:
        state = "found" if r.found else "MISSING"
        lines.append(
            f"| {r.name} | {r.eval_file} ({state}) | {r.records} | {r.media} | {len(r.missing)} "
            f"| {len(r.unreadable) if decode else '-'} |"
        )
    for r in reports:
        if r.error:
            lines.append(f"{r.name}: {r.error}")
        if r.other_container:
            lines.append(
                f"{r.name}: {r.other_container} video(s) found as .webm/.mkv/.avi beside the .mp4 path"
            )
        for label, items in (
            ("missing", r.missing),
            ("unreadable", [f"{p}: {why}" for p, why in r.unreadable]),
        ):
            for item in items if shown is None else items[:shown]:
                lines.append(f"{r.name}: {label}: {item}")
            if shown is not None and len(items) > shown:
                lines.append(f"{r.name}: ... {len(items) - shown} more {label} (--verbose lists all)")
    return "\n".join(lines)


def next_steps(root: Path, reports: Sequence[BenchmarkCheck]) -> list[str]:
    """What to do about a check that failed, as commands where there is one."""
    hints = []
    absent = [r.eval_file for r in reports if not r.found]
    if absent:
        what = "no evaluation file" if len(absent) == len(reports) else f"{', '.join(absent)} absent"
        hints.append(f"{what}: fetch the dataset with: {data_download_command(str(root))} (resumable)")
    if any(r.missing for r in reports):
        hints.append(
            "missing videos: unpack the archives the download listed, and put the videos the dataset does "
            f"not ship (from each benchmark's own release) under {root} at the paths the records give"
        )
    return hints


def _archives(local_dir: Path) -> list[Path]:
    return sorted(
        p for p in local_dir.rglob("*") if p.is_file() and p.name.lower().endswith(ARCHIVE_SUFFIXES)
    )


def download(local_dir: Path, *, repo_id: str = HUB_DATASET, revision: str | None = None) -> int:
    """Fetch ``repo_id`` into ``local_dir`` (resumable); print what could not be fetched. Exit code."""
    from huggingface_hub import HfApi, constants, snapshot_download

    if constants.HF_HUB_OFFLINE:
        print(
            f"cannot download {repo_id}: the Hugging Face Hub is in offline mode (HF_HUB_OFFLINE=1). "
            "Unset it on a machine with network access, or copy the data there and point "
            f"{DATA_ROOT_ENV} at it.",
            file=sys.stderr,
        )
        return 2
    local_dir.mkdir(parents=True, exist_ok=True)
    failure: Exception | None = None
    try:
        snapshot_download(repo_id=repo_id, repo_type="dataset", revision=revision, local_dir=str(local_dir))
    except Exception as exc:  # network, auth, disk: reported below with the files still missing
        failure = exc
    try:
        files = HfApi().list_repo_files(repo_id, repo_type="dataset", revision=revision)
    except Exception as exc:
        print(f"cannot list the files of {repo_id}: {type(exc).__name__}: {exc}", file=sys.stderr)
        if failure is not None:
            print(f"download failed: {type(failure).__name__}: {failure}", file=sys.stderr)
        return 1
    missing = [name for name in files if not (local_dir / name).is_file()]
    for name in missing:
        print(f"not fetched: {name}", file=sys.stderr)
    if failure is not None or missing:
        reason = f" ({type(failure).__name__}: {failure})" if failure is not None else ""
        print(
            f"{len(missing)} of {len(files)} file(s) of {repo_id} not fetched{reason}; "
            "rerun the same command to resume",
            file=sys.stderr,
        )
        return 1
    print(f"{repo_id}: {len(files)} file(s) in {local_dir}")
    archives = _archives(local_dir)
    if archives:
        print(
            f"{len(archives)} archive(s) to unpack in {local_dir} so that the records' paths resolve: "
            + ", ".join(str(a.relative_to(local_dir)) for a in archives)
        )
    print(f"next: {DATA_ROOT_ENV}={local_dir.resolve()} {DATA_CHECK_COMMAND}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog("data"), description=__doc__.split("\n\n")[0], formatter_class=HelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    get = commands.add_parser(
        "download", help=f"fetch {HUB_DATASET} (resumable)", formatter_class=HelpFormatter
    )
    get.add_argument("--local-dir", type=Path, required=True, help="folder to fetch into (use it as ROOT)")
    get.add_argument("--repo-id", default=HUB_DATASET, help="Hugging Face dataset to fetch")
    get.add_argument("--revision", default=None, help="branch, tag or commit (default: main)")
    look = commands.add_parser(
        "check", help="records, missing and unreadable videos per benchmark", formatter_class=HelpFormatter
    )
    look.add_argument("root", nargs="?", type=Path, help=f"data folder (default: ${DATA_ROOT_ENV})")
    look.add_argument("--no-decode", action="store_true", help="only check that the files exist")
    look.add_argument("--only", action="append", choices=EVAL_FILES, help="check only this file (repeatable)")
    look.add_argument("--verbose", action="store_true", help="list every missing or unreadable path")
    args = parser.parse_args(argv)

    if args.command == "download":
        return download(args.local_dir, repo_id=args.repo_id, revision=args.revision)
    root = args.root or (Path(os.environ[DATA_ROOT_ENV]) if os.environ.get(DATA_ROOT_ENV) else None)
    if root is None:
        parser.error(
            f"give ROOT or set {DATA_ROOT_ENV} (no data yet? {data_download_command('DIR')}, then "
            f"{DATA_CHECK_COMMAND} DIR)"
        )
    root = root.expanduser().absolute()
    if not root.is_dir():
        print(
            f"{root} is not a directory; fetch the data with: {data_download_command(str(root))}",
            file=sys.stderr,
        )
        return 1
    decode = not args.no_decode
    reports = check(
        root,
        decode=decode,
        eval_files=args.only or EVAL_FILES,
        progress=lambda r: print(f"checked {r.eval_file}", file=sys.stderr, flush=True),
    )
    print(format_check(reports, decode=decode, shown=None if args.verbose else SHOWN))
    bad = [r.name for r in reports if not r.ok]
    if bad:
        print(f"not ready: {', '.join(bad)}", file=sys.stderr)
        for hint in next_steps(root, reports):
            print(hint, file=sys.stderr)
        return 1
    print(
        f"ready: {sum(r.records for r in reports)} records, every file present"
        + (" and readable" if decode else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
