"""Benchmark: per-token decode cost and peak memory of V-Reason vs the plain loop, in one process.

Default: a synthetic Qwen2.5-VL (8 layers, hidden 512, the real 151,936-row vocabulary, 128 video
tokens, 64 new tokens, random weights) on the CPU in float32; ``--family qwen3_vl`` builds the same
shape as a Qwen3-VL (its attention with q/k norms, interleaved M-RoPE, DeepStack, patch 16). Every
variant decodes exactly the same number of tokens (no EOS), is warmed up once, then timed over
``--repeats`` runs (median).

Prints one JSON object (``--json``) or a table: ``base_ms_per_token``, ``generate_ms_per_token``
(transformers' ``generate`` on the same input, for reference), ``vreason_k4_ratio``,
``vreason_k1_ratio``, ``lite_k4_ratio`` (per-token time / base), ``peak_mem_overhead_ratio``
(V-Reason k=1 peak memory / base peak - 1), and the KV-cache bytes before/after Lite pruning.
On CUDA, peak memory is ``torch.cuda.max_memory_allocated``; on the CPU it is the peak resident set
size sampled every millisecond minus the process's size before the model was built.

Example: ``vreason bench --json``, ``vreason bench --family qwen3_vl`` or
``vreason bench --model-dir /path/to/Qwen2.5-VL-7B-Instruct --device cuda --dtype bfloat16``
(a checkpoint of any supported family; its adapter follows its ``model_type``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil
import torch

from lmms_vreason.cli import HelpFormatter, prog
from lmms_vreason.core.decode import DecodeOutput, decode
from lmms_vreason.core.settings import GenerationSettings, VReasonSettings
from lmms_vreason.models import FAMILIES, adapter_for

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SYNTHETIC_FAMILIES = ("qwen2_5_vl", "qwen3_vl")


class PeakMemory:
    """Peak memory during a block: CUDA allocator peak, or sampled RSS above a baseline on the CPU."""

    def __init__(self, device: torch.device, baseline_rss: int) -> None:
        self.device = device
        self.baseline = baseline_rss
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            proc = psutil.Process()

            def sample() -> None:
                while not self._stop.is_set():
                    self.peak = max(self.peak, proc.memory_info().rss - self.baseline)
                    time.sleep(0.002)

            self._thread = threading.Thread(target=sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, psutil.Process().memory_info().rss - self.baseline)


def synthetic_model(args: argparse.Namespace, device: torch.device, dtype: torch.dtype):
    """A random model of ``args.family`` with 64-wide heads and the family's MLP ratio (7B / 8B)."""
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
    )

    heads = max(1, args.hidden // 64)
    text = {
        "vocab_size": args.vocab,
        "hidden_size": args.hidden,
        "num_hidden_layers": args.layers,
        "num_attention_heads": heads,
        "num_key_value_heads": max(1, heads // 4) if heads % 4 == 0 else heads,
    }
    vision = {
        "depth": 1,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_heads": 2,
        "out_hidden_size": args.hidden,
    }
    if args.family == "qwen3_vl":
        config_cls, model_cls = Qwen3VLConfig, Qwen3VLForConditionalGeneration
        text |= {
            "intermediate_size": args.intermediate or args.hidden * 3,
            "head_dim": 64,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5e6,
                "mrope_section": [12, 10, 10],  # of head_dim/2 = 32, interleaved (8B: [24, 20, 20] of 64)
                "mrope_interleaved": True,
            },
        }
        vision |= {"patch_size": 16, "num_position_embeddings": 64, "deepstack_visual_indexes": [0]}
    else:
        config_cls, model_cls = Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
        text |= {
            "intermediate_size": args.intermediate or int(args.hidden * 5.29),
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": [8, 12, 12]},
        }
        vision |= {"fullatt_block_indexes": [0]}
    config = config_cls(text_config=text, vision_config=vision, tie_word_embeddings=False)
    torch.manual_seed(0)
    return model_cls(config).to(device=device, dtype=dtype).eval(), config


def synthetic_inputs(
    config: Any, n_video: int, text_tokens: int, device: torch.device, dtype: torch.dtype, batch: int = 1
):
    """``batch`` copies of a prompt of ``text_tokens`` text tokens around ``n_video`` video tokens.

    One temporal patch, so the video is one run of tokens for every family (Qwen3-VL writes a
    timestamp before each temporal patch; with one patch there is nothing between the tokens).
    """
    a = max(d for d in range(1, int(n_video**0.5) + 1) if n_video % d == 0)
    grid = torch.tensor([[1, 2 * a, 2 * (n_video // a)]])  # tokens = t * h * w / merge^2 = n_video
    head = [config.vision_start_token_id]
    ids = [11] * (text_tokens // 2) + head + [config.video_token_id] * n_video + [config.vision_end_token_id]
    ids += [12] * (text_tokens - text_tokens // 2)
    input_ids = torch.tensor([ids] * batch, device=device)
    mm = (input_ids == config.video_token_id).long() * 2
    gen = torch.Generator().manual_seed(0)
    patch = config.vision_config.patch_size
    pixels = torch.randn(int(grid.prod()), 3 * 2 * patch * patch, generator=gen).to(
        device=device, dtype=dtype
    )
    inputs = {
        "input_ids": input_ids,
        "attention_mask": torch.ones_like(input_ids),
        "mm_token_type_ids": mm,
        "pixel_values_videos": pixels.repeat(batch, 1),
        "video_grid_thw": grid.repeat(batch, 1).to(device),
    }
    if config.model_type == "qwen2_5_vl":  # seconds per temporal patch (Qwen2.5-VL's time positions)
        inputs["second_per_grid_ts"] = torch.ones(batch, device=device)
    return inputs


def timed(fn: Callable[[], DecodeOutput], repeats: int, device: torch.device, baseline: int):
    """Median ms per decoded token over ``repeats`` runs, then peak memory from one more run.

    Memory is measured in a separate run: the CPU sampler thread would otherwise compete with the
    decode loop for the interpreter lock and inflate the timings.
    """
    fn()  # warm-up
    per_token = []
    for _ in range(repeats):
        out = fn()
        per_token.append(out.stats.decode_s / max(len(out.sequences[0]) - 1, 1) * 1e3)
    with PeakMemory(device, baseline) as mem:
        out = fn()
    return statistics.median(per_token), mem.peak, out


def main(argv: list[str] | None = None) -> dict[str, Any]:
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
    parser.add_argument("--layers", type=int, default=8, help="decoder layers of the synthetic model")
    parser.add_argument("--hidden", type=int, default=512, help="hidden size of the synthetic model")
    parser.add_argument("--intermediate", type=int, default=None, help="MLP size (default: 5.29 * hidden)")
    parser.add_argument("--vocab", type=int, default=151_936, help="vocabulary size of the synthetic model")
    parser.add_argument("--video-tokens", type=int, default=128, help="video tokens in the prompt")
    parser.add_argument("--text-tokens", type=int, default=64, help="text tokens in the prompt")
    parser.add_argument("--new-tokens", type=int, default=64, help="tokens decoded per run")
    parser.add_argument("--batch", type=int, default=1, help="samples decoded together (ms are per step)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (median)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--keep-denormals",
        action="store_true",
        help="do not flush denormal floats on the CPU (random synthetic weights produce many, slowing every variant)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    flush = device.type == "cpu" and not args.keep_denormals and torch.set_flush_denormal(True)
    dtype = DTYPES[args.dtype or ("bfloat16" if device.type == "cuda" else "float32")]
    baseline = psutil.Process().memory_info().rss
    if args.model_dir:
        from transformers import AutoModelForImageTextToText

        model = AutoModelForImageTextToText.from_pretrained(
            args.model_dir, dtype=dtype, device_map=device
        ).eval()
        config = model.config
    else:
        model, config = synthetic_model(args, device, dtype)
    inputs = synthetic_inputs(config, args.video_tokens, args.text_tokens, device, dtype, args.batch)
    dec = adapter_for(model)
    settings = GenerationSettings(max_new_tokens=args.new_tokens)

    def run(cfg: VReasonSettings | None) -> Callable[[], DecodeOutput]:
        return lambda: decode(dec, inputs, settings, cfg)

    base_ms, base_peak, _ = timed(run(None), args.repeats, device, baseline)
    k4_ms, k4_peak, _ = timed(run(VReasonSettings(step_size=4)), args.repeats, device, baseline)
    k1_ms, k1_peak, _ = timed(run(VReasonSettings(step_size=1)), args.repeats, device, baseline)
    lite_ms, lite_peak, lite_out = timed(
        run(VReasonSettings(step_size=4, lite=True)), args.repeats, device, baseline
    )

    def gen() -> None:
        with torch.no_grad():
            model.generate(
                **inputs, max_new_tokens=args.new_tokens, min_new_tokens=args.new_tokens, do_sample=False
            )

    gen()
    t0 = time.perf_counter()
    for _ in range(args.repeats):
        gen()
    gen_ms = (time.perf_counter() - t0) / args.repeats / args.new_tokens * 1e3  # includes prefill

    pruned = lite_out.pruned
    result = {
        "device": str(device),
        "dtype": str(dtype).replace("torch.", ""),
        "model": args.model_dir or f"synthetic {args.family} {args.layers}L/{args.hidden}h/{args.vocab}v",
        "family": FAMILIES[config.model_type].label,
        "video_tokens": args.video_tokens,
        "new_tokens": args.new_tokens,
        "batch": args.batch,
        "flush_denormal": bool(flush),
        "threads": torch.get_num_threads(),
        "base_ms_per_token": round(base_ms, 3),
        "generate_ms_per_token": round(gen_ms, 3),
        "vreason_k4_ms_per_token": round(k4_ms, 3),
        "vreason_k1_ms_per_token": round(k1_ms, 3),
        "lite_k4_ms_per_token": round(lite_ms, 3),
        "vreason_k4_ratio": round(k4_ms / base_ms, 4),
        "vreason_k1_ratio": round(k1_ms / base_ms, 4),
        "lite_k4_ratio": round(lite_ms / base_ms, 4),
        "base_peak_mem_bytes": int(base_peak),
        "vreason_peak_mem_bytes": int(max(k1_peak, k4_peak)),
        "lite_peak_mem_bytes": int(lite_peak),
        "peak_mem_overhead_ratio": round(max(k1_peak, k4_peak) / base_peak - 1.0, 4),
        "kv_cache_bytes_before_pruning": None if pruned is None else pruned.kv_bytes_before,
        "kv_cache_bytes_after_pruning": None if pruned is None else pruned.kv_bytes_after,
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
