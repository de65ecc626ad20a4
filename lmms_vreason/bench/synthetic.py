"""Random-weight models of a chosen shape, and prompts with a chosen number of video tokens.

Costs depend on shapes, not on trained weights, so the figures are measured on synthetic models that
need no download: :data:`CPU_PROXY` (small enough for 2 CPU cores, with the real 151,936-row
vocabulary so the LM head weighs what it weighs), :data:`LAUNCH_BOUND` and :data:`HALF_B` (the two
CPU proxies of the compiled loop: per-op overhead, and memory bandwidth), :data:`QWEN2_5_VL_7B`
(the released 7B's exact text and vision shapes, for the GPU figures) and :data:`SMOKE` (a
seconds-long CPU run of the GPU figures command, for its test).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import torch

SYNTHETIC_FAMILIES = ("qwen2_5_vl", "qwen3_vl", "qwen3_5")
"""Families a synthetic model can be built as (``vreason bench --family``)."""
DEFAULT_VOCAB = 151_936
"""Qwen2.5-VL's and Qwen3-VL's embedding rows (the CPU proxy's vocabulary)."""
QWEN3_5_VOCAB = 248_320
"""Qwen3.5's embedding rows: a synthetic Qwen3.5 takes them instead of the default 151,936 (its LM
head then weighs what the released one does)."""


@dataclass(frozen=True, kw_only=True)
class SyntheticShape:
    """Shape of a synthetic model (defaults: the CPU proxy of Qwen2.5-VL)."""

    family: str = "qwen2_5_vl"
    layers: int = 8
    hidden: int = 512
    intermediate: int | None = None
    """MLP width; default: the family's ratio to ``hidden`` (7B: 5.29, Qwen3-VL-8B: 3)."""
    heads: int | None = None
    """Attention heads; default ``hidden // 64``."""
    kv_heads: int | None = None
    """KV heads; default a quarter of the heads (GQA, as the released models)."""
    vocab: int = DEFAULT_VOCAB
    mrope_section: tuple[int, int, int] | None = None
    vision_depth: int = 1
    vision_hidden: int = 64
    vision_intermediate: int = 128
    vision_heads: int = 2
    fullatt_blocks: tuple[int, ...] = (0,)

    def __post_init__(self) -> None:
        if self.family not in SYNTHETIC_FAMILIES:
            raise ValueError(f"no synthetic {self.family!r} model; families: {', '.join(SYNTHETIC_FAMILIES)}")
        if self.family == "qwen3_5" and self.layers % 4:
            raise ValueError(
                f"a synthetic qwen3_5 needs layers divisible by 4 (every 4th is full attention), got {self.layers}"
            )

    @property
    def vocab_size(self) -> int:
        """Embedding rows built: ``vocab``, or Qwen3.5's 248,320 where a qwen3_5 keeps the default."""
        return QWEN3_5_VOCAB if self.family == "qwen3_5" and self.vocab == DEFAULT_VOCAB else self.vocab

    @property
    def label(self) -> str:
        return f"synthetic {self.family} {self.layers}L/{self.hidden}h/{self.vocab_size}v"


CPU_PROXY = SyntheticShape()
QWEN2_5_VL_7B = SyntheticShape(
    layers=28,
    hidden=3584,
    intermediate=18944,
    heads=28,
    kv_heads=4,
    vocab=152_064,
    mrope_section=(16, 24, 24),
    vision_depth=32,
    vision_hidden=1280,
    vision_intermediate=3420,
    vision_heads=16,
    fullatt_blocks=(7, 15, 23, 31),
)
SMOKE = replace(CPU_PROXY, layers=2, hidden=128)
LAUNCH_BOUND = replace(CPU_PROXY, layers=24, hidden=128, intermediate=256)
"""Bound by per-op overhead on a CPU, as a 7B model is on a GPU under eager PyTorch: 24 layers of
tiny matrices (their weights stream in well under a millisecond) and the real vocabulary."""
HALF_B = replace(CPU_PROXY, layers=24, hidden=896, intermediate=4864, heads=14, kv_heads=2)
"""Qwen2.5-0.5B's text shape (bound by memory bandwidth on a CPU: ~2 GB of float32 weights a step)."""
SHAPES: dict[str, SyntheticShape] = {
    "cpu-proxy": CPU_PROXY,
    "launch-bound": LAUNCH_BOUND,
    "0.5b": HALF_B,
    "7b": QWEN2_5_VL_7B,
    "smoke": SMOKE,
}
"""The named shapes of ``vreason bench --shape``."""


def synthetic_model(
    shape: SyntheticShape, device: torch.device, dtype: torch.dtype, attn_implementation: str | None = None
) -> tuple[torch.nn.Module, Any]:
    """A random model of ``shape`` on ``device`` in ``dtype`` (built on the device: a 7B never
    passes through host memory), and its config."""
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen3_5Config,
        Qwen3_5ForConditionalGeneration,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
    )

    heads = shape.heads or max(1, shape.hidden // 64)
    kv_heads = shape.kv_heads or (max(1, heads // 4) if heads % 4 == 0 else heads)
    head_dim = shape.hidden // heads
    text: dict[str, Any] = {
        "vocab_size": shape.vocab_size,
        "hidden_size": shape.hidden,
        "num_hidden_layers": shape.layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
    }
    vision: dict[str, Any] = {
        "depth": shape.vision_depth,
        "hidden_size": shape.vision_hidden,
        "intermediate_size": shape.vision_intermediate,
        "num_heads": shape.vision_heads,
        "out_hidden_size": shape.hidden,
    }
    if shape.family == "qwen3_5":  # hybrid: 3 Gated-DeltaNet layers, then 1 full attention, repeated
        config_cls, model_cls = Qwen3_5Config, Qwen3_5ForConditionalGeneration
        half = head_dim // 8  # a quarter of each head rotates (released: [11, 11, 10] of 32)
        w = half * 10 // 32
        section = shape.mrope_section or (half - w - (half - w) // 2, (half - w) // 2, w)
        text |= {
            "intermediate_size": shape.intermediate or shape.hidden * 3,
            "head_dim": head_dim,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 1e7,
                "partial_rotary_factor": 0.25,
                "mrope_section": list(section),
                "mrope_interleaved": True,
            },
            "linear_key_head_dim": head_dim,
            "linear_value_head_dim": head_dim,
            "linear_num_key_heads": max(1, heads // 2),
            "linear_num_value_heads": heads,
        }
        vision |= {"patch_size": 16, "num_position_embeddings": 64}
    elif shape.family == "qwen3_vl":
        config_cls, model_cls = Qwen3VLConfig, Qwen3VLForConditionalGeneration
        half = head_dim // 2
        section = shape.mrope_section or (half - 2 * (half * 5 // 16), half * 5 // 16, half * 5 // 16)
        text |= {
            "intermediate_size": shape.intermediate or shape.hidden * 3,
            "head_dim": head_dim,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 5e6,
                "mrope_section": list(section),  # of head_dim/2, interleaved (8B: [24, 20, 20] of 64)
                "mrope_interleaved": True,
            },
        }
        vision |= {"patch_size": 16, "num_position_embeddings": 64, "deepstack_visual_indexes": [0]}
    else:
        config_cls, model_cls = Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
        half = head_dim // 2
        section = shape.mrope_section or (
            half // 4,
            (half - half // 4) // 2,
            half - half // 4 - (half - half // 4) // 2,
        )
        text |= {
            "intermediate_size": shape.intermediate or int(shape.hidden * 5.29),
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6, "mrope_section": list(section)},
        }
        vision |= {"fullatt_block_indexes": list(shape.fullatt_blocks), "window_size": 112}
    config = config_cls(text_config=text, vision_config=vision, tie_word_embeddings=False)
    if attn_implementation is not None:
        config._attn_implementation = attn_implementation
    torch.manual_seed(0)
    with torch.device(device):
        model = model_cls(config)
    return model.to(dtype=dtype).eval(), config


def synthetic_inputs(
    config: Any, n_video: int, text_tokens: int, device: torch.device, dtype: torch.dtype, batch: int = 1
) -> dict[str, torch.Tensor]:
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
