"""What the decode loop needs from a model family: positions, prefill inputs, one forward.

The loop itself is model-agnostic: it tracks positions explicitly (never from the cache length, which
is what keeps Lite's pruned cache correct), owns the cache and samples tokens. A family adapter
(:mod:`lmms_vreason.models`) says how its prompt positions start and which processor outputs go to
the prefill; everything else is the same for every ``transformers`` vision-language model here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from transformers import DynamicCache

from lmms_vreason.core.ragged import packed_positions
from lmms_vreason.core.step import DecoderParts, DecoderStep


class ModelAdapter:
    """A ``transformers`` vision-language model run one step at a time with an explicit cache.

    Freezes the model's parameters (``requires_grad=False``): V-Reason differentiates only with
    respect to ΔV, so no parameter gradient is ever built.
    """

    prefill_only_inputs: tuple[str, ...] = ()
    """Processor outputs that only the prefill forward takes (pixels, grids, ...)."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        model.requires_grad_(False)
        self.config = model.config
        self.video_token_id = int(model.config.video_token_id)
        text = model.config.get_text_config(decoder=True)
        self.layer_types: tuple[str, ...] = tuple(
            getattr(text, "layer_types", None) or ("full_attention",) * text.num_hidden_layers
        )
        """Each decoder layer's kind (``full_attention``; hybrid models also ``linear_attention``)."""
        self._steps: dict[bool, DecoderStep] = {}

    def check_controllable(self) -> None:
        """Fail unless the last decoder layer is full attention: the controller acts on that layer's
        cached values (docs/method.md §1), and a linear-attention layer caches none. Never another
        layer instead: that would be another method, chosen silently."""
        last = self.layer_types[-1]
        if last == "full_attention":
            return
        full = [i for i, kind in enumerate(self.layer_types) if kind == "full_attention"]
        raise ValueError(
            f"V-Reason's controller acts on the last decoder layer's cached values, but layer "
            f"{len(self.layer_types) - 1} of this checkpoint is {last} (it caches no per-token values); "
            f"full-attention layers: {full or 'none'}. Run it with vreason=false, or use a checkpoint "
            "whose last layer is full attention"
        )

    @property
    def device(self) -> torch.device:
        """Where inputs go (the input embeddings' device)."""
        return self.model.get_input_embeddings().weight.device

    def new_cache(self) -> DynamicCache:
        """An empty cache for the prefill (the decode loop copies it into preallocated buffers)."""
        return DynamicCache(config=self.config)

    def decoder_step(self, *, compile: bool = False) -> DecoderStep:
        """The model's one-token decode step, built (and, with ``compile``, compiled) once per adapter."""
        if compile not in self._steps:
            self._steps[compile] = DecoderStep(DecoderParts.of(self.model), compile=compile)
        return self._steps[compile]

    def prefill_positions(self, inputs: Mapping[str, Any]) -> torch.Tensor:
        """Position ids of the prompt, ``[rows, B, L]``, exactly as ``generate`` builds them.

        Every later token's positions are the previous token's plus one in every row.
        """
        raise NotImplementedError

    def prefill_inputs(self, inputs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The processor outputs only the prefill forward takes, on the device."""
        return {k: inputs[k].to(self.device) for k in self.prefill_only_inputs if inputs.get(k) is not None}

    def video_positions(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Cache positions of each sample's video tokens, ascending, ``[B, N]``.

        ``N`` is the largest count in the batch; shorter rows are padded with
        :data:`lmms_vreason.core.ragged.PAD`.
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
        """One forward; the last position's raw logits in at least float32, ``[B, vocab]``."""
        out = self.model(
            input_ids=input_ids,
            position_ids=position_ids,
            attention_mask=attention_mask,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
            **prefill_inputs,
        )
        logits = out.logits[:, -1]
        # Like generate(): logits join the inputs' device (with device_map=auto the LM head may sit
        # on another GPU); the move is differentiable, so the gradient path is unchanged.
        return logits.to(dtype=torch.promote_types(logits.dtype, torch.float32), device=input_ids.device)
