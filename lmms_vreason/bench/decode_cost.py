"""Benchmark (``vreason bench``): per-token decode cost and peak memory of V-Reason vs the plain loop,
and what a one-pass lr grid costs against one single-lr decode, in one process.

Default: the CPU proxy, a synthetic Qwen2.5-VL (8 layers, hidden 512, the real 151,936-row
vocabulary, 128 video tokens, 64 new tokens, random weights) in float32; ``--family qwen3_vl``
builds the same shape as a Qwen3-VL (its attention with q/k norms, interleaved M-RoPE, DeepStack,
patch 16), ``--family qwen3_5`` as a Qwen3.5 (hybrid: every 4th layer full attention, the others
Gated-DeltaNet linear attention; no DeepStack; its 248,320-row vocabulary). On the CPU, and on CUDA
without ``flash-linear-attention``/``causal-conv1d``, Qwen3.5's linear layers run transformers'
reference PyTorch kernels. Timing and memory rules: :mod:`lmms_vreason.bench.measure`.

Prints one JSON object (``--json``) or a table: ``base_ms_per_token``, ``generate_ms_per_token``
(transformers' ``generate`` on the same input, prefill excluded), ``vreason_k4_ratio``,
``vreason_k1_ratio``, ``lite_k4_ratio`` (per-token time / base), ``peak_mem_overhead_ratio``
(V-Reason peak memory / base peak - 1), the KV-cache bytes before/after Lite pruning, and for every
``--grid`` size G: ``grid_G<g>_ratio`` (wall time of one sample decoded at G learning rates in one
pass, prefill included, / the same sample at one lr) and ``grid_G<g>_peak_mem_bytes``.

The floor (:mod:`lmms_vreason.bench.floor`): ``floor_ms_per_token`` (the bytes a step must read ÷
the read bandwidth measured in the same process) and every variant's ``*_over_floor``. With
``--compile``: ``compiled_base_ms_per_token``, ``compiled_speedup`` (eager plain ÷ compiled plain),
``compiled_vreason_k4_ratio``, ``compiled_vreason_k1_ratio``, ``compiled_lite_k4_ratio`` (each ÷
compiled plain), ``compiled_base_over_floor`` and ``compile_s`` (what compiling the variants cost).

Example: ``vreason bench --json``, ``vreason bench --shape launch-bound --compile --grid ''``,
``vreason bench --family qwen3_vl``, ``vreason bench --family qwen3_5`` or
``vreason bench --model-dir /path/to/Qwen2.5-VL-7B-Instruct --device cuda --dtype bfloat16``
(a checkpoint of any supported family; its adapter follows its ``model_type``).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import torch

from lmms_vreason.bench.floor import decode_floor
from lmms_vreason.bench.measure import Timing, generate_ms_per_token, measure, process_rss
from lmms_vreason.bench.synthetic import (
    SHAPES,
    SYNTHETIC_FAMILIES,
    SyntheticShape,
    synthetic_inputs,
    synthetic_model,
)
from lmms_vreason.cli import HelpFormatter, prog
from lmms_vreason.core.decode import DecodeOutput, decode
from lmms_vreason.core.settings import PAPER_LR_GRID, GenerationSettings, VReasonSettings
from lmms_vreason.models import FAMILIES, adapter_for

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def grid_of(size: int) -> str:
    """``size`` learning rates of the paper's grid (all 10, or evenly picked), as ``lr_grid`` takes them."""
    picks = [PAPER_LR_GRID[round(i * (len(PAPER_LR_GRID) - 1) / max(size - 1, 1))] for i in range(size)]
    if size > len(PAPER_LR_GRID) or len(set(picks)) != size:
        raise ValueError(f"a grid of {size} lrs: pick 1..{len(PAPER_LR_GRID)}")
    return ":".join(repr(lr) for lr in picks)


def measure_variants(
    model: torch.nn.Module,
    inputs: dict[str, torch.Tensor],
    *,
    new_tokens: int,
    repeats: int,
    device: torch.device,
    baseline: int,
    grids: Sequence[int] = (),
    with_generate: bool = True,
    compile: bool = False,
) -> dict[str, Any]:
    """Per-token time and peak memory of the plain loop, V-Reason k=4/k=1, Lite k=4 and ``generate``,
    the cost of one-pass lr grids against a single-lr decode (all on ``inputs``), the floor, and with
    ``compile`` the same variants with the compiled step."""
    adapter = adapter_for(model)
    settings = GenerationSettings(max_new_tokens=new_tokens)

    def run(cfg: VReasonSettings | None, compiled: bool = False) -> Callable[[], DecodeOutput]:
        return lambda: decode(adapter, inputs, settings, cfg, compile=compiled)

    def timing(cfg: VReasonSettings | None, compiled: bool = False) -> Timing:
        return measure(run(cfg, compiled), repeats, device, baseline)

    base, k4, k1 = timing(None), timing(VReasonSettings(step_size=4)), timing(VReasonSettings(step_size=1))
    lite = timing(VReasonSettings(step_size=4, lite=True))
    vreason_peak = max(k1.peak_bytes, k4.peak_bytes)
    pruned = lite.output.pruned
    out: dict[str, Any] = {
        "base_ms_per_token": round(base.ms_per_token, 3),
        "generate_ms_per_token": None,
        "vreason_k4_ms_per_token": round(k4.ms_per_token, 3),
        "vreason_k1_ms_per_token": round(k1.ms_per_token, 3),
        "lite_k4_ms_per_token": round(lite.ms_per_token, 3),
        "vreason_k4_ratio": round(k4.ms_per_token / base.ms_per_token, 4),
        "vreason_k1_ratio": round(k1.ms_per_token / base.ms_per_token, 4),
        "lite_k4_ratio": round(lite.ms_per_token / base.ms_per_token, 4),
        "base_peak_mem_bytes": base.peak_bytes,
        "vreason_k4_peak_mem_bytes": k4.peak_bytes,
        "vreason_peak_mem_bytes": vreason_peak,
        "lite_peak_mem_bytes": lite.peak_bytes,
        "peak_mem_overhead_ratio": round(vreason_peak / base.peak_bytes - 1.0, 4),
        "vreason_k4_peak_mem_overhead_ratio": round(k4.peak_bytes / base.peak_bytes - 1.0, 4),
        "kv_cache_bytes_before_pruning": None if pruned is None else pruned.kv_bytes_before,
        "kv_cache_bytes_after_pruning": None if pruned is None else pruned.kv_bytes_after,
    }
    if with_generate:
        out["generate_ms_per_token"] = round(
            generate_ms_per_token(model, inputs, new_tokens, repeats, device), 3
        )
    for size in grids:
        grid = timing(VReasonSettings(step_size=4, lr_grid=grid_of(size)))
        out[f"grid_G{size}_ratio"] = round(grid.total_s / k4.total_s, 4)
        out[f"grid_G{size}_peak_mem_bytes"] = grid.peak_bytes
    if grids:
        out["single_lr_total_s"] = round(k4.total_s, 4)
    batch, prompt_len = inputs["input_ids"].shape
    dtype = next(model.parameters()).dtype
    floor = decode_floor(
        model, batch=batch, mean_cache_tokens=prompt_len + new_tokens / 2, device=device, dtype=dtype
    )
    out |= {
        "floor_ms_per_token": round(floor.ms_per_step, 3),
        "read_bandwidth_gb_s": round(floor.bandwidth / 1e9, 2),
        "step_bytes": floor.step_bytes,
    }
    for key in ("base", "generate", "vreason_k4", "vreason_k1", "lite_k4"):
        if out[f"{key}_ms_per_token"] is not None:
            out[f"{key}_over_floor"] = round(out[f"{key}_ms_per_token"] / floor.ms_per_step, 4)
    if compile:
        out |= compiled_variants(timing, base, floor.ms_per_step)
    return out


def compiled_variants(
    timing: Callable[[VReasonSettings | None, bool], Timing], eager_base: Timing, floor_ms: float
) -> dict[str, Any]:
    """The compiled step's figures: its own time per token, against the eager loop and the floor.

    The first compiled call of each variant compiles (``compile_s`` adds them up: what a run pays
    once per shape); :func:`measure` warms every variant up, so the timed runs are compiled ones.
    """
    started = time.perf_counter()
    base = timing(None, True)
    k4 = timing(VReasonSettings(step_size=4), True)
    k1 = timing(VReasonSettings(step_size=1), True)
    lite = timing(VReasonSettings(step_size=4, lite=True), True)
    timed = (base, k4, k1, lite)
    compile_s = time.perf_counter() - started - sum(t.elapsed_s for t in timed)
    return {
        "compiled_base_ms_per_token": round(base.ms_per_token, 3),
        "compiled_vreason_k4_ms_per_token": round(k4.ms_per_token, 3),
        "compiled_vreason_k1_ms_per_token": round(k1.ms_per_token, 3),
        "compiled_lite_k4_ms_per_token": round(lite.ms_per_token, 3),
        "compiled_speedup": round(eager_base.ms_per_token / base.ms_per_token, 4),
        "compiled_vreason_k4_ratio": round(k4.ms_per_token / base.ms_per_token, 4),
        "compiled_vreason_k1_ratio": round(k1.ms_per_token / base.ms_per_token, 4),
        "compiled_lite_k4_ratio": round(lite.ms_per_token / base.ms_per_token, 4),
        "compiled_base_over_floor": round(base.ms_per_token / floor_ms, 4),
        "compiled_vreason_k4_over_floor": round(k4.ms_per_token / floor_ms, 4),
        "compiled_base_peak_mem_bytes": base.peak_bytes,
        "compiled_vreason_k4_peak_mem_overhead_ratio": round(k4.peak_bytes / base.peak_bytes - 1.0, 4),
        "compile_s": round(compile_s, 1),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog("bench"), description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument(
        "--model-dir", help="a real checkpoint (any supported family) instead of the synthetic config"
    )
    parser.add_argument(
        "--family",
        choices=SYNTHETIC_FAMILIES,
        default="qwen2_5_vl",
        help="model family of the synthetic config (ignored with --model-dir)",
    )
    parser.add_argument(
        "--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device"
    )
    parser.add_argument(
        "--dtype", choices=sorted(DTYPES), default=None, help="default: bfloat16 on cuda, float32 on cpu"
    )
    parser.add_argument(
        "--shape",
        choices=sorted(SHAPES),
        default="cpu-proxy",
        help="synthetic shape: cpu-proxy (8L/512h), launch-bound (24L/128h/MLP 256: per-op overhead, "
        "as a 7B on a GPU under eager PyTorch), 0.5b (24L/896h/MLP 4864: memory bandwidth), 7b, smoke; "
        "--layers/--hidden/--intermediate/--vocab override it",
    )
    parser.add_argument("--layers", type=int, default=None, help="decoder layers (default: the shape's)")
    parser.add_argument("--hidden", type=int, default=None, help="hidden size (default: the shape's)")
    parser.add_argument(
        "--intermediate",
        type=int,
        default=None,
        help="MLP size (default: the shape's, else the family's ratio)",
    )
    parser.add_argument("--vocab", type=int, default=None, help="vocabulary size (default: the shape's)")
    parser.add_argument("--video-tokens", type=int, default=128, help="video tokens in the prompt")
    parser.add_argument("--text-tokens", type=int, default=64, help="text tokens in the prompt")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens decoded per run")
    parser.add_argument("--batch", type=int, default=1, help="samples decoded together (ms are per step)")
    parser.add_argument(
        "--grid", default="10,4", help="lr-grid sizes to cost against one lr ('' for none), comma-separated"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--keep-denormals",
        action="store_true",
        help="do not flush denormal floats on the CPU (random synthetic weights produce many, slowing every variant)",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time every variant with the compiled step (compile_s: its cost)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    flush = device.type == "cpu" and not args.keep_denormals and torch.set_flush_denormal(True)
    dtype = DTYPES[args.dtype or ("bfloat16" if device.type == "cuda" else "float32")]
    baseline = process_rss()
    if args.model_dir:
        from transformers import AutoModelForImageTextToText

        model = AutoModelForImageTextToText.from_pretrained(
            args.model_dir, dtype=dtype, device_map=device
        ).eval()
        config, label = model.config, args.model_dir
    else:
        overrides = {
            name: getattr(args, name)
            for name in ("layers", "hidden", "intermediate", "vocab")
            if getattr(args, name) is not None
        }
        if "hidden" in overrides:  # heads follow the hidden size unless the shape fixes them
            overrides |= {"heads": None, "kv_heads": None}
        shape: SyntheticShape = replace(SHAPES[args.shape], family=args.family, **overrides)
        model, config = synthetic_model(shape, device, dtype)
        label = shape.label
    inputs = synthetic_inputs(config, args.video_tokens, args.text_tokens, device, dtype, args.batch)
    grids = [int(g) for g in args.grid.split(",") if g.strip()]
    result = {
        "device": str(device),
        "dtype": str(dtype).replace("torch.", ""),
        "model": label,
        "shape": args.shape,
        "family": FAMILIES[config.model_type].label,
        "video_tokens": args.video_tokens,
        "new_tokens": args.new_tokens,
        "batch": args.batch,
        "flush_denormal": bool(flush),
        "threads": torch.get_num_threads(),
        **measure_variants(
            model,
            inputs,
            new_tokens=args.new_tokens,
            repeats=args.repeats,
            device=device,
            baseline=baseline,
            grids=grids,
            compile=args.compile,
        ),
    }
    if args.json:
        print(json.dumps(result))
    else:
        width = max(len(k) for k in result)
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")
    return result


if __name__ == "__main__":
    main()
