"""The GPU figures in one command (``vreason gpu-figures``), with no download.

On a GPU: a Qwen2.5-VL-7B-shaped model with random weights (28 layers, hidden 3584, MLP 18944, 28
heads / 4 KV heads, vocabulary 152,064, M-RoPE sections 16/24/24, the released vision tower's shape),
bfloat16, SDPA attention, prompts with 2048 video tokens (the paper's 32 frames at 128·28·28). It
measures, at batch 1 and 8:

* ms per decoded token and tokens/s of our plain loop, transformers' ``generate``, V-Reason at k = 4
  and k = 1, and V-Reason (Lite) at k = 4, with the peak memory of each
  (``torch.cuda.max_memory_allocated``);
* the one-pass lr grid: wall time of one sample at 10 and 4 learning rates against one lr;
* an end-to-end lmms-eval run (the offline demo: tiny model, fixture benchmark) on the GPU.

It writes ``figures.json`` and ``figures.md`` (which the README's cost section quotes, with the date
and the GPU's name) and checks the goals: V-Reason k = 4 within 1.05x the plain loop per token, its
peak memory within +2 %, the plain loop no slower than ``generate``.

``--small`` swaps in a small shape that runs in seconds on a CPU (the command's own test).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from lmms_vreason.bench.decode_cost import measure_variants
from lmms_vreason.bench.measure import process_rss
from lmms_vreason.bench.synthetic import QWEN2_5_VL_7B, SMOKE, synthetic_inputs, synthetic_model
from lmms_vreason.cli import HelpFormatter, prog

GOALS = {
    "vreason_k4_ratio": ("V-Reason k=4 / plain loop, per token", 1.05),
    "vreason_k4_peak_mem_overhead_ratio": ("V-Reason k=4 peak memory over the plain loop", 0.02),
    "plain_over_generate": ("plain loop / generate, per token", 1.0),
}
"""Figure -> (what it is, the largest value that meets the goal), checked at batch 1."""
COMPILED_GOALS = {
    "compiled_base_over_floor": ("compiled plain loop / the floor (bytes read ÷ bandwidth), per token", 1.5),
    "compiled_vreason_k4_ratio": ("compiled V-Reason k=4 / compiled plain loop, per token", 1.05),
    "compiled_vreason_k4_peak_mem_overhead_ratio": (
        "compiled V-Reason k=4 peak memory over compiled plain",
        0.02,
    ),
}
"""The goals of the compiled step (``--compile``), checked at batch 1 as well."""
GIB = 1024**3


def run_figures(args: argparse.Namespace) -> dict[str, Any]:
    device = torch.device(args.device)
    small = args.small
    shape = SMOKE if small else QWEN2_5_VL_7B
    dtype = torch.float32 if small and device.type == "cpu" else torch.bfloat16
    if device.type == "cpu":
        torch.set_flush_denormal(True)
    baseline = process_rss()
    model, config = synthetic_model(shape, device, dtype, attn_implementation="sdpa")
    figures: dict[str, Any] = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "model": shape.label + (" (smoke shape)" if small else " (Qwen2.5-VL-7B shape)"),
        "smoke": small,
        "dtype": str(dtype).replace("torch.", ""),
        "attention": "sdpa",
        "video_tokens": args.video_tokens,
        "new_tokens": args.new_tokens,
        "batches": {},
    }
    for batch in args.batches:
        inputs = synthetic_inputs(config, args.video_tokens, args.text_tokens, device, dtype, batch)
        row = measure_variants(
            model,
            inputs,
            new_tokens=args.new_tokens,
            repeats=args.repeats,
            device=device,
            baseline=baseline,
            grids=args.grids if batch == 1 else (),
            compile=args.compile,
        )
        row["plain_over_generate"] = round(row["base_ms_per_token"] / row["generate_ms_per_token"], 4)
        figures["batches"][str(batch)] = row
        del inputs
        if device.type == "cuda":
            torch.cuda.empty_cache()
    first = figures["batches"][str(args.batches[0])]
    goals = GOALS | (COMPILED_GOALS if args.compile else {})
    figures["goals"] = {
        key: {"what": what, "value": first[key], "limit": limit, "met": first[key] <= limit}
        for key, (what, limit) in goals.items()
    }
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    if not args.skip_e2e:
        figures["e2e"] = end_to_end(device)
    return figures


def end_to_end(device: torch.device) -> dict[str, Any]:
    """The offline demo (tiny model, fixture benchmark, the real lmms-eval CLI) on ``device``."""
    from lmms_vreason.testing import demo

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        code = demo.main(["--out", tmp, "--device", str(device), "--limit", "1", "--max-new-tokens", "16"])
        return {"ok": code == 0, "seconds": round(time.perf_counter() - start, 1), "device": str(device)}


def markdown(figures: dict[str, Any]) -> str:
    """The figures as the README's cost section shows them."""
    floors = [
        f"Floor at batch {batch}: {row['floor_ms_per_token']:.2f} ms per token ({row['step_bytes'] / GIB:.2f} GiB "
        f"read per step at {row['read_bandwidth_gb_s']} GB/s, measured in the same run)."
        for batch, row in figures["batches"].items()
        if "floor_ms_per_token" in row
    ]
    lines = [
        f"GPU figures, {figures['date']}, {figures['device']}: {figures['model']}, {figures['dtype']}, "
        f"{figures['attention']}, {figures['video_tokens']} video tokens, {figures['new_tokens']} new tokens.",
        *([""] + floors if floors else []),
        "",
        "| batch | variant | ms/token | tokens/s | vs plain | peak memory (GiB) | vs plain |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    variants = (
        ("plain loop", "base"),
        ("transformers generate", "generate"),
        ("V-Reason k=4", "vreason_k4"),
        ("V-Reason k=1", "vreason_k1"),
        ("V-Reason (Lite) k=4", "lite_k4"),
        ("compiled plain loop", "compiled_base"),
        ("compiled V-Reason k=4", "compiled_vreason_k4"),
        ("compiled V-Reason k=1", "compiled_vreason_k1"),
        ("compiled V-Reason (Lite) k=4", "compiled_lite_k4"),
    )
    peaks = {"base": "base", "vreason_k4": "vreason_k4", "vreason_k1": "vreason", "lite_k4": "lite"}
    for batch, row in figures["batches"].items():
        base_ms, base_peak = row["base_ms_per_token"], row["base_peak_mem_bytes"]
        for name, key in variants:
            if f"{key}_ms_per_token" not in row:
                continue
            ms = row[f"{key}_ms_per_token"]
            peak = row.get(f"{peaks[key]}_peak_mem_bytes") if key in peaks else None
            cells = [
                batch,
                name,
                f"{ms:.2f}",
                f"{int(batch) * 1000 / ms:.1f}",
                f"{ms / base_ms:.3f}",
                "—" if peak is None else f"{peak / GIB:.2f}",
                "—" if peak is None else f"{peak / base_peak - 1:+.2%}",
            ]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    row = next(iter(figures["batches"].values()))
    grids = sorted(
        (int(k[6:].split("_")[0]) for k in row if k.startswith("grid_G") and k.endswith("_ratio")),
        reverse=True,
    )
    if grids:
        lines += [
            "",
            "| lr grid (one pass, batch 1) | wall time / one lr | peak memory (GiB) |",
            "|---|---:|---:|",
        ]
        for size in grids:
            lines.append(
                f"| {size} lrs | {row[f'grid_G{size}_ratio']:.2f} | {row[f'grid_G{size}_peak_mem_bytes'] / GIB:.2f} |"
            )
    lines += ["", "| goal | value | limit | met |", "|---|---:|---:|---|"]
    if figures.get("smoke"):
        lines.insert(
            -2,
            "(Smoke shape: the goals are about a 7B model on a GPU; these values only show the command runs.)",
        )
    for goal in figures["goals"].values():
        lines.append(
            f"| {goal['what']} | {goal['value']:.4f} | {goal['limit']} | {'yes' if goal['met'] else 'NO'} |"
        )
    if "e2e" in figures:
        e2e = figures["e2e"]
        lines += [
            "",
            f"End-to-end lmms-eval run (demo) on {e2e['device']}: {'ok' if e2e['ok'] else 'FAILED'} in {e2e['seconds']} s.",
        ]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog("gpu-figures"), description=__doc__, formatter_class=HelpFormatter
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs/gpu-figures"), help="folder for figures.json/.md"
    )
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device"
    )
    parser.add_argument("--small", action="store_true", help="a small shape that runs in seconds on a CPU")
    parser.add_argument(
        "--video-tokens", type=int, default=None, help="video tokens (default: 2048; 32 with --small)"
    )
    parser.add_argument("--text-tokens", type=int, default=64, help="text tokens in the prompt")
    parser.add_argument(
        "--new-tokens", type=int, default=None, help="tokens per run (default: 128; 6 with --small)"
    )
    parser.add_argument(
        "--batches", default="1,8", help="batch sizes, comma-separated (the first is the goals')"
    )
    parser.add_argument(
        "--grids", default="10,4", help="lr-grid sizes costed against one lr, comma-separated"
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed runs per variant (default: 5; 1 with --small)"
    )
    parser.add_argument("--skip-e2e", action="store_true", help="skip the end-to-end lmms-eval run")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also measure the compiled step (CUDA graphs) and check its goals",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if torch.device(args.device).type != "cuda" and not args.small:
        print(
            "error: the GPU figures need a GPU (--device cuda); --small runs a CPU smoke shape",
            file=sys.stderr,
        )
        return 2
    args.video_tokens = args.video_tokens or (32 if args.small else 2048)
    args.new_tokens = args.new_tokens or (6 if args.small else 128)
    args.repeats = args.repeats or (1 if args.small else 5)
    args.batches = [int(b) for b in args.batches.split(",") if b.strip()]
    args.grids = [int(g) for g in args.grids.split(",") if g.strip()]
    figures = run_figures(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "figures.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    text = markdown(figures)
    (args.out / "figures.md").write_text(text, encoding="utf-8")
    print(text)
    print(f"wrote {args.out / 'figures.json'} and {args.out / 'figures.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
