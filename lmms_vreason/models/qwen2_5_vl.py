"""Qwen2.5-VL: the shared Qwen-VL positions, plus ``second_per_grid_ts`` (seconds per temporal patch).

Its ``get_rope_index`` spaces a video's temporal positions by ``tokens_per_second`` times the
seconds each temporal patch spans, so the processor's ``second_per_grid_ts`` is a prefill input.
"""

from __future__ import annotations

from lmms_vreason.models.qwen_vl import QwenVLAdapter


class Qwen2_5_VLAdapter(QwenVLAdapter):
    """Runs a ``Qwen2_5_VLForConditionalGeneration`` one step at a time."""

    prefill_only_inputs = (*QwenVLAdapter.prefill_only_inputs, "second_per_grid_ts")
