"""The paper's trace figures (Fig. 1a/1d, 2b-d, 5) from telemetry, as PNG and PDF.

Figures are built on ``matplotlib.figure.Figure`` directly and saved with the Agg/PDF canvases, so
nothing here touches pyplot's global state or needs a display.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from lmms_vreason.analysis.cli import EXIT_OK, load_labelled_traces, run_main
from lmms_vreason.analysis.runs import RunInputError
from lmms_vreason.analysis.traces import (
    alpha_counts_before_peak,
    alpha_segments,
    ema_of,
    peak_index,
    ragged_mean,
)
from lmms_vreason.cli import HelpFormatter, prog
from lmms_vreason.telemetry import SampleTrace

Runs = Mapping[str, Sequence[SampleTrace]]
"""Run label -> that run's traces, in plotting order."""

PLUS_COLOR, MINUS_COLOR = "tab:red", "tab:blue"


def save_figure(fig: Figure, out_dir: str | Path, name: str) -> list[Path]:
    """Write ``name.png`` and ``name.pdf`` into ``out_dir``; returns both paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for path in paths:
        fig.savefig(path, dpi=150, bbox_inches="tight")
    return paths


def _color(i: int) -> str:
    return f"C{i % 10}"


def plot_mean_entropy(
    runs: Runs, out_dir: str | Path, *, min_alive: int = 1, name: str = "entropy_mean"
) -> list[Path]:
    """Fig. 1a / 2b: mean entropy and mean EMA vs token position per run, the EMA peak marked.

    Each position averages the samples still generating there; positions with fewer than
    ``min_alive`` samples are cut so a few long outputs do not dominate the tail. The lower panel
    shows how many samples each position averages.
    """
    fig = Figure(figsize=(8, 5.5))
    ax, ax_n = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    for i, (label, traces) in enumerate(runs.items()):
        color = _color(i)
        usable = [t for t in traces if t.entropy]
        entropy, alive = ragged_mean([t.entropy for t in usable])
        ema_mean, _ = ragged_mean([ema_of(t) for t in usable])
        short = np.flatnonzero(alive < min_alive)  # NaN entropies can make ``alive`` dip and recover
        keep = int(short[0]) if short.size else alive.size
        if keep == 0:
            continue
        pos = np.arange(1, keep + 1)
        ax.plot(pos, entropy[:keep], color=color, alpha=0.3, lw=0.8)
        ax.plot(pos, ema_mean[:keep], color=color, lw=2.0, label=f"{label} (n={len(usable)})")
        peak = peak_index(ema_mean[:keep])
        if peak is not None:
            ax.plot(pos[peak], ema_mean[peak], marker="v", ms=9, color=color, mec="black")
            ax.annotate(
                f"peak t={peak + 1}",
                (pos[peak], ema_mean[peak]),
                xytext=(4, 8),
                textcoords="offset points",
                color=color,
            )
        ax_n.plot(pos, alive[:keep], color=color, lw=1.2)
    ax.margins(y=0.12)
    ax.set_ylabel("entropy (nats)")
    ax.set_title("Mean entropy (thin) and its EMA (thick) over token position")
    if ax.has_data():
        ax.legend(fontsize=8)
    ax_n.set_ylabel("# samples")
    ax_n.set_xlabel("token position t")
    return save_figure(fig, out_dir, name)


def plot_sample_alpha(
    trace: SampleTrace, out_dir: str | Path, *, label: str = "", name: str = "sample_alpha"
) -> list[Path]:
    """Fig. 2c/d: one sample's entropy and EMA, shaded red where alpha = +1 and blue where -1."""
    fig = Figure(figsize=(8, 4))
    ax = fig.subplots()
    ema_values = ema_of(trace)
    segments, derived = alpha_segments(trace)
    for start, stop, alpha in segments:
        ax.axvspan(start + 0.5, stop + 0.5, color=PLUS_COLOR if alpha > 0 else MINUS_COLOR, alpha=0.15, lw=0)
    if trace.entropy:
        ax.plot(np.arange(1, len(trace.entropy) + 1), trace.entropy, color="0.55", lw=0.7, label="entropy")
    ax.plot(np.arange(1, len(ema_values) + 1), ema_values, color="black", lw=1.8, label="EMA")
    peak = peak_index(ema_values)
    if peak is not None:
        ax.axvline(peak + 1, color="black", ls="--", lw=0.8)
    handles, _ = ax.get_legend_handles_labels()
    handles += [
        Patch(color=PLUS_COLOR, alpha=0.3, label="α = +1"),
        Patch(color=MINUS_COLOR, alpha=0.3, label="α = −1"),
    ]
    ax.legend(handles=handles, fontsize=8)
    source = "derived from the EMA (no optimisation steps)" if derived else "recorded at optimisation steps"
    ax.set_title(f"{label + ': ' if label else ''}{trace.task} doc {trace.doc_id}; α {source}", fontsize=9)
    ax.set_xlabel("token position t")
    ax.set_ylabel("entropy (nats)")
    return save_figure(fig, out_dir, name)


def plot_alpha_histogram(runs: Runs, out_dir: str | Path, *, name: str = "alpha_histogram") -> list[Path]:
    """Fig. 5: counts of alpha = +1 and -1 among optimisation steps before each sample's EMA peak."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    counts = {
        label: np.sum([alpha_counts_before_peak(t) for t in traces], axis=0) for label, traces in runs.items()
    }
    counts = {label: c for label, c in counts.items() if np.ndim(c) == 1 and c.sum() > 0}
    width = 0.8 / max(len(counts), 1)
    for j, (label, (plus, minus)) in enumerate(counts.items()):
        bars = ax.bar(
            np.array([0, 1]) + (j - (len(counts) - 1) / 2) * width,
            [plus, minus],
            width,
            color=_color(j),
            label=label,
        )
        ax.bar_label(bars, fontsize=8)
    ax.set_xticks([0, 1], ["α = +1", "α = −1"])
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("# optimisation steps before the EMA peak")
    if counts:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no optimisation steps recorded", ha="center", va="center", transform=ax.transAxes)
    ax.set_title("α before the EMA entropy peak")
    return save_figure(fig, out_dir, name)


def plot_output_tokens(runs: Runs, out_dir: str | Path, *, name: str = "output_tokens") -> list[Path]:
    """Fig. 1d: distribution of output tokens per run (overlaid histograms and box plots).

    Samples whose media failed to load (``error`` set) generated nothing and are left out.
    """
    fig = Figure(figsize=(10, 4))
    ax_hist, ax_box = fig.subplots(1, 2)
    data = {
        label: np.array([t.output_tokens for t in traces if t.error is None], dtype=float)
        for label, traces in runs.items()
    }
    top = max((d.max() for d in data.values() if d.size), default=1.0)
    bins = np.linspace(0, max(top, 1.0), 31)
    for i, (label, values) in enumerate(data.items()):
        color = _color(i)
        mean = f"{values.mean():.0f}" if values.size else "n/a"
        ax_hist.hist(values, bins=bins, histtype="step", lw=1.6, color=color, label=f"{label} (mean {mean})")
    ax_hist.set_xlabel("output tokens")
    ax_hist.set_ylabel("# samples")
    ax_hist.legend(fontsize=8)
    ax_box.boxplot(list(data.values()), showmeans=True)
    ax_box.set_xticks(range(1, len(data) + 1), list(data), rotation=20, fontsize=8)
    ax_box.set_ylabel("output tokens")
    fig.suptitle("Output tokens per sample")
    return save_figure(fig, out_dir, name)


# ----------------------------------------------------------------------------- CLI

CLI_HELP = """Plot V-Reason telemetry of one or more runs (Fig. 1a/1d, 2b-d and 5 of the paper).

    vreason plot runs/base runs/vreason --labels Qwen2.5-VL V-Reason --out figs/

Each RUN is an lmms-eval ``--output_path`` holding ``vreason_telemetry_rank*.jsonl``. Writes PNG and
PDF of: ``entropy_mean`` (runs overlaid), ``alpha_histogram``, ``output_tokens`` and one
``sample_alpha_<run>`` per run for the same doc (``--sample TASK:DOC_ID``, default the first doc
all runs share).
"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog("plot"), description=CLI_HELP, formatter_class=HelpFormatter)
    p.add_argument("runs", nargs="+", metavar="RUN", help="lmms-eval --output_path directories")
    p.add_argument("--labels", nargs="+", help="display names, one per RUN (default: telemetry run label)")
    p.add_argument("--out", required=True, help="directory for the figures")
    p.add_argument("--tasks", nargs="+", help="only these tasks (default: all in the telemetry)")
    p.add_argument("--sample", metavar="TASK:DOC_ID", help="the doc for the single-sample alpha plot")
    p.add_argument("--min-alive", type=int, default=1, help="cut mean curves where fewer samples remain")
    return p


def pick_sample(runs: dict[str, list[SampleTrace]], wanted: str | None) -> tuple[str, int]:
    """The (task, doc_id) for the single-sample plot: the requested one, else the first all runs share."""
    have = [{(t.task, t.doc_id) for t in traces if t.entropy} for traces in runs.values()]
    common = set.intersection(*have)
    if wanted is not None:
        task, sep, doc = wanted.rpartition(":")
        if not sep or not doc.lstrip("-").isdigit():
            raise RunInputError(f"--sample must look like TASK:DOC_ID, got {wanted!r}")
        key = (task, int(doc))
        if key not in common:
            raise RunInputError(f"--sample {wanted}: not in the telemetry of every run (or has no entropy)")
        return key
    if not common:
        raise RunInputError(
            "the runs share no doc with entropy recorded; pass --sample for one run at a time"
        )
    return min(common)


def _slug(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "run"


def _main(argv: Sequence[str] | None) -> int:
    args = build_parser().parse_args(argv)
    runs = load_labelled_traces(args.runs, args.labels, args.tasks)
    written = plot_mean_entropy(runs, args.out, min_alive=args.min_alive)
    written += plot_alpha_histogram(runs, args.out)
    written += plot_output_tokens(runs, args.out)
    key = pick_sample(runs, args.sample)
    for i, (label, traces) in enumerate(runs.items()):
        trace = next(t for t in traces if (t.task, t.doc_id) == key)
        written += plot_sample_alpha(trace, args.out, label=label, name=f"sample_alpha_{i}_{_slug(label)}")
    for path in written:
        print(path)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``vreason plot RUN... --out DIR``: exit 0, or 2 on bad input."""
    return run_main(_main, argv)
