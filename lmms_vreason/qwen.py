"""Qwen2.5-VL specifics for the decode loop: M-RoPE positions, video positions, the cache, one forward.

transformers 5.x has no ``cache_position``; positions are passed explicitly the way ``generate``
builds them: at prefill ``[4, B, L]`` (a text row for mask creation, then the three M-RoPE rows from
``get_rope_index``), and for every later token ``last + 1`` in all four rows. Positions are tracked
here, never derived from the cache length, which is what keeps pruned decoding (Lite) correct.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from transformers import DynamicCache

from lmms_vreason.controller import ControlledValueLayer
from lmms_vreason.ragged import packed_positions

PREFILL_ONLY_INPUTS = (
    "pixel_values",
    "pixel_values_videos",
    "image_grid_thw",
    "video_grid_thw",
    "second_per_grid_ts",
    "mm_token_type_ids",
)


class QwenVLDecoder:
    """Runs a ``Qwen2_5_VLForConditionalGeneration`` one step at a time with an explicit cache.

    Freezes the model's parameters (``requires_grad=False``): V-Reason differentiates only with
    respect to ΔV, so no parameter gradient is ever built.
    """

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        model.requires_grad_(False)
        self.config = model.config
        self.text_config = model.config.get_text_config()
        self.video_token_id = int(model.config.video_token_id)
        self.num_layers = int(self.text_config.num_hidden_layers)

    @property
    def device(self) -> torch.device:
        return self.model.get_input_embeddings().weight.device

    def new_cache(self) -> DynamicCache:
        """A ``DynamicCache`` whose last layer can route its values through a controller."""
        cache = DynamicCache(config=self.config)
        cache.layers[-1] = ControlledValueLayer()
        return cache

    def controlled_layer(self, cache: DynamicCache) -> ControlledValueLayer:
        layer = cache.layers[-1]
        if not isinstance(layer, ControlledValueLayer):
            raise TypeError("cache was not built by QwenVLDecoder.new_cache()")
        return layer

    def prefill_positions(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """``[4, B, L]`` positions exactly as ``generate`` prepares them for the prefill."""
        input_ids = inputs["input_ids"]
        mask = inputs.get("attention_mask")
        if mask is not None:
            text = mask.long().cumsum(-1) - 1
            text = text.masked_fill(mask == 0, 0)
        else:
            text = torch.arange(input_ids.shape[1], device=input_ids.device)[None].expand(
                input_ids.shape[0], -1
            )
        has_vision = inputs.get("image_grid_thw") is not None or inputs.get("video_grid_thw") is not None
        if has_vision and inputs.get("mm_token_type_ids") is not None:
            kwargs = {
                k: inputs.get(k) for k in PREFILL_ONLY_INPUTS if k in inputs and not k.startswith("pixel")
            }
            vision, _ = self.model.model.get_rope_index(input_ids, attention_mask=mask, **kwargs)
        else:
            vision = text[None].expand(3, -1, -1)
        return torch.cat([text[None].to(vision.dtype), vision], dim=0)

    def video_positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Cache positions of each sample's video tokens, ascending, ``[B, N]``.

        ``N`` is the largest count in the batch; rows of samples with fewer video tokens are padded
        with :data:`lmms_vreason.ragged.PAD`.
        """
        return packed_positions(input_ids == self.video_token_id)

    def forward(
        self,
        input_ids: torch.Tensor,
        position_ids: torch.Tensor,
        cache: DynamicCache,
        attention_mask: torch.Tensor | None = None,
        **prefill_inputs: Any,
    ) -> torch.Tensor:
        """One forward; the last position's raw logits in at least float32, on the inputs' device, ``[B, V]``."""
        out = self.model(
            input_ids=input_ids,
            position_ids=position_ids,
            attention_mask=attention_mask,
            past_key_values=cache,
            use_cache=True,
            logits_to_keep=1,
            **prefill_inputs,
        )
        logits = out.logits[:, -1]
        # Like generate(): logits join the inputs' device (with device_map=auto the LM head may sit
        # on another GPU); the move is differentiable, so the gradient path is unchanged.
        return logits.to(dtype=torch.promote_types(logits.dtype, torch.float32), device=input_ids.device)
