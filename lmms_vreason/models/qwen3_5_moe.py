"""Qwen3.5-MoE (35B-A3B, ...): Qwen3.5's hybrid decoder with a routed mixture of experts in every MLP.

Everything the decode loop sees is Qwen3.5's (:mod:`lmms_vreason.models.qwen3_5`); the MLP after
each layer's token mixer is a top-k router over experts plus a shared expert, through which ΔV's
gradient flows like through a dense MLP.
"""

from __future__ import annotations

from lmms_vreason.models.qwen3_5 import Qwen3_5Adapter


class Qwen3_5MoeAdapter(Qwen3_5Adapter):
    """Runs a ``Qwen3_5MoeForConditionalGeneration`` one step at a time."""
