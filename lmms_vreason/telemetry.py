"""Per-sample rows the backend writes as JSONL beside lmms-eval's outputs.

* Telemetry (``telemetry=true``): lmms-eval only records token counts; the paper's figures need the
  entropy dynamics and costs of every sample. The decode loop already holds these values on the
  device; they are copied to the host once per sample (never per token).
  ``<dir>/vreason_telemetry_rank<R>.jsonl``, one :class:`SampleTrace` per line.
* lr-grid responses (``lr_grid=...``): lmms-eval scores one response per request (the grid's first
  lr); every lr's response goes to ``<dir>/vreason_lr_grid_rank<R>.jsonl``, one
  :class:`GridResponse` per line, for ``vreason grid-score`` to score with the tasks' own code.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TELEMETRY_GLOB = "vreason_telemetry_rank*.jsonl"
GRID_RESPONSES_GLOB = "vreason_lr_grid_rank*.jsonl"


@dataclass
class SampleTrace:
    """Everything recorded about one generated sample.

    Per-token lists are indexed by decoding step t-1 (index 0 is the token sampled from the
    prefill logits). ``alpha`` holds the switch coefficient at every step (0 where no
    optimisation step ran); ``optimized`` marks the steps where the controller was updated.
    ``ema_beta`` and ``objective`` are the settings the EMA and α were computed with, so an
    analysis never has to assume them (None in rows written before they were recorded).
    ``frames_asked``/``frames_read`` hold, per video of the sample in prompt order, the frames the
    reading asked for and the distinct frames the clip gave (fewer when the clip is too short).
    """

    task: str
    doc_id: int
    rank: int = 0
    run: str = ""
    vreason: bool = False
    lite: bool = False
    ema_beta: float | None = None
    objective: str | None = None
    entropy: list[float] = field(default_factory=list)
    ema: list[float] = field(default_factory=list)
    alpha: list[int] = field(default_factory=list)
    optimized: list[bool] = field(default_factory=list)
    opt_steps: int = 0
    skipped_steps: int = 0
    video_tokens_before: int = 0
    video_tokens_after: int = 0
    frames_asked: list[int] = field(default_factory=list)
    frames_read: list[int] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    prefill_s: float = 0.0
    decode_s: float = 0.0
    peak_mem_bytes: int | None = None
    error: str | None = None

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), allow_nan=True)

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> SampleTrace:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in row.items() if k in names})


class TelemetryWriter:
    """Appends :class:`SampleTrace` rows to this rank's JSONL file, flushing each line."""

    def __init__(self, directory: str | Path, rank: int = 0) -> None:
        self.rank = rank
        self.path = Path(directory) / f"vreason_telemetry_rank{rank}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, trace: SampleTrace) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(trace.to_json() + "\n")


def read_traces(path: str | Path) -> Iterator[SampleTrace]:
    """Rows of one telemetry file, or of every telemetry file below a directory."""
    path = Path(path)
    files = sorted(path.rglob(TELEMETRY_GLOB)) if path.is_dir() else [path]
    for file in files:
        with file.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield SampleTrace.from_dict(json.loads(line))


@dataclass
class GridResponse:
    """One request's response at one learning rate of an lr grid."""

    task: str
    doc_id: int
    lr: float
    response: str
    output_tokens: int = 0
    opt_steps: int = 0
    skipped_steps: int = 0
    rank: int = 0
    run: str = ""
    error: str | None = None


class GridResponseWriter:
    """Appends :class:`GridResponse` rows to this rank's lr-grid file."""

    def __init__(self, directory: str | Path, rank: int = 0) -> None:
        self.rank = rank
        self.path = Path(directory) / f"vreason_lr_grid_rank{rank}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write_all(self, rows: Iterable[GridResponse]) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.writelines(json.dumps(dataclasses.asdict(row)) + "\n" for row in rows)


def read_grid_responses(directory: str | Path) -> list[GridResponse]:
    """Every lr-grid row under a run folder (all ranks)."""
    rows = []
    for file in sorted(Path(directory).rglob(GRID_RESPONSES_GLOB)):
        with file.open(encoding="utf-8") as fh:
            rows += [GridResponse(**json.loads(line)) for line in fh if line.strip()]
    return rows
