"""Qwen-VL M-RoPE positions as ``generate`` builds them, shared by Qwen2-VL, Qwen2.5-VL and Qwen3-VL.

transformers 5.x has no ``cache_position``; positions are passed explicitly: at prefill ``[4, B, L]``
(a text row, used only for mask creation, then the three M-RoPE rows (time, height, width) from the
model's own ``get_rope_index``), and for every later token ``last + 1`` in all four rows (the decode
loop does that part). The three families build the rows differently inside ``get_rope_index``
(Qwen2.5-VL scales time by ``second_per_grid_ts``; Qwen3-VL splits a video into one grid per
temporal patch, separated by timestamp text), but its inputs are processor outputs in every case:
a family only lists which ones it has.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from lmms_vreason.core.adapter import ModelAdapter

_NOT_FOR_POSITIONS = ("pixel_values", "pixel_values_videos")


class QwenVLAdapter(ModelAdapter):
    """Runs a Qwen-VL ``...ForConditionalGeneration`` one step at a time (Qwen2-VL's inputs)."""

    prefill_only_inputs = (
        "pixel_values",
        "pixel_values_videos",
        "image_grid_thw",
        "video_grid_thw",
        "mm_token_type_ids",
    )

    def prefill_positions(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        input_ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        if mask is not None:
            text = (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)
        else:
            text = torch.arange(input_ids.shape[1], device=input_ids.device)[None].expand(
                input_ids.shape[0], -1
            )
        has_vision = inputs.get("image_grid_thw") is not None or inputs.get("video_grid_thw") is not None
        if has_vision and inputs.get("mm_token_type_ids") is not None:
            kwargs = {
                k: inputs[k].to(input_ids.device)
                for k in self.prefill_only_inputs
                if inputs.get(k) is not None and k not in _NOT_FOR_POSITIONS
            }
            vision, _ = self.model.model.get_rope_index(input_ids, attention_mask=mask, **kwargs)
        else:
            vision = text[None].expand(3, -1, -1)
        return torch.cat([text[None].to(vision.dtype), vision], dim=0)
