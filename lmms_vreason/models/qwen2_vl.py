"""Qwen2-VL: the shared Qwen-VL positions with no extra inputs.

Its ``get_rope_index`` advances a video's temporal position by one per temporal patch (no
``second_per_grid_ts``); everything else is Qwen2.5-VL's layout.
"""

from __future__ import annotations

from lmms_vreason.models.qwen_vl import QwenVLAdapter


class Qwen2VLAdapter(QwenVLAdapter):
    """Runs a ``Qwen2VLForConditionalGeneration`` one step at a time."""
