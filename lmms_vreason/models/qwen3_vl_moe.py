"""Qwen3-VL-MoE (30B-A3B, 235B-A22B): Qwen3-VL with a routed mixture of experts in every MLP.

Positions, processor, timestamps and DeepStack are Qwen3-VL's; only the MLP differs (a top-k router
over experts). The controller acts on the last layer's attention values, before that MLP, so ΔV's
gradient flows back through the router and the chosen experts like through any other layer.
"""

from __future__ import annotations

from lmms_vreason.models.qwen3_vl import Qwen3VLAdapter


class Qwen3VLMoeAdapter(Qwen3VLAdapter):
    """Runs a ``Qwen3VLMoeForConditionalGeneration`` one step at a time."""
